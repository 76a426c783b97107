"""The strict on-manifold attack in tangent coordinates: minimal ``||U c||`` with ``x + U c``
misclassified, inside the pixel box and the eps-ball.

The on-manifold perturbation of an image ``x`` is ``d = U c`` with ``U`` the ``(n, k)``
orthonormal basis of the decoder's tangent space at ``x`` (zero columns: absent directions).
Since ``U`` has orthonormal columns, ``||d|| = ||c||``, and the feasible set of ``c`` is the
polytope ``{c : lo - x <= U c <= hi - x}`` (``n`` two-sided rows in ``k`` variables) intersected
with a ball. Searching over ``c`` instead of over pixels (what
:class:`~runners.attacks.base.MinimalNormAttack` does with a gradient projection and an ADMM
projection onto ``(x + T) ∩ box ∩ ball`` in R^n) has two advantages:

* every iterate is in ``span(U)`` by construction, and the feasible-set projection is a QP in
  ``k`` variables that can be solved EXACTLY (:func:`project_tangent_box`: a batched
  Goldfarb-Idnani dual active-set method, finite and exact where ADMM/Dykstra converge slowly
  at the degenerate vertices that pixels sitting at a bound create: on the digits data a
  background pixel at ``lo`` turns its row into the cone constraint ``U_i c >= 0``. On the
  random degenerate polytopes of the tests an adaptive ADMM in k-space needed 100 to 3,000
  iterations for a 1e-10 tolerance, and 20,000 were not enough where the feasible cone is
  ``{0}``; the active-set method needs 6 to 30 steps from scratch, one or two warm-started);
* minimality is searched for directly: the radius of the ball is shrunk once the iterate is
  adversarial and grown when it is not (the norm schedule of FMN: Pintor et al., "Fast
  minimum-norm adversarial attacks through adaptive norm constraints", NeurIPS 2021), over
  several restarts (some of them targeted at the classes nearest within T, since the margin's
  gradient only sees the runner-up class), instead of stopping at the first misclassification
  of a fixed-step path and dropping the samples the box pins. The smallest adversarial
  iterate over all steps and restarts is then bisected to the boundary along its direction
  (:func:`~runners.attacks.base.bisect_to_boundary`).

Examples
--------
A linear classifier whose boundary is at distance 0.3 along ``e1``, a 2-D tangent space
``span(e1, e2)`` of R^3, no active box: the minimal norm is the margin over ``||P_T w||``.

>>> from torch import nn
>>> model = nn.Linear(3, 2).double()
>>> with torch.no_grad():
...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
...     _ = model.bias.zero_()
>>> x, y = torch.tensor([[0.3, 0.0, 0.0]], dtype=torch.float64), torch.tensor([0])
>>> basis = torch.eye(3, dtype=torch.float64)[:, :2].unsqueeze(0)
>>> res = strict_tangent_attack(model, x, y, basis, eps=1.0, bounds=(-5.0, 5.0), steps=50,
...                             restarts=2, generator=torch.Generator().manual_seed(0))
>>> bool(res.success[0]), round(float(res.norm[0]), 3)
(True, 0.3)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from runners.attacks.base import (
    FMN_GAMMA,
    FMN_STEP,
    AttackResult,
    Bounds,
    Model,
    batch_norm,
    bisect_to_boundary,
    cosine_anneal,
    nearest_classes,
)
from runners.attacks.losses import LOSSES, margin_loss

__all__ = ["TangentProjection", "project_tangent_box", "strict_tangent_attack"]

#: A row of the polytope counts as met when violated by at most this times
#: ``1 + |bound| + ||v||`` (the scale of the rounding in a solve from ``v``).
FEASIBILITY_TOL = 1e-11
#: The dtype of every solve, whatever the basis's dtype. The tolerances above are float64
#: rounding: in float32 no row is ever met to ``FEASIBILITY_TOL``, so every polytope solve ran
#: its whole ``max_iter`` and every radius search its whole ``radius_iter`` (on an MNIST conv
#: decoder with the default float32 tangent space, 100-300x the float64 active-set steps: 25 s
#: for 3 attack steps on 3 images). A float32 basis is exactly representable in float64, so
#: promoting it costs nothing in accuracy.
WORKING_DTYPE = torch.float64
#: FMN's radius factor and relative step schedules (:mod:`runners.attacks.base`).
GAMMA, STEP = FMN_GAMMA, FMN_STEP


@dataclass(frozen=True, eq=False)
class TangentProjection:
    """The result of :func:`project_tangent_box`.

    Attributes
    ----------
    point : Tensor
        ``(m, k)`` the projections (zero in the coordinates of zero columns of the basis).
    iterations : Tensor
        ``(m,)`` int64 active-set iterations (one constraint added or dropped each), summed over
        the polytope solves of the radius search.
    violation : Tensor
        ``(m,)`` largest violation of a box row ``lower <= U c <= upper`` or of the ball, in
        the units of the bounds (0 up to rounding when the solve converged).
    active : Tensor
        ``(m, k)`` int64 the active rows at the solution (``i < n``: ``U_i c = lower_i``;
        ``n + i``: ``U_i c = upper_i``; -1: empty slot). Pass as ``warm`` to the next
        projection onto the same polytopes.
    """

    point: Tensor
    iterations: Tensor
    violation: Tensor
    active: Tensor


def _violation(basis: Tensor, c: Tensor, lower: Tensor, upper: Tensor, radius: Tensor) -> Tensor:
    d = torch.einsum("mnk,mk->mn", basis, c)
    box = torch.maximum((lower - d).clamp_min(0), (d - upper).clamp_min(0)).amax(dim=1)
    return torch.maximum(box, (c.norm(dim=1) - radius).clamp_min(0))


def _active_rows(normals: Tensor, offsets: Tensor, slots: Tensor, idx: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The active normals ``(m, k, k)`` and offsets ``(m, k)`` held in ``slots`` of the batch
    rows ``idx`` (all when None; zero in empty slots), their Gram matrix and the ``(m, k)``
    mask of held slots. Empty slots get a unit diagonal: the Gram matrix stays invertible and
    their solution entries are 0. Only the ``k`` active rows are read, never all ``2n``."""
    rows = torch.arange(len(normals), device=normals.device) if idx is None else idx
    held = slots >= 0
    where_ = slots.clamp(min=0)
    active = normals[rows.unsqueeze(1), where_] * held.unsqueeze(-1)
    b = offsets[rows.unsqueeze(1), where_] * held
    gram = active @ active.transpose(1, 2) + torch.diag_embed((~held).to(normals.dtype))
    return active, b, gram, held


def _warm_start(normals: Tensor, offsets: Tensor, v: Tensor, slots: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
    """A dual-feasible start from an earlier active set: ``x = v + A^T u`` on the affine set of
    the held rows with multipliers ``u >= 0`` (rows whose multiplier is negative are dropped
    until none is; a subset of independent rows stays independent)."""
    k = normals.shape[2]
    for _ in range(k + 1):
        active, b, gram, held = _active_rows(normals, offsets, slots)
        mult = _solve(gram, b - torch.einsum("mik,mk->mi", active, v)) * held
        negative = held & (mult < 0)
        if not bool(negative.any()):
            break
        # Each round drops a row, so by round k + 1 the set is empty and the loop has ended.
        slots = torch.where(negative, torch.full_like(slots, -1), slots)
    return v + torch.einsum("mik,mi->mk", active, mult), slots.clone(), mult


def _solve(gram: Tensor, rhs: Tensor) -> Tensor:
    """``gram^-1 rhs`` per row; a Gram matrix that is singular to working precision (two active
    pixels whose tangent rows are parallel, seen on MNIST conv decoders) gets the
    pseudo-inverse, whose too-long or null step the caller then rejects as dependent."""
    sol, info = torch.linalg.solve_ex(gram, rhs)
    bad = (info != 0) | ~torch.isfinite(sol).all(dim=1)
    if bool(bad.any()):
        sol = sol.clone()
        sol[bad] = (torch.linalg.pinv(gram[bad]) @ rhs[bad].unsqueeze(-1)).squeeze(-1)
    return sol


def _polytope(normals: Tensor, offsets: Tensor, v: Tensor, *, max_iter: int,
              slots: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``argmin ||c - v||`` s.t. ``normals @ c >= offsets`` per row, by Goldfarb-Idnani.

    The dual active-set method for a strictly convex QP (Goldfarb & Idnani, "A numerically
    stable dual method for solving strictly convex quadratic programs", Math. Programming 27,
    1983) with the
    identity Hessian: start at the unconstrained minimiser ``v`` (or at a dual-feasible point
    of an earlier active set, ``slots``), add the most violated constraint, and step along its
    normal projected onto the null space of the active normals, dropping an active constraint
    whose multiplier would turn negative. The active normals stay linearly independent, so at
    most ``k`` are held and each step is a ``k x k`` solve; the number of steps is about the
    number of constraints that enter or leave the active set. Exact in finite arithmetic, and
    insensitive to the degenerate vertices where many rows meet (pixels at a bound), which is
    where ADMM and Dykstra crawl.

    ``normals`` ``(m, r, k)``, ``offsets`` ``(m, r)`` (``-inf`` for absent rows), ``v`` ``(m, k)``;
    ``0`` must be feasible (``offsets <= 0``), as it is for a box that contains the image.
    Returns ``(c, iterations, slots)``, ``slots`` the ``(m, k)`` indices of the active rows
    (-1 for empty slots): pass them back as ``slots`` to warm-start a solve on the same rows.
    """
    m, _, k = normals.shape
    dt, dev = normals.dtype, normals.device
    finite = torch.isfinite(offsets)
    offsets = torch.where(finite, offsets, torch.zeros_like(offsets))
    vnorm = v.norm(dim=1)
    scale = 1.0 + offsets.abs() + vnorm.unsqueeze(1)
    # Every iterate of the dual method has ||x - v|| <= ||P(v) - v|| <= ||v|| (the objective
    # rises monotonically and 0 is feasible), so no step is longer than 2 ||v||: a longer one
    # comes from a normal that is dependent on the active ones up to rounding.
    longest = 2.0 * vnorm * (1 + 1e-9)
    if slots is None:
        x = v.clone()
        slots = torch.full((m, k), -1, dtype=torch.int64, device=dev)
        mult = torch.zeros(m, k, dtype=dt, device=dev)
    else:
        x, slots, mult = _warm_start(normals, offsets, v, slots)
    adding = torch.full((m,), -1, dtype=torch.int64, device=dev)  # the row being added
    mult_new = torch.zeros(m, dtype=dt, device=dev)
    done = torch.zeros(m, dtype=torch.bool, device=dev)
    iterations = torch.zeros(m, dtype=torch.int64, device=dev)
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    for _ in range(max_iter):
        choose = ((adding < 0) & ~done).nonzero().squeeze(1)
        if len(choose):
            # Gathering the rows' (2n, k) normals costs more than computing on all of them
            # unless few rows are choosing.
            if 2 * len(choose) >= m:
                slack = torch.einsum("mrk,mk->mr", normals, x)[choose] - offsets[choose]
            else:
                slack = (torch.einsum("mrk,mk->mr", normals[choose], x[choose])
                         - offsets[choose])
            slack = torch.where(finite[choose], slack / scale[choose], inf)
            worst, arg = slack.min(dim=1)
            met = worst >= -FEASIBILITY_TOL
            done[choose[met]] = True
            start = choose[~met]
            adding[start] = arg[~met]
            mult_new[start] = 0.0
        # Only the rows still working are computed on: the tail of a batch is a few rows.
        idx = (~done).nonzero().squeeze(1)
        if len(idx) == 0:
            break
        iterations[idx] += 1
        active, _, gram, held = _active_rows(normals, offsets, slots[idx], idx)
        row = adding[idx]
        n_p = normals[idx, row]
        dual_dir = _solve(gram, torch.einsum("mik,mk->mi", active, n_p)) * held
        primal_dir = n_p - torch.einsum("mik,mi->mk", active, dual_dir)
        length = primal_dir.norm(dim=1)
        gap = (n_p * x[idx]).sum(dim=1) - offsets[idx, row]
        full_step = -gap / (primal_dir * n_p).sum(dim=1).clamp_min(1e-300)
        dependent = ((length <= 1e-11 * n_p.norm(dim=1).clamp_min(1e-300))
                     | (full_step * length > longest[idx]) | held.all(dim=1))
        full_step = torch.where(dependent, inf, full_step)
        ratios = torch.where(held & (dual_dir > 0), mult[idx] / dual_dir.clamp_min(1e-300), inf)
        partial_step, drop = ratios.min(dim=1)
        step = torch.minimum(full_step, partial_step)
        # An infinite step means the rows are infeasible together: impossible while 0 is
        # feasible, but a guard keeps a rounding accident from looping forever.
        stuck = torch.isinf(step)
        step = torch.where(stuck, torch.zeros_like(step), step)
        moves = ~stuck & ~dependent
        x[idx] += torch.where(moves.unsqueeze(1), step.unsqueeze(1) * primal_dir, 0.0)
        mult[idx] -= step.unsqueeze(1) * dual_dir
        mult_new[idx] += step
        added = ~stuck & (full_step <= partial_step)
        dropped = ~stuck & ~added
        if bool(added.any()):
            rows = idx[added]
            free = torch.argmax((~held[added]).to(torch.int64), dim=1)
            slots[rows, free] = adding[rows]
            mult[rows, free] = mult_new[rows]
            adding[rows] = -1
        if bool(dropped.any()):
            rows = idx[dropped]
            slots[rows, drop[dropped]] = -1
            mult[rows, drop[dropped]] = 0.0
        done[idx[stuck]] = True
    return x, iterations, slots


def project_tangent_box(
    basis: Tensor,
    v: Tensor,
    lower: Tensor,
    upper: Tensor,
    radius: Tensor | None = None,
    *,
    warm: Tensor | None = None,
    max_iter: int = 200,
    radius_iter: int = 60,
) -> TangentProjection:
    """Exact Euclidean projection of ``v`` onto ``{c : lower <= U c <= upper, ||c|| <= radius}``.

    The polytope part is solved by a batched Goldfarb-Idnani dual active-set method (exact in
    finitely many steps). The ball enters through its multiplier ``mu``: the projection is
    ``P_poly(t v)`` with ``t = 1 / (1 + mu)``, and ``||P_poly(t v)||`` is non-decreasing in
    ``t`` (the derivative of the concave dual function), so the ``t`` with norm ``radius`` is
    found by a safeguarded search: within the active set of the current solve the norm is
    ``sqrt(||c_p||^2 + t^2 ||N v||^2)`` in closed form (``c_p`` the least-norm point of the
    active rows' affine set, ``N`` the projector onto their null space), which gives the next
    ``t`` exactly when the active set is right and a bisection step otherwise.

    Parameters
    ----------
    basis : Tensor
        ``(m, n, k)`` orthonormal columns (zero columns allowed: their coordinates of the
        result are 0, they move nothing).
    v : Tensor
        ``(m, k)`` points to project. The solve runs in float64 (:data:`WORKING_DTYPE`); the
        point and violation come back in ``basis``'s dtype.
    lower, upper : Tensor
        ``(m, n)`` bounds on ``U c`` (``lo - x`` and ``hi - x`` for an image ``x`` in the box;
        ``-inf``/``inf`` for none); ``lower <= 0 <= upper`` so that 0 is feasible.
    radius : Tensor or None
        ``(m,)`` ball radii (``inf`` or None: no ball).
    warm : Tensor or None
        ``active`` of an earlier projection onto the SAME polytopes (any ``v`` and radius): the
        solve starts from that active set, typically one or two steps from the answer.
    max_iter : int
        Active-set steps per polytope solve.
    radius_iter : int
        Polytope solves of the radius search at most.

    Returns
    -------
    TangentProjection

    Examples
    --------
    The box ``-1 <= c1 <= 0.5`` in a 2-D tangent plane of R^3, and the unit ball:

    >>> u = torch.eye(3, dtype=torch.float64)[:, :2].unsqueeze(0)
    >>> lo = torch.tensor([[-1.0, -9.0, -9.0]], dtype=torch.float64)
    >>> hi = torch.tensor([[0.5, 9.0, 9.0]], dtype=torch.float64)
    >>> res = project_tangent_box(u, torch.tensor([[2.0, 2.0]], dtype=torch.float64), lo, hi,
    ...                           torch.tensor([1.0], dtype=torch.float64))
    >>> [round(t, 6) for t in res.point[0].tolist()]
    [0.5, 0.866025]
    """
    m, _, k = basis.shape
    out_dtype, dev = basis.dtype, basis.device
    # The solves run in float64 whatever the basis's dtype (see WORKING_DTYPE).
    dt = WORKING_DTYPE
    basis = basis.to(dt)
    if radius is None:
        radius = torch.full((m,), float("inf"), dtype=dt, device=dev)
    radius = radius.to(dt)
    present = basis.abs().amax(dim=1) > 0
    v = torch.where(present, v.to(dt), torch.zeros((), dtype=dt, device=dev))
    lower, upper = lower.to(dt), upper.to(dt)
    # Row i of the box as two one-sided rows: U_i c >= lower_i and -U_i c >= -upper_i.
    normals = torch.cat([basis, -basis], dim=1)
    offsets = torch.cat([lower, -upper], dim=1)
    point, iterations, slots = _scaled_search(normals, offsets, v, radius, warm,
                                              max_iter=max_iter, radius_iter=radius_iter)
    return TangentProjection(point=point.to(out_dtype), iterations=iterations,
                             violation=_violation(basis, point, lower, upper, radius).to(out_dtype),
                             active=slots)


def _scaled_search(normals: Tensor, offsets: Tensor, v: Tensor, radius: Tensor,
                   slots: Tensor | None, *, max_iter: int, radius_iter: int
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """``P_poly(t v)`` for the largest ``t`` in ``(0, 1]`` with ``||P_poly(t v)|| <= radius``.

    That is the projection onto polytope and ball: ``t = 1`` where the ball is not active,
    else the root of the non-decreasing ``||P_poly(t v)|| = radius``. Each round solves the
    polytope projection at a guess of ``t``: the closed form within the active set of the
    last solve (exact when that active set is the solution's; with a warm start it usually
    is, and one solve suffices), or the bracket's midpoint when the closed form leaves it.
    """
    m, _, k = normals.shape
    dt, dev = normals.dtype, normals.device
    low = torch.zeros(m, dtype=dt, device=dev)  # ||P(low v)|| <= radius (P(0) = 0)
    high = torch.full((m,), 2.0, dtype=dt, device=dev)  # > 1: nothing known above low yet
    safe = torch.where(torch.isfinite(offsets), offsets, torch.zeros_like(offsets))
    point = torch.zeros_like(v)
    settled = torch.zeros(m, dtype=torch.bool, device=dev)
    iterations = torch.zeros(m, dtype=torch.int64, device=dev)
    slots = (torch.full((m, k), -1, dtype=torch.int64, device=dev) if slots is None
             else slots.clone())
    for _ in range(radius_iter):
        live = (~settled).nonzero().squeeze(1)
        vl, r, lo_, hi_ = v[live], radius[live], low[live], high[live]
        active, b, gram, _ = _active_rows(normals, safe, slots[live], live)
        least = torch.einsum("mik,mi->mk", active, _solve(gram, b))
        free = vl - torch.einsum("mik,mi->mk", active, _solve(
            gram, torch.einsum("mik,mk->mi", active, vl)))
        room = r ** 2 - (least ** 2).sum(dim=1)
        speed = (free ** 2).sum(dim=1)
        guess = torch.sqrt(room.clamp_min(0) / speed.clamp_min(1e-300)).clamp(max=1.0)
        guess = torch.where(room >= speed, torch.ones_like(guess), guess)  # no ball: t = 1
        inside = (room > 0) & (guess > lo_) & (guess < hi_)
        tl = torch.where(inside, guess, torch.where(hi_ > 1, torch.ones_like(lo_),
                                                    (lo_ + hi_) / 2))
        whole = len(live) == m  # no copy of the (2n, k) rows while every row is searching
        found, iters, found_slots = _polytope(
            normals if whole else normals[live], offsets if whole else offsets[live],
            tl.unsqueeze(1) * vl, max_iter=max_iter, slots=slots[live])
        iterations[live] += iters
        point[live] = found
        slots[live] = found_slots
        norm = found.norm(dim=1)
        # The solves are exact up to rounding of order FEASIBILITY_TOL: a norm that close to
        # the radius is the root (the final radial shrink removes any excess).
        hit = ((norm - r).abs() <= 1e-10 * r) | ((tl == 1) & (norm <= r))
        above = norm > r
        high[live] = torch.where(above, tl, hi_)
        low[live] = torch.where(above, lo_, tl)
        settled[live] = hit | ((high[live] - low[live]) <= 1e-15)
        if bool(settled.all()):
            break
    # The last solve may sit a rounding error outside the ball: shrink radially, which keeps
    # the box rows (0 is feasible, the set is convex) and moves the point by that error only.
    norm = point.norm(dim=1)
    point = point * (radius / norm.clamp_min(1e-300)).clamp(max=1.0).unsqueeze(1)
    return point, iterations, slots


def _box_offsets(x: Tensor, bounds: Bounds, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(lo - x, hi - x)`` flattened to ``(B, n)`` in ``dtype`` (infinite without a box)."""
    flat = x.reshape(len(x), -1).to(dtype)
    if bounds is None:
        return torch.full_like(flat, -float("inf")), torch.full_like(flat, float("inf"))
    lo, hi = (torch.as_tensor(b, dtype=dtype, device=x.device).expand_as(x).reshape(len(x), -1)
              for b in bounds)
    return lo - flat, hi - flat


def strict_tangent_attack(
    model: Model,
    x: Tensor,
    y: Tensor,
    basis: Tensor,
    *,
    eps: float,
    bounds: Bounds,
    steps: int = 300,
    restarts: int = 8,
    generator: torch.Generator | None = None,
    loss: str = "margin",
    refine_steps: int = 12,
) -> AttackResult:
    """Minimal L2 on-manifold perturbation ``d = U c`` with ``x + d`` misclassified, in the box.

    For each image, ``restarts`` searches run batched, the first from ``c = 0`` and the others
    from random directions of length ``eps`` projected into the feasible set; the odd ones
    ascend ``f_t - f_y`` toward one of the ``restarts // 2`` classes nearest by the linearised
    tangent distance at ``x``, the others ``loss`` (see :func:`_targets`). Each step is a
    gradient-ascent step in tangent coordinates (length proportional to the current radius
    ``r``, annealed), followed by the exact projection onto
    ``{lo - x <= U c <= hi - x} ∩ {||c|| <= r}`` (:func:`project_tangent_box`). Until a search
    first finds an adversarial point ``r = eps`` (a PGD search of the whole budget); from then
    on ``r`` follows FMN: it shrinks by ``1 - gamma`` (and to the smallest adversarial norm)
    while the iterate is adversarial and grows by ``1 + gamma`` while it is not, never above
    ``eps``. The smallest adversarial iterate over all restarts and steps is then bisected to
    the boundary along its direction.

    Parameters
    ----------
    model : callable
        Images to logits (in whatever mode it is in: call ``.eval()`` first).
    x : Tensor
        ``(B, ...)`` correctly classified images inside ``bounds``.
    y : Tensor
        ``(B,)`` their labels.
    basis : Tensor
        ``(B, n, k)`` orthonormal tangent bases (``n = x[0].numel()``; zero columns are absent
        directions), e.g. ``DenseSubspace.basis``. ``c`` and the projections are computed in
        float64 whatever its dtype (:data:`WORKING_DTYPE`); the model sees ``x.dtype``.
    eps : float
        The L2 budget; failures are censored at it.
    bounds : (lo, hi) or None
        The pixel box (floats or tensors broadcastable to an image); None for none.
    steps : int
        Gradient steps per restart.
    restarts : int
        Searches per image, run together: memory about ``3 * restarts * B * n * k`` numbers of
        ``basis.dtype`` (the basis and the two-sided polytope rows of every search).
    generator : torch.Generator or None
        For the random starts (drawn on the CPU: same numbers on any device).
    loss : {"margin", "ce"}
        The loss the untargeted searches maximise (:data:`~runners.attacks.losses.LOSSES`).
    refine_steps : int
        Bisection halvings of the final refinement.

    Returns
    -------
    AttackResult
        ``p = "l2"``; ``delta = U c`` of the smallest adversarial point (refined), or for a
        failure the last iterate of the restart that ended with the highest margin; ``steps``
        counts gradient steps over all restarts; ``forward_evals`` also the final check of each
        restart, the ranking of the target classes and the refinement;
        ``projection_iters`` the active-set iterations
        summed over the restarts and steps; ``projection_residual`` the largest violation of a
        box row or of the ball by the returned ``delta`` (rounding only).

    Raises
    ------
    ValueError
        For a non-positive ``eps``, negative ``steps``, no restarts, an unknown loss, or a
        basis that does not match ``x``.
    """
    if eps <= 0 or steps < 0 or restarts < 1 or refine_steps < 1:
        raise ValueError("eps must be positive, steps >= 0, restarts >= 1, refine_steps >= 1")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    x, y = x.detach(), y.detach()
    size, dev = len(x), x.device
    n = x[0].numel()
    if basis.dim() != 3 or basis.shape[0] != size or basis.shape[1] != n:
        raise ValueError(f"basis must be (B, n, k) = ({size}, {n}, k), got {tuple(basis.shape)}")
    dt = WORKING_DTYPE
    basis = basis.detach().to(device=dev, dtype=dt)
    lower, upper = _box_offsets(x, bounds, dt)
    # Rows are restart-major: row j * B + b is restart j of image b.
    rows = restarts * size
    U, lo_r, hi_r, xs, ys = (t.repeat(restarts, *([1] * (t.dim() - 1)))
                             for t in (basis, lower, upper, x, y))
    eps_t = torch.full((rows,), float(eps), dtype=dt, device=dev)
    # The polytope rows of every search, built once (project_tangent_box builds them per call).
    normals = torch.cat([U, -U], dim=1)
    offsets = torch.cat([lo_r, -hi_r], dim=1)
    c, proj_iters, active = _scaled_search(normals, offsets, _starts(basis, restarts, eps, generator),
                                           eps_t, None, max_iter=200, radius_iter=60)
    radius = eps_t.clone()
    # The adversarial perturbations are kept as the model saw them (in x.dtype), so that the
    # refinement starts from a point known to be misclassified, not from a recomputation.
    best = torch.zeros_like(xs)
    best_norm = torch.full((rows,), float("inf"), dtype=dt, device=dev)
    found = torch.zeros(rows, dtype=torch.bool, device=dev)
    margin = torch.zeros(rows, dtype=dt, device=dev)
    loss_fn = LOSSES[loss]
    target = _targets(model, x, y, basis, restarts).to(dev)
    targeted = target >= 0
    for t in range(steps + 1):
        last = t == steps
        d = torch.einsum("mnk,mk->mn", U, c).to(x.dtype).reshape(xs.shape)
        xa = (xs + d).requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            logits = model(xa)
        margin = margin_loss(logits.detach(), ys).to(dt)
        # The criterion of bisect_to_boundary and of the measurements: the predicted class.
        adv = logits.detach().argmax(dim=1) != ys
        norm = c.norm(dim=1)
        better = adv & (norm < best_norm)
        best[better] = d[better]
        best_norm = torch.where(better, norm, best_norm)
        found = found | adv
        if last:
            break
        objective = loss_fn(logits, ys)
        if bool(targeted.any()):
            toward = (logits.gather(1, target.clamp(min=0).unsqueeze(1))
                      - logits.gather(1, ys.unsqueeze(1))).squeeze(1)
            objective = torch.where(targeted, toward, objective)
        (g_x,) = torch.autograd.grad(objective.sum(), xa)
        # The gradient in tangent coordinates: d loss / d c = U^T d loss / d x.
        g_c = torch.einsum("mnk,mn->mk", U, g_x.reshape(rows, n).to(dt))
        gamma = cosine_anneal(t, steps, *GAMMA)
        radius = torch.where(adv, torch.minimum(radius * (1 - gamma), best_norm),
                             torch.where(found, radius * (1 + gamma), eps_t))
        radius = torch.minimum(radius, eps_t)
        g_norm = g_c.norm(dim=1, keepdim=True)
        # A zero gradient (saturated model, or none left in T) gives no step.
        unit = torch.where(g_norm > 0, g_c / g_norm.clamp_min(1e-300), torch.zeros_like(g_c))
        length = cosine_anneal(t, steps, *STEP) * radius
        # Each row's polytope is fixed (its image and box): the last active set warm-starts
        # the next projection, which then typically takes one or two active-set steps.
        c, iters, active = _scaled_search(normals, offsets, c + length.unsqueeze(1) * unit,
                                          radius, active, max_iter=200, radius_iter=60)
        proj_iters += iters
    # The ranking of the target classes cost one forward pass (and a backward per candidate).
    ranking = 1 if restarts // 2 else 0
    return _finish(model, x, y, U, c, best, best_norm, margin, lo_r, hi_r, eps, restarts,
                   steps, proj_iters, refine_steps, ranking)


def _targets(model: Model, x: Tensor, y: Tensor, basis: Tensor, restarts: int) -> Tensor:
    """``(restarts * B,)`` target class of each search, -1 for the untargeted ones.

    The margin's gradient points at the runner-up class only, so an untargeted search crosses
    into that class's region even where another class's boundary is nearer within T (on the
    isometric digits model one image's runner-up is 1.20 away and another class 0.86). The odd
    restarts therefore each ascend ``f_t - f_y`` for one of the classes nearest by the
    linearised tangent distance ``(f_y - f_t) / ||U^T grad (f_y - f_t)||`` at ``x``, nearest
    first (DeepFool's estimate, restricted to T); restart 0 and the even ones stay untargeted.
    """
    size, n = len(x), x[0].numel()
    out = torch.full((restarts, size), -1, dtype=torch.int64)
    wanted = restarts // 2
    if wanted == 0:
        return out.reshape(-1)
    nearest, _ = nearest_classes(
        model, x, y, lambda g: torch.einsum("bnk,bn->bk", basis, g.reshape(size, n).to(
            basis.dtype)).norm(dim=1), wanted)
    for j, classes in enumerate(nearest.cpu()):
        out[2 * j + 1] = classes
    return out.reshape(-1)


def _starts(basis: Tensor, restarts: int, eps: float, generator: torch.Generator | None
            ) -> Tensor:
    """Restart 0 at ``c = 0``; the others at uniformly random directions (in the coordinates of
    the present columns) of length ``eps``, which the projection then makes feasible. Starting
    at the edge of the budget rather than at a random radius found the adversarial regions of
    more of the hard digits images (thin feasible cones) in the same number of steps."""
    size, _, k = basis.shape
    present = (basis.abs().amax(dim=1) > 0).repeat(restarts - 1, 1)
    noise = torch.randn((restarts - 1) * size, k, generator=generator, dtype=basis.dtype)
    noise = noise.to(basis.device) * present
    noise = noise * (eps / noise.norm(dim=1, keepdim=True).clamp_min(1e-300))
    return torch.cat([torch.zeros(size, k, dtype=basis.dtype, device=basis.device), noise])


def _finish(model: Model, x: Tensor, y: Tensor, U: Tensor, c: Tensor, best: Tensor,
            best_norm: Tensor, margin: Tensor, lower: Tensor, upper: Tensor, eps: float,
            restarts: int, steps: int, proj_iters: Tensor, refine_steps: int,
            extra_forwards: int) -> AttackResult:
    size, dev, dt = len(x), x.device, U.dtype
    # Per image: the smallest adversarial c over restarts; for failures the last iterate of the
    # restart that got closest (highest final margin), so its direction can still be measured.
    best_norm = best_norm.reshape(restarts, size)
    pick_best = best_norm.argmin(dim=0)
    pick_last = margin.reshape(restarts, size).argmax(dim=0)
    success = torch.isfinite(best_norm.min(dim=0).values)
    pick = torch.where(success, pick_best, pick_last)
    row = pick * size + torch.arange(size, device=dev)
    last = torch.einsum("mnk,mk->mn", U[row], c[row]).to(x.dtype).reshape(x.shape)
    delta = torch.where(success.reshape(-1, *([1] * (x.dim() - 1))), best[row], last)
    forwards = torch.full((size,), restarts * (steps + 1) + extra_forwards, dtype=torch.int64,
                          device=dev)
    if bool(success.any()):
        idx = success.nonzero().squeeze(1)
        delta[idx], cost = bisect_to_boundary(model, x[idx], y[idx], delta[idx],
                                              steps=refine_steps)
        forwards[idx] += cost
    # Rounding to x.dtype may leave ||delta|| an ulp above eps: pull it back in.
    nrm = batch_norm(delta, "l2")
    over = nrm > eps
    if bool(over.any()):
        delta[over] = delta[over] * (eps / nrm[over]).reshape(-1, *([1] * (x.dim() - 1)))
    norm = torch.where(success, batch_norm(delta, "l2"),
                       torch.full((size,), float(eps), dtype=x.dtype, device=dev))
    flat = delta.reshape(size, -1).to(dt)
    coords = torch.einsum("mnk,mn->mk", U[row], flat)
    residual = torch.maximum(
        torch.maximum((lower[row] - flat).clamp_min(0), (flat - upper[row]).clamp_min(0)).amax(1),
        (coords.norm(dim=1) - eps).clamp_min(0))
    return AttackResult(
        delta=delta, norm=norm, success=success,
        steps=torch.full((size,), restarts * steps, dtype=torch.int64, device=dev),
        forward_evals=forwards, eps=float(eps), p="l2",
        projection_iters=proj_iters.reshape(restarts, size).sum(dim=0),
        projection_residual=residual)
