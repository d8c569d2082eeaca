"""The planted-completion recipe of ShardedOperator.completion: shards built on the workers
equal the same entries built in-process, their values equal plain numpy on the seeded
factors, and a solve on them matches the single-process solve."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import lowrank_core as lc
from lowrank_core.distributed import ShardedOperator
from lowrank_core.distributed.recipes import (
    _completion_shard,
    completion_entries,
    planted_factors,
)

N1, N2, RANK, M, SHARDS, SEED = 60, 50, 3, 1500, 3, 11


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=1 << 30, silence_logs=50)
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entries_values_are_the_planted_matrix(dtype):
    U, V = planted_factors(N1, N2, RANK, SEED)
    M = U @ V.T                                    # plain numpy truth
    M_TOTAL = 1500
    scale = 1.0 / np.sqrt(M_TOTAL / (N1 * N2))
    seen = 0
    for s in range(SHARDS):
        rows, cols, vals, sc = completion_entries(N1, N2, RANK, M_TOTAL, SHARDS, 0.0,
                                                  np.dtype(dtype).str, SEED, s)
        assert sc == pytest.approx(scale, rel=1e-15)
        lo, hi = s * N1 // SHARDS, (s + 1) * N1 // SHARDS
        assert rows.min() >= lo and rows.max() < hi and cols.max() < N2
        assert len(rows) == (s + 1) * M_TOTAL // SHARDS - s * M_TOTAL // SHARDS
        expect = (scale * M[rows, cols]).astype(dtype)
        np.testing.assert_allclose(vals, expect, rtol=1e-6 if dtype == np.float32 else 1e-14)
        seen += len(rows)
        # deterministic: the same draw again, bit for bit
        again = completion_entries(N1, N2, RANK, M_TOTAL, SHARDS, 0.0, np.dtype(dtype).str,
                                   SEED, s)
        assert all(np.array_equal(a, b) for a, b in zip((rows, cols, vals), again[:3]))
    assert seen == M_TOTAL
    # noise: its sample standard deviation matches the requested one (up to sampling)
    _, _, noisy, sc = completion_entries(N1, N2, RANK, 30000, 1, 0.5, "<f8", SEED, 0)
    rows, cols, clean, _ = completion_entries(N1, N2, RANK, 30000, 1, 0.0, "<f8", SEED, 0)
    assert np.std((noisy - clean) / sc) == pytest.approx(0.5, rel=0.03)


@pytest.mark.parametrize("layout", ["blocked", "rows"])
def test_shards_equal_in_process_entries(client, layout):
    with ShardedOperator.completion(N1, N2, RANK, M, n_shards=SHARDS, client=client,
                                    seed=SEED, dtype=np.float64, layout=layout) as sop:
        assert sop.m == M and sop.shape == (N1, N2)
        y = sop.measurements()
        assert not y.flags.writeable
        shards = sop.fetch_shards()
        F = np.random.default_rng(0).standard_normal((N1, RANK))
        G = np.random.default_rng(1).standard_normal((N2, RANK))
        got = sop.residual_gradient(F, G, y)
        U, V = planted_factors(N1, N2, RANK, SEED)
        SG = np.zeros((N1, RANK))
        StF = np.zeros((N2, RANK))
        loss = 0.0
        for s in range(SHARDS):
            rows, cols, vals, sc = completion_entries(N1, N2, RANK, M, SHARDS, 0.0, "<f8",
                                                      SEED, s)
            op_s, y_s = _completion_shard(N1, N2, RANK, M, SHARDS, 0.0, "<f8", layout, SEED,
                                          s)
            # the worker's shard is the in-process one: same entries, same order
            assert np.array_equal(shards[s].rows, op_s.rows)
            assert np.array_equal(shards[s].cols, op_s.cols)
            a, b = sop.shard_rows[s]
            assert np.array_equal(y[a:b], y_s)
            # plain numpy on the user's entries (order-free sums)
            z = sc * np.einsum("ij,ij->i", F[rows], G[cols]) - vals
            loss += 0.5 * z @ z
            np.add.at(SG, rows, sc * z[:, None] * G[cols])
            np.add.at(StF, cols, sc * z[:, None] * F[rows])
            np.testing.assert_allclose(np.sort(y_s), np.sort(vals), rtol=0, atol=0)
        assert got[0] == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(got[2], SG, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[3], StF, rtol=1e-10, atol=1e-12)
        stats = sop.kernel_stats(reset=True)
        assert [st["kernels"]["residual_gradient"][0] for st in stats] == [1] * SHARDS
        assert all(st["kernels"] == {} for st in sop.kernel_stats())


def test_solve_on_resident_measurements_matches_single_process(client):
    with ShardedOperator.completion(N1, N2, RANK, M, n_shards=SHARDS, client=client,
                                    seed=SEED, dtype=np.float64) as sop:
        y = sop.measurements()
        local = lc.EntryOperator(np.concatenate([s.rows for s in sop.fetch_shards()]),
                                 np.concatenate([s.cols for s in sop.fetch_shards()]),
                                 (N1, N2), scale=sop.fetch_shards()[0].scale, n_threads=1)
        kw = {"method": "gd", "step": 0.3, "max_iter": 40, "seed": 2}
        ref = lc.solve(local, np.array(y), RANK, **kw)
        got = lc.solve(sop, y, RANK, **kw)
        assert got.n_iter == ref.n_iter
        for a, b in zip(got.factors, ref.factors):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        # the planted truth: the loss went down from the start by orders of magnitude
        assert got.history["residual"][-1] < 0.5 * got.history["residual"][0]


@pytest.mark.parametrize("step", [0.3, "auto"])
def test_residual_kept_on_shards_solve_matches_single_process(client, step):
    with ShardedOperator.completion(N1, N2, RANK, M, n_shards=SHARDS, client=client,
                                    seed=SEED, dtype=np.float64, residual="shards") as sop:
        y = sop.measurements()
        shards = sop.fetch_shards()
        local = lc.EntryOperator(np.concatenate([s.rows for s in shards]),
                                 np.concatenate([s.cols for s in shards]),
                                 (N1, N2), scale=shards[0].scale, n_threads=1)
        kw = {"method": "gd", "step": step, "max_iter": 25, "seed": 2}
        ref = lc.solve(local, np.array(y), RANK, **kw)
        got = lc.solve(sop, y, RANK, **kw)
        assert got.n_iter == ref.n_iter
        for a, b in zip(got.factors, ref.factors):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        # the residual stayed on the shards: the caller's z carries the marker only
        F, G = ref.factors
        z = np.zeros(M)
        loss, z, _, _ = sop.residual_gradient(F, G, y, out=(z, np.empty((N1, RANK)),
                                                            np.empty((N2, RANK))))
        assert np.isnan(z[0]) and not np.any(z[1:])
        assert loss == pytest.approx(0.5 * np.sum((local.forward_factored(F, G) - y) ** 2),
                                     rel=1e-12)
        # line-search products need that very buffer
        with pytest.raises(ValueError, match="residual='shards'"):
            sop._line_search_products(F, G, F, G, np.zeros(M))
        got5 = sop._line_search_products(F, G, F, G, z)
        zl = local.forward_factored(F, G) - y
        ref5 = local._line_search_products(F, G, F, G, zl)
        np.testing.assert_allclose(got5, ref5, rtol=1e-10)


def _local_copy(sop):
    shards = sop.fetch_shards()
    return lc.EntryOperator(np.concatenate([s.rows for s in shards]),
                            np.concatenate([s.cols for s in shards]),
                            (N1, N2), scale=shards[0].scale, n_threads=1)


@pytest.mark.parametrize("step", [0.3, "auto"])
def test_remote_measurements_recompute_matches_single_process(client, step):
    # y never copied to the client (RemoteMeasurements), residuals neither sent nor kept
    # (the line search of step="auto" recomputes them on the shards)
    with ShardedOperator.completion(N1, N2, RANK, M, n_shards=SHARDS, client=client,
                                    seed=SEED, dtype=np.float64,
                                    residual="recompute") as sop:
        y_remote = sop.remote_measurements()
        y = np.array(sop.measurements())              # for the reference only
        assert y_remote.shape == (M,) and len(y_remote) == M and y_remote.dtype == y.dtype
        assert y_remote.norm() == pytest.approx(float(np.sqrt(y @ y)), rel=1e-13)
        with pytest.raises(TypeError, match="measurements"):
            np.asarray(y_remote)
        local = _local_copy(sop)
        kw = {"method": "gd", "step": step, "max_iter": 25, "seed": 2}
        ref = lc.solve(local, y, RANK, **kw)
        got = lc.solve(sop, y_remote, RANK, **kw)
        assert got.n_iter == ref.n_iter
        for a, b in zip(got.factors, ref.factors):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.history["residual"], ref.history["residual"],
                                   rtol=1e-10)
        # spectral initialization from the remote measurements: the same start
        start_ref = lc.solve(local, y, RANK, method="gd", init="spectral", max_iter=0,
                             seed=5).factors
        start = lc.solve(sop, y_remote, RANK, method="gd", init="spectral", max_iter=0,
                         seed=5).factors
        for a, b in zip(start, start_ref):
            np.testing.assert_allclose(np.abs(a), np.abs(b), rtol=1e-8, atol=1e-10)
        # the shards keep no residual: a line search on a fresh evaluation recomputes it
        F, G = ref.factors
        z = np.zeros(M)
        sop.residual_gradient(F, G, y_remote, out=(z, np.empty((N1, RANK)),
                                                   np.empty((N2, RANK))))
        assert np.isnan(z[0]) and not np.any(z[1:])
        D_F, D_G = np.roll(F, 1, axis=0), np.roll(G, 2, axis=0)
        got5 = sop._line_search_products(F, G, D_F, D_G, z)
        zl = local.forward_factored(F, G) - y
        ref5 = local._line_search_products(F, G, D_F, D_G, zl)
        np.testing.assert_allclose(got5, ref5, rtol=1e-10)
        with ShardedOperator.completion(N1, N2, RANK, M, n_shards=SHARDS, client=client,
                                        seed=SEED, dtype=np.float64) as other, \
                pytest.raises(ValueError, match="another"):
            other.residual_gradient(F, G, y_remote)


def test_calls_in_flight_bounded_and_sums_unchanged(client, monkeypatch):
    from lowrank_core.distributed import client as client_mod

    n_shards = 5
    F = np.random.default_rng(3).standard_normal((N1, RANK))
    G = np.random.default_rng(4).standard_normal((N2, RANK))
    real = client_mod._call
    counts = {"now": 0, "peak": 0}

    def counting(actor, method, args):
        fut = real(actor, method, args)
        if method != "residual_gradient":
            return fut
        counts["now"] += 1
        counts["peak"] = max(counts["peak"], counts["now"])

        class Counted:
            def result(self, timeout=None):
                try:
                    return fut.result(timeout=timeout)
                finally:
                    counts["now"] -= 1
        return Counted()

    monkeypatch.setattr(client_mod, "_call", counting)
    answers = {}
    for in_flight in (0, 1, 2, None):
        with ShardedOperator.completion(N1, N2, RANK, M, n_shards=n_shards, client=client,
                                        seed=SEED, dtype=np.float64, in_flight=in_flight,
                                        residual="client") as sop:
            counts["peak"] = 0
            answers[in_flight] = sop.residual_gradient(F, G, sop.remote_measurements())
            expect = {0: n_shards, 1: 1, 2: 2, None: min(n_shards, 2 * 2)}[in_flight]
            assert counts["peak"] == expect
            assert counts["now"] == 0
            if in_flight == 0:
                local = _local_copy(sop)
                y = np.array(sop.measurements())
    # every window gives the same sums bit for bit (shard order is kept) ...
    for key in (1, 2, None):
        assert answers[key][0] == answers[0][0]
        for a, b in zip(answers[key][1:], answers[0][1:]):
            assert np.array_equal(a, b)
    # ... and they are the single-process products (the row-block replies included)
    ref = local.residual_gradient(F, G, y)
    assert answers[0][0] == pytest.approx(ref[0], rel=1e-12)
    for a, b in zip(answers[0][1:], ref[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
