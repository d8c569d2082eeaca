"""MatrixCompletion(center="biases"): the bias least squares against numpy.linalg.lstsq,
exact recovery of low-rank + mu + b_i + c_j (where center=False / True at the same rank
cannot), the documented gauge, fold-in of a new row's bias against lstsq, and the
validation RMSE including the biases."""

import pickle

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.estimator import BipartiteBiases


def _design(rows, cols, shape):
    """The dense m x (1 + n1 + n2) design [1, row indicators, column indicators]."""
    m = rows.size
    B = np.zeros((m, 1 + shape[0] + shape[1]))
    B[:, 0] = 1.0
    B[np.arange(m), 1 + rows] = 1.0
    B[np.arange(m), 1 + shape[0] + cols] = 1.0
    return B


@pytest.mark.parametrize("p", [0.5, 0.08])
def test_bias_least_squares_matches_lstsq(p):
    rng = np.random.default_rng(0)
    shape = (50, 35)
    mask = rng.random(shape) < p
    mask[7, :] = False          # a row without observations
    mask[:, 3] = False          # a column without observations
    rows, cols = np.nonzero(mask)
    z = rng.standard_normal(rows.size) * 3.0 + 1.0
    bl = BipartiteBiases(rows, cols, shape)
    assert bl.n_components() == 1
    b, c = bl.solve(z)
    first = bl.iterations
    B = _design(rows, cols, shape)
    coef = np.linalg.lstsq(B, z, rcond=None)[0]
    fitted_ref = B @ coef
    np.testing.assert_allclose(bl.fitted(b, c), fitted_ref, rtol=0, atol=1e-12 * np.abs(z).max())
    proj = bl.project(z)
    np.testing.assert_allclose(proj, z - fitted_ref, rtol=0, atol=1e-12 * np.abs(z).max())
    np.testing.assert_allclose(B.T @ proj, 0.0, atol=1e-11)   # orthogonal to the span
    # the gauge: means zero over the observed lines, zeros elsewhere, same fitted values
    mu, bg, cg = bl.gauged(b, c)
    np.testing.assert_allclose(mu + bg[rows] + cg[cols], fitted_ref, atol=1e-11)
    assert abs(bg[bl.has_row].mean()) < 1e-13 and abs(cg[bl.has_col].mean()) < 1e-13
    assert bg[7] == 0.0 and cg[3] == 0.0
    # projecting again changes nothing beyond rounding and needs far fewer iterations
    before = bl.iterations
    np.testing.assert_allclose(bl.project(proj), proj, rtol=0, atol=1e-11)
    assert bl.iterations - before < first / 2


def _biased_low_rank(n1=60, n2=40, r=3, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    b, c = 2.0 * rng.standard_normal(n1), 2.0 * rng.standard_normal(n2)
    M = L + 3.0 + b[:, None] + c[None, :]
    mask = rng.random(M.shape) < 0.5
    return M, L, mask


def _gauged_truth(M, L):
    """The documented gauge computed in numpy: L double-centered, biases the rest."""
    Lc = L - L.mean(0) - L.mean(1)[:, None] + L.mean()
    T = M - Lc                                 # exactly mu + b_i + c_j
    return Lc, T.mean(), T.mean(1) - T.mean(), T.mean(0) - T.mean()


@pytest.mark.parametrize("method", ["als", "scaledgd", "gnmr", "agn"])
def test_biases_recover_low_rank_plus_biases(method):
    M, L, mask = _biased_low_rank()
    assert np.linalg.svd(M, compute_uv=False)[4] > 1.0     # M itself has rank 5
    X = np.where(mask, M, np.nan)
    kw = dict(rank=3, method=method, tol=1e-12, max_iter=1000, random_state=0)
    est = lc.MatrixCompletion(center="biases", **kw)
    out = est.fit_transform(X)
    assert est.result_.status == "converged"
    assert np.linalg.norm(out - M) / np.linalg.norm(M) < 1e-8
    Lc, mu, b, c = _gauged_truth(M, L)
    F, G = est.row_factors_, est.components_.T
    np.testing.assert_allclose(F.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(G.mean(0), 0.0, atol=1e-12)
    assert np.abs(F @ G.T - Lc).max() < 1e-7
    assert est.intercept_ == pytest.approx(mu, abs=1e-8)
    np.testing.assert_allclose(est.row_bias_, b, atol=1e-7)
    np.testing.assert_allclose(est.col_bias_, c, atol=1e-7)
    rows, cols = np.nonzero(~mask)
    np.testing.assert_allclose(est.predict(rows, cols), M[rows, cols], atol=1e-7)
    assert est.score((rows, cols, M[rows, cols])) > -1e-7
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(rows, cols), est.predict(rows, cols))
    assert est.bias_cg_[1] > 0 and est.bias_cg_[0] >= est.bias_cg_[1]
    # the same rank without the biases cannot fit M (rank 5), nor with the mean alone
    for center in (False, True):
        other = lc.MatrixCompletion(center=center, **kw).fit_transform(X)
        assert np.linalg.norm(other - M) / np.linalg.norm(M) > 1e-2


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_fold_in_fits_the_new_rows_bias_like_lstsq(reg):
    M, L, mask = _biased_low_rank(seed=1)
    rng = np.random.default_rng(2)
    X = np.where(mask, M + 0.1 * rng.standard_normal(M.shape), np.nan)
    est = lc.MatrixCompletion(rank=3, center="biases", reg=reg, max_iter=30,
                              random_state=0).fit(X)
    G, mu, c = est.components_.T, est.intercept_, est.col_bias_
    new = rng.standard_normal((6, 40)) + 5.0
    new[rng.random(new.shape) < 0.6] = np.nan
    new[2, :] = np.nan                   # no observations: factor and bias 0
    new[3, :] = np.nan
    new[3, [4, 9, 11]] = [1.0, 2.0, 4.0]  # 3 < k + 1 observations: minimal norm
    out, Fn, bn = est.fold_in(new, return_factors=True)
    assert Fn.shape == (6, 3) and bn.shape == (6,)
    for i in range(new.shape[0]):
        obs = ~np.isnan(new[i])
        A = np.hstack([G[obs], np.ones((obs.sum(), 1))])
        t = new[i, obs] - mu - c[obs]
        if reg:
            A = np.vstack([A, np.hstack([np.sqrt(reg) * np.eye(3), np.zeros((3, 1))])])
            t = np.concatenate([t, np.zeros(3)])
        ref = np.linalg.lstsq(A, t, rcond=None)[0] if obs.any() else np.zeros(4)
        np.testing.assert_allclose(Fn[i], ref[:3], rtol=1e-9, atol=1e-10)
        assert bn[i] == pytest.approx(ref[3], rel=1e-9, abs=1e-10)
        np.testing.assert_array_equal(out[i, obs], new[i, obs])
        full = Fn[i] @ G.T + mu + bn[i] + c
        np.testing.assert_allclose(out[i, ~obs], full[~obs], rtol=1e-12)
    np.testing.assert_allclose(est.predict(new), Fn @ G.T + mu + bn[:, None] + c,
                               rtol=1e-12)


def test_transform_of_the_training_rows_is_the_fit_at_convergence():
    M, L, mask = _biased_low_rank(seed=3)
    X = np.where(mask, M + 0.05 * np.random.default_rng(4).standard_normal(M.shape), np.nan)
    est = lc.MatrixCompletion(rank=3, center="biases", reg=1.0, tol=1e-13, max_iter=3000,
                              random_state=0)
    fitted = est.fit_transform(X)
    assert est.result_.status == "converged"
    np.testing.assert_allclose(est.transform(X), fitted, rtol=1e-8, atol=1e-8)
    _, _, bn = est.fold_in(X, return_factors=True)
    np.testing.assert_allclose(bn, est.row_bias_, atol=1e-7)


def test_validation_rmse_includes_the_biases():
    M, L, mask = _biased_low_rank(seed=5)
    rng = np.random.default_rng(6)
    X = np.where(mask, M + 0.3 * rng.standard_normal(M.shape), np.nan)
    est = lc.MatrixCompletion(rank=3, center="biases", method="scaledgd",
                              validation_fraction=0.2, n_iter_no_change=5, max_iter=200,
                              random_state=0).fit(X)
    vr, vc, vv = est.validation_entries_
    F, G = est.row_factors_, est.components_.T
    pred = np.einsum("ij,ij->i", F[vr], G[vc]) + est.intercept_ + est.row_bias_[vr] \
        + est.col_bias_[vc]
    rmse = np.sqrt(np.mean((pred - vv) ** 2))
    assert rmse == pytest.approx(est.validation_rmse_, rel=1e-10)
    assert rmse == pytest.approx(np.nanmin(est.history_["validation_rmse"]), rel=1e-10)
    assert rmse < 0.5          # noise 0.3; a fit without biases is far worse
    plain = lc.MatrixCompletion(rank=3, method="scaledgd", validation_fraction=0.2,
                                n_iter_no_change=5, max_iter=200, random_state=0).fit(X)
    assert plain.validation_rmse_ > 2 * rmse


def test_disconnected_observations_warn_and_float32():
    M, L, mask = _biased_low_rank(seed=7)
    mask[:30, 20:] = False
    mask[30:, :20] = False              # two blocks: two components
    X = np.where(mask, M, np.nan)
    with pytest.warns(RuntimeWarning, match="2 connected components"):
        lc.MatrixCompletion(rank=2, center="biases", max_iter=3).fit(X)
    X32 = np.where(_biased_low_rank(seed=8)[2], M, np.nan).astype(np.float32)
    est = lc.MatrixCompletion(rank=3, center="biases", max_iter=200, random_state=0)
    out = est.fit_transform(X32)
    assert out.dtype == np.float32 and est.row_bias_.dtype == np.float32
    assert np.linalg.norm(out - M) / np.linalg.norm(M) < 1e-4


# ------------------------------------------------------- the ALS fast path (augmented rows)
def _kernel_args(rows, cols, n_rows, G, dtype=np.float64):
    from lowrank_core import _kernels, _steps
    from lowrank_core.methods.als import _Grouping, _row_bounds
    als = _kernels.load("_als")
    g = _Grouping(rows.astype(np.int32), cols.astype(np.int32), n_rows, np.int32)
    bounds = _row_bounds(g.ptr, 2)
    K = G.shape[1]
    lwork = int(_steps.eigen_workspace_size(K, dtype))
    work = np.empty((bounds.shape[0] - 1, als.scratch_size(K, lwork)), dtype)
    return als, g, bounds, lwork, work


@pytest.mark.parametrize("blocked", [True, False])
def test_row_kernel_unpenalized_last_column_matches_lstsq(blocked):
    rng = np.random.default_rng(11)
    n_rows, n_cols, k, lam = 40, 30, 4, 0.8
    mask = rng.random((n_rows, n_cols)) < 0.4
    mask[5] = False                      # empty row: 0
    mask[6] = False
    mask[6, [1, 2]] = True               # 2 < k + 1 observations: still solvable (lam > 0)
    rows, cols = np.nonzero(mask)
    order = rng.permutation(rows.size)   # unsorted entries: the kernel's pos indirection
    rows, cols = rows[order], cols[order]
    y = rng.standard_normal(rows.size)
    G = np.hstack([rng.standard_normal((n_cols, k)), np.ones((n_cols, 1))])
    als, g, bounds, lwork, work = _kernel_args(rows, cols, n_rows, G)
    F = np.full((n_rows, k + 1), np.nan)
    rcond = 10.0 * (k + 1) * np.finfo(float).eps
    als.solve_rows(g.ptr, g.idx, g.pos, g.has_pos, y, G, F, 1.0, lam, rcond, work,
                   bounds, lwork, blocked, 1)
    pen = np.hstack([np.sqrt(lam) * np.eye(k), np.zeros((k, 1))])   # bias not penalized
    for i in range(n_rows):
        sel = rows == i
        if not sel.any():
            np.testing.assert_array_equal(F[i], 0.0)
            continue
        A = np.vstack([G[cols[sel]], pen])
        ref = np.linalg.lstsq(A, np.concatenate([y[sel], np.zeros(k)]), rcond=None)[0]
        np.testing.assert_allclose(F[i], ref, rtol=1e-10, atol=1e-12)
    # n_unpenalized=0 (the default) is the plain ridge, bit for bit
    F0, F1 = np.empty_like(F), np.empty_like(F)
    als.solve_rows(g.ptr, g.idx, g.pos, g.has_pos, y, G, F0, 1.0, lam, rcond, work,
                   bounds, lwork, blocked)
    als.solve_rows(g.ptr, g.idx, g.pos, g.has_pos, y, G, F1, 1.0, lam, rcond, work,
                   bounds, lwork, blocked, 0)
    np.testing.assert_array_equal(F0, F1)
    sel = rows == 0
    ref = np.linalg.lstsq(np.vstack([G[cols[sel]], np.sqrt(lam) * np.eye(k + 1)]),
                          np.concatenate([y[sel], np.zeros(k + 1)]), rcond=None)[0]
    np.testing.assert_allclose(F0[0], ref, rtol=1e-10)
    with pytest.raises(ValueError, match="n_unpenalized"):
        als.solve_rows(g.ptr, g.idx, g.pos, g.has_pos, y, G, F1, 1.0, lam, rcond, work,
                       bounds, lwork, blocked, k + 2)


def _objective_and_gradient(est, rows, cols, values, reg):
    """The biased objective 1/2 ||F_i.G_j + mu + b_i + c_j - x||^2 + reg/2 (||F||^2 +
    ||G||^2) and the norm of its gradient in (F, G, b, c), in numpy."""
    F, G = est.row_factors_, est.components_.T
    r = np.einsum("ij,ij->i", F[rows], G[cols]) + est.intercept_ + est.row_bias_[rows] \
        + est.col_bias_[cols] - values
    obj = 0.5 * r @ r + 0.5 * reg * (np.sum(F * F) + np.sum(G * G))
    gF = np.zeros_like(F)
    np.add.at(gF, rows, r[:, None] * G[cols])
    gG = np.zeros_like(G)
    np.add.at(gG, cols, r[:, None] * F[rows])
    gF += reg * F
    gG += reg * G
    gb = np.bincount(rows, r, minlength=F.shape[0])
    gc = np.bincount(cols, r, minlength=G.shape[0])
    grad = np.sqrt(sum(np.sum(a * a) for a in (gF, gG, gb, gc)))
    return obj, grad


@pytest.mark.parametrize("reg,noise", [(0.0, 0.0), (0.5, 0.2)])
def test_als_fast_path_matches_the_projected_path(monkeypatch, reg, noise):
    import lowrank_core.estimator as estimator
    M, L, mask = _biased_low_rank(seed=9)
    rng = np.random.default_rng(10)
    X = np.where(mask, M + noise * rng.standard_normal(M.shape), np.nan)
    rows, cols = np.nonzero(mask)
    kw = dict(rank=3, method="als", reg=reg, tol=1e-12, max_iter=3000, random_state=0)
    fast = lc.MatrixCompletion(center="biases", **kw).fit(X)
    assert fast.result_.options.get("biases_fast_path") is True
    monkeypatch.setattr(estimator, "_FAST_BIASES_ALS", False)
    slow = lc.MatrixCompletion(center="biases", **kw).fit(X)
    assert "biases_fast_path" not in slow.result_.options
    assert fast.result_.status == slow.result_.status == "converged"
    # same model on every entry, same documented gauge
    allr, allc = np.nonzero(np.ones(M.shape, bool))
    scale = np.abs(M).max()
    np.testing.assert_allclose(fast.predict(allr, allc), slow.predict(allr, allc),
                               rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(fast.row_factors_ @ fast.components_,
                               slow.row_factors_ @ slow.components_, rtol=0,
                               atol=1e-8 * scale)
    np.testing.assert_allclose(fast.row_factors_.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(fast.components_.mean(1), 0.0, atol=1e-12)
    assert fast.intercept_ == pytest.approx(slow.intercept_, abs=1e-8 * scale)
    np.testing.assert_allclose(fast.row_bias_, slow.row_bias_, atol=1e-8 * scale)
    np.testing.assert_allclose(fast.col_bias_, slow.col_bias_, atol=1e-8 * scale)
    assert abs(fast.row_bias_.mean()) < 1e-12 and abs(fast.col_bias_.mean()) < 1e-12
    # the same optimum of the objective, stationary (numpy gradient)
    values = X[rows, cols]
    of, gf = _objective_and_gradient(fast, rows, cols, values, reg)
    os_, gs = _objective_and_gradient(slow, rows, cols, values, reg)
    assert of == pytest.approx(os_, rel=1e-9, abs=1e-12)
    assert gf < 1e-6 * np.linalg.norm(values) and gs < 1e-6 * np.linalg.norm(values)
    if noise == 0.0:
        assert np.abs(fast.predict(allr, allc) - M.ravel()).max() < 1e-7
    hist = fast.history_
    assert hist["iteration"][-1] == fast.n_iter_ and len(hist["loss"]) == fast.n_iter_ + 1
    assert hist["loss"][-1] == pytest.approx(of, rel=1e-9)
    # the fold-in of the training rows reproduces the fitted row factors and biases
    _, Fn, bn = fast.fold_in(X, return_factors=True)
    np.testing.assert_allclose(Fn @ fast.components_, fast.row_factors_ @ fast.components_,
                               atol=1e-7 * scale)


def test_als_fast_path_validation_early_stopping():
    M, L, mask = _biased_low_rank(seed=5)
    rng = np.random.default_rng(6)
    X = np.where(mask, M + 0.3 * rng.standard_normal(M.shape), np.nan)
    kw = dict(rank=3, center="biases", method="als", validation_fraction=0.2,
              n_iter_no_change=3, max_iter=500, tol=1e-15, random_state=0)
    est = lc.MatrixCompletion(**kw).fit(X)
    assert est.result_.options.get("biases_fast_path") is True
    vr, vc, vv = est.validation_entries_
    rmse = np.sqrt(np.mean((est.predict(vr, vc) - vv) ** 2))
    assert rmse == pytest.approx(est.validation_rmse_, rel=1e-10)
    v = est.history_["validation_rmse"]
    assert rmse == pytest.approx(np.nanmin(v), rel=1e-10)
    assert est.result_.status == "early_stopped"
    assert est.n_iter_ - est.best_iteration_ == 3
    assert v[est.best_iteration_] == np.nanmin(v)
    assert rmse < 0.5
