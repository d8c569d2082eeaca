"""onestep's trigger="auto" (issue 18): the spectrum rule recomputed with numpy along the
run, the spectrum helper against numpy's SVD, and the measured behaviour it was built for
(a high-condition-number instance where the residual trigger 0.1 fires too early)."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods import gd as gdmod


def test_relative_spectrum_matches_numpy_svd():
    rng = np.random.default_rng(0)
    F, G = rng.standard_normal((40, 5)), rng.standard_normal((30, 5)) * [1, 1e-1, 1e-2, 0, 3]
    expected = np.linalg.svd(F @ G.T, compute_uv=False)[:5]
    expected /= np.linalg.norm(F @ G.T)
    np.testing.assert_allclose(gdmod.relative_spectrum(F, G), expected, rtol=1e-9,
                               atol=1e-14)
    assert np.all(gdmod.relative_spectrum(np.zeros((4, 2)), np.ones((3, 2))) == 0)


def _reference_first_firing(history):
    """The rule of OneStepGD.ready, written out on the recorded (rho_t, F_t G_t^T)."""
    spectra = {}
    for t, (rho, M) in enumerate(history):
        if t % gdmod.AUTO_EVERY:
            continue
        s = np.linalg.svd(M, compute_uv=False)
        s = s[:5] / np.linalg.norm(M)
        spectra[t] = s
        old = spectra.get(t - gdmod.AUTO_WINDOW)
        if old is None or rho > gdmod.AUTO_CAP:
            continue
        big = s > gdmod.AUTO_GAP * rho
        if np.any(np.abs(s[big] - old[big]) > gdmod.AUTO_SETTLED * s[big]):
            continue
        tail, tail_old = np.linalg.norm(s[~big]), np.linalg.norm(old[~big])
        if tail >= gdmod.AUTO_EXPLAINED * rho and tail <= (1 + gdmod.AUTO_SETTLED) * tail_old:
            return t
    return None


@pytest.fixture(scope="module")
def kappa10():
    return lc.make_problem(40, rank=3, m=1200, cond=10.0, seed=0)


def test_auto_trigger_fires_where_the_numpy_rule_says(kappa10):
    """onestep is GD until the rebalance: replay GD's iterates through the rule."""
    prob = kappa10
    k = 5
    kw = dict(init="small", step="fixed", seed=1, n_threads=1, tol=1e-30)
    start = lc.solve(prob.operator, prob.y, k, method="gd", max_iter=0, **kw)
    F0, G0 = start.factors
    history = {0: (np.linalg.norm(prob.operator.forward_factored(F0, G0) - prob.y)
                   / np.linalg.norm(prob.y), F0 @ G0.T)}

    def record(res):
        F, G = res.factors
        history[res.n_iter] = (res.residual, F @ G.T)

    lc.solve(prob.operator, prob.y, k, method="gd", max_iter=1500, callback=record, **kw)
    assert set(range(1500)) <= set(history)
    expected = _reference_first_firing([history[t] for t in range(1500)])
    assert expected is not None and expected > gdmod.AUTO_WINDOW
    res = lc.solve(prob.operator, prob.y, k, method="onestep", trigger="auto", max_iter=1500,
                   **kw)
    assert res.rebalance_iteration == expected
    assert res.options["trigger"] == "auto"


def test_auto_trigger_beats_the_residual_trigger_at_high_condition_number():
    """kappa = 100, small start, fixed step: the residual trigger 0.1 fires before the
    sigma_r component is fitted and stalls at ~sigma_r / ||M*||; "auto" waits and ends
    below plain GD (docs/solvers.rst, case onestep). The single step (unstall=0) on both,
    so that the triggers are compared, not the second rebalance."""
    prob = lc.make_problem(50, rank=3, m=1500, cond=100.0, seed=0)
    kw = dict(init="small", step="fixed", seed=1, n_threads=1, max_iter=3000, truth=prob,
              record=False)
    gd_kw = dict(kw)
    kw["unstall"] = 0
    gd = lc.solve(prob.operator, prob.y, 6, method="gd", **gd_kw)
    early = lc.solve(prob.operator, prob.y, 6, method="onestep", trigger=0.1, **kw)
    auto = lc.solve(prob.operator, prob.y, 6, method="onestep", trigger="auto", **kw)
    assert early.error > 5e-3            # stuck at the unfitted sigma_3 = 0.01
    assert auto.rebalance_iteration > 10 * early.rebalance_iteration
    assert auto.error < gd.error < early.error


@pytest.mark.parametrize("bad", ["Auto", "", None, True])
def test_trigger_validation(kappa10, bad):
    with pytest.raises(ValueError, match="trigger must be 'auto' or a positive"):
        lc.solve(kappa10.operator, kappa10.y, 4, method="onestep", trigger=bad, max_iter=1)
