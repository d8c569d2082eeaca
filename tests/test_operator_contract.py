"""The operator contract, checked with the same tests on every operator kind.

Each case builds an operator together with its measurement matrices written out as a
plain dense (m, n1 n2) float64 array, constructed from the raw inputs with numpy, never
from the operator's kernels. Every public product is compared against numpy on that
matrix, in both dtypes, with one tolerance table.
"""

import numpy as np
import pytest

import lowrank_core as lc

DTYPES = [np.float64, np.float32]
#: relative tolerance (to the reference's largest entry) of every product in this module
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}
N1, N2, K = 11, 8, 3


# ----------------------------------------------------------------------- cases
def dense_case(rng, dtype):
    A = rng.standard_normal((50, N1, N2))
    return lc.DenseOperator(A.astype(dtype)), A.reshape(50, -1)


def symmetric_case(rng, dtype):
    B = rng.standard_normal((50, N1, N1))
    A = (B + B.transpose(0, 2, 1)) / 2
    A = A.astype(dtype).astype(np.float64)  # symmetric in both precisions
    return lc.SymmetricDenseOperator(A.astype(dtype)), A.reshape(50, -1)


def sparse_case(rng, dtype):
    m, nnz = 40, 160
    meas = rng.integers(0, m, nnz)
    rows, cols = rng.integers(0, N1, nnz), rng.integers(0, N2, nnz)
    vals = rng.standard_normal(nnz).astype(dtype)
    Aref = np.zeros((m, N1 * N2))
    np.add.at(Aref, (meas, rows * N2 + cols), vals.astype(np.float64))
    return lc.SparseOperator((meas, rows, cols, vals), (N1, N2), m=m), Aref


def entries_case(rng, dtype):
    m = 60
    rows, cols = rng.integers(0, N1, m), rng.integers(0, N2, m)
    scale = 0.75
    Aref = np.zeros((m, N1 * N2))
    Aref[np.arange(m), rows * N2 + cols] = scale
    return lc.EntryOperator(rows, cols, (N1, N2), dtype=dtype, scale=scale), Aref


def rank_one_case(rng, dtype):
    m = 45
    a = rng.standard_normal((m, N1)).astype(dtype)
    b = rng.standard_normal((m, N2)).astype(dtype)
    Aref = np.einsum("ij,il->ijl", a.astype(np.float64), b.astype(np.float64))
    return lc.RankOneOperator(a, b, block=4), Aref.reshape(m, -1)


def rank_one_symmetric_case(rng, dtype):
    m = 45
    a = rng.standard_normal((m, N1)).astype(dtype)
    a64 = a.astype(np.float64)
    return lc.RankOneOperator(a, block=4), np.einsum("ij,il->ijl", a64, a64).reshape(m, -1)


CASES = {
    "dense": dense_case,
    "symmetric": symmetric_case,
    "sparse": sparse_case,
    "entries": entries_case,
    "rank-one": rank_one_case,
    "rank-one-symmetric": rank_one_symmetric_case,
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param


def build(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    op, Aref = CASES[case](rng, dtype)
    return op, Aref, rng


def assert_close(x, ref, dtype):
    """x keeps the operator's dtype and matches ref to RTOL of ref's largest entry."""
    dtype = np.dtype(dtype)
    assert x.dtype == dtype, f"dtype changed: {x.dtype} != {dtype}"
    ref = np.asarray(ref, np.float64)
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(x.astype(np.float64), ref, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * scale)


def factors(rng, op, dtype, k=K):
    n1, n2 = op.shape
    return (rng.standard_normal((n1, k)).astype(dtype),
            rng.standard_normal((n2, k)).astype(dtype))


# ----------------------------------------------------------------------- checks
@pytest.mark.parametrize("dtype", DTYPES)
def test_adjoint_products_match_numpy(case, dtype):
    op, Aref, rng = build(case, dtype)
    n1, n2 = op.shape
    F, G = factors(rng, op, dtype)
    w = rng.standard_normal(op.m).astype(dtype)
    S = (Aref.T @ w.astype(np.float64)).reshape(n1, n2)
    SG, StF = op.adjoint_products(w, F, G)
    assert SG.shape == (n1, K) and StF.shape == (n2, K)
    assert_close(SG, S @ G.astype(np.float64), dtype)
    assert_close(StF, S.T @ F.astype(np.float64), dtype)
    if n1 == n2:  # G omitted means G = F
        SX, StX = op.adjoint_products(w, F)
        assert_close(SX, S @ F.astype(np.float64), dtype)
        assert_close(StX, S.T @ F.astype(np.float64), dtype)
    # the same call twice (cached workspace reused) gives the same bits
    again = op.adjoint_products(w, F, G)
    np.testing.assert_array_equal(again[0], SG)
    np.testing.assert_array_equal(again[1], StF)
