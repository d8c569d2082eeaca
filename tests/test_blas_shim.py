"""Every wrapper of the BLAS/LAPACK shim (src/_blas.pxd) against numpy, in both dtypes."""

import numpy as np
import pytest

from lowrank_core import _blas

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-13}


def close(actual, expected, dtype):
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_level1(dtype, rng):
    x = rng.standard_normal(37).astype(dtype)
    y = rng.standard_normal(37).astype(dtype)
    close(_blas.py_dot(x, y), np.dot(x.astype(np.float64), y), dtype)
    close(_blas.py_nrm2(x), np.linalg.norm(x.astype(np.float64)), dtype)
    y2 = y.copy()
    _blas.py_axpy(dtype(0.75), x, y2)
    close(y2, 0.75 * x.astype(np.float64) + y, dtype)
    x2 = x.copy()
    _blas.py_scal(dtype(-2.5), x2)
    close(x2, -2.5 * x.astype(np.float64), dtype)
    assert y2.dtype == dtype and x2.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans", ["n", "t"])
def test_gemv(dtype, trans, rng):
    A = rng.standard_normal((7, 5)).astype(dtype)
    x = rng.standard_normal(5 if trans == "n" else 7).astype(dtype)
    y = rng.standard_normal(7 if trans == "n" else 5).astype(dtype)
    opA = A if trans == "n" else A.T
    expected = 1.5 * opA.astype(np.float64) @ x + 0.5 * y
    _blas.py_gemv(trans, dtype(1.5), A, x, dtype(0.5), y)
    close(y, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", ["n", "t"])
@pytest.mark.parametrize("tb", ["n", "t"])
def test_gemm(dtype, ta, tb, rng):
    m, n, k = 6, 4, 5
    A = rng.standard_normal((m, k) if ta == "n" else (k, m)).astype(dtype)
    B = rng.standard_normal((k, n) if tb == "n" else (n, k)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    opA = A if ta == "n" else A.T
    opB = B if tb == "n" else B.T
    expected = 2.0 * opA.astype(np.float64) @ opB - 1.0 * C
    _blas.py_gemm(ta, tb, dtype(2.0), A, B, dtype(-1.0), C)
    close(C, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans", ["n", "t"])
def test_syrk_fills_both_triangles(dtype, trans, rng):
    A = rng.standard_normal((6, 4) if trans == "n" else (4, 6)).astype(dtype)
    C = np.zeros((6, 6), dtype)
    _blas.py_syrk(trans, dtype(1.0), A, dtype(0.0), C)
    A64 = A.astype(np.float64)
    expected = A64 @ A64.T if trans == "n" else A64.T @ A64
    close(C, expected, dtype)
    assert np.array_equal(C, C.T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_solve_right(dtype, rng):
    k, nrows = 5, 9
    Q = rng.standard_normal((k, k))
    P = (Q @ Q.T + k * np.eye(k)).astype(dtype)
    B = rng.standard_normal((nrows, k)).astype(dtype)
    expected = np.linalg.solve(P.astype(np.float64), B.astype(np.float64).T).T  # B P^{-1}
    X = B.copy()
    info = _blas.py_cholesky_solve_right(P.copy(), X)
    assert info == 0
    close(X, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_reports_indefinite(dtype):
    P = np.diag([1.0, -1.0, 2.0]).astype(dtype)
    assert _blas.py_cholesky_solve_right(P, np.ones((2, 3), dtype)) == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_syev(dtype, rng):
    k = 6
    Q = rng.standard_normal((k, k))
    S = (Q + Q.T).astype(dtype)
    A = S.copy()
    w = np.empty(k, dtype)
    assert _blas.py_syev(A, w) == 0
    close(w, np.linalg.eigvalsh(S.astype(np.float64)), dtype)
    # rows of A are the eigenvectors: S = A^T diag(w) A
    close(A.T.astype(np.float64) @ np.diag(w) @ A, S.astype(np.float64), dtype)
