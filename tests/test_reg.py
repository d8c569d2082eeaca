"""The ridge ``solve(reg=lam)``: gradients by finite differences, the line search against a
dense grid of the regularized loss, lam = 0 bit for bit, and every method's fixed point
against the closed form of the fully observed problem (singular value soft-thresholding)."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods import METHODS, SolverState
from lowrank_core.methods.linesearch import LineSearch


def _problem(kind, psd, seed=3):
    n2 = 9 if psd else 8
    m = 50 if kind == "entries" else 70
    return lc.make_problem(9, n2, rank=2, m=m, operator=kind, psd=psd, noise=0.05,
                           seed=seed)


def _objective(op, y, F, G, lam, symmetric):
    """Plain numpy objective: the data term through the dense forward plus the ridge."""
    z = op.forward(F @ G.T) - y
    if symmetric:
        return 0.25 * float(z @ z) + 0.5 * lam * float(np.sum(F * F))
    return 0.5 * float(z @ z) + 0.5 * lam * float(np.sum(F * F) + np.sum(G * G))


def _evaluated_state(kind, psd, lam, seed):
    """A random rank-3 iterate (G = F when psd) and its evaluated regularized state."""
    prob = _problem(kind, psd)
    op, y = prob.operator, prob.y
    rng = np.random.default_rng(seed)
    n1, n2 = op.shape
    F = rng.standard_normal((n1, 3))
    G = F if psd else rng.standard_normal((n2, 3))
    state = SolverState(op, y, F.copy(), G.copy(), psd, reg=lam)
    state.evaluate()
    return op, y, F, G, state


@pytest.mark.parametrize("kind,psd", [("gaussian", False), ("gaussian", True),
                                      ("sparse", True), ("entries", False)])
def test_regularized_gradient_matches_finite_differences(kind, psd):
    lam = 0.7
    op, y, F, G, state = _evaluated_state(kind, psd, lam, seed=0)
    assert state.loss == pytest.approx(_objective(op, y, F, G, lam, psd), rel=1e-12)
    h = 1e-6
    for which, grad in (("F", state.grad_F), ("G", state.grad_G)):
        if psd and which == "G":
            continue
        fd = np.empty_like(grad)
        for idx in np.ndindex(grad.shape):
            Xp, Xm = (F.copy(), F.copy()) if which == "F" else (G.copy(), G.copy())
            Xp[idx] += h
            Xm[idx] -= h
            if psd:
                fp = _objective(op, y, Xp, Xp, lam, True)
                fm = _objective(op, y, Xm, Xm, lam, True)
            elif which == "F":
                fp = _objective(op, y, Xp, G, lam, False)
                fm = _objective(op, y, Xm, G, lam, False)
            else:
                fp = _objective(op, y, F, Xp, lam, False)
                fm = _objective(op, y, F, Xm, lam, False)
            fd[idx] = (fp - fm) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("psd", [False, True])
def test_line_search_minimizes_the_regularized_loss(psd):
    lam = 2.0
    op, y, F, G, state = _evaluated_state("gaussian", psd, lam, seed=1)
    DF, DG = state.grad_F.copy(), state.grad_G.copy()
    ls = LineSearch(state, cap=np.inf)
    eta = ls.search(state.F, state.G, DF, DG)
    etas = np.linspace(0, 3 * eta, 3001)
    if psd:
        vals = [_objective(op, y, F - e * DF, F - e * DF, lam, True) for e in etas]
    else:
        vals = [_objective(op, y, F - e * DF, G - e * DG, lam, False) for e in etas]
    best = etas[int(np.argmin(vals))]
    assert eta == pytest.approx(best, abs=2 * (etas[1] - etas[0]))
    # the one-factor (AGN) search: a quadratic, minimized in closed form
    eta1 = ls.search_first(state.F, state.G, DF)
    f1 = [_objective(op, y, F - e * DF, G, lam, psd) if not psd else 0.0 for e in etas]
    if not psd:
        assert eta1 == pytest.approx(etas[int(np.argmin(f1))], abs=2 * (etas[1] - etas[0]))


def _method_cases():
    for method in METHODS:
        yield method, "fixed"
        if method not in ("als", "gnmr"):
            yield method, "auto"


@pytest.mark.parametrize("method,step", list(_method_cases()))
def test_reg_zero_is_bit_for_bit(method, step):
    prob = _problem("entries", False)
    kw = dict(method=method, init="small" if method not in ("als", "gnmr") else "spectral",
              step=step, max_iter=5, tol=1e-30, record=False, seed=2, n_threads=1)
    if method == "onestep":
        kw["trigger"] = 0.9
    a = lc.solve(prob.operator, prob.y, 3, **kw)
    b = lc.solve(prob.operator, prob.y, 3, reg=0.0, **kw)
    for x, w in zip(a.factors, b.factors):
        assert np.array_equal(x, w)
    assert "reg" not in b.options


def _soft_thresholded(M, lam):
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    return (U * np.maximum(s - lam, 0.0)) @ Vt


# Fully observed completion (every entry once, scale 1): the minimizer of
# 1/2 ||F G^T - M||_F^2 + lam/2 (||F||^2 + ||G||^2) over rank-k factors with k >= the number
# of singular values above lam is U (S - lam)_+ V^T (the variational form of the nuclear
# norm; Srebro, Rennie, Jaakkola 2005; Mazumder, Hastie, Tibshirani 2010, Lemma 6).
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_reaches_soft_thresholding(method):
    rng = np.random.default_rng(4)
    n1, n2 = 14, 11
    M = rng.standard_normal((n1, 3)) @ np.diag([6.0, 4.0, 3.0]) @ rng.standard_normal((3, n2))
    M /= np.sqrt(n2)
    M += 0.05 * rng.standard_normal((n1, n2))
    s = np.linalg.svd(M, compute_uv=False)
    lam = 0.5 * (s[2] + s[3])            # three singular values survive
    rows, cols = np.divmod(np.arange(n1 * n2), n2)
    op = lc.EntryOperator(rows, cols, (n1, n2))
    y = M.ravel().copy()
    symmetric = False
    res = lc.solve(op, y, 4, method=method, reg=lam, max_iter=3000, tol=1e-30,
                   record=False, seed=0, symmetric=symmetric,
                   init="spectral")
    target = _soft_thresholded(M, lam)
    err = np.linalg.norm(res.matrix() - target) / np.linalg.norm(target)
    assert err < 1e-5, (method, res.status, err)
    F, G = res.factors
    assert res.loss == pytest.approx(_objective(op, y, F, G, lam, False), rel=1e-10)


def test_symmetric_soft_thresholding():
    """Symmetric X X^T: 1/4 ||X X^T - M||^2 + lam/2 ||X||^2 for PSD M is minimized by
    the eigenvalues (mu - lam)_+ (stationarity: (X X^T - M) X + lam X = 0)."""
    rng = np.random.default_rng(5)
    n = 12
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    mu = np.array([5.0, 3.0, 2.0] + [0.1] * (n - 3))
    M = (Q * mu) @ Q.T
    lam = 1.0
    rows, cols = np.divmod(np.arange(n * n), n)
    op = lc.EntryOperator(rows, cols, (n, n))
    for method in ("gd", "scaledgd", "precgd", "gnmr"):
        res = lc.solve(op, M.ravel().copy(), 4, method=method, symmetric=True, reg=lam,
                       max_iter=3000, tol=1e-30, record=False, seed=0, init="spectral")
        target = (Q[:, :3] * (mu[:3] - lam)) @ Q[:, :3].T
        err = np.linalg.norm(res.matrix() - target) / np.linalg.norm(target)
        assert err < 1e-5, (method, err)


def test_als_reg_is_the_ridge_and_conflicts_are_errors():
    prob = _problem("entries", False)
    a = lc.solve(prob.operator, prob.y, 3, method="als", reg=0.3, max_iter=4, seed=1)
    b = lc.solve(prob.operator, prob.y, 3, method="als", damping=0.3, max_iter=4, seed=1)
    for x, w in zip(a.factors, b.factors):
        assert np.array_equal(x, w)
    F, G = a.factors
    assert a.loss == pytest.approx(_objective(prob.operator, prob.y, F, G, 0.3, False),
                                   rel=1e-12)
    with pytest.raises(ValueError, match="pass only reg"):
        lc.solve(prob.operator, prob.y, 3, method="als", reg=0.3, damping=0.1)
    with pytest.raises(ValueError, match="variant='setting'"):
        lc.solve(prob.operator, prob.y, 3, method="gnmr", reg=0.3, variant="updating")
    with pytest.raises(ValueError, match="reg"):
        lc.solve(prob.operator, prob.y, 3, reg=-1.0)


def test_reg_keeps_float32():
    prob = lc.make_problem(20, 15, rank=2, m=150, operator="entries", dtype=np.float32,
                           seed=1)
    for method in METHODS:
        res = lc.solve(prob.operator, prob.y, 3, method=method, reg=0.1, max_iter=5)
        assert res.factors[0].dtype == np.float32, method
        assert np.isfinite(res.loss), method
