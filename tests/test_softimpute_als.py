"""softImpute-ALS (method="softimpute_als") against plain numpy: the half-step is the
ridge regression of the densely filled-in matrix (numpy lstsq), the fixed point is a
stationary point of the ridge objective (numpy gradient, finite differences), the
objective decreases monotonically (Hastie et al. 2015, section 4), float32 stays
float32, and the estimator round trip."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods import METHODS


def _problem(seed=0, n1=16, n2=13, r=2, p=0.5, noise=0.05, scale=1.0, shuffle=False,
             dtype=np.float64):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    mask = rng.random((n1, n2)) < p
    rows, cols = np.nonzero(mask)
    if shuffle:
        perm = rng.permutation(rows.size)
        rows, cols = rows[perm], cols[perm]
    X = M + noise * rng.standard_normal(M.shape)
    op = lc.EntryOperator(rows, cols, (n1, n2), dtype=dtype, scale=scale)
    y = (scale * X[rows, cols]).astype(dtype)
    return op, y, X, mask, rows, cols


def _objective(F, G, X, mask, lam, scale=1.0):
    R = np.where(mask, scale * (F @ G.T) - scale * X, 0.0)
    return 0.5 * np.sum(R * R) + 0.5 * lam * (np.sum(F * F) + np.sum(G * G))


def _gradient(F, G, X, mask, lam, scale=1.0):
    S = np.where(mask, scale * scale * (F @ G.T - X), 0.0)
    return S @ G + lam * F, S.T @ F + lam * G


def _ridge(Xfill, B, lam_eff):
    """argmin_A ||Xfill - A B^T||_F^2 + lam_eff ||A||_F^2 by numpy lstsq (stacked ridge)."""
    k = B.shape[1]
    lhs = np.vstack([B, np.sqrt(lam_eff) * np.eye(k)])
    rhs = np.vstack([Xfill.T, np.zeros((k, Xfill.shape[0]))])
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0].T


def test_registered():
    assert METHODS["softimpute_als"] is lc.methods.SoftImputeALS


@pytest.mark.parametrize("scale,shuffle", [(1.0, False), (1.7, True)])
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_one_iteration_is_the_dense_fill_in_ridge(scale, shuffle, lam):
    op, y, X, mask, *_ = _problem(scale=scale, shuffle=shuffle)
    k = 3
    rng = np.random.default_rng(5)
    F0, G0 = rng.standard_normal((16, k)), rng.standard_normal((13, k))
    res = lc.solve(op, y, k, method="softimpute_als", init=(F0.copy(), G0.copy()),
                   max_iter=1, tol=1e-30, reg=lam, step="fixed")
    # paper's half-steps: fill the missing entries with the current estimate, then the
    # ridge regression on the full matrix (the objective is scale^2/2 ||.||^2, so the
    # ridge per unit of the fill-in least squares is lam / scale^2)
    Xs = np.where(mask, X, F0 @ G0.T)
    F1 = _ridge(Xs, G0, lam / scale ** 2)
    Xs = np.where(mask, X, F1 @ G0.T)
    G1 = _ridge(Xs.T, F1, lam / scale ** 2)
    F, G = res.factors
    np.testing.assert_allclose(F, F1, rtol=0, atol=1e-12 * np.abs(F1).max())
    np.testing.assert_allclose(G, G1, rtol=0, atol=1e-12 * np.abs(G1).max())


def test_fixed_point_is_stationary_for_the_ridge_objective():
    op, y, X, mask, *_ = _problem(seed=1)
    lam, k = 0.5, 4
    res = lc.solve(op, y, k, method="softimpute_als", reg=lam, max_iter=20000, tol=1e-30,
                   stall_tol=0.0, seed=0)
    F, G = res.factors
    gF, gG = _gradient(F, G, X, mask, lam)
    g0F, g0G = _gradient(*lc.solve(op, y, k, method="softimpute_als", reg=lam,
                                   max_iter=0, seed=0).factors, X, mask, lam)
    assert np.sqrt(np.sum(gF ** 2) + np.sum(gG ** 2)) \
        <= 1e-7 * np.sqrt(np.sum(g0F ** 2) + np.sum(g0G ** 2))
    # finite differences of the numpy objective along random directions vanish too
    rng = np.random.default_rng(2)
    h = 1e-5
    for _ in range(3):
        dF, dG = rng.standard_normal(F.shape), rng.standard_normal(G.shape)
        fd = (_objective(F + h * dF, G + h * dG, X, mask, lam)
              - _objective(F - h * dF, G - h * dG, X, mask, lam)) / (2 * h)
        assert abs(fd) <= 1e-6 * _objective(F, G, X, mask, lam)
    # the same stationary point as ALS's exact ridge half-steps reach from the same start
    als = lc.solve(op, y, k, method="als", reg=lam, init=res.factors, max_iter=5,
                   tol=1e-30, stall_tol=0.0)
    np.testing.assert_allclose(als.factors[0] @ als.factors[1].T, F @ G.T, atol=1e-7)


def test_auto_step_is_the_exact_minimizer_along_the_half_step():
    op, y, X, mask, *_ = _problem(seed=2, scale=1.3)
    lam, k = 0.4, 3
    rng = np.random.default_rng(8)
    F0, G0 = rng.standard_normal((16, k)), rng.standard_normal((13, k))
    res = lc.solve(op, y, k, method="softimpute_als", init=(F0.copy(), G0.copy()),
                   max_iter=1, tol=1e-30, reg=lam)
    # numpy: the paper's half-step direction D = X - ridge(fill-in), then the 1-D
    # minimizer of the objective along X - eta D (dense golden-section-free: the
    # objective is quadratic in eta, so three values determine it)
    def line_min(fun):
        a, b, c = fun(0.0), fun(1.0), fun(2.0)
        curv = a - 2 * b + c
        return (3 * a - 4 * b + c) / (2 * curv)
    Xs = np.where(mask, X, F0 @ G0.T)
    DF = F0 - _ridge(Xs, G0, lam / 1.3 ** 2)
    eF = line_min(lambda e: _objective(F0 - e * DF, G0, X, mask, lam, 1.3))
    F1 = F0 - eF * DF
    Xs = np.where(mask, X, F1 @ G0.T)
    DG = G0 - _ridge(Xs.T, F1, lam / 1.3 ** 2)
    eG = line_min(lambda e: _objective(F1, G0 - e * DG, X, mask, lam, 1.3))
    G1 = G0 - eG * DG
    np.testing.assert_allclose(res.history["step"][:1], [eF], rtol=1e-9)
    np.testing.assert_allclose(res.history["step_G"][:1], [eG], rtol=1e-9)
    np.testing.assert_allclose(res.factors[0], F1, atol=1e-10 * np.abs(F1).max())
    np.testing.assert_allclose(res.factors[1], G1, atol=1e-10 * np.abs(G1).max())


@pytest.mark.parametrize("step", ["auto", "fixed"])
@pytest.mark.parametrize("lam", [0.0, 0.2, 2.0])
def test_objective_decreases_monotonically(lam, step):
    op, y, X, mask, *_ = _problem(seed=3, n1=30, n2=25, r=3, p=0.35, scale=0.8)
    seen = []

    def record(res):
        F, G = res["F"], res["G"]
        seen.append(_objective(F, G, X, mask, lam, scale=0.8))

    res = lc.solve(op, y, 5, method="softimpute_als", reg=lam, max_iter=200, tol=1e-30,
                   stall_tol=0.0, init="small", seed=1, callback=record,
                   record=["loss"], step=step) if lam else \
        lc.solve(op, y, 5, method="softimpute_als", max_iter=200, tol=1e-30, stall_tol=0.0,
                 seed=1, callback=record, record=["loss"], step=step)
    seen = np.asarray(seen)
    assert seen.size == 200
    assert np.all(np.diff(seen) <= 1e-12 * seen[:-1] + 1e-14 * seen[0])
    assert seen[-1] < 0.5 * seen[0]
    # the reported loss is that objective
    np.testing.assert_allclose(res.history["loss"][:seen.size], seen, rtol=1e-10)


def test_float32_stays_float32():
    op, y, X, mask, *_ = _problem(dtype=np.float32)
    res = lc.solve(op, y, 3, method="softimpute_als", reg=0.1, max_iter=30, seed=0)
    F, G = res.factors
    assert F.dtype == np.float32 and G.dtype == np.float32
    ref = lc.solve(*_problem()[:2], 3, method="softimpute_als", reg=0.1, max_iter=30, seed=0)
    np.testing.assert_allclose(F @ G.T, ref.factors[0] @ ref.factors[1].T, atol=2e-3)


def test_duplicates_raise_the_majorization_constant():
    op, y, X, mask, rows, cols = _problem(seed=4)
    r2, c2 = np.concatenate([rows, rows[:5]]), np.concatenate([cols, cols[:5]])
    op2 = lc.EntryOperator(r2, c2, op.shape)
    y2 = np.concatenate([y, y[:5]])
    res = lc.solve(op2, y2, 3, method="softimpute_als", reg=0.1, max_iter=50, seed=0,
                   tol=1e-30, stall_tol=0.0, record=["loss"])
    assert res.options["gram_bound"] == 2.0
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1] + 1e-14 * loss[0])


def test_errors():
    with pytest.raises(ValueError, match="gram_bound"):
        lc.solve(*_problem()[:2], 2, method="softimpute_als", gram_bound=-1.0)
    with pytest.raises(ValueError, match="asymmetric|symmetric"):
        op = lc.EntryOperator([0, 1], [1, 0], (2, 2))
        lc.solve(op, np.ones(2), 1, method="softimpute_als", symmetric=True)


def test_general_operator_gram_bound_estimate():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((60, 6, 5)) / np.sqrt(60)
    dense = lc.DenseOperator(A)
    y = dense.forward(rng.standard_normal((6, 2)) @ rng.standard_normal((2, 5)))
    L = np.linalg.norm(A.reshape(60, -1), 2) ** 2
    res = lc.solve(dense, y, 2, method="softimpute_als", max_iter=100, tol=1e-30,
                   stall_tol=0.0, record=["loss"], seed=0)
    assert L <= res.options["gram_bound"] <= 1.1 * L * (1 + 1e-9)
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1] + 1e-14 * loss[0])


def test_general_operator_with_a_gram_bound_decreases():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((60, 6, 5)) / np.sqrt(60)
    dense = lc.DenseOperator(A)
    y = dense.forward(rng.standard_normal((6, 2)) @ rng.standard_normal((2, 5)))
    L = np.linalg.norm(A.reshape(60, -1), 2) ** 2
    res = lc.solve(dense, y, 2, method="softimpute_als", gram_bound=L, max_iter=100,
                   tol=1e-30, stall_tol=0.0, record=["loss"], seed=0)
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1] + 1e-14 * loss[0])


def test_estimator_round_trip():
    op, y, X, mask, rows, cols = _problem(seed=6, n1=40, n2=30, p=0.5)
    Xn = np.where(mask, X, np.nan)
    est = lc.MatrixCompletion(rank=3, method="softimpute_als", reg=0.2, max_iter=300,
                              tol=1e-8, random_state=0)
    out = est.fit_transform(Xn)
    F, Gt = est.row_factors_, est.components_
    np.testing.assert_allclose(out[~mask], (F @ Gt)[~mask], rtol=1e-12)
    np.testing.assert_allclose(out[mask], X[mask])
    np.testing.assert_allclose(est.predict(rows, cols), (F @ Gt)[rows, cols], rtol=1e-12)
    # the estimator minimizes the same objective: its gradient (numpy) is small
    gF, gG = _gradient(F, Gt.T, X, mask, 0.2)
    assert np.sqrt(np.sum(gF ** 2) + np.sum(gG ** 2)) < 1e-3 * np.abs(X).max() * 40
    clone = lc.MatrixCompletion(**est.get_params())
    np.testing.assert_array_equal(clone.fit_transform(Xn), out)
    # float32 in, float32 out; validation early stopping keeps the best iterate
    est32 = lc.MatrixCompletion(rank=3, method="softimpute_als", reg=0.2, dtype="float32",
                                max_iter=300, random_state=0).fit(Xn)
    assert est32.row_factors_.dtype == np.float32
    ev = lc.MatrixCompletion(rank=6, method="softimpute_als", reg=0.0, max_iter=400,
                             tol=1e-12, validation_fraction=0.2, n_iter_no_change=5,
                             random_state=0).fit(Xn)
    v = ev.history_["validation_rmse"]
    assert ev.validation_rmse_ == np.nanmin(v)
    if ev.result_.status == "early_stopped":
        assert ev.best_iteration_ < ev.n_iter_


@pytest.mark.parametrize("size", [1.0, 1e-3, 1e-7])
def test_estimator_relative_change_matches_dense_numpy(size):
    # the estimator's stopping measure (Gram form above 1e-5, QR form below)
    from lowrank_core.estimator import _relative_change
    rng = np.random.default_rng(7)
    F0, G0 = rng.standard_normal((50, 6)), rng.standard_normal((40, 6))
    F1 = F0 + size * rng.standard_normal(F0.shape)
    G1 = G0 + size * rng.standard_normal(G0.shape)
    M0, M1 = F0 @ G0.T, F1 @ G1.T
    ref = np.linalg.norm(M1 - M0) / np.linalg.norm(M0)
    got = _relative_change((F0, G0), (F1, G1))
    assert abs(got - ref) <= 1e-6 * ref
    got32 = _relative_change((F0.astype(np.float32), G0.astype(np.float32)),
                             (F1.astype(np.float32), G1.astype(np.float32)))
    if size >= 1e-3:
        assert abs(got32 - ref) <= 1e-3 * ref


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_monitor_change_matches_dense_numpy_over_a_sequence(dtype):
    # the monitor's incremental form (the previous iterate's Grams reused) on a sequence
    # of iterates with changes from 1 down to 1e-7 (Gram and QR forms)
    from lowrank_core.estimator import _Monitor
    rng = np.random.default_rng(8)
    F, G = rng.standard_normal((50, 6)), rng.standard_normal((40, 6))
    mon = _Monitor(None, 0.0, 10)
    assert mon._change(F.astype(dtype), G.astype(dtype)) is None
    for size in (1.0, 1e-2, 1e-4, 1e-7):
        F1 = F + size * rng.standard_normal(F.shape)
        G1 = G + size * rng.standard_normal(G.shape)
        F0d, G0d = F.astype(dtype).astype(np.float64), G.astype(dtype).astype(np.float64)
        F1d, G1d = F1.astype(dtype).astype(np.float64), G1.astype(dtype).astype(np.float64)
        M0, M1 = F0d @ G0d.T, F1d @ G1d.T
        ref = np.linalg.norm(M1 - M0) / np.linalg.norm(M0)
        got = mon._change(F1.astype(dtype), G1.astype(dtype))
        assert abs(got - ref) <= 1e-6 * ref
        F, G = F1, G1
    bad = F.copy()
    bad[0, 0] = np.nan
    assert mon._change(bad, G) == np.inf


def test_estimator_centred_and_biases():
    # the centred / bias-projected operators keep the entries' majorization constant,
    # and the fit still decreases the objective monotonically
    op, y, X, mask, rows, cols = _problem(seed=6, n1=40, n2=30, p=0.5)
    Xn = np.where(mask, X, np.nan)
    for center in (True, "biases"):
        ec = lc.MatrixCompletion(rank=3, method="softimpute_als", reg=0.2, center=center,
                                 max_iter=50, tol=1e-9, random_state=0).fit(Xn + 3.0)
        assert ec.result_.options["gram_bound"] == 1.0
        loss = ec.history_["loss"]
        assert np.all(np.diff(loss) <= 1e-10 * loss[:-1])
        assert abs(ec.intercept_ - 3.0) < 0.5
