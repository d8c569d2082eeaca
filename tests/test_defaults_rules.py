"""The data-derived defaults of issue 18, each against an independent reference:
the stalled-progress rule on hand-built loss sequences, ScaledGD(lambda)'s damping
schedule recomputed with numpy from the spectral start, each method's iteration cap and
initial scale, and the invariance to the completion operator's scale."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.driver import STALL_TOL, STALL_WINDOW, _StallCheck
from lowrank_core.methods import METHODS
from lowrank_core.operators import EntryOperator


# ------------------------------------------------------------ stalled progress
def _first_stall(losses, tol, window):
    check = _StallCheck(tol, window)
    for t, f in enumerate(losses):
        if check.update(f):
            return t
    return None


def test_stall_rule_fires_exactly_per_its_definition():
    """f_{t-W} - f_t <= tol f_{t-W}, first t >= W: checked against a plain loop."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        W = int(rng.integers(1, 8))
        tol = float(10.0 ** rng.uniform(-4, -1))
        # decreasing losses whose per-step ratio drifts towards 1 (a plateau)
        ratios = 1 - np.geomspace(0.3, 1e-6, 60) * rng.uniform(0.5, 1.5, 60)
        losses = np.cumprod(ratios)
        expected = next((t for t in range(W, len(losses))
                         if losses[t - W] - losses[t] <= tol * losses[t - W]), None)
        assert _first_stall(losses, tol, W) == expected


def test_stall_rule_edges():
    # a geometric decrease by 1/2 per step never stalls; a constant loss stalls at t = W
    assert _first_stall(0.5 ** np.arange(40.0), 1e-6, 5) is None
    assert _first_stall(np.ones(20), 1e-6, 5) == 5
    # an increase counts as no progress
    assert _first_stall([1.0, 2.0, 3.0], 1e-6, 1) == 1
    # exactly at the threshold: relative decrease tol fires (<=), just above does not
    assert _first_stall([1.0, 1.0 - 0.25], 0.25, 1) == 1
    assert _first_stall([1.0, 1.0 - 0.2500001], 0.25, 1) is None
    # tol 0 is off
    assert _first_stall(np.ones(20), 0.0, 5) is None


def test_noisy_run_stops_stalled_with_the_max_iter_error():
    prob = lc.make_problem(30, rank=2, m=600, noise=1e-3, seed=3)
    kw = dict(method="precgd", truth=prob, record=False, seed=1, max_iter=3000)
    full = lc.solve(prob.operator, prob.y, 2, stall_tol=0, **kw)
    early = lc.solve(prob.operator, prob.y, 2, **kw)
    assert full.status == "max_iter"
    assert early.status == "stalled" and "stalled" in early.message
    assert early.n_iter < full.n_iter / 3
    assert abs(early.error - full.error) <= 1e-3 * full.error
    assert early.options["stall_tol"] == STALL_TOL
    assert early.options["stall_window"] == STALL_WINDOW
    # its rule, recomputed from the loss history of the stalled run
    h = lc.solve(prob.operator, prob.y, 2, method="precgd", seed=1, max_iter=3000,
                 record=["loss"]).history["loss"]
    t = len(h) - 1
    W = STALL_WINDOW
    assert h[t - W] - h[t] <= STALL_TOL * h[t - W]
    assert all(h[s - W] - h[s] > STALL_TOL * h[s - W] for s in range(W, t))


def test_stall_stop_is_off_for_fixed_steps_and_validated():
    prob = lc.make_problem(20, rank=2, m=300, noise=1e-2, seed=1)
    res = lc.solve(prob.operator, prob.y, 2, method="scaledgd", step="fixed", max_iter=400,
                   record=False)
    assert res.options["stall_tol"] == 0 and res.status == "max_iter"
    for bad in (-1e-3, 1.0, "x", True):
        with pytest.raises(ValueError, match="stall_tol"):
            lc.solve(prob.operator, prob.y, 2, stall_tol=bad, max_iter=1)
    with pytest.raises((ValueError, TypeError), match="stall_window"):
        lc.solve(prob.operator, prob.y, 2, stall_window=0, max_iter=1)


# ------------------------------------------------------------ iteration caps, init
def test_max_iter_default_is_the_methods():
    prob = lc.make_problem(12, rank=2, m=200, seed=0)
    for name, rule in METHODS.items():
        res = lc.solve(prob.operator, prob.y, 2, method=name, max_iter=None, record=False,
                       tol=1.0)  # converged at once: only the options matter
        assert res.options["max_iter"] == rule.default_max_iter
    assert METHODS["gd"].default_max_iter > METHODS["precgd"].default_max_iter > 1000


def test_gd_default_start_scale():
    """init=None: gd's small start has entries N(0, alpha^2 / n) with its own alpha; an
    explicit init="small" keeps the global 1e-3 (the papers' experiments)."""
    n, k = 400, 8
    prob = lc.make_problem(n, rank=2, m=50, operator="entries", seed=0)
    alpha = METHODS["gd"].default_init_scale["asymmetric"]
    assert alpha > 1e-3
    sym = lc.solve(prob.operator, prob.y, k, method="gd", symmetric=True, max_iter=0, seed=2)
    assert np.isclose(sym.X.std() * np.sqrt(n), 1e-3, rtol=0.05)
    res = lc.solve(prob.operator, prob.y, k, method="gd", max_iter=0, seed=2)
    assert res.options["init_scale"] == alpha
    for A in (res.F, res.G):
        assert np.isclose(A.std() * np.sqrt(n), alpha, rtol=0.05)
    old = lc.solve(prob.operator, prob.y, k, method="gd", init="small", max_iter=0, seed=2)
    assert np.isclose(old.F.std() * np.sqrt(n), 1e-3, rtol=0.05)


# ------------------------------------------------------------ ScaledGD(lambda)
def _spectral_psd(prob, k):
    S = prob.operator.adjoint(prob.y)
    w, V = np.linalg.eigh((S + S.T) / 2)
    w, V = w[::-1][:k], V[:, ::-1][:, :k]
    return V * np.sqrt(np.maximum(w, 0)), np.linalg.norm(S, 2)


def test_scaledgd_lambda_schedule_against_numpy():
    """lambda_0 = min(0.01 ||A^T y||_2 / g^2, ||A(X0 X0^T) - y|| / g), g = ||A(X0 X0^T)|| /
    ||X0 X0^T||_F, from the spectral start recomputed with numpy."""
    prob = lc.make_problem(20, rank=2, m=400, psd=True, cond=5.0, seed=2)
    X0, sigma = _spectral_psd(prob, 4)
    M0 = X0 @ X0.T
    fwd = prob.operator.forward(M0)
    gain = np.linalg.norm(fwd) / np.linalg.norm(M0)
    lam = min(0.01 * sigma / gain**2, np.linalg.norm(fwd - prob.y) / gain)
    res = lc.solve(prob.operator, prob.y, 4, method="scaledgd-lambda", symmetric=True,
                   max_iter=1, record=False)
    assert res.options["damping"] == "schedule"
    assert np.isclose(res.damping_final, lam, rtol=1e-8)
    # a fixed step keeps the paper's fixed lambda = 0.01 ||A^T y||_2
    fixed = lc.solve(prob.operator, prob.y, 4, method="scaledgd-lambda", symmetric=True,
                     max_iter=1, record=False, step="fixed")
    assert np.isclose(fixed.options["damping"], 0.01 * sigma, rtol=1e-10)


def test_scaledgd_lambda_schedule_converges_where_the_fixed_damping_stalls():
    """ill-conditioned over-parameterized PSD sensing (kappa = 100): the fixed damping
    0.01 ||A^T y|| ~ sigma_r leaves the spurious components decaying sublinearly."""
    prob = lc.make_problem(30, rank=3, m=1200, psd=True, cond=100.0, seed=0)
    sigma = np.linalg.norm(prob.operator.adjoint(prob.y), 2)
    kw = dict(method="scaledgd-lambda", symmetric=True, truth=prob, record=False,
              max_iter=1500)
    new = lc.solve(prob.operator, prob.y, 6, **kw)
    old = lc.solve(prob.operator, prob.y, 6, damping=0.01 * sigma, **kw)
    assert new.status == "converged" and new.error < 1e-8, new.message
    assert old.error > 100 * new.error


# ------------------------------------------------------------ operator scale
@pytest.mark.parametrize("method", ["precgd", "scaledgd", "scaledgd-lambda", "agn", "gd"])
def test_completion_defaults_are_invariant_to_the_entry_scale(method):
    """EntryOperator at scale 1 (the constructor's default, y the entries) and at
    1/sqrt(p) (make_problem's) give the same run at the defaults."""
    prob = lc.make_problem(40, 36, rank=3, m=700, operator="entries", seed=5)
    op = prob.operator
    L, R = prob.truth_factors
    rows, cols = np.asarray(op.rows), np.asarray(op.cols)
    raw = EntryOperator(rows, cols, op.shape)  # scale 1
    y_raw = (L[rows] * R[cols]).sum(axis=1)
    runs = [lc.solve(o, yy, 3, method=method, truth=prob, record=["error"], seed=1,
                     max_iter=60) for o, yy in ((op, prob.y), (raw, y_raw))]
    e1, e2 = (r.history["error"] for r in runs)
    assert len(e1) == len(e2)
    np.testing.assert_allclose(e1, e2, rtol=1e-6, atol=1e-12)
