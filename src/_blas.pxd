# The single BLAS/LAPACK shim of lowrank_core.
#
# This is the only file of the project that cimports scipy.linalg.cython_blas and
# scipy.linalg.cython_lapack. Every kernel calls the fused (float/double) inline
# wrappers below. Matrices are ROW-MAJOR (C order) everywhere in the project; the
# wrappers translate to the column-major Fortran interface by swapping operands:
# a row-major m x n matrix with leading dimension ld is, for Fortran, its n x m
# transpose with the same leading dimension.
#
# Transposition flags are the characters c'n' / c't'. All wrappers are
# ``noexcept nogil``; LAPACK status comes back through the returned ``info``.

from cython cimport floating
from scipy.linalg cimport cython_blas as _fb
from scipy.linalg cimport cython_lapack as _fl

include "_blas_int.pxi"


cdef inline floating dot(blas_int n, const floating* x, blas_int incx,
                         const floating* y, blas_int incy) noexcept nogil:
    """Return sum_i x_i y_i."""
    if floating is double:
        return _fb.ddot(&n, <double*>x, &incx, <double*>y, &incy)
    else:
        return _fb.sdot(&n, <float*>x, &incx, <float*>y, &incy)


cdef inline void axpy(blas_int n, floating alpha, const floating* x, blas_int incx,
                      floating* y, blas_int incy) noexcept nogil:
    """y <- alpha x + y."""
    if floating is double:
        _fb.daxpy(&n, &alpha, <double*>x, &incx, y, &incy)
    else:
        _fb.saxpy(&n, &alpha, <float*>x, &incx, y, &incy)


cdef inline void scal(blas_int n, floating alpha, floating* x, blas_int incx) noexcept nogil:
    """x <- alpha x."""
    if floating is double:
        _fb.dscal(&n, &alpha, x, &incx)
    else:
        _fb.sscal(&n, &alpha, x, &incx)


cdef inline floating nrm2(blas_int n, const floating* x, blas_int incx) noexcept nogil:
    """Return the Euclidean norm of x (overflow-safe)."""
    if floating is double:
        return _fb.dnrm2(&n, <double*>x, &incx)
    else:
        return _fb.snrm2(&n, <float*>x, &incx)


cdef inline void gemv(char trans, blas_int m, blas_int n, floating alpha,
                      const floating* A, blas_int lda, const floating* x, blas_int incx,
                      floating beta, floating* y, blas_int incy) noexcept nogil:
    """Row-major y <- alpha op(A) x + beta y, A of shape (m, n), op = A or A^T."""
    cdef char ftrans = c't' if (trans == c'n' or trans == c'N') else c'n'
    if floating is double:
        _fb.dgemv(&ftrans, &n, &m, &alpha, <double*>A, &lda, <double*>x, &incx,
                  &beta, y, &incy)
    else:
        _fb.sgemv(&ftrans, &n, &m, &alpha, <float*>A, &lda, <float*>x, &incx,
                  &beta, y, &incy)


cdef inline void gemm(char transa, char transb, blas_int m, blas_int n, blas_int k,
                      floating alpha, const floating* A, blas_int lda,
                      const floating* B, blas_int ldb, floating beta,
                      floating* C, blas_int ldc) noexcept nogil:
    """Row-major C <- alpha op(A) op(B) + beta C; C is m x n, op(A) m x k, op(B) k x n."""
    if floating is double:
        _fb.dgemm(&transb, &transa, &n, &m, &k, &alpha, <double*>B, &ldb,
                  <double*>A, &lda, &beta, C, &ldc)
    else:
        _fb.sgemm(&transb, &transa, &n, &m, &k, &alpha, <float*>B, &ldb,
                  <float*>A, &lda, &beta, C, &ldc)


cdef inline void syrk(char trans, blas_int n, blas_int k, floating alpha,
                      const floating* A, blas_int lda, floating beta,
                      floating* C, blas_int ldc) noexcept nogil:
    """Row-major Gram matrix, both triangles filled.

    trans = c'n': C <- alpha A A^T + beta C with A of shape (n, k);
    trans = c't': C <- alpha A^T A + beta C with A of shape (k, n).
    C is n x n; only its upper triangle is computed by BLAS, then mirrored.
    """
    cdef char uplo = c'L'  # Fortran lower == row-major upper
    cdef char ftrans = c't' if (trans == c'n' or trans == c'N') else c'n'
    cdef blas_int i, j
    if floating is double:
        _fb.dsyrk(&uplo, &ftrans, &n, &k, &alpha, <double*>A, &lda, &beta, C, &ldc)
    else:
        _fb.ssyrk(&uplo, &ftrans, &n, &k, &alpha, <float*>A, &lda, &beta, C, &ldc)
    for i in range(n):
        for j in range(i):
            C[i * ldc + j] = C[j * ldc + i]


cdef inline blas_int potrf(blas_int n, floating* A, blas_int lda) noexcept nogil:
    """Cholesky factor of a symmetric positive definite n x n matrix, in place.

    Returns LAPACK's info (0 on success, > 0 if not positive definite).
    Row-major upper triangle holds R with A = R^T R afterwards.
    """
    cdef char uplo = c'L'
    cdef blas_int info = 0
    if floating is double:
        _fl.dpotrf(&uplo, &n, A, &lda, &info)
    else:
        _fl.spotrf(&uplo, &n, A, &lda, &info)
    return info


cdef inline blas_int potrs_right(blas_int n, blas_int nrows, const floating* R, blas_int ldr,
                                 floating* B, blas_int ldb) noexcept nogil:
    """Solve X P = B in place for row-major B of shape (nrows, n), P = R^T R from potrf.

    Because P is symmetric, X P = B is P X^T = B^T, and a row-major (nrows, n) array is
    the column-major n x nrows B^T: one LAPACK call, no transpose copies.
    """
    cdef char uplo = c'L'
    cdef blas_int info = 0
    if floating is double:
        _fl.dpotrs(&uplo, &n, &nrows, <double*>R, &ldr, B, &ldb, &info)
    else:
        _fl.spotrs(&uplo, &n, &nrows, <float*>R, &ldr, B, &ldb, &info)
    return info


cdef inline blas_int syev_lwork(blas_int n, floating* A, blas_int lda, floating* w) noexcept nogil:
    """Workspace query for syev: returns the optimal lwork (or -info on error)."""
    cdef char jobz = c'V'
    cdef char uplo = c'L'
    cdef blas_int info = 0
    cdef blas_int lwork = -1
    cdef floating query = 0
    if floating is double:
        _fl.dsyev(&jobz, &uplo, &n, A, &lda, w, &query, &lwork, &info)
    else:
        _fl.ssyev(&jobz, &uplo, &n, A, &lda, w, &query, &lwork, &info)
    if info != 0:
        return -info
    return <blas_int>query


cdef inline blas_int syev(blas_int n, floating* A, blas_int lda, floating* w,
                          floating* work, blas_int lwork) noexcept nogil:
    """Eigendecomposition of a symmetric n x n matrix, in place.

    On exit w holds the eigenvalues in ascending order and, row-major, the ROWS of A
    hold the orthonormal eigenvectors: A_sym = A_out^T diag(w) A_out.
    Returns LAPACK's info.
    """
    cdef char jobz = c'V'
    cdef char uplo = c'L'
    cdef blas_int info = 0
    if floating is double:
        _fl.dsyev(&jobz, &uplo, &n, A, &lda, w, work, &lwork, &info)
    else:
        _fl.ssyev(&jobz, &uplo, &n, A, &lda, w, work, &lwork, &info)
    return info
