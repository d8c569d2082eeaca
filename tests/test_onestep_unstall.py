"""onestep's second rebalance (``unstall``, issue 18): the stall rule replayed with numpy on
the recorded residuals, the transform against its defining identities, and the measured
behaviour it was built for (kappa = 100: the single step ends worse than gd, the default
does not)."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods import METHODS
from lowrank_core.methods import gd as gdmod
from lowrank_core.methods._base import SolverState


def _reference_unstall(residuals, t1, window):
    """The first t >= t1 + window with rho_t > 0.9 rho_{t - window}, or None."""
    for t in range(t1 + window, len(residuals)):
        if residuals[t] > gdmod.UNSTALL_RATIO * residuals[t - window]:
            return t
    return None


@pytest.fixture(scope="module")
def kappa100():
    return lc.make_problem(30, rank=3, m=600, cond=100.0, seed=0)


@pytest.mark.parametrize("window", [40, gdmod.UNSTALL_WINDOW])
def test_unstall_fires_where_the_numpy_rule_says(kappa100, window):
    """onestep with unstall=W is the single-step run until the second rebalance: replay
    the single-step run's residuals (rho_t of iterate t) through the rule."""
    prob = kappa100
    kw = dict(init="small", step="fixed", seed=1, n_threads=1, tol=1e-30, max_iter=800)
    single = lc.solve(prob.operator, prob.y, 5, method="onestep", unstall=0, **kw)
    rho = np.asarray(single.history["residual"])
    t1 = single.rebalance_iteration
    assert t1 is not None and single.unstall_iteration is None
    expected = _reference_unstall(rho, t1, window)
    assert expected is not None and expected > t1 + window
    res = lc.solve(prob.operator, prob.y, 5, method="onestep", unstall=window, **kw)
    assert res.rebalance_iteration == t1
    assert res.unstall_iteration == expected
    # identical iterates up to the second rebalance
    np.testing.assert_array_equal(np.asarray(res.history["residual"])[:expected + 1],
                                  rho[:expected + 1])
    # gamma = rho ||F G^T||_F of the iterate it fired at (same iterate in both runs)
    F, G = lc.solve(prob.operator, prob.y, 5, method="onestep", unstall=0,
                    **{**kw, "max_iter": expected}).factors
    np.testing.assert_allclose(res.gamma, rho[expected] * np.linalg.norm(F @ G.T), rtol=1e-10)


def test_unstall_transform_keeps_product_and_sets_the_imbalance(kappa100):
    prob = kappa100
    rng = np.random.default_rng(3)
    F = rng.standard_normal((30, 4)) * [1.0, 0.3, 0.01, 1e-4]
    G = rng.standard_normal((30, 4))
    state = SolverState(prob.operator, prob.y, F.copy(), G.copy(), symmetric=False)
    state.evaluate()
    rule = METHODS["onestep"](state, 0.1, METHODS["onestep"].check_options({}), None)
    rule.unstall()
    Fn, Gn = state.F, state.G
    X = F @ G.T
    z = prob.operator.forward_factored(F, G) - prob.y
    gamma = np.linalg.norm(z) / np.linalg.norm(prob.y) * np.linalg.norm(X)
    assert rule.gamma_used == pytest.approx(gamma, rel=1e-10)
    np.testing.assert_allclose(Fn @ Gn.T, X, atol=1e-12 * np.linalg.norm(X))
    np.testing.assert_allclose(Fn.T @ Fn - Gn.T @ Gn, gamma * np.eye(4),
                               atol=1e-10 * np.linalg.norm(X))
    # the gradients are re-evaluated at the new factors: S G_new, S^T F_new
    S = prob.operator.adjoint(prob.operator.forward_factored(Fn, Gn) - prob.y)
    np.testing.assert_allclose(state.SG, S @ Gn, atol=1e-10 * np.linalg.norm(S @ Gn))
    np.testing.assert_allclose(state.StF, S.T @ Fn, atol=1e-10 * np.linalg.norm(S.T @ Fn))


def test_onestep_at_defaults_not_worse_than_gd_at_high_condition_number(kappa100):
    """kappa = 100 at the defaults (step="auto", default start): the single step (the
    paper's rule at the residual 0.1) stalls with sigma_3 = 0.01 unfitted, well above gd;
    the default (second rebalance) ends at or below gd."""
    prob = kappa100
    kw = dict(seed=1, n_threads=1, max_iter=1500, truth=prob, record=False)
    gd = lc.solve(prob.operator, prob.y, 5, method="gd", **kw)
    single = lc.solve(prob.operator, prob.y, 5, method="onestep", unstall=0, **kw)
    default = lc.solve(prob.operator, prob.y, 5, method="onestep", **kw)
    assert single.error > 2 * gd.error
    assert default.unstall_iteration is not None
    assert default.error <= gd.error


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100", None])
def test_unstall_validation(kappa100, bad):
    with pytest.raises(ValueError, match="unstall must be a number of iterations >= 0"):
        lc.solve(kappa100.operator, kappa100.y, 4, method="onestep", unstall=bad, max_iter=1)
