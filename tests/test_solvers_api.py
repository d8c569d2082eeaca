"""solve(): input validation, stopping and statuses, interrupts, callbacks, divergence,
float32, history recording, initializations, and the result object."""

import sys
import warnings

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.driver import UnobservedAntisymmetryWarning
from lowrank_core.methods import METHODS


@pytest.fixture(scope="module")
def prob():
    return lc.make_problem(20, 16, rank=2, m=300, seed=0)


@pytest.fixture(scope="module")
def psd():
    return lc.make_problem(16, rank=2, m=300, psd=True, seed=1)


def solve(*args, **kwargs):
    kwargs.setdefault("n_threads", 1)
    return lc.solve(*args, **kwargs)


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(rank=0), ValueError, "rank"),
    (dict(rank=17), ValueError, "rank"),
    (dict(rank=2.0), TypeError, "rank"),
    (dict(method="newton"), ValueError, "'gd', 'onestep', 'scaledgd'"),
    (dict(symmetric=True), ValueError, "square"),
    (dict(step=0.0), ValueError, "step"),
    (dict(step=-1.0), ValueError, "step"),
    (dict(tol=0.0), ValueError, "tol"),
    (dict(tol=float("nan")), ValueError, "tol"),
    (dict(max_iter=-1), ValueError, "max_iter"),
    (dict(max_time=0), ValueError, "max_time"),
    (dict(init="zeros"), ValueError, "init"),
    (dict(init=(np.zeros((20, 3)), np.zeros((16, 2)))), ValueError, "init[0]"),
    (dict(init=(np.zeros((20, 2)), np.zeros((15, 2)))), ValueError, "init[1]"),
    (dict(init=(np.zeros((20, 2), np.float32), np.zeros((16, 2)))), TypeError, "float32"),
    (dict(init=np.zeros((20, 2))), ValueError, "pair"),
    (dict(init_scale=-1.0), ValueError, "init_scale"),
    (dict(init="spectral", init_scale=0.1), ValueError, "init_scale"),
    (dict(method="precgd", damping="huge"), ValueError, "damping"),
    (dict(method="gd", damping=1.0), TypeError, "damping"),
    (dict(record=["loss", "speed"]), ValueError, "speed"),
    (dict(record=["error"]), ValueError, "truth"),
    (dict(record={"every": 0}), ValueError, "every"),
    (dict(callback=3), TypeError, "callback"),
    (dict(truth=(np.ones((20, 2)), np.ones((15, 2)))), ValueError, "truth"),
    (dict(seed="x"), TypeError, "seed"),
    (dict(n_threads=0), ValueError, "n_threads"),
])
def test_bad_input(prob, kwargs, exc, word):
    kwargs = {"rank": 2, "max_iter": 2, **kwargs}
    rank = kwargs.pop("rank")
    with pytest.raises(exc) as info:
        solve(prob.operator, prob.y, rank, **kwargs)
    assert word in str(info.value), str(info.value)


def test_bad_measurements(prob, psd):
    with pytest.raises(ValueError, match="y must have shape"):
        solve(prob.operator, prob.y[:-1], 2)
    y = prob.y.copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match="y contains 1 NaN"):
        solve(prob.operator, y, 2)
    with pytest.raises(TypeError, match="y has dtype float32"):
        solve(prob.operator, prob.y.astype(np.float32), 2)
    with pytest.raises(TypeError, match="operator"):
        solve(np.eye(3), prob.y, 2)
    for method in ("onestep", "agn"):
        with pytest.raises(ValueError, match="symmetric=False"):
            solve(psd.operator, psd.y, 2, method=method, symmetric=True)
    with pytest.raises(ValueError, match="single number"):
        solve(psd.operator, psd.y, 2, symmetric=True, init_scale=(0.1, 0.2))
    with pytest.raises(ValueError, match="one array X"):
        solve(psd.operator, psd.y, 2, symmetric=True, init=(np.ones((16, 2)),) * 2)


def test_methods_table_is_complete():
    assert set(METHODS) == {"gd", "onestep", "scaledgd", "scaledgd-lambda", "precgd", "agn",
                            "gnmr", "als", "softimpute_als"}


# ------------------------------------------------------------- statuses, stopping
def test_converged_and_max_iter(prob):
    res = solve(prob.operator, prob.y, 2, method="precgd", truth=prob, tol=1e-9, seed=0)
    assert res.status == "converged" and res.residual <= 1e-9
    assert res.history.residual[-1] == res.residual
    assert "converged" in res.message
    res = solve(prob.operator, prob.y, 2, max_iter=7, seed=0)
    assert res.status == "max_iter" and res.n_iter == 7
    np.testing.assert_array_equal(res.history.iteration, np.arange(8))
    res0 = solve(prob.operator, prob.y, 2, max_iter=0, seed=0)
    assert res0.n_iter == 0 and res0.status == "max_iter"
    np.testing.assert_array_equal(res0.F, res.history and solve(
        prob.operator, prob.y, 2, max_iter=0, seed=0).F)


def test_max_time(prob):
    res = solve(prob.operator, prob.y, 2, max_iter=10**9, tol=1e-300, max_time=0.05, seed=0,
                stall_tol=0)  # the stalled-progress stop would end it first
    assert res.status == "max_time"
    assert 0.05 <= res.time < 5
    assert res.n_iter == res.history.iteration[-1] > 0


def test_callback_receives_intermediate_and_stops(prob):
    seen = []

    def cb(intermediate):
        assert intermediate.status == "running"
        seen.append((intermediate.n_iter, intermediate.F.copy(), intermediate.loss,
                     intermediate.error))
        intermediate.F[:] = 0.0  # a copy: must not disturb the run
        if intermediate.n_iter == 5:
            raise StopIteration

    res = solve(prob.operator, prob.y, 2, truth=prob, callback=cb, seed=0)
    ref = solve(prob.operator, prob.y, 2, truth=prob, max_iter=5, seed=0)
    assert res.status == "callback" and res.n_iter == 5
    assert [s[0] for s in seen] == list(range(6))
    np.testing.assert_array_equal(res.F, ref.F)
    np.testing.assert_array_equal(seen[-1][1], ref.F)
    np.testing.assert_array_equal(res.history.loss, ref.history.loss)
    assert seen[-1][2] == ref.loss and seen[-1][3] == ref.error


def test_keyboard_interrupt_returns_partial_result(prob):
    def cb(intermediate):
        if intermediate.n_iter == 4:
            raise KeyboardInterrupt

    for method in ("gd", "agn", "precgd"):
        res = solve(prob.operator, prob.y, 2, method=method, truth=prob, callback=cb, seed=0)
        ref = solve(prob.operator, prob.y, 2, method=method, truth=prob, max_iter=4, seed=0)
        assert res.status == "interrupted" and res.n_iter == 4
        assert "interrupted" in res.message
        np.testing.assert_array_equal(res.F, ref.F)
        np.testing.assert_array_equal(res.G, ref.G)
        assert len(res.history.loss) == 5
        np.testing.assert_array_equal(res.history.error, ref.history.error)


def test_interrupt_inside_a_step(prob, monkeypatch):
    """Ctrl-C while the step rule runs: the current iterate is intact and returned."""
    rule = METHODS["precgd"]
    calls = {"n": 0}
    original = rule.step

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 3:
            self.state.F_next[:] = np.nan  # half-written next iterate
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(rule, "step", flaky)
    res = solve(prob.operator, prob.y, 2, method="precgd", truth=prob, seed=0)
    monkeypatch.undo()
    ref = solve(prob.operator, prob.y, 2, method="precgd", truth=prob, max_iter=2, seed=0)
    assert res.status == "interrupted" and res.n_iter == 2
    np.testing.assert_array_equal(res.F, ref.F)
    assert res.loss == ref.loss


@pytest.mark.parametrize("step", [50.0, 1e30])
def test_divergence_keeps_last_finite_iterate(prob, step):
    with np.errstate(all="ignore"):
        res = solve(prob.operator, prob.y, 2, step=step, init_scale=0.5, max_iter=10**6,
                    truth=prob, seed=0)
    assert res.status == "diverged" and "diverged" in res.message
    assert res.n_iter < 100
    assert np.isfinite(res.F).all() and np.isfinite(res.G).all()
    assert np.isfinite(res.loss)
    h = res.history
    assert h.iteration[-1] == res.n_iter
    assert np.isfinite(h.loss).all() and np.isfinite(h.error).all()
    # the returned factors are the iterate the history's last entry describes
    z = prob.operator.forward_factored(res.F, res.G) - prob.y
    np.testing.assert_allclose(0.5 * z @ z, h.loss[-1], rtol=1e-10)


def test_float32_stays_float32():
    p32 = lc.make_problem(20, rank=2, m=400, dtype=np.float32, seed=2)
    for method, symmetric in (("gd", False), ("precgd", False), ("agn", False)):
        res = solve(p32.operator, p32.y, 2, method=method, symmetric=symmetric, truth=p32,
                    seed=0, max_iter=2000)
        assert res.F.dtype == np.float32 and res.G.dtype == np.float32
        assert res.status == "converged", res.message
        assert res.error < 1e-4
        assert res.history.loss.dtype == np.float64
    p32 = lc.make_problem(16, rank=2, m=300, psd=True, dtype=np.float32, seed=2)
    res = solve(p32.operator, p32.y, 2, method="scaledgd", symmetric=True, init="spectral",
                truth=p32)
    assert res.X.dtype == np.float32 and res.error < 1e-4


# ------------------------------------------------------------------- recording
def test_record_selection_and_thinning(prob):
    res = solve(prob.operator, prob.y, 2, truth=prob, max_iter=25, seed=0,
                record={"metrics": ["loss", "error"], "every": 10})
    assert set(res.history) == {"iteration", "loss", "error", "step"}
    np.testing.assert_array_equal(res.history.iteration, [0, 10, 20, 25])
    full = solve(prob.operator, prob.y, 2, truth=prob, max_iter=25, seed=0)
    assert set(full.history) == {"iteration", "loss", "residual", "error", "imbalance",
                                 "tail_sv", "grad_norm", "time", "step"}
    np.testing.assert_array_equal(full.history.step[[0, 10, 20, 25]], res.history.step)
    np.testing.assert_array_equal(full.history.loss[[0, 10, 20, 25]], res.history.loss)
    none = solve(prob.operator, prob.y, 2, max_iter=25, seed=0, record=False)
    assert set(none.history) == {"iteration", "step"}
    assert list(none.history.iteration) == [25] and np.isnan(none.history.step[0])
    sym = solve(lc.make_problem(16, rank=2, m=300, psd=True, seed=1).operator,
                lc.make_problem(16, rank=2, m=300, psd=True, seed=1).y, 2, symmetric=True,
                max_iter=3)
    assert "imbalance" not in sym.history


def test_history_metrics_match_direct_computation(prob):
    res = solve(prob.operator, prob.y, 3, method="scaledgd-lambda", truth=prob, max_iter=6,
                seed=0)
    F, G = res.F, res.G
    L, R = prob.truth_factors
    M = L @ R.T
    h = res.history
    z = prob.operator.forward_factored(F, G) - prob.y
    S = prob.operator.adjoint(z)
    assert np.isclose(h.loss[-1], 0.5 * z @ z, rtol=1e-12)
    assert np.isclose(h.residual[-1], np.linalg.norm(z) / np.linalg.norm(prob.y), rtol=1e-12)
    assert np.isclose(h.error[-1], np.linalg.norm(F @ G.T - M) / np.linalg.norm(M),
                      rtol=1e-10)
    assert np.isclose(h.imbalance[-1], np.linalg.norm(F.T @ F - G.T @ G), rtol=1e-10)
    assert np.isclose(h.tail_sv[-1], np.linalg.svd(F @ G.T, compute_uv=False)[2],
                      rtol=1e-8)
    assert np.isclose(h.grad_norm[-1], np.hypot(np.linalg.norm(S @ G),
                                                np.linalg.norm(S.T @ F)), rtol=1e-10)
    assert np.all(np.diff(h.time) >= 0)
    # truth as (L, R) and as a dense array give the same error history
    for truth in ((L, R), M):
        other = solve(prob.operator, prob.y, 3, method="scaledgd-lambda", truth=truth,
                      max_iter=6, seed=0)
        np.testing.assert_allclose(other.history.error, h.error, rtol=1e-9)
        np.testing.assert_allclose(other.history.tail_sv, h.tail_sv, rtol=1e-8, atol=1e-14)


def test_result_object(prob):
    res = solve(prob.operator, prob.y, 2, truth=prob, max_iter=3, seed=0)
    assert res["status"] is res.status and res["F"] is res.F
    np.testing.assert_allclose(res.matrix(), res.F @ res.G.T)
    assert res.factors[0] is res.F
    text = repr(res)
    for key in ("method", "status", "message", "n_iter", "F", "G", "residual", "error",
                "history", "options"):
        assert f"{key}:" in text
    assert text.index("status:") < text.index("n_iter:") < text.index("history:")
    assert res.options["step"] == "auto" and res.options["method"] == "gd"
    assert "status" in dir(res)
    with pytest.raises(AttributeError):
        _ = res.nonexistent
    assert set(lc.results.STATUSES) >= {"converged", "max_iter", "max_time", "diverged",
                                        "interrupted", "callback"}


# ------------------------------------------------------------------ defaults
def test_default_steps_and_damping_come_from_the_data(prob):
    sigma = np.linalg.norm(prob.operator.adjoint(prob.y), 2)
    assert solve(prob.operator, prob.y, 2, max_iter=1).options["step"] == "auto"
    res = solve(prob.operator, prob.y, 2, max_iter=1, step="fixed")
    assert np.isclose(res.options["step"], 0.3 / sigma, rtol=1e-10)
    res = solve(prob.operator, prob.y, 2, method="scaledgd-lambda", max_iter=1, step="fixed")
    assert np.isclose(res.options["damping"], 0.01 * sigma, rtol=1e-10)
    assert res.options["step"] == 0.5
    for method, step in (("scaledgd", 0.5), ("precgd", 0.5), ("agn", 0.5)):
        assert solve(prob.operator, prob.y, 2, method=method, max_iter=1,
                     step="fixed").options["step"] == step


# ------------------------------------------------------------ initializations
def test_small_init_scales(prob):
    res = solve(prob.operator, prob.y, 2, init_scale=(0.3, 0.1), max_iter=0, seed=5)
    rng = np.random.default_rng(5)
    np.testing.assert_allclose(res.F, rng.standard_normal((20, 2)) * 0.3 / np.sqrt(20))
    np.testing.assert_allclose(res.G, rng.standard_normal((16, 2)) * 0.1 / np.sqrt(16))
    res = solve(prob.operator, prob.y, 2, init="small", max_iter=0, seed=5)
    np.testing.assert_allclose(res.F, np.random.default_rng(5).standard_normal((20, 2))
                               * 1e-3 / np.sqrt(20))
    # init=None: asymmetric gd's own start scale (issue 18), 0.7
    res = solve(prob.operator, prob.y, 2, max_iter=0, seed=5)
    np.testing.assert_allclose(res.F, np.random.default_rng(5).standard_normal((20, 2))
                               * 0.7 / np.sqrt(20))


def test_spectral_init_is_the_truncated_svd(prob, psd):
    S = prob.operator.adjoint(prob.y)
    U, s, Vt = np.linalg.svd(S)
    res = solve(prob.operator, prob.y, 3, init="spectral", max_iter=0)
    np.testing.assert_allclose(res.matrix(), (U[:, :3] * s[:3]) @ Vt[:3], atol=1e-12)
    np.testing.assert_allclose(res.F.T @ res.F, np.diag(s[:3]), atol=1e-12)
    Ssym = psd.operator.adjoint(psd.y)
    w, V = np.linalg.eigh(Ssym)
    res = solve(psd.operator, psd.y, 2, symmetric=True, init="spectral", max_iter=0)
    np.testing.assert_allclose(res.matrix(), (V[:, -2:] * w[-2:]) @ V[:, -2:].T, atol=1e-12)


def test_spectral_init_uses_operator_spectral_operator(prob):
    class Debiased:
        """A duck-typed operator that provides its own spectral LinearOperator."""

        def __init__(self, op):
            self._op = op
            self.shape, self.m, self.dtype = op.shape, op.m, op.dtype
            self.called = False

        def residual_gradient(self, F, G, y, *, out=None):
            return self._op.residual_gradient(F, G, y, out=out)

        def forward_factored(self, F, G):  # the line search's passes
            return self._op.forward_factored(F, G)

        def adjoint_operator(self, z):
            return self._op.adjoint_operator(z)

        def spectral_operator(self, y):
            self.called = True
            return self._op.adjoint_operator(y)

    op = Debiased(prob.operator)
    res = solve(op, prob.y, 2, init="spectral", max_iter=3)
    assert op.called
    assert res.n_evaluations == 4 and res.status == "max_iter"
    del Debiased.forward_factored  # step="auto" needs it; a fixed step does not
    with pytest.raises(TypeError, match="forward_factored"):
        solve(op, prob.y, 2, init="spectral", max_iter=3)
    assert solve(op, prob.y, 2, init="spectral", max_iter=3, step="fixed").n_iter == 3


def test_nystrom_init(prob, psd):
    res = solve(prob.operator, prob.y, 3, init="nystrom", max_iter=0, seed=8)
    Omega = np.random.default_rng(8).standard_normal((16, 3)) / np.sqrt(3)
    np.testing.assert_allclose(res.F, prob.operator.adjoint(prob.y) @ Omega, atol=1e-12)
    assert not res.G.any()
    res = solve(psd.operator, psd.y, 3, symmetric=True, init="nystrom", max_iter=0, seed=8)
    Omega = np.random.default_rng(8).standard_normal((16, 3)) / np.sqrt(3)
    S = psd.operator.adjoint(psd.y)
    np.testing.assert_allclose(res.X, 0.5 * (S + S.T) @ Omega, atol=1e-12)
    # ScaledGD from Nystrom init on a PSD target converges
    res = solve(psd.operator, psd.y, 3, symmetric=True, method="precgd", init="nystrom",
                truth=psd, seed=8)
    assert res.status == "converged" and res.error < 1e-8


def test_array_init_and_warm_start(prob):
    first = solve(prob.operator, prob.y, 2, method="agn", max_iter=10, seed=0)
    both = solve(prob.operator, prob.y, 2, method="agn", max_iter=20, seed=0)
    warm = solve(prob.operator, prob.y, 2, method="agn", init=first, max_iter=10)
    np.testing.assert_array_equal(warm.F, both.F)
    arrays = solve(prob.operator, prob.y, 2, method="agn", init=(first.F, first.G),
                   max_iter=10)
    np.testing.assert_array_equal(arrays.F, both.F)
    assert not np.shares_memory(arrays.F, first.F)
    assert arrays.options["init"] == "array"


# --------------------------------------------------------------------- misc
def test_progress_bar_with_and_without_tqdm(prob, capsys, monkeypatch):
    solve(prob.operator, prob.y, 2, max_iter=5, progress=True)
    err = capsys.readouterr().err
    assert "residual=" in err
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    solve(prob.operator, prob.y, 2, max_iter=5, progress=True)
    err = capsys.readouterr().err
    assert "gd: iteration 5/5 residual=" in err


def test_n_threads_is_restored(prob):
    op = prob.operator
    before = op._n_threads_request
    lc.solve(op, prob.y, 2, max_iter=2, n_threads=1)
    assert op._n_threads_request == before


def test_n_threads_reaches_the_kernels_without_writing_the_operator(prob, monkeypatch):
    """solve(n_threads=1) on an operator set to 2 threads: its kernels see 1 during the
    solve (in the callback and in result.options), the operator is never assigned to,
    and afterwards its own setting is in force again."""
    op = lc.DenseOperator(prob.operator.matrices, n_threads=2)
    cls = type(op)
    prop = cls.n_threads

    def refuse(self, value):
        raise AssertionError("solve() assigned operator.n_threads")

    monkeypatch.setattr(cls, "n_threads", property(prop.fget, refuse))
    seen = []
    res = lc.solve(op, prob.y, 2, max_iter=3, n_threads=1,
                   callback=lambda r: seen.append(op.n_threads))
    assert seen == [1, 1, 1]
    assert res.options["n_threads"] == 1
    assert op.n_threads == 2
    # the same solve without n_threads runs on the operator's own 2 threads
    seen.clear()
    res = lc.solve(op, prob.y, 2, max_iter=1, callback=lambda r: seen.append(op.n_threads))
    assert seen == [2] and res.options["n_threads"] == 2


def test_asymmetric_run_on_symmetric_operator_warns(psd):
    with pytest.warns(UnobservedAntisymmetryWarning, match="antisymmetric"):
        solve(psd.operator, psd.y, 2, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve(psd.operator, psd.y, 2, symmetric=True, max_iter=2)
