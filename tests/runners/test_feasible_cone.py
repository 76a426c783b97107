"""The strict tangent feasible set's reach and empty-cone test (runners/geometry/feasible_cone.py).

Ground truth: closed forms in 3 pixels, vertex enumeration of small polytopes (the exact maximal
norm), and for MNIST-like images an independent Stiemke-lemma check of the cone formed by the
pixels at a bound. Every case runs with the module's Stiemke shortcut on and off, so the
per-direction LPs are checked on their own as well.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

import runners.geometry.feasible_cone as fc
from runners.geometry.feasible_cone import tangent_reach


@pytest.fixture(params=[True, False], ids=["stiemke", "lps-only"])
def shortcut(request, monkeypatch) -> bool:
    monkeypatch.setattr(fc, "_STIEMKE_SHORTCUT", request.param)
    return request.param


def _assert_direction_ok(r: fc.Reach, basis: torch.Tensor, x: torch.Tensor, lo, hi, eps: float) -> None:
    """The returned c is feasible (box within 1e-9, ball within 1e-12) and has norm == reach."""
    u = basis.to(torch.float64)
    xf = x.reshape(len(x), -1).to(torch.float64)
    moved = xf + torch.einsum("bnk,bk->bn", u, r.direction)
    lo_t = torch.broadcast_to(torch.as_tensor(lo, dtype=torch.float64).reshape(-1), xf.shape[1:])
    hi_t = torch.broadcast_to(torch.as_tensor(hi, dtype=torch.float64).reshape(-1), xf.shape[1:])
    assert float((lo_t - moved).max()) <= 1e-9
    assert float((moved - hi_t).max()) <= 1e-9
    norms = r.direction.norm(dim=1)
    assert float(norms.max()) <= eps + 1e-12
    torch.testing.assert_close(norms, r.reach, rtol=0, atol=1e-12)


def _orthonormal(n: int, k: int, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
    g = rng.standard_normal((n, k))
    if mask is not None:
        g = g * mask[:, None]
    return np.linalg.qr(g)[0]


# ------------------------------------------------------------------ 1. strictly inside the box


def test_strictly_inside_no_bound_reachable_gives_eps_without_lp(shortcut) -> None:
    # U = (e0, e1): |U_i c| <= eps = 0.5 < 1 = slack, every bound is redundant: no LP at all
    basis = torch.eye(5, dtype=torch.float64)[:, :2].unsqueeze(0)
    x = torch.zeros(1, 5, dtype=torch.float64)
    r = tangent_reach(basis, x, bounds=(-1.0, 1.0), eps=0.5)
    assert torch.equal(r.reach, torch.tensor([0.5], dtype=torch.float64))
    assert not bool(r.cone_zero[0])
    assert int(r.lp_solves[0]) == 0
    _assert_direction_ok(r, basis, x, -1.0, 1.0, 0.5)


def test_strictly_inside_with_reachable_bounds_stops_after_one_lp(shortcut) -> None:
    # Hadamard rows have L1 norm 2, so eps * 2 = 0.9 >= 0.5 keeps every bound in the LP; the ball
    # itself (||U c|| = ||c|| <= 0.45 < 0.5) never reaches one, so the first LP already certifies
    # reach == eps and the other 7 are skipped.
    h = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    basis = (h / 2).unsqueeze(0)
    x = torch.full((1, 2, 2), 0.5, dtype=torch.float32)  # image-shaped, float32
    r = tangent_reach(basis.float(), x, bounds=(0.0, 1.0), eps=0.45)
    assert torch.equal(r.reach, torch.tensor([0.45], dtype=torch.float64))
    assert not bool(r.cone_zero[0])
    assert int(r.lp_solves[0]) == 1
    _assert_direction_ok(r, basis, x, 0.0, 1.0, 0.45)


# ------------------------------------------------------------------ 2. closed forms in 3 pixels

E0 = torch.tensor([[[1.0], [0.0], [0.0]]], dtype=torch.float64)


@pytest.mark.parametrize(
    ("x0", "eps", "expected", "sign"),
    [
        (0.0, 0.3, 0.3, 1.0),  # at lo: only +e0, budget binds
        (0.0, 2.0, 1.0, 1.0),  # at lo: only +e0, up to hi - x0 = 1
        (1.0, 2.0, 1.0, -1.0),  # at hi: only -e0
        (0.25, 2.0, 0.75, 1.0),  # inside: the longer way, hi - x0
        (0.25, 0.5, 0.5, 1.0),  # inside: only +e0 reaches the budget (x0 - lo = 0.25 < 0.5)
    ],
)
def test_single_direction_closed_form(shortcut, x0: float, eps: float, expected: float,
                                      sign: float) -> None:
    x = torch.tensor([[x0, 0.5, 0.5]], dtype=torch.float64)
    r = tangent_reach(E0, x, bounds=(0.0, 1.0), eps=eps)
    assert float(r.reach[0]) == pytest.approx(expected, abs=1e-12)
    assert not bool(r.cone_zero[0])
    assert math.copysign(1.0, float(r.direction[0, 0])) == sign
    _assert_direction_ok(r, E0, x, 0.0, 1.0, eps)


def test_degenerate_box_pins_the_direction(shortcut) -> None:
    # lo == hi == x0 for pixel 0 (tensor bounds): e0 can move neither way
    lo = torch.tensor([0.0, 0.0, 0.0])
    hi = torch.tensor([0.0, 1.0, 1.0])
    x = torch.tensor([[0.0, 0.5, 0.5]], dtype=torch.float64)
    r = tangent_reach(E0, x, bounds=(lo, hi), eps=1.0)
    assert bool(r.cone_zero[0])
    assert float(r.reach[0]) == 0.0
    assert float(r.direction.abs().max()) == 0.0
    assert int(r.lp_solves[0]) == (1 if shortcut else 2)


def test_cone_zero_is_up_to_tol(shortcut) -> None:
    # pixel 0 may move by 5e-13 either way (box [0, 1e-12]): below tol * eps, so "not measurable",
    # though the reach is a certified 5e-13; with tol = 0 the same move counts
    lo = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    hi = torch.tensor([1e-12, 1.0, 1.0], dtype=torch.float64)
    x = torch.tensor([[0.5e-12, 0.5, 0.5]], dtype=torch.float64)
    r = tangent_reach(E0, x, bounds=(lo, hi), eps=1.0)
    assert bool(r.cone_zero[0])
    assert float(r.reach[0]) == pytest.approx(0.5e-12, rel=1e-6)
    _assert_direction_ok(r, E0, x, lo, hi, 1.0)
    assert not bool(tangent_reach(E0, x, bounds=(lo, hi), eps=1.0, tol=0.0).cone_zero[0])


def test_two_pixels_at_lo_make_the_cone_zero(shortcut) -> None:
    # (e0 - e1)/sqrt2 with pixels 0 and 1 at lo: any move makes one of them negative
    basis = torch.tensor([[[1.0], [-1.0], [0.0]]], dtype=torch.float64) / math.sqrt(2)
    x = torch.tensor([[0.0, 0.0, 0.5]], dtype=torch.float64)
    r = tangent_reach(basis, x, bounds=(0.0, 1.0), eps=2.0)
    assert bool(r.cone_zero[0])
    assert float(r.reach[0]) == 0.0
    assert int(r.lp_solves[0]) == (1 if shortcut else 2)


def test_pixels_at_bounds_that_pin_only_one_direction_leave_a_line(shortcut) -> None:
    # U = ((e0 - e1 + e2 - e3)/2, e4) with pixels 0..3 at lo: the first coefficient is pinned to 0
    # (y = 1 > 0 balances the four at-bound rows, more than k = 2 of them, but they have rank
    # 1 < k), the second moves pixel 4 from 0.5 either way by at most 0.5
    basis = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]]],
                         dtype=torch.float64) / 2
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.5]], dtype=torch.float64)
    r = tangent_reach(basis, x, bounds=(0.0, 1.0), eps=2.0)
    assert not bool(r.cone_zero[0])
    assert float(r.reach[0]) == pytest.approx(0.5, abs=1e-12)
    assert abs(float(r.direction[0, 0])) <= 1e-12
    _assert_direction_ok(r, basis, x, 0.0, 1.0, 2.0)


@pytest.mark.parametrize(("eps", "expected"), [(1.0, 1.0), (2.0, math.sqrt(2))])
def test_two_pixels_at_opposite_bounds_move_together(shortcut, eps: float, expected: float) -> None:
    # pixel 0 at lo goes up, pixel 1 at hi goes down: c / sqrt2 <= 1, so c <= sqrt2
    basis = torch.tensor([[[1.0], [-1.0], [0.0]]], dtype=torch.float64) / math.sqrt(2)
    x = torch.tensor([[0.0, 1.0, 0.5]], dtype=torch.float64)
    r = tangent_reach(basis, x, bounds=(0.0, 1.0), eps=eps)
    assert not bool(r.cone_zero[0])
    assert float(r.reach[0]) == pytest.approx(expected, abs=1e-12)
    assert float(r.direction[0, 0]) > 0
    _assert_direction_ok(r, basis, x, 0.0, 1.0, eps)


# ------------------------------------------------------------------ the bound itself, exactly


def _exact_max_norm(u: np.ndarray, x: np.ndarray, lo: float, hi: float) -> float:
    """max ||c|| over the polytope {lo <= x + U c <= hi} (bounded: U has full column rank), by
    enumerating its vertices: the maximum of a convex function is at a vertex."""
    a = np.concatenate([u, -u])
    b = np.concatenate([hi - x, x - lo])
    k = u.shape[1]
    best = 0.0
    for rows in itertools.combinations(range(len(a)), k):
        sub = a[list(rows)]
        if abs(np.linalg.det(sub)) < 1e-10:
            continue
        c = np.linalg.solve(sub, b[list(rows)])
        if np.all(a @ c <= b + 1e-9):
            best = max(best, float(np.linalg.norm(c)))
    return best


@pytest.mark.parametrize("k", [2, 3])
def test_reach_is_sandwiched_by_the_exact_maximum(shortcut, k: int) -> None:
    # true = min(eps, max over vertices); the LP bound is certified (<= true) and, since
    # |c_j| <= eps contains the ball and ||c|| <= sqrt(k) max_j |c_j|, >= true / sqrt(k)
    rng = np.random.default_rng(k)
    n, batch, eps = 6, 12, 0.8
    u = np.stack([_orthonormal(n, k, rng) for _ in range(batch)])
    x = rng.uniform(0.0, 1.0, (batch, n))
    x[rng.uniform(size=(batch, n)) < 0.3] = 0.0  # some pixels at lo
    r = tangent_reach(torch.from_numpy(u), torch.from_numpy(x), bounds=(0.0, 1.0), eps=eps)
    truth = np.array([min(eps, _exact_max_norm(u[b], x[b], 0.0, 1.0)) for b in range(batch)])
    reach = r.reach.numpy()
    assert np.all(reach <= truth + 1e-12)
    assert np.all(reach >= truth / math.sqrt(k) - 1e-12)
    assert np.any(truth < eps)  # the box binds somewhere, so ignoring it would fail the test
    _assert_direction_ok(r, torch.from_numpy(u), torch.from_numpy(x), 0.0, 1.0, eps)


# ------------------------------------------------------------------ 3. MNIST-like images


def _stiemke_cone_is_zero(u: np.ndarray, x: np.ndarray, lo: float, hi: float) -> bool:
    """{c : (U c)_i >= 0 at lo, <= 0 at hi} = {0} iff the signed active rows A have full column
    rank and A^T y = 0 for some y > 0 (Stiemke); feasibility of y >= 1 stands in for y > 0."""
    a = np.concatenate([-u[x == lo], u[x == hi]])
    if np.linalg.matrix_rank(a) < u.shape[1]:
        return False
    res = linprog(np.zeros(len(a)), A_eq=a.T, b_eq=np.zeros(u.shape[1]), bounds=(1.0, None),
                  method="highs")
    assert res.status in (0, 2), res.message
    return res.status == 0


def _mnist_like(batch: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """~80% of pixels exactly at -1 or 1, the rest uniform inside; U orthonormal, supported on the
    inside pixels plus a growing number of pixels at a bound (like a decoder's tangent, which is
    small on the background), the last image fully dense."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (batch, n))
    draw = rng.uniform(size=(batch, n))
    x[draw < 0.4] = -1.0
    x[(draw >= 0.4) & (draw < 0.8)] = 1.0
    u = np.empty((batch, n, k))
    for b in range(batch):
        mask = np.abs(x[b]) < 1.0
        at_bound = np.flatnonzero(~mask)
        mask[rng.choice(at_bound, size=min(len(at_bound), 3 * b), replace=False)] = True
        u[b] = _orthonormal(n, k, rng, None if b == batch - 1 else mask.astype(float))
    return u, x


def test_mnist_like_cone_zero_matches_stiemke_and_directions_are_feasible(shortcut) -> None:
    n, k, batch, eps = 784, 8, 14, 1.5
    u, x = _mnist_like(batch, n, k, seed=0)
    basis = torch.from_numpy(u).float()  # float32 in, float64 inside
    xt = torch.from_numpy(x).float()
    r = tangent_reach(basis, xt.reshape(batch, 1, 28, 28), bounds=(-1.0, 1.0), eps=eps)
    u32 = basis.double().numpy()
    expected = np.array([_stiemke_cone_is_zero(u32[b], x[b], -1.0, 1.0) for b in range(batch)])
    assert expected.any() and not expected.all()  # both outcomes occur: the check has teeth
    np.testing.assert_array_equal(r.cone_zero.numpy(), expected)
    assert float(r.reach[r.cone_zero].abs().max()) <= 1e-12
    assert float(r.reach[~r.cone_zero].min()) > 1e-6
    _assert_direction_ok(r, basis, xt, -1.0, 1.0, eps)
    assert r.reach.dtype == torch.float64 and r.direction.shape == (batch, k)
    assert r.cone_zero.dtype == torch.bool and r.lp_solves.dtype == torch.int64
    assert int(r.lp_solves.max()) <= 2 * k + 1


def test_stiemke_shortcut_changes_nothing_but_the_lp_count(monkeypatch) -> None:
    u, x = _mnist_like(10, 784, 8, seed=1)
    args = (torch.from_numpy(u), torch.from_numpy(x))
    fast = tangent_reach(*args, bounds=(-1.0, 1.0), eps=1.0)
    monkeypatch.setattr(fc, "_STIEMKE_SHORTCUT", False)
    slow = tangent_reach(*args, bounds=(-1.0, 1.0), eps=1.0)
    assert torch.equal(fast.cone_zero, slow.cone_zero) and bool(fast.cone_zero.any())
    torch.testing.assert_close(fast.reach, slow.reach, rtol=0, atol=1e-12)
    assert torch.equal(slow.lp_solves[slow.cone_zero], torch.full_like(slow.lp_solves[slow.cone_zero], 16))
    assert torch.equal(fast.lp_solves[fast.cone_zero], torch.ones_like(fast.lp_solves[fast.cone_zero]))


# ------------------------------------------------------------------ 4. zero columns


def test_zero_columns_are_ignored(shortcut) -> None:
    n, k, batch, eps = 64, 4, 6, 0.7
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 1.0, (batch, n))
    x[rng.uniform(size=(batch, n)) < 0.15] = 0.0
    u = np.stack([_orthonormal(n, k, rng) for _ in range(batch)])
    padded = np.zeros((batch, n, 2 * k + 1))
    slots = [1, 2, 5, 7]  # zero columns at 0, 3, 4, 6, 8
    padded[:, :, slots] = u
    plain = tangent_reach(torch.from_numpy(u), torch.from_numpy(x), bounds=(0.0, 1.0), eps=eps)
    wide = tangent_reach(torch.from_numpy(padded), torch.from_numpy(x), bounds=(0.0, 1.0), eps=eps)
    assert torch.equal(plain.reach, wide.reach)
    assert torch.equal(plain.cone_zero, wide.cone_zero)
    assert torch.equal(plain.lp_solves, wide.lp_solves)
    assert torch.equal(wide.direction[:, slots], plain.direction)
    others = [j for j in range(2 * k + 1) if j not in slots]
    assert float(wide.direction[:, others].abs().max()) == 0.0
    # a zero column kept in the LP is a free coordinate: max c_j = eps there, so reach == eps
    assert float(plain.reach.max()) < eps


def test_all_zero_basis_cannot_move() -> None:
    basis = torch.zeros(2, 5, 3)
    x = torch.full((2, 5), 0.5)
    r = tangent_reach(basis, x, bounds=(0.0, 1.0), eps=1.0)
    assert r.cone_zero.tolist() == [True, True]
    assert r.reach.tolist() == [0.0, 0.0] and r.lp_solves.tolist() == [0, 0]


# ------------------------------------------------------------------ input checks


def test_rejects_bad_input() -> None:
    basis = E0
    with pytest.raises(ValueError, match="outside the box"):
        tangent_reach(basis, torch.tensor([[1.5, 0.5, 0.5]]), bounds=(0.0, 1.0), eps=1.0)
    with pytest.raises(ValueError, match="does not match"):
        tangent_reach(basis, torch.zeros(1, 4), bounds=(0.0, 1.0), eps=1.0)
    with pytest.raises(ValueError, match="eps"):
        tangent_reach(basis, torch.zeros(1, 3), bounds=(0.0, 1.0), eps=0.0)
    with pytest.raises(ValueError, match="lo > hi"):
        tangent_reach(basis, torch.zeros(1, 3), bounds=(1.0, 0.0), eps=1.0)
