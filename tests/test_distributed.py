"""ShardedOperator on a local Dask cluster (two worker processes on loopback).

References are independent of the sharded code path: the single-process operators and plain
numpy on the same measurement matrices.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import lowrank_core as lc
from lowrank_core.distributed import (
    ShardedOperator,
    ShardLostError,
    ShardRecoveredWarning,
    ShardTimeoutError,
    make_sharded_problem,
)

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
MEMORY_LIMIT = 1 << 30  # 1 GiB per worker


def _local_cluster():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=MEMORY_LIMIT, silence_logs=50)


@pytest.fixture(scope="module")
def client():
    with _local_cluster() as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture
def fault_client():
    """A fresh cluster for a test that kills workers (the shared one stays intact)."""
    with _local_cluster() as cluster, distributed.Client(cluster) as c:
        yield c


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def numpy_residual_gradient(A, F, G, y):
    """Plain numpy reference: A (m, n1, n2) general matrices."""
    m = A.shape[0]
    z = A.reshape(m, -1) @ (F @ G.T).ravel() - y
    S = (A.reshape(m, -1).T @ z).reshape(A.shape[1:])
    return 0.5 * float(z @ z), z, S @ G, S.T @ F


def factors(n1, n2, k, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n1, k)).astype(dtype),
            rng.standard_normal((n2, k)).astype(dtype))


def local_problem(kind, dtype, n=12, m=301, seed=0):
    psd = kind == "symmetric"
    return lc.make_problem(n, n if psd else n + 3, rank=2, m=m, psd=psd, dtype=dtype,
                           seed=seed, n_threads=1)


# ------------------------------------------------------------------ exact agreement
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["dense", "symmetric"])
@pytest.mark.parametrize("n_shards", [1, 2, 3])
def test_residual_gradient_matches_single_process(client, kind, dtype, n_shards):
    p = local_problem(kind, dtype)
    op = p.operator
    F, G = factors(*op.shape, 3, dtype)
    if kind == "symmetric":
        G = F
    with ShardedOperator.from_operator(op, n_shards, client) as sop:
        assert (sop.m, sop.shape, sop.dtype, sop.symmetric) == \
            (op.m, op.shape, op.dtype, op.symmetric)
        assert sop.nbytes == op.nbytes
        ref = op.residual_gradient(F, G, p.y)
        got = sop.residual_gradient(F, G, p.y)
        for a, b in zip(got, ref):
            assert rel(a, b) < RTOL[dtype]
        # the same call again (measurements now cached on the shards): the same bits
        again = sop.residual_gradient(F, G, p.y)
        for a, b in zip(again, got):
            np.testing.assert_array_equal(a, b)
    if dtype == np.float64:  # and plain numpy on the full matrices
        A = op.matrices
        for a, b in zip(got, numpy_residual_gradient(A, F, G, p.y)):
            assert rel(a, b) < 1e-12


@pytest.mark.parametrize("kind", ["dense", "symmetric"])
def test_forward_adjoint_match_numpy(client, kind):
    p = local_problem(kind, np.float64)
    op = p.operator
    A = op.matrices.reshape(op.m, -1)
    rng = np.random.default_rng(5)
    M = rng.standard_normal(op.shape)
    if kind == "symmetric":
        M = M + M.T  # a symmetric operator measures the symmetric part
    F, G = factors(*op.shape, 2, np.float64)
    z = rng.standard_normal(op.m)
    with ShardedOperator.from_operator(op, 3, client) as sop:
        assert rel(sop.forward(M), A @ M.ravel()) < 1e-12
        assert rel(sop.forward_factored(F, G), A @ (F @ G.T).ravel()) < 1e-12
        S = (A.T @ z).reshape(op.shape)
        assert rel(sop.adjoint(z), S) < 1e-12
        v = rng.standard_normal(op.shape[1])
        assert rel(sop.adjoint_operator(z).matvec(v), S @ v) < 1e-12


@pytest.mark.parametrize("kind", ["dense", "symmetric"])
def test_spectral_operator_matches_single_process(client, kind):
    p = local_problem(kind, np.float64)
    op = p.operator
    make = getattr(op, "spectral_operator", op.adjoint_operator)
    S = make(p.y).matmat(np.eye(op.shape[1]))  # the single-process estimate, dense
    np.testing.assert_allclose(S, (op.matrices.reshape(op.m, -1).T @ p.y).reshape(op.shape),
                               rtol=1e-12, atol=1e-14)
    X = np.random.default_rng(0).standard_normal((op.shape[1], 3))
    U = np.random.default_rng(1).standard_normal((op.shape[0], 2))
    with ShardedOperator.from_operator(op, 3, client) as sop:
        lin = sop.spectral_operator(p.y)
        assert rel(lin.matmat(X), S @ X) < 1e-12
        assert rel(lin.rmatmat(U), S.T @ U) < 1e-12
        assert rel(lin.matvec(X[:, 0]), S @ X[:, 0]) < 1e-12


def test_gaussian_generated_on_workers(client):
    m, n1, n2 = 900, 8, 6
    with ShardedOperator.gaussian(m, n1, n2, n_shards=3, client=client, seed=7) as sop, \
            ShardedOperator.gaussian(m, n1, n2, n_shards=3, client=client, seed=7) as same, \
            ShardedOperator.gaussian(m, n1, n2, n_shards=3, client=client, seed=8) as other:
        assert sop.shard_rows == [(0, 300), (300, 600), (600, 900)]
        A = np.concatenate([s.matrices for s in sop.fetch_shards()])
        np.testing.assert_array_equal(A, np.concatenate([s.matrices
                                                         for s in same.fetch_shards()]))
        assert not np.allclose(A, np.concatenate([s.matrices for s in other.fetch_shards()]))
        assert A.shape == (m, n1, n2)
        # N(0, 1/m) entries: variance within 5 standard errors (43200 samples)
        assert abs(A.var() * m - 1.0) < 5 * np.sqrt(2 / A.size)
        assert abs(A.mean()) * np.sqrt(m) < 5 / np.sqrt(A.size)
        # the shards are different draws, not copies
        assert not np.allclose(A[:300], A[300:600])
        y = np.random.default_rng(0).standard_normal(m)
        F, G = factors(n1, n2, 2, np.float64)
        for a, b in zip(sop.residual_gradient(F, G, y), numpy_residual_gradient(A, F, G, y)):
            assert rel(a, b) < 1e-12


def test_gaussian_symmetric_and_float32(client):
    m, n = 1200, 7
    with ShardedOperator.gaussian(m, n, n_shards=2, client=client, seed=1, symmetric=True,
                                  dtype=np.float32) as sop:
        assert sop.symmetric and sop.dtype == np.float32
        A = np.concatenate([s.matrices for s in sop.fetch_shards()]).astype(np.float64)
        np.testing.assert_array_equal(A, A.transpose(0, 2, 1))
        diag = A[:, np.arange(n), np.arange(n)]
        off = A[:, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]]
        assert abs(diag.var() * m - 1.0) < 5 * np.sqrt(2 / diag.size)
        assert abs(off.var() * 2 * m - 1.0) < 5 * np.sqrt(2 / off.size)
        X, _ = factors(n, n, 3, np.float32)
        y = np.random.default_rng(2).standard_normal(m).astype(np.float32)
        ref = numpy_residual_gradient(A, X.astype(np.float64), X.astype(np.float64),
                                      y.astype(np.float64))
        got = sop.residual_gradient(X, None, y)
        assert all(g.dtype == np.float32 for g in got[1:])
        for a, b in zip(got, ref):
            assert rel(a, b) < 1e-4
        with pytest.raises(TypeError, match="float32"):
            sop.residual_gradient(X.astype(np.float64), None, y)


def test_from_files_loaded_on_workers(client, tmp_path):
    p = local_problem("dense", np.float64, m=200)
    A = p.operator.matrices
    bounds = [0, 70, 140, 200]
    paths = []
    for s in range(3):
        path = tmp_path / f"shard{s}.npy"
        block = A[bounds[s]:bounds[s + 1]]
        np.save(path, block if s != 1 else block.reshape(len(block), -1))
        paths.append(str(path))
    F, G = factors(*p.shape, 2, np.float64)
    ref = numpy_residual_gradient(A, F, G, p.y)
    for mmap_mode in (None, "r"):
        with ShardedOperator.from_files(paths, client, shape=p.shape,
                                        mmap_mode=mmap_mode) as sop:
            assert sop.shard_rows == [(0, 70), (70, 140), (140, 200)]
            for a, b in zip(sop.residual_gradient(F, G, p.y), ref):
                assert rel(a, b) < 1e-12


def test_from_files_symmetric_packed(client, tmp_path):
    p = local_problem("symmetric", np.float64, m=150)
    packed = p.operator.packed
    paths = []
    for s, (a, b) in enumerate([(0, 75), (75, 150)]):
        path = tmp_path / f"sym{s}.npy"
        np.save(path, packed[a:b] if s == 0 else p.operator.matrices[a:b])
        paths.append(str(path))
    X, _ = factors(*p.shape, 3, np.float64)
    with ShardedOperator.from_files(paths, client, kind="symmetric",
                                    shape=p.shape) as sop:
        assert sop.symmetric
        for a, b in zip(sop.residual_gradient(X, None, p.y),
                        numpy_residual_gradient(p.operator.matrices, X, X, p.y)):
            assert rel(a, b) < 1e-12


def test_from_builders_any_kind(client):
    builders = [functools.partial(lc.DenseOperator.gaussian, 40 + s, 5, 4, seed=s)
                for s in range(3)]
    A = np.concatenate([b().matrices for b in builders])
    y = np.random.default_rng(3).standard_normal(A.shape[0])
    F, G = factors(5, 4, 2, np.float64)
    with ShardedOperator.from_builders(builders, client) as sop:
        assert sop.shard_rows == [(0, 40), (40, 81), (81, 123)]
        for a, b in zip(sop.residual_gradient(F, G, y), numpy_residual_gradient(A, F, G, y)):
            assert rel(a, b) < 1e-12


def test_measurements_cached_by_value(client):
    p = local_problem("dense", np.float64)
    op = p.operator
    F, G = factors(*op.shape, 2, np.float64)
    y = p.y.copy()
    with ShardedOperator.from_operator(op, 2, client, y_cache_size=2) as sop:
        sop.residual_gradient(F, G, y)
        y *= 2.0  # in place: same object, new values
        for a, b in zip(sop.residual_gradient(F, G, y), op.residual_gradient(F, G, y)):
            assert rel(a, b) < 1e-12
        # cycle through more vectors than the cache holds, then back to the first
        for scale in (3.0, 4.0, 5.0, 1.0):
            ys = p.y * scale
            for a, b in zip(sop.residual_gradient(F, G, ys), op.residual_gradient(F, G, ys)):
                assert rel(a, b) < 1e-12
        # measurements computed on the shards are registered: at the truth, z = 0
        L, R = p.truth_factors
        y_true = sop.forward_factored(L, R)
        assert rel(y_true, op.forward_factored(L, R)) < 1e-12
        loss, z, SG, StF = sop.residual_gradient(L, R, y_true)
        assert loss == 0.0 and not z.any() and not SG.any() and not StF.any()


def test_make_sharded_problem_truth_matches_make_problem(client):
    kw = {"rank": 2, "m": 400, "seed": 11, "cond": 3.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lc.make_problem(9, 7, **kw)
        prob = make_sharded_problem(9, 7, n_shards=2, client=client, **kw)
    with prob.operator as sop:
        for a, b in zip(prob.truth_factors, ref.truth_factors):
            np.testing.assert_array_equal(a, b)
        A = np.concatenate([s.matrices for s in sop.fetch_shards()])
        assert rel(prob.y, A.reshape(400, -1) @ ref.truth.ravel()) < 1e-12
        assert prob.info["n_shards"] == 2


def _gd(op, y, F, G, eta, n_iter, callback=None):
    """Plain factored gradient descent on 0.5 ||A(F G^T) - y||^2 (test reference loop)."""
    F, G = F.copy(), G.copy()
    for t in range(n_iter):
        if callback is not None:
            callback(t, F, G)
        _, _, SG, StF = op.residual_gradient(F, G, y)
        F, G = F - eta * SG, G - eta * StF
    return F, G


def test_gd_iterates_match_single_process(client):
    p = lc.make_problem(10, 8, rank=2, m=400, seed=3, n_threads=1)
    F0, G0 = factors(10, 8, 4, np.float64, seed=4)
    F0 *= 0.1
    G0 *= 0.1
    ref = _gd(p.operator, p.y, F0, G0, 0.3, 60)
    with ShardedOperator.from_operator(p.operator, 3, client) as sop:
        got = _gd(sop, p.y, F0, G0, 0.3, 60)
    for a, b in zip(got, ref):
        assert rel(a, b) < 1e-10
    assert p.relative_error(*ref) < p.relative_error(F0, G0)  # the loop does descend


# ------------------------------------------------------------------------- faults
def _kill_worker_of_shard(sop, shard):
    pid = sop.memory_usage()[shard]["pid"]
    os.kill(pid, signal.SIGKILL)


def test_worker_killed_shard_resent_from_client_operator(fault_client):
    client = fault_client
    p = local_problem("symmetric", np.float64)
    X0, _ = factors(*p.shape, 3, np.float64)
    ref = _gd(p.operator, p.y, 0.1 * X0, 0.1 * X0, 0.1, 8)
    with ShardedOperator.from_operator(p.operator, 2, client, timeout=60) as sop:

        def kill_at_4(t, F, G):
            if t == 4:
                _kill_worker_of_shard(sop, 1)

        with pytest.warns(ShardRecoveredWarning, match="shard 1 was lost"):
            got = _gd(sop, p.y, 0.1 * X0, 0.1 * X0, 0.1, 8, callback=kill_at_4)
        assert [r["shard"] for r in sop.recoveries] == [1]
    for a, b in zip(got, ref):
        assert rel(a, b) < 1e-10


def test_worker_lost_without_source_raises_with_partial_result(fault_client):
    client = fault_client
    p = local_problem("dense", np.float64)
    F0, G0 = factors(*p.shape, 2, np.float64)
    with ShardedOperator.from_operator(p.operator, 2, client, keep_source=False,
                                       timeout=30) as sop:
        seen = []

        def restart_at_3(t, F, G):
            seen.append(F.copy())
            if t == 3:
                client.restart_workers([sop.shard_workers[1]])

        with pytest.raises(ShardLostError, match="cannot be rebuilt") as info:
            _gd(sop, p.y, 0.1 * F0, 0.1 * G0, 0.1, 10, callback=restart_at_3)
    err = info.value
    assert err.shard == 1 and err.n_calls == 3
    np.testing.assert_array_equal(err.last_factors[0], seen[2])


def test_hung_worker_times_out(client, tmp_path):
    p = local_problem("dense", np.float64)
    F, G = factors(*p.shape, 2, np.float64)
    with ShardedOperator.from_operator(p.operator, 2, client, timeout=60) as sop:
        sop.residual_gradient(F, G, p.y)
        # block worker 0's event loop for 3 s (client.run runs there): it cannot answer
        flag = tmp_path / "blocking"
        code = (f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); "
                "time.sleep(3.0)")
        blocker = threading.Thread(target=client.run, args=(exec, code),
                                   kwargs={"workers": [sop.shard_workers[0]]})
        blocker.start()
        for _ in range(600):
            if flag.exists():
                break
            time.sleep(0.05)
        sop.timeout = 0.5
        with pytest.raises(ShardTimeoutError, match="did not answer") as info:
            sop.residual_gradient(F, G, p.y)
        assert info.value.n_calls == 1 and info.value.shard == 0
        blocker.join()
        sop.timeout = 60.0
        for a, b in zip(sop.residual_gradient(F, G, p.y), p.operator.residual_gradient(F, G, p.y)):
            assert rel(a, b) < 1e-12


# ------------------------------------------------------------------------- memory
def test_shard_larger_than_worker_memory_refused_before_creation(client):
    # 2 shards of 100000 x 2000 float64 = 1.6 GB each against a 1 GiB limit
    with pytest.raises(MemoryError, match="memory_limit 1.0 GiB"):
        ShardedOperator.gaussian(200_000, 50, 40, n_shards=2, client=client, seed=0)
    # fits per shard, but four shards on two workers exceed each worker
    with pytest.raises(MemoryError, match="shards placed on worker"):
        ShardedOperator.gaussian(4 * 30_000, 50, 40, n_shards=4, client=client, seed=0)


def test_shard_file_larger_than_worker_memory_refused_on_worker(client, tmp_path):
    # a .npy whose header declares 1.6 GB of rows: the worker refuses before reading it
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (100_000, 50, 40)})
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((5, 50, 40)))
    with pytest.raises(MemoryError, match="shard 1 needs about 1,600,000,000 bytes"):
        ShardedOperator.from_files([str(small), str(path)], client)


# ------------------------------------------------------------------------ packaging
def test_import_without_dask_and_clear_message():
    code = ("import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None\n"
            "import lowrank_core as lc\n"
            "op = lc.DenseOperator.gaussian(10, 3, 3, seed=0)\n"
            "try:\n"
            "    lc.ShardedOperator.from_operator(op, 2)\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(__file__) or ".")
    assert "pip install 'lowrank-core[dask]'" in out.stdout


def test_operators_pickle_without_lock():
    import pickle

    op = lc.SymmetricDenseOperator.gaussian(30, 4, seed=0)
    part = op.take_rows(10, 20)
    back = pickle.loads(pickle.dumps(part))
    np.testing.assert_array_equal(back.packed, op.packed[10:20])
    X = np.ones((4, 2))
    y = np.zeros(10)
    for a, b in zip(back.residual_gradient(X, None, y), part.residual_gradient(X, None, y)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="row range"):
        op.take_rows(5, 5)


def test_finiteness_check_without_full_size_temporary():
    from lowrank_core._validation import _all_finite, as_float_array

    x = np.zeros((3, 1 << 20), np.float32)  # three chunks
    assert _all_finite(x)
    x[2, -1] = np.inf
    assert not _all_finite(x)
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        as_float_array(x, "A")
    assert not _all_finite(x[:, 1::2])  # strided input: the plain check


def test_threads_and_argument_errors(client):
    import pickle

    p = local_problem("dense", np.float64, m=60)
    with pytest.raises(TypeError, match="Client\\('tcp://x:1'\\)"):
        ShardedOperator.from_operator(p.operator, 2, "tcp://x:1")
    with pytest.raises(ValueError, match="exceeds the m = 60"):
        ShardedOperator.from_operator(p.operator, 61, client)
    with ShardedOperator.from_operator(p.operator, 2, client) as sop:
        assert sop.n_threads == 1  # the workers' Dask thread count
        sop.n_threads = 2
        expected = 2 if lc.openmp_enabled() else 1  # builds without OpenMP run 1 thread
        assert [s.n_threads for s in sop.fetch_shards()] == [expected, expected]
        sop.n_threads = None
        assert sop.n_threads == 1
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(sop)
    with pytest.raises(RuntimeError, match="closed"):
        sop.forward(np.zeros(p.shape))


# ------------------------------------------------------------- structured kinds
STRUCTURED = [("sparse", False), ("sparse", True), ("entries", False), ("rank-one", False),
              ("rank-one", True)]


def structured_problem(kind, psd):
    n1 = 14
    n2 = n1 if psd else 11
    m = 90 if kind == "entries" else 700
    return lc.make_problem(n1, n2, rank=2, m=m, psd=psd, operator=kind, seed=4, n_threads=1)


@pytest.mark.parametrize(("kind", "psd"), STRUCTURED)
def test_structured_shards_match_single_process(client, kind, psd):
    p = structured_problem(kind, psd)
    op = p.operator
    F, G = factors(*op.shape, 3, np.float64)
    if psd:
        G = F
    with ShardedOperator.from_operator(op, 3, client) as sop:
        assert (sop.m, sop.shape, sop.symmetric) == (op.m, op.shape, op.symmetric)
        for a, b in zip(sop.residual_gradient(F, G, p.y), op.residual_gradient(F, G, p.y)):
            assert rel(a, b) < 1e-12
        assert rel(sop.forward_factored(F, G), op.forward_factored(F, G)) < 1e-12
        assert rel(sop.adjoint(p.y), op.adjoint(p.y)) < 1e-12
        X = np.random.default_rng(2).standard_normal((op.shape[1], 2))
        ref = op.spectral_operator(p.y).matmat(X)
        got = sop.spectral_operator(p.y).matmat(X)
        if kind == "rank-one":  # average of per-shard unbiased estimates: close, not equal
            assert rel(got, ref) < 0.2
        else:
            assert rel(got, ref) < 1e-12


@pytest.mark.parametrize(("kind", "psd"), [("gaussian", False), ("gaussian", True)] + STRUCTURED)
def test_sharded_adjoint_products_match_numpy(client, kind, psd):
    """adjoint_products on shards (summed in shard order) against numpy on A^T(w)."""
    p = (local_problem("symmetric" if psd else "dense", np.float64) if kind == "gaussian"
         else structured_problem(kind, psd))
    op = p.operator
    F, G = factors(*op.shape, 3, np.float64)
    w = np.random.default_rng(3).standard_normal(op.m)
    S = op.adjoint(w)  # itself checked against numpy in test_operator_contract.py
    with ShardedOperator.from_operator(op, 3, client) as sop:
        SG, StF = sop.adjoint_products(w, F, G)
        assert rel(SG, S @ G) < 1e-12
        assert rel(StF, S.T @ F) < 1e-12
        if psd:
            SX, StX = sop.adjoint_products(w, F)
            assert rel(SX, S @ F) < 1e-12 and rel(StX, S.T @ F) < 1e-12


# ------------------------------------------------------------------------ solve()
SOLVES = [(method, False) for method in
          ("gd", "onestep", "scaledgd", "scaledgd-lambda", "precgd", "agn")] + \
         [(method, True) for method in ("gd", "scaledgd", "scaledgd-lambda", "precgd")]


@pytest.mark.parametrize(("method", "symmetric"), SOLVES)
def test_sharded_solve_matches_single_process(client, method, symmetric):
    p = lc.make_problem(12, rank=2, m=500, psd=symmetric, seed=6, n_threads=1)
    kw = {"method": method, "symmetric": symmetric, "max_iter": 25, "seed": 1,
          "init": "small"}  # the same start on both (ARPACK differs by rounding)
    ref = lc.solve(p.operator, p.y, 3, **kw)
    with ShardedOperator.from_operator(p.operator, 2, client) as sop:
        got = lc.solve(sop, p.y, 3, **kw)
    assert got.status == ref.status and got.n_iter == ref.n_iter
    assert rel(got.matrix(), ref.matrix()) < 1e-12  # the estimate F G^T, to rounding
    if method == "agn":
        # k = 3 > r = 2: AGN's pseudo-inverse leaves the factors free along the null space
        # of the singular Gram matrix, where the exact steps (larger than the fixed 0.5)
        # let shard-order rounding drift to ~2e-10 while F G^T agrees to 5e-15.
        return
    for a, b in zip(got.factors, ref.factors):
        assert rel(a, b) < 1e-10


@pytest.mark.parametrize(("kind", "psd"), [("entries", False), ("rank-one", True)])
def test_sharded_solve_structured_spectral_init(client, kind, psd):
    p = structured_problem(kind, psd)
    kw = {"method": "scaledgd", "symmetric": psd, "max_iter": 15, "init": "spectral",
          "seed": 1}
    ref = lc.solve(p.operator, p.y, 2, **kw)
    with ShardedOperator.from_operator(p.operator, 2, client) as sop:
        got = lc.solve(sop, p.y, 2, **kw)
    if kind == "entries":  # the spectral estimate is exact: same iterates
        for a, b in zip(got.factors, ref.factors):
            assert rel(a, b) < 1e-10
    assert p.relative_error(*got.factors) < 1.5 * p.relative_error(*ref.factors) + 1e-3


def test_worker_killed_during_solve_is_recovered(fault_client):
    client = fault_client
    prob = make_sharded_problem(10, 9, rank=2, m=500, n_shards=2, client=client, seed=8,
                                timeout=60)
    with prob.operator as sop:
        local = lc.DenseOperator(np.concatenate([s.matrices for s in sop.fetch_shards()]),
                                 n_threads=1)
        kw = {"method": "gd", "max_iter": 20, "seed": 3}
        ref = lc.solve(local, prob.y, 3, **kw)

        def kill_at_6(intermediate):
            if intermediate.n_iter == 6:
                _kill_worker_of_shard(sop, 1)

        # timeout=60: a shard that could not be rebuilt would raise, not hang
        with pytest.warns(ShardRecoveredWarning, match="shard 1 was lost"):
            got = lc.solve(sop, prob.y, 3, callback=kill_at_6, **kw)
        assert [r["shard"] for r in sop.recoveries] == [1]
        assert sop.recoveries[0]["lost_worker"] != sop.shard_workers[1]
    assert got.n_iter == ref.n_iter
    for a, b in zip(got.factors, ref.factors):
        assert rel(a, b) < 1e-10


def test_solve_n_threads_reaches_the_shards(client):
    # solve(n_threads=k) scopes k in the client process only (_threads.thread_limit); the
    # scoped count is forwarded with every shard call, so the workers' kernels use it too.
    p = local_problem("dense", np.float64)
    with ShardedOperator.from_operator(p.operator, 2, client, n_threads=1,
                                       timeout=60) as sop:
        seen = []

        def callback(intermediate):
            seen.append([u["n_threads"] for u in sop.memory_usage()])

        # a fixed step: from the small start the exact line search's cubic amplifies the
        # shards' different summation order (~1e-16) to ~1e-10 in the step, which would
        # hide what this compares (a fixed step keeps the two runs within rounding)
        res = lc.solve(sop, p.y, 2, method="gd", max_iter=2, n_threads=3, seed=1,
                       callback=callback, step=0.5)
        assert seen == [[3, 3], [3, 3]]
        assert res.options["n_threads"] == 3
        # outside the solve the shards keep their own setting
        assert [u["n_threads"] for u in sop.memory_usage()] == [1, 1]
        assert sop.n_threads == 1
        local = lc.solve(p.operator, p.y, 2, method="gd", max_iter=2, n_threads=3, seed=1,
                         step=0.5)
        for a, b in zip(res.factors, local.factors):
            assert rel(a, b) < 1e-12


# --------------------------------------------------------- operator failure as a result
class _FailingOperator(lc.DenseOperator):
    """A local operator whose residual_gradient raises a shard error at call ``fail_at``
    (a deterministic stand-in for a shard that cannot be rebuilt or times out)."""

    def __init__(self, A, *, fail_at, error):
        super().__init__(A, n_threads=1)
        self.fail_at, self.error, self.calls = fail_at, error, 0

    def _tick(self):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        self._tick()
        return super()._residual_gradient_into(F, G, y, z, SG, StF)

    def _forward_factored_into(self, F, G, out):   # the line search's products
        self._tick()
        return super()._forward_factored_into(F, G, out)


@pytest.mark.parametrize("error", [ShardLostError, ShardTimeoutError])
@pytest.mark.parametrize("symmetric", [False, True])
def test_shard_failure_during_iterations_is_operator_failed(error, symmetric):
    p = lc.make_problem(9, 9, rank=2, m=300, seed=5, n_threads=1)
    A = p.operator.matrices
    kw = {"method": "gd", "step": 0.05, "seed": 2, "symmetric": symmetric}
    # call 1 evaluates iterate 0, call t + 1 iterate t: failing at call 6 leaves iterate 4
    op = _FailingOperator(A, fail_at=6, error=error("shard 1 failed; the fix", shard=1))
    got = lc.solve(op, p.y, 2, max_iter=50, **kw)
    ref = lc.solve(lc.DenseOperator(A, n_threads=1), p.y, 2, max_iter=4, **kw)
    assert got.status == "operator_failed" and got.status in lc.results.STATUSES
    assert got.n_iter == 4 == ref.n_iter
    assert f"({error.__name__}): shard 1 failed; the fix" in got.message
    for a, b in zip(got.factors, ref.factors):
        np.testing.assert_array_equal(a, b)
    assert got.loss == ref.loss and got.residual == ref.residual
    np.testing.assert_array_equal(got.history.iteration, ref.history.iteration)
    np.testing.assert_array_equal(got.history.loss, ref.history.loss)
    assert op.calls == 6   # nothing evaluated after the failure


def test_shard_failure_inside_a_line_search_keeps_the_current_iterate():
    p = lc.make_problem(9, 8, rank=2, m=300, seed=6, n_threads=1)
    A = p.operator.matrices
    ref_op = _FailingOperator(A, fail_at=0, error=None)
    ref = lc.solve(ref_op, p.y, 2, method="gd", step="auto", max_iter=3, seed=1)
    # the next operator call after the reference's last is the line search from iterate 3
    op = _FailingOperator(A, fail_at=ref_op.calls + 1,
                          error=ShardTimeoutError("shard 0 timed out", shard=0))
    got = lc.solve(op, p.y, 2, method="gd", step="auto", max_iter=10, seed=1)
    assert got.status == "operator_failed"
    assert got.n_iter == 3
    for a, b in zip(got.factors, ref.factors):
        np.testing.assert_array_equal(a, b)
    assert got.loss == ref.loss


def test_worker_lost_without_source_is_operator_failed(fault_client):
    client = fault_client
    p = local_problem("dense", np.float64)
    kw = {"method": "gd", "step": 0.05, "seed": 4}
    ref = lc.solve(p.operator, p.y, 2, max_iter=3, **kw)
    with ShardedOperator.from_operator(p.operator, 2, client, keep_source=False,
                                       timeout=30) as sop:

        def restart_at_3(intermediate):
            if intermediate.n_iter == 3:
                client.restart_workers([sop.shard_workers[1]])

        t0 = time.monotonic()
        got = lc.solve(sop, p.y, 2, max_iter=20, callback=restart_at_3, **kw)
        assert time.monotonic() - t0 < 150   # bounded: timeout=30 per call, no hang
    assert got.status == "operator_failed"
    assert got.n_iter == 3
    assert "shard 1" in got.message and "keep_source=True" in got.message
    for a, b in zip(got.factors, ref.factors):
        assert rel(a, b) < 1e-12
    assert list(got.history.iteration) == [0, 1, 2, 3]
    np.testing.assert_allclose(got.history.loss, ref.history.loss, rtol=1e-12)


def test_hung_worker_during_solve_is_operator_failed(client, tmp_path):
    p = local_problem("dense", np.float64)
    kw = {"method": "gd", "step": 0.05, "seed": 4}
    ref = lc.solve(p.operator, p.y, 2, max_iter=2, **kw)
    flag = tmp_path / "blocking"
    code = f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); time.sleep(3.0)"
    with ShardedOperator.from_operator(p.operator, 2, client, timeout=60) as sop:
        blockers = []

        def block_at_2(intermediate):
            if intermediate.n_iter == 2:
                # block worker 0's event loop for 3 s: the next call cannot be answered
                th = threading.Thread(target=client.run, args=(exec, code),
                                      kwargs={"workers": [sop.shard_workers[0]]})
                th.start()
                blockers.append(th)
                for _ in range(600):
                    if flag.exists():
                        break
                    time.sleep(0.05)
                sop.timeout = 0.5

        got = lc.solve(sop, p.y, 2, max_iter=20, callback=block_at_2, **kw)
        for th in blockers:
            th.join()
    assert got.status == "operator_failed"
    assert got.n_iter == 2
    assert "shard 0" in got.message and "timeout=" in got.message
    for a, b in zip(got.factors, ref.factors):
        assert rel(a, b) < 1e-12
