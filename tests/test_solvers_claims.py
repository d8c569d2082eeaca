"""The source papers' claims, checked in our own runs (small problems, seconds each).

Xiong, Ding, Du (ICLR 2024): symmetric over-parameterized GD is sublinear (||XX^T - M*||_F
~ 1/T), asymmetric GD is linear with an alpha-dependent rate, and the one-step rebalance
removes the alpha-dependence. Soltanolkotabi, Stoger, Xie (2023): equal small init keeps
the factors balanced and the iterate effectively low rank. Zhang, Fattahi, Zhang (PrecGD),
Tong, Ma, Chi (ScaledGD) and Jia et al. (AGN): linear convergence.
See ALGORITHMS.md §1-§4 and §7 (whose numpy sanity checks these reproduce).
"""

import warnings

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.driver import UnobservedAntisymmetryWarning
from lowrank_core.methods import METHODS
from lowrank_core.problems import OPERATOR_BUILDERS

ALPHAS = (0.5, 0.2, 0.05)



def _solve(*args, **kwargs):
    """lc.solve on one OpenMP thread unless told otherwise: these problems are small, and
    one thread keeps the run time sane on a busy machine. The claims are the papers', so the
    runs use the papers' fixed steps and small random start unless told otherwise (the
    solver's own defaults are the line search and each method's init)."""
    kwargs.setdefault("n_threads", 1)
    kwargs.setdefault("step", "fixed")
    kwargs.setdefault("init", "small")
    return lc.solve(*args, **kwargs)


@pytest.fixture(scope="module")
def psd_sym():
    """PSD rank-3 truth (singular values 1, .8, .6) measured with symmetric A_i."""
    return lc.make_problem(30, rank=3, m=800, psd=True, cond=1 / 0.6, seed=0)


@pytest.fixture(scope="module")
def psd_general():
    """The same kind of PSD truth measured with general (non-symmetric) Gaussian A_i, the
    setting of Xiong et al.'s asymmetric experiments and of the AGN paper's code."""
    rng = np.random.default_rng(1)
    n, r, m = 30, 2, 700
    U = np.linalg.qr(rng.standard_normal((n, r)))[0]
    L = U * np.sqrt([1.0, 0.6])
    op = lc.DenseOperator.gaussian(m, n, n, seed=rng)
    return op, op.forward_factored(L, L), (L, L)


def _abs_error(res, truth):
    L, R = truth
    return res.history.error * lc.metrics.factored_norm(L, R)


def _rate(err, t0, t1):
    """Average per-iteration contraction factor of err between t0 and t1."""
    return (err[t1] / err[t0]) ** (1.0 / (t1 - t0))


# ----------------------------------------------------------------- Xiong et al.
def test_symmetric_gd_exact_rank_is_linear(psd_sym):
    res = _solve(psd_sym.operator, psd_sym.y, 3, symmetric=True, init_scale=0.2, step=0.3,
                   truth=psd_sym, seed=1, max_iter=1500, tol=1e-14, record=["error"])
    assert res.status == "converged"
    assert res.error < 1e-12
    e = res.history.error
    assert _rate(e, 100, res.n_iter - 20) < 0.95  # geometric decay over the whole tail


def test_symmetric_gd_overparameterized_is_sublinear(psd_sym):
    """k > r from small init: ||X X^T - M*||_F ~ 1/T (squared error ~ 1/T^2)."""
    res = _solve(psd_sym.operator, psd_sym.y, 5, symmetric=True, init_scale=0.2,
                   step=0.3, truth=psd_sym, seed=1, max_iter=2000, tol=1e-14,
                   record=["error"])
    assert res.status == "max_iter"
    assert res.error > 1e-5
    err = _abs_error(res, psd_sym.truth_factors)
    slope = np.log(err[2000] / err[1000]) / np.log(2.0)
    assert -1.2 < slope < -0.7, slope


def test_asymmetric_gd_overparameterized_linear_and_alpha_dependent(psd_general):
    op, y, truth = psd_general
    final = {}
    for a in ALPHAS:
        res = _solve(op, y, 4, init_scale=(a, a / 3), step=0.3, truth=truth, seed=2,
                       max_iter=1000, tol=1e-14, record=["error"])
        final[a] = res.error
        if a == 0.5:  # linear: steady geometric decay over consecutive windows
            e = res.history.error
            rates = [_rate(e, t, t + 200) for t in (200, 400, 600, 800)]
            assert max(rates) < 0.995
            assert max(rates) / min(rates) < 1.01, rates
            assert e[1000] < 1e-5
    assert final[0.5] < final[0.2] < final[0.05]
    assert final[0.05] > 1e2 * final[0.5]


@pytest.mark.parametrize("method", ["onestep", "precgd"])
def test_onestep_and_precgd_fast_for_every_alpha(psd_general, method):
    op, y, truth = psd_general
    iters = []
    for a in ALPHAS + (1e-3,):
        res = _solve(op, y, 4, method=method, init_scale=(a, a / 3),
                       step=0.3 if method == "onestep" else None, truth=truth, seed=2,
                       max_iter=800, tol=1e-14, record=["error"])
        assert res.status == "converged", (a, res.message)
        assert res.error < 1e-12
        e = res.history.error
        # iterations of the local phase, from 1e-4 down to 1e-12
        iters.append(int(np.argmax(e < 1e-12)) - int(np.argmax(e < 1e-4)))
        if method == "onestep":
            assert res.rebalance_iteration is not None
        # plain GD is still above 1e-3 after 1000 iterations at alpha = 0.05
        assert res.n_iter < (700 if method == "onestep" else 500)
    if method == "onestep":
        # after the rebalance the rate does not depend on alpha (Xiong et al. §5)
        assert max(iters) < 1.25 * min(iters), iters


@pytest.mark.parametrize("method,symmetric", [("agn", False), ("scaledgd", False),
                                              ("scaledgd", True)])
def test_agn_and_scaledgd_linear(psd_general, psd_sym, method, symmetric):
    if symmetric:
        problem = psd_sym
        op, y, truth, k = problem.operator, problem.y, problem, 3
        init = "spectral"
    else:
        op, y, truth = psd_general
        k, init = 4, "small"
    res = _solve(op, y, k, method=method, symmetric=symmetric, init=init, truth=truth,
                   seed=3, max_iter=600, tol=1e-13, record=["error"])
    assert res.status == "converged"
    e = res.history.error
    assert e[-1] < 1e-12
    # linear: from 1e-2 down to 1e-12 the per-iteration contraction is steady
    t0 = int(np.argmax(e < 1e-2))
    t1 = int(np.argmax(e < 1e-7))
    t2 = int(np.argmax(e < 1e-12))
    r1, r2 = _rate(e, t0, t1), _rate(e, t1, t2)
    assert max(r1, r2) < 0.95 and abs(np.log(r1) / np.log(r2) - 1) < 0.5, (r1, r2)


def test_asymmetric_parameterization_on_psd_target(psd_general):
    """Same data, same init scale, k > r: F G^T converges linearly, X X^T does not."""
    op, y, truth = psd_general
    asym = _solve(op, y, 4, init_scale=(0.5, 0.5 / 3), step=0.3, truth=truth, seed=4,
                    max_iter=1200, tol=1e-14, record=["error"])
    sym = _solve(op, y, 4, symmetric=True, init_scale=0.5, step=0.3, truth=truth, seed=4,
                   max_iter=1200, tol=1e-14, record=["error"])
    assert asym.error < 1e-6
    assert sym.error > 1e-4
    assert sym.error > 1e2 * asym.error
    es = _abs_error(sym, truth)
    assert np.log(es[1200] / es[600]) / np.log(2.0) > -1.3  # sublinear, not geometric


# ------------------------------------------------------------ Soltanolkotabi et al.
def test_equal_small_init_balanced_and_low_rank():
    problem = lc.make_problem(30, rank=2, m=700, seed=0)
    norm = lc.metrics.factored_norm(*problem.truth_factors)
    finals = []
    for a in (1e-2, 1e-3, 1e-4):
        res = _solve(problem.operator, problem.y, 6, init_scale=a, step=0.3,
                       truth=problem, seed=1, max_iter=500, tol=1e-14,
                       record=["error", "imbalance", "tail_sv"])
        h = res.history
        assert h.imbalance.max() < 1e-2 * norm          # implicit balancing
        assert h.tail_sv.max() < 10 * a                 # sigma_{r+1} stays at init scale
        assert h.tail_sv.max() > 0.1 * a
        finals.append(res.error)
    assert finals[0] > 3 * finals[1] > 9 * finals[2]    # final test error shrinks with alpha


# ----------------------------------------------------- every method, every operator
def _operator_kinds():
    return sorted(OPERATOR_BUILDERS)


@pytest.mark.parametrize("kind", _operator_kinds())
@pytest.mark.parametrize("psd", [False, True])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_every_operator(kind, psd, method):
    """Every method on every operator kind, each in a well-posed setting of its paper:
    ScaledGD at exact rank from spectral init (Tong et al.); the damped preconditioned
    methods over-parameterized from small init with step 0.2 (the default 0.5 is too
    long for symmetric rank-one measurements, which are not RIP: E[y a a^T] = 2M + tr(M)I);
    GD and AGN with their defaults."""
    problem = lc.make_problem(20, rank=2, m=300, operator=kind, psd=psd, seed=5)
    symmetric = psd and "symmetric" in METHODS[method].forms
    options = dict(init_scale=0.1)
    k = 3
    if method == "scaledgd":
        options = dict(init="spectral")
        k = 2
    if method in ("scaledgd", "scaledgd-lambda", "precgd"):
        options["step"] = 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnobservedAntisymmetryWarning)
        res = _solve(problem.operator, problem.y, k, method=method, symmetric=symmetric,
                     truth=problem, seed=6, max_iter=150, tol=1e-12, **options)
    F, G = res.factors
    assert np.isfinite(F).all() and np.isfinite(G).all()
    loss = res.history.loss
    assert np.isfinite(loss).all()
    assert res.status in ("converged", "max_iter")
    assert loss[-1] < 1e-3 * loss[0], (loss[0], loss[-1])


# -------------------------------------------------------------------- determinism
@pytest.mark.parametrize("method", ["gd", "precgd", "agn"])
def test_same_seed_same_history(psd_general, method):
    op, y, truth = psd_general
    runs = [_solve(op, y, 4, method=method, truth=truth, seed=9, max_iter=15,
                   n_threads=2) for _ in range(2)]
    for name in ("loss", "residual", "error", "imbalance", "tail_sv", "grad_norm"):
        np.testing.assert_array_equal(runs[0].history[name], runs[1].history[name])
    np.testing.assert_array_equal(runs[0].F, runs[1].F)
    other = _solve(op, y, 4, method=method, truth=truth, seed=10, max_iter=15)
    assert not np.array_equal(other.F, runs[0].F)
