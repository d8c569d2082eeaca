# The per-row finishing helpers of the ALS row solves (pseudo-inverse of a singular row,
# the ridge on the diagonal), shared textually (``include``) by src/_als.pyx and
# src/_als_blocked.pyx.tp so that both kernels solve a row's k x k system by the same
# code. The including module cimports floating, _blas and blas_int.

cdef int _pinv_solve(floating* C, floating* x, Py_ssize_t k, floating rcond, floating* w,
                     floating* tmp, floating* work, blas_int lwork) noexcept nogil:
    """x <- C^+ x for symmetric PSD C (row-major upper triangle read; destroyed)."""
    cdef Py_ssize_t i, l
    cdef floating s, cutoff
    cdef blas_int info = _blas.syev(<blas_int>k, C, <blas_int>k, w, work, lwork)
    if info != 0:
        return -1
    # rows of C are the eigenvectors q_i: C^+ x = sum_i (q_i . x / w_i) q_i over kept i
    cutoff = rcond * w[k - 1]
    for i in range(k):
        s = 0
        if w[i] > cutoff and w[i] > 0:
            for l in range(k):
                s = s + C[i * k + l] * x[l]
            s = s / w[i]
        tmp[i] = s
    for l in range(k):
        x[l] = 0
    for i in range(k):
        if tmp[i] != 0:
            for l in range(k):
                x[l] = x[l] + tmp[i] * C[i * k + l]
    return 0


cdef inline floating _damp(floating* C, Py_ssize_t k, Py_ssize_t n_pen,
                           floating damping) noexcept nogil:
    """C[a, a] += damping for a < n_pen (the last k - n_pen coordinates are not damped);
    returns the largest diagonal entry afterwards (the scale of the singularity test)."""
    cdef Py_ssize_t a
    cdef floating maxdiag = 0
    for a in range(k):
        if a < n_pen:
            C[a * k + a] = C[a * k + a] + damping
        if C[a * k + a] > maxdiag:
            maxdiag = C[a * k + a]
    return maxdiag


cdef inline void _singular_row(floating* C, floating* x, Py_ssize_t k, floating rcond,
                               floating maxdiag, floating* w, floating* tmp, floating* work,
                               blas_int lwork, int* failed) noexcept nogil:
    """x <- the minimal-norm solution pinv(C) x of a singular row (C full, row-major), or
    0 for a row with no observations and no damping (C = 0)."""
    cdef Py_ssize_t a
    if maxdiag > 0:
        if _pinv_solve(C, x, k, rcond, w, tmp, work, lwork) != 0:
            failed[0] = 1
    else:
        for a in range(k):
            x[a] = 0
