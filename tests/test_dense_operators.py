"""Dense and packed-symmetric operators: what is specific to them (packed layout,
symmetrization, the symmetric loss, ensembles' normalization, construction errors,
memory refusal, non-contiguous A). The products common to every kind are checked in
test_operator_contract.py."""

import warnings

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import _dense

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def reference_products(A, F, G, y):
    """Plain numpy in float64: A (m, n1, n2)."""
    A = A.astype(np.float64)
    F = F.astype(np.float64)
    G = G.astype(np.float64)
    z = np.einsum("ijk,jk->i", A, F @ G.T) - y.astype(np.float64)
    S = np.einsum("i,ijk->jk", z, A)
    return 0.5 * z @ z, z, S @ G, S.T @ F


def general(rng, m=60, n1=7, n2=5, dtype=np.float64):
    A = rng.standard_normal((m, n1, n2)).astype(dtype)
    return lc.DenseOperator(A), A


def symmetric(rng, m=60, n=6, dtype=np.float64):
    B = rng.standard_normal((m, n, n))
    A = ((B + B.transpose(0, 2, 1)) / 2).astype(dtype)
    return lc.SymmetricDenseOperator(A), A


def test_symmetric_gradient_finite_differences(rng):
    """For f(X) = 1/4 ||A(XX^T) - y||^2, grad = (S X + S^T X) / 2 = S X for symmetric A_i."""
    op, _ = symmetric(rng)
    X = rng.standard_normal((op.shape[0], 3))
    y = rng.standard_normal(op.m)
    _, _, SX, StX = op.residual_gradient(X, None, y)
    np.testing.assert_allclose(SX, StX, rtol=1e-12, atol=1e-12)
    h = 1e-6
    for idx in [(0, 0), (2, 1), (5, 2)]:
        E = np.zeros_like(X)
        E[idx] = h
        fd = (op.residual_gradient(X + E, None, y)[0] - op.residual_gradient(X - E, None, y)[0])
        fd /= 2 * h * 2  # the symmetric loss is half of residual_gradient's loss
        assert abs(fd - SX[idx]) <= 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_symmetric_equals_general_on_symmetric_data(dtype, rng):
    op_sym, A = symmetric(rng, m=80, n=9, dtype=dtype)
    op_gen = lc.DenseOperator(A)
    X = rng.standard_normal((9, 4)).astype(dtype)
    Y = rng.standard_normal((9, 4)).astype(dtype)
    y = rng.standard_normal(80).astype(dtype)
    for F, G in [(X, X), (X, Y)]:
        a = op_sym.residual_gradient(F, G, y)
        b = op_gen.residual_gradient(F, G, y)
        for u, v in zip(a[1:], b[1:]):
            assert rel(u, v) <= 10 * RTOL[dtype]
    # packing round trip
    np.testing.assert_array_equal(op_sym.matrices, A)


def test_from_general_symmetrizes_and_gaussian_normalization(rng):
    B = rng.standard_normal((40, 6, 6))
    op = lc.SymmetricDenseOperator.from_general(B)
    M = rng.standard_normal((6, 6))
    M = M + M.T
    np.testing.assert_allclose(op.forward(M), np.einsum("ijk,jk->i", B, M), rtol=1e-12)
    # near-isotropy: E ||A(M)||^2 = ||M||_F^2 for the generated ensembles
    m = 4000
    for gen in (lc.DenseOperator.gaussian(m, 6, 6, seed=1),
                lc.SymmetricDenseOperator.gaussian(m, 6, seed=2)):
        ratio = np.linalg.norm(gen.forward(M)) ** 2 / np.linalg.norm(M) ** 2
        assert abs(ratio - 1) < 0.1  # 4000 samples: std of the ratio ~ sqrt(2/4000)
    pkd = lc.SymmetricDenseOperator.gaussian(20000, 3, seed=3).packed
    # diagonal N(0, 1/m), off-diagonal N(0, 1/(2m)); packed order (0,0) (0,1) (0,2) (1,1) ...
    var = pkd.var(axis=0) * 20000
    np.testing.assert_allclose(var, [1, .5, .5, 1, .5, 1], rtol=0.05)


def test_astype_is_an_explicit_copy_in_the_other_precision(rng):
    for op, _ in (general(rng, dtype=np.float32), symmetric(rng, dtype=np.float32)):
        op64 = op.astype(np.float64)
        assert op64.dtype == np.float64 and type(op64) is type(op)
        np.testing.assert_array_equal(op64.matrices, op.matrices.astype(np.float64))


def test_not_symmetric_is_an_error(rng):
    with pytest.raises(ValueError, match="from_general"):
        lc.SymmetricDenseOperator(rng.standard_normal((4, 3, 3)))


def test_non_contiguous_inputs_work(rng):
    A = rng.standard_normal((30, 8, 12))[:, :, ::2]  # non-contiguous (30, 8, 6)
    op = lc.DenseOperator(A)
    F = np.asfortranarray(rng.standard_normal((8, 3)))
    G = rng.standard_normal((3, 6)).T  # transposed view
    y = rng.standard_normal(60)[::2]
    got = op.residual_gradient(F, G, y)
    ref = reference_products(np.ascontiguousarray(A), F, G, y)
    for u, v in zip(got[1:], ref[1:]):
        assert rel(u, v) <= 1e-12


def test_bad_operator_construction(rng):
    with pytest.raises(ValueError, match="A contains"):
        lc.DenseOperator(np.full((3, 2, 2), np.nan))
    with pytest.raises(ValueError, match="shape="):
        lc.DenseOperator(np.ones((3, 4)))
    with pytest.raises(ValueError, match="n1\\*n2"):
        lc.DenseOperator(np.ones((3, 4)), shape=(3, 3))
    with pytest.raises(ValueError, match="must not be empty"):
        lc.DenseOperator(np.ones((0, 2, 2)))
    with pytest.raises(TypeError, match="only float32 and float64"):
        lc.DenseOperator(np.ones((3, 2, 2), dtype=np.float16))
    with pytest.raises(ValueError, match=r"\(m, n, n\)"):
        lc.SymmetricDenseOperator(np.ones((3, 2, 4)))
    with pytest.raises(ValueError, match="n_threads"):
        lc.DenseOperator(np.ones((3, 2, 2)), n_threads=0)


def test_too_large_dense_operator_is_refused_before_allocation():
    with pytest.raises(MemoryError, match=r"needs [\d,]+ bytes"):
        lc.DenseOperator.gaussian(10**6, 10**4, 10**4)
    with pytest.raises(MemoryError, match="bytes"):
        lc.make_problem(1000, rank=2, m=10**7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stream_sum_is_a_plain_sum(dtype, rng):
    A = rng.standard_normal((37, 101)).astype(dtype)
    for nt in (1, 2):
        assert abs(_dense.stream_sum(A, nt) - A.astype(np.float64).sum()) < 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_finiteness_check_with_huge_finite_values(dtype):
    """Entries near the dtype's maximum (whose squares or sums overflow) are finite and
    pass; one NaN or inf among them is caught and counted, whatever the chunking."""
    from lowrank_core._validation import _all_finite, as_float_array
    big = np.finfo(dtype).max / 4
    x = np.full(3000, big, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the check itself stays silent
        assert _all_finite(x) and _all_finite(x, chunk=7)
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 1500, 2999):
            y = x.copy()
            y[where] = bad
            assert not _all_finite(y) and not _all_finite(y, chunk=7)
            with pytest.raises(ValueError, match="y contains 1 NaN or infinite"):
                as_float_array(y, "y", dtype=np.dtype(dtype))
