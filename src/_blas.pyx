# Python-callable probes of the BLAS/LAPACK shim (_blas.pxd), so that the tests can check
# every wrapper at float32 and float64 against numpy. Not part of the public API.
from cython cimport floating

import numpy as np


def py_dot(const floating[::1] x, const floating[::1] y):
    return dot(<blas_int>x.shape[0], &x[0], 1, &y[0], 1)


def py_axpy(double alpha, const floating[::1] x, floating[::1] y):
    axpy(<blas_int>x.shape[0], <floating>alpha, &x[0], 1, &y[0], 1)


def py_scal(double alpha, floating[::1] x):
    scal(<blas_int>x.shape[0], <floating>alpha, &x[0], 1)


def py_nrm2(const floating[::1] x):
    return nrm2(<blas_int>x.shape[0], &x[0], 1)


def py_gemv(str trans, double alpha, const floating[:, ::1] A, const floating[::1] x,
            double beta, floating[::1] y):
    cdef char t = ord(trans)
    gemv(t, <blas_int>A.shape[0], <blas_int>A.shape[1], <floating>alpha, &A[0, 0], <blas_int>A.shape[1],
         &x[0], 1, <floating>beta, &y[0], 1)


def py_gemm(str transa, str transb, double alpha, const floating[:, ::1] A,
            const floating[:, ::1] B, double beta, floating[:, ::1] C):
    cdef char ta = ord(transa), tb = ord(transb)
    cdef blas_int m = C.shape[0], n = C.shape[1]
    cdef blas_int k = A.shape[1] if ta == b'n' else A.shape[0]
    gemm(ta, tb, m, n, k, <floating>alpha, &A[0, 0], <blas_int>A.shape[1], &B[0, 0],
         <blas_int>B.shape[1], <floating>beta, &C[0, 0], <blas_int>C.shape[1])


def py_syrk(str trans, double alpha, const floating[:, ::1] A, double beta,
            floating[:, ::1] C):
    cdef char t = ord(trans)
    cdef blas_int n = C.shape[0]
    cdef blas_int k = A.shape[1] if t == b'n' else A.shape[0]
    syrk(t, n, k, <floating>alpha, &A[0, 0], <blas_int>A.shape[1], <floating>beta, &C[0, 0], <blas_int>C.shape[1])


def py_cholesky_solve_right(floating[:, ::1] P, floating[:, ::1] B):
    """B <- B P^{-1} for SPD P (P is overwritten by its factor). Returns LAPACK info."""
    cdef blas_int n = P.shape[0]
    cdef blas_int info = potrf(n, &P[0, 0], n)
    if info != 0:
        return info
    return potrs_right(n, <blas_int>B.shape[0], &P[0, 0], n, &B[0, 0], n)


def py_syev(floating[:, ::1] A, floating[::1] w):
    """In-place eigendecomposition; returns LAPACK info. Rows of A become eigenvectors."""
    cdef blas_int n = A.shape[0]
    cdef blas_int lwork = syev_lwork(n, &A[0, 0], n, &w[0])
    if lwork < 1:
        return -lwork
    work = np.empty(lwork, dtype=np.float64 if floating is double else np.float32)
    cdef floating[::1] work_view = work
    return syev(n, &A[0, 0], n, &w[0], &work_view[0], lwork)
