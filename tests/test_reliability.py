"""Reproducers of reliability defects (each failed before its fix)."""

import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

import lowrank_core as lc
from lowrank_core.initialization import NORM_RTOL, top_singular_value
from lowrank_core.operators import sample_entries

# Child processes start outside the repository, so they import the installed package.
_OUTSIDE = __import__("tempfile").gettempdir()


def test_default_step_norm_never_forms_tall_completion_matrix():
    # A 10**6 x 300 completion problem: min(n1, n2) is small, but n1 * n2 is not. The
    # norm ||A^T(y)|| behind gd's default step once formed the dense 2.4 GB matrix.
    rng = np.random.default_rng(0)
    n1, n2, m = 10**6, 300, 10**5
    rows, cols = rng.integers(0, n1, m), rng.integers(0, n2, m)
    y = rng.standard_normal(m)
    op = lc.EntryOperator(rows, cols, (n1, n2))
    tracemalloc.start()
    try:
        sigma = top_singular_value(op.adjoint_operator(y), np.random.default_rng(1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    S = sp.coo_matrix((y, (rows, cols)), shape=(n1, n2)).tocsr()
    reference = svds(S, k=1, return_singular_vectors=False, random_state=0)[0]
    # the bounded estimate (NORM_RTOL = 1e-2 on its residual bound; an upper-biased
    # value if capped) instead of ARPACK to machine precision
    np.testing.assert_allclose(sigma, reference, rtol=NORM_RTOL)


def test_default_step_norm_small_operator_matches_dense_lapack():
    rng = np.random.default_rng(2)
    n1, n2, m = 40, 700, 3000   # wide: formed from the smaller (n1) side
    rows, cols = rng.integers(0, n1, m), rng.integers(0, n2, m)
    y = rng.standard_normal(m)
    op = lc.EntryOperator(rows, cols, (n1, n2))
    S = np.zeros((n1, n2))
    np.add.at(S, (rows, cols), y)
    sigma = top_singular_value(op.adjoint_operator(y), np.random.default_rng(3))
    np.testing.assert_allclose(sigma, np.linalg.norm(S, 2), rtol=1e-12)


def _concurrent_problems():
    kinds = {
        "entries": {"n1": 300, "n2": 200, "rank": 3, "m": 30_000, "operator": "entries"},
        "sparse": {"n1": 60, "n2": 50, "rank": 3, "m": 3000, "operator": "sparse"},
        "rank-one": {"n1": 40, "n2": 30, "rank": 2, "m": 1500, "operator": "rank-one"},
        "gaussian": {"n1": 20, "n2": 15, "rank": 2, "m": 600, "operator": "gaussian"},
    }
    return kinds


@pytest.mark.parametrize("kind", sorted(_concurrent_problems()))
def test_one_operator_solved_from_two_threads_gives_serial_results(kind):
    # Two solves sharing one operator object from a ThreadPoolExecutor must give the same
    # iterates as the same solves run one after the other (the completion operator's
    # scratch buffers were shared between concurrent calls: wrong losses and products).
    spec = dict(_concurrent_problems()[kind])
    problem = lc.make_problem(spec.pop("n1"), spec.pop("n2"), seed=0, **spec)
    rank = spec["rank"]

    def run(seed):
        return lc.solve(problem.operator, problem.y, rank=rank, method="precgd",
                        init="spectral", step=0.5, max_iter=30, seed=seed, record=False)

    serial = [run(s) for s in (1, 2, 3, 4)]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            concurrent = list(pool.map(run, (1, 2, 3, 4)))
            for a, b in zip(serial, concurrent):
                np.testing.assert_array_equal(a.F, b.F)
                np.testing.assert_array_equal(a.G, b.G)
                assert a.loss == b.loss


# ------------------------------------------------ item 2: a bad index must not OOM-kill
def _run_limited(code: str, limit_gib: float = 3.0, timeout: float = 120.0):
    """Run ``code`` in a fresh interpreter under an address-space limit of ``limit_gib``.

    Before the up-front size checks the constructors below asked numpy for 16 GiB arrays
    (SIGKILLed by the OOM killer without a limit; a bare numpy "Unable to allocate" error
    naming no argument under one). The child prints the exception type and message.
    """
    import subprocess
    import sys
    import textwrap
    prelude = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({int(limit_gib * 2**30)}, {int(limit_gib * 2**30)}))
        import numpy as np
        import lowrank_core as lc
        try:
    """)
    body = textwrap.indent(textwrap.dedent(code), "    ")
    tail = textwrap.dedent("""
            print("NO ERROR")
        except Exception as exc:
            print(type(exc).__name__ + ": " + str(exc))
    """)
    proc = subprocess.run([sys.executable, "-c", prelude + body + tail], check=False, cwd=_OUTSIDE,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


_HUGE_INDEX_CASES = {
    # (constructor code, words the message must contain: the argument and the fix)
    "sparse-meas": (("lc.SparseOperator((np.array([0, 2**31 + 5]), np.array([0, 1]), "
                    "np.array([0, 1]), np.ones(2)), (2, 2))"), ("ValueError", "meas", "m=")),
    "sparse-explicit-m": (("lc.SparseOperator((np.array([0, 2**31 + 5]), np.array([0, 1]), "
                          "np.array([0, 1]), np.ones(2)), (2, 2), m=2**31 + 6)"),
                          ("MemoryError", "m=2,147,483,654", "available")),
    "entries-shape": ("lc.EntryOperator([0], [0], (2**31, 1))",
                      ("MemoryError", "shape=(2,147,483,648, 1)", "available")),
    "sparse-shape": (("lc.SparseOperator((np.array([0]), np.array([0]), np.array([0]), "
                     "np.ones(1)), (2**31, 2))"),
                     ("MemoryError", "shape=(2,147,483,648, 2)", "available")),
    "make-problem-entries": ("lc.make_problem(2**31, 4, rank=1, m=10, operator='entries')",
                             ("MemoryError", "2,147,483,648 x 4", "smaller shape")),
    "make-problem-sparse-m": ("lc.make_problem(50, 50, rank=1, m=2**28, operator='sparse')",
                              ("MemoryError", "m=268,435,456", "available")),
    "make-problem-rank-one-m": (("lc.make_problem(300, 300, rank=1, m=2**21, "
                                "operator='rank-one')"),
                                ("MemoryError", "m=2,097,152", "available")),
}


@pytest.mark.parametrize("case", sorted(_HUGE_INDEX_CASES))
def test_huge_index_or_shape_is_refused_before_allocating(case):
    code, words = _HUGE_INDEX_CASES[case]
    line = _run_limited(code)
    for word in words:
        assert word in line, line


def test_cli_tiny_npz_with_huge_shape_is_refused_naming_the_file(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "huge.npz"
    np.savez(path, kind="entries", rows=np.array([0]), cols=np.array([0]),
             shape=np.array([2**31, 1]), y=np.ones(1))
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))\n"
            "from lowrank_core.cli import main\n"
            f"sys.exit(main(['solve', {str(path)!r}, '--out', {str(tmp_path / 'o.npz')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          cwd=_OUTSIDE,
                          text=True, timeout=120)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert str(path) in proc.stderr and "available" in proc.stderr, proc.stderr
    assert not (tmp_path / "o.npz").exists()


def test_size_checks_leave_legitimate_operators_alone():
    # Same shapes and indices at a sane size build and measure exactly as numpy does.
    rng = np.random.default_rng(5)
    meas, rows, cols = np.array([0, 3, 3]), np.array([0, 1, 1]), np.array([1, 0, 1])
    vals = rng.standard_normal(3)
    op = lc.SparseOperator((meas, rows, cols, vals), (2, 2))   # m = 4 <= 2 nnz: allowed
    M = rng.standard_normal((2, 2))
    expected = np.zeros(4)
    np.add.at(expected, meas, vals * M[rows, cols])
    np.testing.assert_allclose(op.forward(M), expected, rtol=1e-15)
    with pytest.raises(ValueError, match="pass m="):
        lc.SparseOperator((np.array([0, 9]), rows[:2], cols[:2], vals[:2]), (2, 2))
    op10 = lc.SparseOperator((np.array([0, 9]), rows[:2], cols[:2], vals[:2]), (2, 2), m=10)
    assert op10.m == 10 and op10.forward(M)[5] == 0.0


# ------------------------------------------- item 5: interrupts and the partial result
def _small_problem():
    return lc.make_problem(30, 20, rank=2, m=400, seed=3)


def _solve_catching_interrupt(*args, **kwargs):
    """solve(), failing the test (not aborting the pytest session) if Ctrl-C escapes."""
    try:
        return lc.solve(*args, **kwargs)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped solve(): the partial result was lost")


def test_interrupt_while_metrics_are_recorded_leaves_whole_history_rows(monkeypatch):
    # A Ctrl-C landing inside a history row (here: in the truth metrics of iteration 5)
    # once left the iteration appended without its values and then recorded it twice.
    from lowrank_core import recording
    problem = _small_problem()
    original = recording.Truth.error_and_tail
    calls = {"n": 0}

    def interrupted(self, F, G):
        calls["n"] += 1
        if calls["n"] == 6:          # the row of iteration 5
            raise KeyboardInterrupt
        return original(self, F, G)

    monkeypatch.setattr(recording.Truth, "error_and_tail", interrupted)
    res = _solve_catching_interrupt(problem.operator, problem.y, rank=2, method="precgd",
                                    step=0.5, max_iter=50, seed=1, truth=problem)
    assert res.status == "interrupted" and res.n_iter == 5
    h = res.history
    np.testing.assert_array_equal(h["iteration"], np.arange(6))
    for name in ("loss", "residual", "error", "time"):
        assert h[name].shape == (6,), name
    # the final row (iteration 5, recorded after the interrupt) is the returned iterate
    assert h["loss"][-1] == res.loss
    ref = lc.solve(problem.operator, problem.y, rank=2, method="precgd", step=0.5,
                   max_iter=5, seed=1, record=False)
    np.testing.assert_array_equal(res.F, ref.F)
    np.testing.assert_allclose(h["error"][-1], problem.relative_error(res.F, res.G),
                               rtol=1e-10)


def test_interrupt_during_default_step_returns_the_initial_point(monkeypatch):
    from lowrank_core import driver
    problem = _small_problem()
    rng = np.random.default_rng(0)
    F0, G0 = rng.standard_normal((30, 2)), rng.standard_normal((20, 2))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "top_singular_value_info", interrupted)
    # step="fixed": gd's fixed step 0.3 / ||A^T(y)||_2 needs the top singular value
    res = _solve_catching_interrupt(problem.operator, problem.y, rank=2, method="gd",
                                    init=(F0, G0), step="fixed", max_iter=10)
    assert res.status == "interrupted" and res.n_iter == 0
    np.testing.assert_array_equal(res.F, F0)
    np.testing.assert_array_equal(res.G, G0)
    z = problem.operator.forward(F0 @ G0.T) - problem.y
    np.testing.assert_allclose(res.loss, 0.5 * z @ z, rtol=1e-12)


def test_interrupt_during_initial_factors_reraises_with_a_message(monkeypatch):
    from lowrank_core import driver
    problem = _small_problem()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "initial_factors", interrupted)
    with pytest.raises(KeyboardInterrupt, match="initial factors") as info:
        lc.solve(problem.operator, problem.y, rank=2, init="spectral", max_iter=10)
    assert info.value.__suppress_context__


def test_second_interrupt_during_final_evaluation_keeps_the_iterate(monkeypatch):
    from lowrank_core.methods import SolverState
    problem = _small_problem()
    original = SolverState.evaluate
    calls = {"n": 0}

    def evaluate(self):
        calls["n"] += 1
        if calls["n"] in (4, 5):     # iteration 3 in the loop, then the final evaluation
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(SolverState, "evaluate", evaluate)
    res = _solve_catching_interrupt(problem.operator, problem.y, rank=2, method="precgd",
                                    step=0.5, max_iter=50, seed=1)
    monkeypatch.setattr(SolverState, "evaluate", original)
    assert res.status == "interrupted" and res.n_iter == 3
    assert np.isnan(res.loss) and np.isnan(res.residual)
    ref = lc.solve(problem.operator, problem.y, rank=2, method="precgd", step=0.5,
                   max_iter=3, seed=1, record=False)
    np.testing.assert_array_equal(res.F, ref.F)
    np.testing.assert_array_equal(res.history["iteration"], np.arange(3))


def test_callback_exception_propagates_with_the_partial_result():
    problem = _small_problem()

    def callback(intermediate):
        if intermediate.n_iter == 4:
            raise ValueError("user code failed")

    with pytest.raises(ValueError, match="user code failed") as info:
        lc.solve(problem.operator, problem.y, rank=2, method="precgd", step=0.5,
                 max_iter=50, seed=1, callback=callback)
    partial = info.value.partial_result
    ref = lc.solve(problem.operator, problem.y, rank=2, method="precgd", step=0.5,
                   max_iter=4, seed=1)
    assert partial.status == "callback" and partial.n_iter == 4
    np.testing.assert_array_equal(partial.F, ref.F)
    np.testing.assert_array_equal(partial.G, ref.G)
    assert partial.loss == ref.loss
    np.testing.assert_array_equal(partial.history["iteration"], np.arange(5))
    np.testing.assert_array_equal(partial.history["loss"], ref.history["loss"])


# ------------------------------------------------ item 6: sample_entries on huge shapes
def _check_sample(n1, n2, count, rows, cols):
    assert rows.shape == cols.shape == (count,)
    assert rows.min() >= 0 and int(rows.max()) < n1 and cols.min() >= 0 and int(cols.max()) < n2
    keys = [(int(r), int(c)) for r, c in zip(rows, cols)]
    assert keys == sorted(set(keys)), "distinct and sorted row-major"


@pytest.mark.parametrize("shape", [(2**33, 2**33), (3, 2**62), (2**62, 3), (1, 2**63 - 1)])
def test_sample_entries_huge_shapes_terminate_with_distinct_uniform_entries(shape):
    # (2**33, 2**33) looped forever (chunk sizes overflowed int64, so every multinomial
    # draw was "over capacity"); (3, 2**62) raised numpy's pvals error. Run in a child
    # process so that a regression to the hang fails the test instead of stalling the suite.
    import subprocess
    import sys
    n1, n2 = shape
    code = ("import sys\nimport numpy as np\n"
            "from lowrank_core.operators import sample_entries\n"
            f"r, c = sample_entries({n1}, {n2}, 2000, np.random.default_rng(7))\n"
            "np.save(sys.stdout.buffer, np.stack([r, c]).astype(np.int64))\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          cwd=_OUTSIDE,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    import io
    rows, cols = np.load(io.BytesIO(proc.stdout))
    _check_sample(n1, n2, 2000, rows, cols)
    # uniform: the mean of U[0, n) / n over 2000 draws is 1/2 +- 0.0065 (1 sd); 5 sd
    for idx, n in ((rows, n1), (cols, n2)):
        if n > 10:
            assert abs(np.mean(idx / float(n)) - 0.5) < 5 * np.sqrt(1 / 12 / 2000)


def test_sample_entries_refuses_indices_beyond_int64():
    with pytest.raises(ValueError, match="int64"):
        sample_entries(2**64, 2, 3, np.random.default_rng(0))


def test_chunk_counts_near_full_sampling_terminates_within_capacity():
    # Near-full sampling of a large matrix: the multinomial draw nearly always exceeds some
    # chunk's capacity, so the redraw loop alone would (almost) never end.
    from lowrank_core.operators.entries import _chunk_counts
    rng = np.random.default_rng(0)
    sizes = np.full(400, 2**18, dtype=np.int64)
    total = int(sizes.sum())
    for count in (total, total - 1, total - 1000):
        counts = _chunk_counts(rng, sizes, count, total)
        assert counts.sum() == count and np.all(counts <= sizes) and np.all(counts >= 0)


# ---------------------------------------------- item 7: index arrays of any memory layout
@pytest.mark.parametrize("itype", [np.int32, np.int64, np.uint16])
@pytest.mark.parametrize("layout", ["column", "reversed", "every-other"])
def test_index_arrays_of_any_layout_are_accepted(itype, layout):
    # EntryOperator(ij[:, 0], ij[:, 1], ...) with int32 ij raised "ndarray is not
    # C-contiguous" (int64 input happened to be copied by the index cast).
    rng = np.random.default_rng(11)
    n1, n2, m = 13, 9, 60
    rows, cols = rng.integers(0, n1, m), rng.integers(0, n2, m)
    meas = np.sort(rng.integers(0, m // 2, m))
    vals = rng.standard_normal(m)
    if layout == "column":
        ij = np.stack([rows, cols, meas], axis=1).astype(itype)
        r, c, e = ij[:, 0], ij[:, 1], ij[:, 2]
    elif layout == "reversed":
        r, c, e = (x[::-1].astype(itype)[::-1] for x in (rows, cols, meas))
    else:
        r, c, e = (np.repeat(x, 2).astype(itype)[::2] for x in (rows, cols, meas))
    assert not r.flags.c_contiguous
    M = rng.standard_normal((n1, n2))
    op = lc.EntryOperator(r, c, (n1, n2))
    np.testing.assert_array_equal(op.forward(M), M[rows, cols])
    sop = lc.SparseOperator((e, r, c, vals), (n1, n2), m=m // 2)
    expected = np.zeros(m // 2)
    np.add.at(expected, meas, vals * M[rows, cols])
    np.testing.assert_allclose(sop.forward(M), expected, rtol=1e-13, atol=1e-14)


# ------------------------------------- item 8: float32 scales that float32 cannot represent
@pytest.mark.parametrize("scale", [1e300, -1e300, 1e-50, 1e39, 1e-39])
def test_float32_entry_operator_refuses_unrepresentable_scale(scale):
    # scale=1e300 made every float32 output inf; 1e-50 an all-zero operator (and a silent
    # max_iter at relative residual 1.0 in solve).
    with pytest.raises(ValueError, match=r"scale=.*not representable in float32"):
        lc.EntryOperator([0, 1], [1, 0], (2, 2), dtype=np.float32, scale=scale)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e30), (np.float32, 1e-30),
                                          (np.float64, 1e300), (np.float64, 1e-300),
                                          (np.float32, np.float32(0.25))])
def test_representable_scales_measure_exactly(dtype, scale):
    M = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=dtype)
    op = lc.EntryOperator([0, 1], [1, 0], (2, 2), dtype=dtype, scale=scale)
    expected = dtype(scale) * np.array([2.0, 3.0], dtype=dtype)
    np.testing.assert_array_equal(op.forward(M), expected)
    assert np.all(np.isfinite(op.forward(M))) and np.all(op.forward(M) != 0)


# --------------------------- item 11: float32 metrics in float64; numpy scalars as numbers
def test_float32_error_metrics_do_not_overflow_on_huge_iterates():
    # A diverged float32 run (true relative error ~1e23) reported error = inf: the norms
    # of the float32 QR factors squared past float32's 3.4e38.
    problem = lc.make_problem(40, 30, rank=2, m=600, operator="entries", dtype=np.float32,
                              seed=4)
    rng = np.random.default_rng(0)
    F0 = (1e11 * rng.standard_normal((40, 2))).astype(np.float32)
    G0 = (1e11 * rng.standard_normal((30, 2))).astype(np.float32)
    res = lc.solve(problem.operator, problem.y, rank=2, init=(F0, G0), step=1e-30,
                   max_iter=0, truth=problem)
    L, R = (x.astype(np.float64) for x in problem.truth_factors)
    reference = (np.linalg.norm(F0.astype(np.float64) @ G0.astype(np.float64).T - L @ R.T)
                 / np.linalg.norm(L @ R.T))
    assert reference > 1e21
    np.testing.assert_allclose(res.error, reference, rtol=1e-6)
    np.testing.assert_allclose(res.history["error"][-1], reference, rtol=1e-6)
    np.testing.assert_allclose(problem.relative_error(F0, G0), reference, rtol=1e-6)
    np.testing.assert_allclose(lc.metrics.imbalance(F0, G0),
                               np.linalg.norm(F0.T.astype(np.float64) @ F0 - G0.T.astype(
                                   np.float64) @ G0), rtol=1e-6)
    assert res.F.dtype == np.float32   # the iterate itself stays float32


@pytest.mark.parametrize("value", [np.float32(0.1), np.float64(0.1), np.int64(1)])
def test_numpy_scalars_accepted_where_numbers_are(value):
    # trigger=np.float32(0.1) was rejected ("must be a positive relative residual").
    problem = _small_problem()
    kwargs = {"rank": 2, "method": "onestep", "max_iter": 40, "seed": 1, "step": 0.5,
              "record": False}
    ref = lc.solve(problem.operator, problem.y, trigger=float(value), beta=float(value),
                   **kwargs)
    res = lc.solve(problem.operator, problem.y, trigger=value, beta=value,
                   tol=np.float32(1e-12), max_time=np.float64(60.0), **kwargs)
    np.testing.assert_array_equal(res.F, ref.F)
    assert res.rebalance_iteration == ref.rebalance_iteration
    res2 = lc.solve(problem.operator, problem.y, rank=np.int64(2), max_iter=np.int32(3),
                    step=np.float32(0.5), record=np.int64(1))
    assert res2.n_iter == 3


# ------------------------------- item 4: Dask max_recoveries counts rebuilds per shard
def test_one_worker_death_with_many_shards_is_recovered():
    # 8 shards on 2 workers: killing one worker loses 4 shards in one call. max_recoveries
    # counted losses across all shards, so the 4th ("shard 6 was lost 4 times") aborted the
    # solve although every shard was lost once.
    import os
    import signal
    import warnings
    distributed = pytest.importorskip("distributed")
    from lowrank_core.distributed import ShardedOperator, ShardRecoveredWarning

    problem = lc.make_problem(12, 10, rank=2, m=400, seed=9)
    kw = {"method": "gd", "max_iter": 12, "seed": 3, "step": 0.2}
    ref = lc.solve(problem.operator, problem.y, 2, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           silence_logs=50)
    with cluster, distributed.Client(cluster) as client, ShardedOperator.from_operator(
            problem.operator, 8, client, timeout=60, max_recoveries=3, n_threads=1) as sop:
        victim = sop.memory_usage()[6]["pid"]
        n_lost = sum(u["pid"] == victim for u in sop.memory_usage())
        assert n_lost >= 4

        def kill_at_5(intermediate):
            if intermediate.n_iter == 5:
                os.kill(victim, signal.SIGKILL)

        with pytest.warns(ShardRecoveredWarning):
            got = lc.solve(sop, problem.y, 2, callback=kill_at_5, **kw)
        lost = sorted(r["shard"] for r in sop.recoveries)
        assert len(lost) == n_lost and len(set(lost)) == n_lost   # each lost once
    assert got.status == ref.status and got.n_iter == ref.n_iter
    for a, b in zip(got.factors, ref.factors):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------- item 10: CLI file paths
def _cli(args, timeout=60):
    """``lowrank-core ARGS`` in a child process (a hang fails the test, not the suite)."""
    import subprocess
    import sys
    code = "import sys\nfrom lowrank_core.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], check=False, cwd=_OUTSIDE,
                          capture_output=True, text=True, timeout=timeout)


_SMALL_SOLVE = ["--n1", "8", "--m", "120", "--true-rank", "1", "--max-iter", "3"]


def test_cli_refuses_a_fifo_problem_file(tmp_path):
    import os
    fifo = tmp_path / "problem.npz"
    os.mkfifo(fifo)
    proc = _cli(["solve", str(fifo), "--out", str(tmp_path / "o.npz")], timeout=30)
    assert proc.returncode == 1 and str(fifo) in proc.stderr
    assert "not a regular file" in proc.stderr


def test_cli_checks_every_output_path_before_solving(tmp_path):
    # --summary /proc/s.json ran the whole solve and then lost summary and history.
    out = tmp_path / "fit.npz"
    proc = _cli(["solve", *_SMALL_SOLVE, "--out", str(out), "--summary", "/proc/s.json"])
    assert proc.returncode == 1 and "/proc/s.json" in proc.stderr, proc.stderr
    assert not out.exists()            # refused before the solve wrote anything
    d = tmp_path / "adir.npz"
    d.mkdir()
    proc = _cli(["solve", *_SMALL_SOLVE, "--out", str(d)])
    assert proc.returncode == 1 and "is a directory" in proc.stderr, proc.stderr


def test_cli_out_without_suffix_reports_the_file_it_writes(tmp_path):
    # --out fit wrote fit.npz (numpy.savez appends .npz) but printed and recorded "fit".
    import json
    import os
    proc = _cli(["solve", *_SMALL_SOLVE, "--out", str(tmp_path / "fit")])
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / "fit.npz"
    assert written.exists() and not (tmp_path / "fit").exists()
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["factors_file"] == os.path.abspath(written)
    assert f"factors:    {written}" in proc.stdout
    with np.load(written) as data:
        assert data["F"].shape == (8, 1)


def test_cli_damaged_archive_member_names_the_file(tmp_path):
    import zipfile
    good = tmp_path / "good.npz"
    from lowrank_core.problem_io import save_problem
    save_problem(good, lc.make_problem(6, 5, rank=1, m=40, seed=0))
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("y.npy")
    # flip a byte inside the (stored, uncompressed) data of y.npy: its CRC no longer matches
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    raw[start] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    proc = _cli(["solve", str(bad), "--out", str(tmp_path / "o.npz")])
    assert proc.returncode == 1 and str(bad) in proc.stderr, proc.stderr
    assert "CRC" in proc.stderr


def test_cli_random_bytes_are_not_an_archive_without_pickle_hint(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    proc = _cli(["solve", str(junk), "--out", str(tmp_path / "o.npz")])
    assert proc.returncode == 1 and str(junk) in proc.stderr
    assert "not a readable .npz archive" in proc.stderr and "pickle" not in proc.stderr


# ------------------------------------------------------------- item 9: n_threads is capped
def test_runaway_thread_counts_are_capped_with_a_warning(monkeypatch):
    # n_threads=1000 started 1000 OpenMP threads; 2**31 raised OverflowError in the kernels
    # although solve() accepted it.
    from lowrank_core import _threads
    monkeypatch.setattr(_threads, "_warned", set())
    monkeypatch.setattr(_threads, "usable_cores", lambda: 2)
    assert _threads.max_threads() == 64
    problem = lc.make_problem(40, 30, rank=2, m=900, operator="entries", seed=2)
    with pytest.warns(_threads.ThreadCapWarning, match="exceeds the 2 usable cores"):
        ref = lc.solve(problem.operator, problem.y, 2, method="precgd", step=0.5,
                       max_iter=5, seed=1, n_threads=64)
    for request in (1000, 2**31):
        with pytest.warns(_threads.ThreadCapWarning, match=f"n_threads={request} is capped"):
            res = lc.solve(problem.operator, problem.y, 2, method="precgd", step=0.5,
                           max_iter=5, seed=1, n_threads=request)
        assert res.options["n_threads"] == 64
        np.testing.assert_array_equal(res.F, ref.F)
        np.testing.assert_array_equal(res.G, ref.G)
    op = lc.EntryOperator(problem.operator.rows, problem.operator.cols, (40, 30),
                          n_threads=2**31)
    assert op.n_threads == 64
    M = np.random.default_rng(0).standard_normal((40, 30))
    np.testing.assert_array_equal(op.forward(M), M[op.rows, op.cols])


def test_thread_counts_above_the_cores_are_honoured_with_a_warning(monkeypatch):
    # Oversubscription is allowed (a result computed with 3 threads elsewhere can be
    # reproduced here, and the determinism tests use 3 threads on 2-core machines).
    from lowrank_core import _threads
    monkeypatch.setattr(_threads, "_warned", set())
    monkeypatch.setattr(_threads, "usable_cores", lambda: 2)
    with pytest.warns(_threads.ThreadCapWarning, match="exceeds the 2 usable cores"):
        assert _threads.resolve_n_threads(3) == (3 if lc.openmp_enabled() else 1)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _threads.resolve_n_threads(3) == (3 if lc.openmp_enabled() else 1)  # once
        assert _threads.resolve_n_threads(2) == (2 if lc.openmp_enabled() else 1)
