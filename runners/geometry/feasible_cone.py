"""How far a strict tangent attack can move at all: a certified lower bound on the reach of
``x + T`` inside the pixel box and the L2 ball, and the test for an empty feasible cone.

A strict on-manifold attack moves ``x`` (flattened, ``n`` pixels, box ``[lo, hi]``) to ``x + U c``
with ``U`` an ``n x k`` orthonormal tangent basis, ``lo <= x + U c <= hi`` and ``||c|| <= eps``
(``||U c|| = ||c||`` for orthonormal columns). On MNIST most pixels sit exactly at a bound, and
then the feasible cone ``{c : (U c)_i >= 0 where x_i = lo, (U c)_i <= 0 where x_i = hi}`` is often
``{0}``: the attack cannot move, the image's on-manifold distance is INFINITE ("not measurable"),
not "censored at eps". :func:`tangent_reach` tells the two apart and gives the attack a start.

Why own code: no maintained library returns the reach (the largest norm) of a polytope intersected
with a ball, a non-convex maximisation; a certified lower bound from ``2 k`` linear programmes is
simple, and the LPs themselves are solved by HiGHS through :func:`scipy.optimize.linprog`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

__all__ = ["Reach", "tangent_reach", "FEASIBILITY_TOL"]

#: Absolute pixel-space slack allowed in the returned directions: ``x + U c`` lies within
#: ``[lo - FEASIBILITY_TOL, hi + FEASIBILITY_TOL]``. An LP solution violating the box by more is
#: shrunk towards 0 (feasible because the set is convex and contains 0) until it does not.
FEASIBILITY_TOL = 1e-9

# HiGHS' default primal feasibility tolerance (1e-7) would let an LP vertex break a bound by more
# than FEASIBILITY_TOL, and the shrinking below would then discard it; ask for a tighter one.
# Presolve costs more than it saves on these small dense LPs (k columns, at most 2 n rows): about
# 40% of the time on 784 x 16 MNIST-like cases.
_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10,
                  "presolve": False}

# Certify an empty cone with one Stiemke LP before the 2 k direction LPs (the tests switch it off
# to check that both routes agree).
_STIEMKE_SHORTCUT = True


@dataclass(frozen=True, eq=False)
class Reach:
    """Reach of the strict tangent feasible set per image (see :func:`tangent_reach`).

    Attributes
    ----------
    reach : Tensor
        ``(B,)`` float64 certified lower bound on ``max ||c||`` over
        ``{c : lo <= x + U c <= hi, ||c|| <= eps}``; equals ``eps`` exactly when a move of the
        full budget is certified.
    direction : Tensor
        ``(B, k)`` float64 coefficients ``c`` (in the basis' own columns; zero on zero columns)
        that achieve ``reach``: ``||direction|| == reach`` up to rounding, ``||c|| <= eps`` and
        ``x + U c`` is in the box within :data:`FEASIBILITY_TOL`. An attack can start there.
    cone_zero : Tensor
        ``(B,)`` bool: every LP optimum was ``<= tol * eps``, i.e. the feasible set is ``{x}`` up
        to tolerance and the image is NOT measurable on the manifold (infinite distance). Also
        True when the basis has no nonzero column.
    lp_solves : Tensor
        ``(B,)`` int64 number of linear programmes solved for the image (the Stiemke
        certificate's included).
    """

    reach: Tensor
    direction: Tensor
    cone_zero: Tensor
    lp_solves: Tensor


def _flat_bounds(bound: float | Tensor, shape: torch.Size) -> np.ndarray:
    t = torch.as_tensor(bound, dtype=torch.float64).detach().cpu()
    return torch.broadcast_to(t, shape).reshape(-1).numpy()


def _certify(c: np.ndarray, u: np.ndarray, up: np.ndarray, down: np.ndarray,
             eps: float) -> tuple[np.ndarray, float]:
    """Scale an LP solution into the ball, then shrink it until it is inside the box within
    :data:`FEASIBILITY_TOL` (checked against ALL pixels, not only the LP's rows). Returns the point
    and its certified norm: exactly ``eps`` when the point was scaled onto the sphere (its computed
    norm may be an ulp below)."""
    norm = float(np.linalg.norm(c))
    if norm >= eps:
        c = c * (eps / norm)
    v = u @ c
    if max(float(np.max(v - up)), float(np.max(-v - down))) <= FEASIBILITY_TOL:
        return c, (eps if norm >= eps else norm)
    # x + t U c stays in the box for every t in [0, 1] up to the first crossing of a bound.
    t = 1.0
    over, under = v > up, -v > down
    if over.any():
        t = min(t, float(np.min(up[over] / v[over])))
    if under.any():
        t = min(t, float(np.min(down[under] / -v[under])))
    c = c * t
    return c, min(eps, float(np.linalg.norm(c)))


def _cone_certified_zero(active: np.ndarray) -> bool:
    """True when ``{c : active @ c <= 0} = {0}`` is certified (Stiemke's lemma).

    The cone is ``{0}`` iff ``active`` has full column rank and some ``y > 0`` has
    ``active^T y = 0``. HiGHS finds ``y >= 1`` minimising ``sum(y)``; the certificate is then
    checked in float64: for ``active @ c <= 0`` every term of ``y^T active c = r^T c``
    (``r = active^T y``, the residual) is ``<= 0``, so ``|(active c)_i| <= ||r|| ||c|| / min(y)``
    and ``sigma_min ||c|| <= ||active c|| <= sqrt(rows) ||r|| ||c|| / min(y)``, which forces
    ``c = 0`` when ``sigma_min`` is larger (with a safety factor of 10). False means "not
    certified" (the caller then solves the per-direction LPs), never "not {0}".
    """
    rows, m = active.shape
    if rows <= m:  # y > 0 with active^T y = 0 and full column rank needs more rows than columns
        return False
    res = linprog(np.ones(rows), A_eq=active.T, b_eq=np.zeros(m), bounds=(1.0, None), method="highs",
                  options=_HIGHS_OPTIONS)
    if res.status != 0:
        return False
    y = res.x
    residual = float(np.linalg.norm(active.T @ y))
    sigma_min = float(np.linalg.svd(active, compute_uv=False)[-1])
    return sigma_min > 10.0 * np.sqrt(rows) * residual / float(y.min()) + 1e-12


def tangent_reach(
    basis: Tensor,
    x: Tensor,
    *,
    bounds: tuple[float, float] | tuple[Tensor, Tensor],
    eps: float,
    tol: float = 1e-9,
) -> Reach:
    """Certified lower bound on how far ``x`` can move within ``x + T``, the box and the eps-ball.

    For every nonzero column ``j`` of ``U`` and sign ``s`` the LP

        maximise ``s c_j``  subject to  ``lo - x <= U c <= hi - x``,  ``|c_i| <= eps``

    is solved with HiGHS. Each optimum ``c*`` is feasible for the box, and shrinking it into the
    ball keeps it feasible (the set is convex and contains ``0``), so
    ``reach = max min(eps, ||c*||)`` is attained by a feasible point: a certified lower bound on
    ``max ||c||`` over ``{lo <= x + U c <= hi, ||c|| <= eps}``. It is tight when the bound is
    ``eps`` and never below ``1 / sqrt(k)`` of the true maximum (``|c_j| <= eps`` contains the ball,
    and ``||c|| <= sqrt(k) max_j |c_j|``). When every optimum is ``<= tol * eps`` the feasible set
    is ``{x}`` and ``cone_zero`` is set.

    The LP is exact: a pixel's bound is left out of it only where ``eps * ||U_i||_1`` is below the
    pixel's slack, since ``|U_i c| <= ||U_i||_1 max_j |c_j|`` makes such a bound redundant given
    ``|c_j| <= eps``. When no bound is left, ``eps e_j`` is feasible and no LP is solved. The
    remaining directions are skipped as soon as ``reach == eps`` is certified. Before them, when
    more pixels sit exactly at a bound than ``T`` has dimensions, one Stiemke LP may certify that
    those pixels alone pin ``c`` to ``0``; then every direction LP has optimum and solution ``0``
    and none is solved (``reach = 0``, ``cone_zero``, one LP instead of ``2 k``).

    Parameters
    ----------
    basis : Tensor
        ``(B, n, k)`` orthonormal columns spanning ``T`` (float32 or float64; the work is done in
        float64). All-zero columns (rank-deficient directions) are treated as absent.
    x : Tensor
        ``(B, ...)`` images with ``n`` pixels each, inside the box (a violation up to
        :data:`FEASIBILITY_TOL` is read as lying on the bound).
    bounds : tuple of float or tuple of Tensor
        ``(lo, hi)``: floats or tensors broadcastable to ONE image, ``lo <= hi``.
    eps : float
        L2 budget (``> 0``); ``||U c|| = ||c||`` for orthonormal columns.
    tol : float
        Relative tolerance of ``cone_zero``: an LP optimum ``<= tol * eps`` counts as zero.

    Returns
    -------
    Reach
        ``reach`` (B,) float64, ``direction`` (B, k) float64, ``cone_zero`` (B,) bool and
        ``lp_solves`` (B,) int64, on the CPU.

    Raises
    ------
    ValueError
        On inconsistent shapes, ``eps <= 0``, ``tol < 0``, ``lo > hi``, non-finite input or ``x``
        outside the box.
    RuntimeError
        When HiGHS does not report an optimum.

    Examples
    --------
    Pixel 0 sits at ``lo = 0``; the tangent direction ``e_0`` may only increase it, up to ``hi``:

    >>> U = torch.tensor([[[1.0], [0.0], [0.0]]], dtype=torch.float64)
    >>> x = torch.tensor([[0.0, 0.5, 0.5]], dtype=torch.float64)
    >>> r = tangent_reach(U, x, bounds=(0.0, 1.0), eps=2.0)
    >>> r.reach.item(), r.direction.tolist(), r.cone_zero.item()
    (1.0, [[1.0]], False)

    With the direction ``(e_0 - e_1) / sqrt(2)`` and both pixels at ``lo``, any move makes one of
    them negative: the feasible set is ``{x}`` (certified by the one Stiemke LP).

    >>> U = torch.tensor([[[1.0], [-1.0], [0.0]]], dtype=torch.float64) / 2**0.5
    >>> x = torch.tensor([[0.0, 0.0, 0.5]], dtype=torch.float64)
    >>> r = tangent_reach(U, x, bounds=(0.0, 1.0), eps=2.0)
    >>> r.reach.item(), r.cone_zero.item(), r.lp_solves.item()
    (0.0, True, 1)
    """
    if basis.dim() != 3:
        raise ValueError(f"expected a basis (B, n, k), got {tuple(basis.shape)}")
    b_count, n, k = basis.shape
    if x.dim() < 2 or x.shape[0] != b_count or x[0].numel() != n:
        raise ValueError(f"x {tuple(x.shape)} does not match the basis {tuple(basis.shape)}")
    eps, tol = float(eps), float(tol)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be finite and > 0, got {eps}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    lo = _flat_bounds(bounds[0], x.shape[1:])
    hi = _flat_bounds(bounds[1], x.shape[1:])
    if np.any(lo > hi):
        raise ValueError("bounds: lo > hi for some pixel")

    u_all = basis.detach().to("cpu", torch.float64).numpy()
    x_all = x.detach().to("cpu", torch.float64).reshape(b_count, n).numpy()
    if not (np.isfinite(u_all).all() and np.isfinite(x_all).all()):
        raise ValueError("basis and x must be finite")
    reach = np.zeros(b_count)
    direction = np.zeros((b_count, k))
    cone_zero = np.zeros(b_count, dtype=bool)
    lp_solves = np.zeros(b_count, dtype=np.int64)

    for b in range(b_count):
        up, down = hi - x_all[b], x_all[b] - lo  # slack above and below, per pixel
        if min(float(up.min()), float(down.min())) < -FEASIBILITY_TOL:
            raise ValueError(f"x[{b}] lies outside the box by more than {FEASIBILITY_TOL}")
        up, down = np.maximum(up, 0.0), np.maximum(down, 0.0)
        cols = np.flatnonzero(np.any(u_all[b] != 0.0, axis=0))
        if cols.size == 0:  # T = {0}: nothing can move
            cone_zero[b] = True
            continue
        u = np.ascontiguousarray(u_all[b][:, cols])
        # |U_i c| <= eps ||U_i||_1 under |c_j| <= eps: a bound with more slack than that is
        # implied by the variable bounds, and leaving it out changes nothing in the LP.
        reach_l1 = eps * np.abs(u).sum(axis=1) * (1.0 + 1e-12)
        keep_up, keep_down = reach_l1 >= up, reach_l1 >= down
        a_ub = np.concatenate([u[keep_up], -u[keep_down]])
        b_ub = np.concatenate([up[keep_up], down[keep_down]])
        if a_ub.shape[0] == 0:  # no bound can be reached: a full step along any column is feasible
            reach[b] = eps
            direction[b, cols[0]] = eps
            continue

        # Where the pixels AT a bound already pin c to 0 (the usual MNIST case), one Stiemke LP
        # proves that every direction LP below has optimum 0 and solution 0: skip them all.
        at_bound = np.concatenate([-u[down == 0.0], u[up == 0.0]])
        at_bound = at_bound[np.any(at_bound != 0.0, axis=1)]
        solves = 0
        if _STIEMKE_SHORTCUT and at_bound.shape[0] > cols.size:
            solves += 1
            if _cone_certified_zero(at_bound):
                cone_zero[b] = True
                lp_solves[b] = solves
                continue

        best, best_c, all_zero = 0.0, np.zeros(cols.size), True
        objective = np.zeros(cols.size)
        for jj in range(cols.size):
            for sign in (1.0, -1.0):
                objective[:] = 0.0
                objective[jj] = -sign  # linprog minimises
                res = linprog(objective, A_ub=a_ub, b_ub=b_ub, bounds=(-eps, eps), method="highs",
                              options=_HIGHS_OPTIONS)
                solves += 1
                if res.status != 0:
                    raise RuntimeError(f"HiGHS failed on image {b}, column {int(cols[jj])}: "
                                       f"{res.message}")
                if -res.fun > tol * eps:
                    all_zero = False
                c, norm = _certify(res.x, u, up, down, eps)
                if norm > best:
                    best, best_c = norm, c
                if best >= eps:
                    break
            if best >= eps:
                break
        reach[b] = best
        direction[b, cols] = best_c
        # an early stop certified a move of size eps, so the set is not {x}
        cone_zero[b] = all_zero and best < eps
        lp_solves[b] = solves

    return Reach(
        reach=torch.from_numpy(reach),
        direction=torch.from_numpy(direction),
        cone_zero=torch.from_numpy(cone_zero),
        lp_solves=torch.from_numpy(lp_solves),
    )
