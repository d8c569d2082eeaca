"""Reproducers of reliability defects (each failed before its fix)."""

import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

import lowrank_core as lc
from lowrank_core.initialization import top_singular_value


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
    np.testing.assert_allclose(sigma, reference, rtol=1e-8)


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
        "entries": dict(n1=300, n2=200, rank=3, m=30_000, operator="entries"),
        "sparse": dict(n1=60, n2=50, rank=3, m=3000, operator="sparse"),
        "rank-one": dict(n1=40, n2=30, rank=2, m=1500, operator="rank-one"),
        "gaussian": dict(n1=20, n2=15, rank=2, m=600, operator="gaussian"),
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
