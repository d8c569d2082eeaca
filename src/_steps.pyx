# Per-iteration k x k algebra of the factored solvers (everything outside the operator's
# residual_gradient): Gram matrices, the preconditioner factorization and solve, the
# damping norms and the factor updates.
#
# All arrays are row-major (C order) and preallocated once per solve by the Python step
# rules; nothing here allocates. Every kernel is fused on float/double (float32 stays
# float32), releases the GIL and calls BLAS/LAPACK only through the shim _blas.pxd.
#
# Shapes: a factor X is (n, k) with n = n1 or n2; a gradient D has the factor's shape;
# Gram matrices P are (k, k). Costs are per call.

from cython cimport floating
from libc.math cimport sqrt, isfinite
from libc.string cimport memcpy

from _blas cimport blas_int, axpy, dot, gemm, nrm2, potrf, potrs_right, syev, syev_lwork, syrk


# Status codes of preconditioned_step / preconditioned_norm.
CHOLESKY = 0      # (P + lam I) was positive definite: Cholesky solve
PSEUDO_INVERSE = 1  # eigendecomposition with small eigenvalues dropped
LAPACK_FAILED = -1  # syev did not converge (non-finite input)


def eigen_workspace_size(Py_ssize_t k, dtype):
    """Optimal LAPACK ``syev`` workspace length for a k x k problem of this dtype."""
    import numpy as np
    cdef double[::1] wd
    cdef float[::1] wf
    cdef double[:, ::1] Ad
    cdef float[:, ::1] Af
    cdef blas_int lw
    if np.dtype(dtype) == np.float64:
        Ad = np.eye(k)
        wd = np.empty(k)
        lw = syev_lwork(<blas_int>k, &Ad[0, 0], <blas_int>k, &wd[0])
    else:
        Af = np.eye(k, dtype=np.float32)
        wf = np.empty(k, dtype=np.float32)
        lw = syev_lwork(<blas_int>k, &Af[0, 0], <blas_int>k, &wf[0])
    return max(int(lw), 3 * k)


def gram(const floating[:, ::1] A, floating[:, ::1] out):
    """out <- A^T A (both triangles). A (n, k), out (k, k). Cost n k^2 (one SYRK)."""
    cdef blas_int n = A.shape[0], k = A.shape[1]
    with nogil:
        syrk(c't', k, n, 1, &A[0, 0], k, 0, &out[0, 0], k)


def average(const floating[:, ::1] A, const floating[:, ::1] B, floating[:, ::1] out):
    """out <- (A + B) / 2, the symmetric-loss gradient (S X + S^T X) / 2. Cost n k."""
    cdef Py_ssize_t i, n = A.shape[0] * A.shape[1]
    cdef const floating* a = &A[0, 0]
    cdef const floating* b = &B[0, 0]
    cdef floating* o = &out[0, 0]
    with nogil:
        for i in range(n):
            o[i] = <floating>0.5 * (a[i] + b[i])


def norm(const floating[:, ::1] A):
    """||A||_F (overflow-safe BLAS nrm2). Cost n k."""
    cdef blas_int n = A.shape[0] * A.shape[1]
    cdef double r
    with nogil:
        r = nrm2(n, &A[0, 0], 1)
    return r


def difference_norm(const floating[:, ::1] A, const floating[:, ::1] B):
    """||A - B||_F, accumulated in double (for k x k Gram matrices: the imbalance)."""
    cdef Py_ssize_t i, n = A.shape[0] * A.shape[1]
    cdef const floating* a = &A[0, 0]
    cdef const floating* b = &B[0, 0]
    cdef double s = 0, d
    with nogil:
        for i in range(n):
            d = <double>a[i] - <double>b[i]
            s += d * d
    return sqrt(s)


def gd_step(const floating[:, ::1] X, const floating[:, ::1] D, double eta,
            floating[:, ::1] out):
    """out <- X - eta D. Cost n k."""
    cdef blas_int n = X.shape[0] * X.shape[1]
    with nogil:
        memcpy(&out[0, 0], &X[0, 0], n * sizeof(floating))
        axpy(n, <floating>(-eta), &D[0, 0], 1, &out[0, 0], 1)


cdef inline void _shifted_copy(const floating* P, floating lam, floating* C,
                               blas_int k) noexcept nogil:
    cdef blas_int i
    memcpy(C, P, k * k * sizeof(floating))
    for i in range(k):
        C[i * k + i] = C[i * k + i] + lam


cdef int _solve_right(const floating* D, blas_int nrows, blas_int k, const floating* P,
                      floating lam, bint pinv, floating rcond, floating* C, floating* w,
                      floating* work, blas_int lwork, floating* T,
                      floating* out) noexcept nogil:
    """out <- D (P + lam I)^{-1}, or D (P + lam I)^+ when pinv or when not positive definite.

    Cholesky first (k^3/3 + 2 nrows k^2 flops); if P + lam I is not numerically positive
    definite (or ``pinv``), the eigendecomposition P + lam I = Q^T diag(w) Q and
    out = (D Q^T) diag(1/w_j for w_j > rcond * w_max, else 0) Q (k^3 + 4 nrows k^2).
    Returns CHOLESKY, PSEUDO_INVERSE or LAPACK_FAILED. P and D are not modified.
    """
    cdef blas_int info, i, j
    cdef floating cutoff, inv
    if not pinv:
        _shifted_copy(P, lam, C, k)
        info = potrf(k, C, k)
        if info == 0:
            memcpy(out, D, nrows * k * sizeof(floating))
            potrs_right(k, nrows, C, k, out, k)
            return 0
    _shifted_copy(P, lam, C, k)
    info = syev(k, C, k, w, work, lwork)
    if info != 0 or not isfinite(w[k - 1]):
        return -1
    cutoff = rcond * w[k - 1]
    if cutoff <= 0:
        cutoff = 0
    # T = D Q^T (the rows of C are the eigenvectors), then scale its columns.
    gemm(c'n', c't', nrows, k, k, 1, D, k, C, k, 0, T, k)
    for j in range(k):
        inv = 1 / w[j] if w[j] > cutoff else 0
        for i in range(nrows):
            T[i * k + j] = T[i * k + j] * inv
    gemm(c'n', c'n', nrows, k, k, 1, T, k, C, k, 0, out, k)
    return 1


cdef inline void _axpby_into(blas_int n, const floating* X, floating alpha,
                             floating* Y) noexcept nogil:
    """Y <- X + alpha Y."""
    cdef blas_int i
    for i in range(n):
        Y[i] = X[i] + alpha * Y[i]


def preconditioned_step(const floating[:, ::1] X, const floating[:, ::1] D,
                        const floating[:, ::1] P, double lam, double eta,
                        floating[:, ::1] out, floating[:, ::1] C, floating[::1] w,
                        floating[::1] work, floating[:, ::1] T, double rcond, bint pinv):
    """out <- X - eta D (P + lam I)^{-1}  (pseudo-inverse if singular or ``pinv``).

    The ScaledGD / ScaledGD(lambda) / PrecGD / AGN factor update. X, D, out, T are
    (n, k); P, C are (k, k); w (k,) and work (lwork,) are LAPACK scratch. ``out`` must
    not alias X or D. Cost O(n k^2 + k^3). Returns the status code of the solve.
    """
    cdef blas_int n = X.shape[0], k = X.shape[1]
    cdef int status
    with nogil:
        status = _solve_right(&D[0, 0], n, k, &P[0, 0], <floating>lam, pinv,
                              <floating>rcond, &C[0, 0], &w[0], &work[0],
                              <blas_int>work.shape[0], &T[0, 0], &out[0, 0])
        if status >= 0:
            # out currently holds D (P + lam I)^{-1}; turn it into X - eta * that.
            _axpby_into(n * k, &X[0, 0], <floating>(-eta), &out[0, 0])
    return status


def preconditioned_norm(const floating[:, ::1] D, const floating[:, ::1] P,
                        floating[:, ::1] C, floating[::1] w, floating[::1] work,
                        floating[:, ::1] T, floating[:, ::1] scratch, double rcond):
    """sqrt(<D, D P^{-1}>) = ||D P^{-1/2}||_F (pseudo-inverse if P is singular).

    The local norm of PrecGD's JMLR damping rule (Zhang, Fattahi, Zhang 2023, Cor. 5),
    eta = ||grad f(X) (X^T X)^{-1/2}||_F. Returns (value, status). Cost O(n k^2 + k^3).
    """
    cdef blas_int n = D.shape[0], k = D.shape[1]
    cdef int status
    cdef double v = 0
    with nogil:
        status = _solve_right(&D[0, 0], n, k, &P[0, 0], 0, False, <floating>rcond,
                              &C[0, 0], &w[0], &work[0], <blas_int>work.shape[0],
                              &T[0, 0], &scratch[0, 0])
        if status >= 0:
            v = dot(n * k, &D[0, 0], 1, &scratch[0, 0], 1)
    return sqrt(v) if v > 0 else 0.0, status
