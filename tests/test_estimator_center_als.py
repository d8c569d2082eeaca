"""MatrixCompletion(center=True, method="als"): the row-kernel path (F, G and the global
mean mu as three exact blocks) against the centered-operator path it replaces and
against the objective's gradient computed with plain numpy."""

import numpy as np
import pytest

import lowrank_core as lc


def _low_rank_plus_mean(seed, shape=(60, 45), r=3, p=0.35, mean=2.5):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((shape[0], r)) @ rng.standard_normal((r, shape[1])) + mean
    mask = rng.random(shape) < p
    return M, mask


def _objective_and_gradient(est, rows, cols, values, reg):
    """Objective 1/2 ||A(F G^T) + mu - y||^2 + reg/2 (||F||^2 + ||G||^2) and the norm of
    its gradient in (F, G, mu), plain numpy."""
    F, G, mu = est.row_factors_, est.components_.T, est.intercept_
    r = np.einsum("ij,ij->i", F[rows], G[cols]) + mu - values
    obj = 0.5 * r @ r + 0.5 * reg * (np.sum(F * F) + np.sum(G * G))
    gF = np.zeros_like(F)
    np.add.at(gF, rows, r[:, None] * G[cols])
    gG = np.zeros_like(G)
    np.add.at(gG, cols, r[:, None] * F[rows])
    gF += reg * F
    gG += reg * G
    gmu = r.sum()
    return obj, float(np.sqrt(np.sum(gF * gF) + np.sum(gG * gG) + gmu * gmu))


@pytest.mark.parametrize("reg,noise", [(0.0, 0.0), (0.5, 0.2)])
def test_center_als_fast_path_matches_the_centered_path(monkeypatch, reg, noise):
    import lowrank_core.estimator as estimator
    M, mask = _low_rank_plus_mean(seed=3)
    rng = np.random.default_rng(4)
    X = np.where(mask, M + noise * rng.standard_normal(M.shape), np.nan)
    rows, cols = np.nonzero(mask)
    values = X[rows, cols]
    kw = dict(rank=3, method="als", reg=reg, tol=1e-12, max_iter=3000, random_state=0)
    fast = lc.MatrixCompletion(center=True, **kw).fit(X)
    assert fast.result_.options.get("center_fast_path") is True
    monkeypatch.setattr(estimator, "_FAST_CENTER_ALS", False)
    slow = lc.MatrixCompletion(center=True, **kw).fit(X)
    assert "center_fast_path" not in slow.result_.options
    assert fast.result_.status == slow.result_.status == "converged"
    allr, allc = np.nonzero(np.ones(M.shape, bool))
    scale = np.abs(M).max()
    np.testing.assert_allclose(fast.predict(allr, allc), slow.predict(allr, allc),
                               rtol=0, atol=1e-6 * scale)
    assert fast.intercept_ == pytest.approx(slow.intercept_, abs=1e-6 * scale)
    # mu is the mean residual of the fitted factors (numpy)
    F, G = fast.row_factors_, fast.components_.T
    fitted = np.einsum("ij,ij->i", F[rows], G[cols])
    assert fast.intercept_ == pytest.approx(np.mean(values - fitted), abs=1e-12 * scale)
    # the same optimum, stationary for the joint objective in (F, G, mu)
    of, gf = _objective_and_gradient(fast, rows, cols, values, reg)
    os_, gs = _objective_and_gradient(slow, rows, cols, values, reg)
    assert of == pytest.approx(os_, rel=1e-8, abs=1e-10)
    assert gf < 1e-6 * np.linalg.norm(values) and gs < 1e-6 * np.linalg.norm(values)
    if noise == 0.0:   # exact recovery of low rank + mean
        assert np.abs(fast.predict(allr, allc) - M.ravel()).max() < 1e-6 * scale
    hist = fast.history_
    assert hist["iteration"][-1] == fast.n_iter_ and len(hist["loss"]) == fast.n_iter_ + 1
    assert hist["loss"][-1] == pytest.approx(of, rel=1e-9)
    assert np.all(np.diff(hist["loss"]) <= 1e-9 * hist["loss"][0])   # block descent


def test_center_als_fast_path_validation_early_stopping():
    M, mask = _low_rank_plus_mean(seed=5, p=0.3)
    rng = np.random.default_rng(6)
    X = np.where(mask, M + 0.3 * rng.standard_normal(M.shape), np.nan)
    est = lc.MatrixCompletion(rank=6, method="als", center=True, reg=0.0, max_iter=500,
                              tol=1e-15, validation_fraction=0.2, n_iter_no_change=3,
                              random_state=1).fit(X)
    assert est.result_.options.get("center_fast_path") is True
    vr, vc, vv = est.validation_entries_
    rmse = np.sqrt(np.mean((est.predict(vr, vc) - vv) ** 2))
    assert rmse == pytest.approx(est.validation_rmse_, rel=1e-10)
    v = est.history_["validation_rmse"]
    assert rmse == pytest.approx(np.nanmin(v), rel=1e-10)
    assert est.result_.status == "early_stopped"
    assert est.n_iter_ - est.best_iteration_ == 3


@pytest.mark.parametrize("center", [True, "biases"])
def test_verbose_prints_every_iteration_on_the_fast_paths(monkeypatch, capsys, center):
    """verbose=True on the row-kernel paths (center=True / "biases" with ALS): the
    progress display of solve (here its no-tqdm stderr line; a fake clock so that its
    0.5 s throttle lets every update through) shows iterations 0..n_iter_, each with
    the relative residual the fit records for it, the last one closed by a newline."""
    import sys
    import types

    import lowrank_core.recording as recording
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    ticks = iter(range(1000, 10 ** 6))
    monkeypatch.setattr(recording, "time", types.SimpleNamespace(
        perf_counter=lambda: float(next(ticks))))
    M, mask = _low_rank_plus_mean(seed=7)
    X = np.where(mask, M, np.nan)
    est = lc.MatrixCompletion(rank=3, center=center, reg=0.1, tol=1e-4, max_iter=30,
                              random_state=0, verbose=True).fit(X)
    assert est.result_.options["biases_fast_path" if center == "biases"
                                else "center_fast_path"]
    err = capsys.readouterr().err
    assert err.endswith("\n")
    lines = [x for x in err.rstrip("\n").split("\r") if x]
    n = est.n_iter_
    assert 3 <= n <= 30
    # updates 0..n, then the close line repeating iteration n
    assert [x.split()[2] for x in lines] == [f"{t}/30" for t in range(n + 1)] + [f"{n}/30"]
    assert all(x.startswith("als: iteration ") for x in lines)
    h = est.history_
    for t in range(1, n + 1):
        res_t = float(h["residual"][list(h["iteration"]).index(t)])
        assert lines[t].endswith(f"residual={res_t:.3e}")
    assert lines[-1].endswith(f"residual={est.result_.residual:.3e}")
    # verbose=False prints nothing
    lc.MatrixCompletion(rank=3, center=center, reg=0.1, tol=1e-4, max_iter=30,
                        random_state=0).fit(X)
    assert capsys.readouterr().err == ""
