"""Dense and packed-symmetric operators against plain numpy, adjoint identities,
finite differences, dtype preservation, determinism and bad input."""

import warnings

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import _dense

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["general", "symmetric"])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_residual_gradient_matches_numpy(kind, dtype, n_threads, rng):
    op, A = (general if kind == "general" else symmetric)(rng, dtype=dtype)
    op.n_threads = n_threads
    n1, n2 = op.shape
    F = rng.standard_normal((n1, 3)).astype(dtype)
    G = rng.standard_normal((n2, 3)).astype(dtype)
    y = rng.standard_normal(op.m).astype(dtype)
    loss, z, SG, StF = op.residual_gradient(F, G, y)
    rl, rz, rSG, rStF = reference_products(A, F, G, y)
    for got in (z, SG, StF):
        assert got.dtype == dtype
    assert abs(loss - rl) <= RTOL[dtype] * rl
    assert rel(z, rz) <= RTOL[dtype]
    assert rel(SG, rSG) <= RTOL[dtype]
    assert rel(StF, rStF) <= RTOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["general", "symmetric"])
def test_forward_adjoint_and_adjoint_identity(kind, dtype, rng):
    op, A = (general if kind == "general" else symmetric)(rng, dtype=dtype)
    M = rng.standard_normal(op.shape).astype(dtype)
    z = rng.standard_normal(op.m).astype(dtype)
    AM = op.forward(M)
    AtZ = op.adjoint(z)
    assert AM.dtype == dtype and AtZ.dtype == dtype and AtZ.shape == op.shape
    A64 = A.astype(np.float64)
    assert rel(AM, np.einsum("ijk,jk->i", A64, M.astype(np.float64))) <= RTOL[dtype]
    assert rel(AtZ, np.einsum("i,ijk->jk", z.astype(np.float64), A64)) <= RTOL[dtype]
    lhs = float(np.dot(AM.astype(np.float64), z))
    rhs = float(np.sum(M.astype(np.float64) * AtZ))
    assert abs(lhs - rhs) <= RTOL[dtype] * 10 * np.linalg.norm(AM) * np.linalg.norm(z)
    # forward_factored == forward of the product
    F = rng.standard_normal((op.shape[0], 2)).astype(dtype)
    G = rng.standard_normal((op.shape[1], 2)).astype(dtype)
    assert rel(op.forward_factored(F, G), op.forward(F @ G.T)) <= RTOL[dtype]


def test_residual_gradient_is_the_gradient_finite_differences(rng):
    op, _ = general(rng)
    n1, n2 = op.shape
    F = rng.standard_normal((n1, 2))
    G = rng.standard_normal((n2, 2))
    y = rng.standard_normal(op.m)
    _, _, gF, gG = op.residual_gradient(F, G, y)

    def f(F_, G_):
        return op.residual_gradient(F_, G_, y)[0]

    h = 1e-6
    for (arr, grad, which) in [(F, gF, 0), (G, gG, 1)]:
        for idx in [(0, 0), (3, 1), (arr.shape[0] - 1, 1)]:
            E = np.zeros_like(arr)
            E[idx] = h
            if which == 0:
                fd = (f(F + E, G) - f(F - E, G)) / (2 * h)
            else:
                fd = (f(F, G + E) - f(F, G - E)) / (2 * h)
            assert abs(fd - grad[idx]) <= 1e-6 * max(1.0, abs(fd))


def test_symmetric_gradient_finite_differences(rng):
    """For f(X) = 1/4 ||A(XX^T) - y||^2, grad = (S X + S^T X) / 2 = S X for symmetric A_i."""
    op, _ = symmetric(rng)
    X = rng.standard_normal((op.shape[0], 3))
    y = rng.standard_normal(op.m)
    loss, _, SX, StX = op.residual_gradient(X, None, y)
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


def test_not_symmetric_is_an_error(rng):
    with pytest.raises(ValueError, match="from_general"):
        lc.SymmetricDenseOperator(rng.standard_normal((4, 3, 3)))


@pytest.mark.parametrize("kind", ["general", "symmetric"])
def test_bitwise_repeatable_for_fixed_threads(kind, rng):
    op, _ = (general if kind == "general" else symmetric)(rng, m=203)
    F = rng.standard_normal((op.shape[0], 3))
    G = rng.standard_normal((op.shape[1], 3))
    y = rng.standard_normal(op.m)
    for nt in (1, 2, 4):
        op.n_threads = nt
        first = [np.copy(a) for a in op.residual_gradient(F, G, y)[1:]]
        for _ in range(3):
            again = op.residual_gradient(F, G, y)[1:]
            for u, v in zip(first, again):
                assert np.array_equal(u, v)


def test_out_buffers_are_used(rng):
    op, A = general(rng)
    F = rng.standard_normal((7, 2))
    G = rng.standard_normal((5, 2))
    y = rng.standard_normal(op.m)
    out = (np.empty(op.m), np.empty((7, 2)), np.empty((5, 2)))
    loss, z, SG, StF = op.residual_gradient(F, G, y, out=out)
    assert z is out[0] and SG is out[1] and StF is out[2]
    rl, rz, rSG, rStF = reference_products(A, F, G, y)
    assert rel(SG, rSG) <= 1e-12
    with pytest.raises(ValueError, match="out"):
        op.residual_gradient(F, G, y, out=(np.empty(op.m), np.empty((7, 3)), np.empty((5, 2))))


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


def test_float32_is_never_upcast_and_mixing_is_an_error(rng):
    op, _ = general(rng, dtype=np.float32)
    F = rng.standard_normal((7, 2)).astype(np.float32)
    G = rng.standard_normal((5, 2)).astype(np.float32)
    y = rng.standard_normal(op.m).astype(np.float32)
    _, z, SG, StF = op.residual_gradient(F, G, y)
    assert z.dtype == SG.dtype == StF.dtype == np.float32
    with pytest.raises(TypeError, match=r"F has dtype float64.*astype"):
        op.residual_gradient(F.astype(np.float64), G, y)
    with pytest.raises(TypeError, match="y has dtype float64"):
        op.residual_gradient(F, G, y.astype(np.float64))
    assert op.astype(np.float64).dtype == np.float64


@pytest.mark.parametrize("bad, exc, match", [
    (lambda op, F, G, y: op.residual_gradient(F[:-1], G, y), ValueError, r"F must have shape \(7, k\)"),
    (lambda op, F, G, y: op.residual_gradient(F, G[:, :1], y), ValueError, "G must have shape"),
    (lambda op, F, G, y: op.residual_gradient(F, G, y[:-1]), ValueError, r"y must have shape \(60,\)"),
    (lambda op, F, G, y: op.residual_gradient(F, G, np.where(y > 0, np.nan, y)), ValueError, "y contains"),
    (lambda op, F, G, y: op.residual_gradient(np.where(F > 0, np.inf, F), G, y), ValueError, "F contains"),
    (lambda op, F, G, y: op.residual_gradient(F, G), TypeError, "needs y"),
    (lambda op, F, G, y: op.residual_gradient(F, None, y), ValueError, "square"),
    (lambda op, F, G, y: op.residual_gradient(F.astype(np.complex128), G, y), TypeError, "real numeric"),
    (lambda op, F, G, y: op.residual_gradient(F.astype(np.int64), G, y), TypeError, "float32 or float64"),
    (lambda op, F, G, y: op.forward(np.ones((7, 4))), ValueError, r"M must have shape \(7, 5\)"),
    (lambda op, F, G, y: op.adjoint(np.ones(3)), ValueError, r"z must have shape \(60,\)"),
    (lambda op, F, G, y: op.residual_gradient(np.ones((7, 0)), np.ones((5, 0)), y), ValueError, "empty"),
])
def test_bad_input_is_named(bad, exc, match, rng):
    op, _ = general(rng)
    F = rng.standard_normal((7, 2))
    G = rng.standard_normal((5, 2))
    y = rng.standard_normal(op.m)
    with pytest.raises(exc, match=match):
        bad(op, F, G, y)


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


def test_adjoint_operator_matches_adjoint(rng):
    op, _ = general(rng)
    z = rng.standard_normal(op.m)
    L = op.adjoint_operator(z)
    S = op.adjoint(z)
    v = rng.standard_normal(op.shape[1])
    u = rng.standard_normal(op.shape[0])
    np.testing.assert_allclose(L.matvec(v), S @ v, rtol=1e-12)
    np.testing.assert_allclose(L.rmatvec(u), S.T @ u, rtol=1e-12)


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
