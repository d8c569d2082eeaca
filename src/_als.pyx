# Row solves of alternating least squares for matrix completion.
#
# For the observed set grouped by row i (ptr, idx: the column of each entry, pos: the
# measurement index of each entry, identity when has_pos is False) and the fixed other
# factor G, row i of the new factor is
#
#     F_i = argmin_f sum_{e in row i} (scale <f, G_{idx_e}> - y_{pos_e})^2 + damping ||f||^2
#         = (scale^2 C_i + damping I)^{-1} scale G_{Omega_i}^T y_{Omega_i},
#     C_i = G_{Omega_i}^T G_{Omega_i} = sum_e G_{idx_e} G_{idx_e}^T   (k x k).
#
# Per row, the observations are processed in blocks of at most B = block_entries(k) entries:
# the block's rows of G are gathered into a contiguous B x k scratch array Gb (and the
# matching y into yb), then C_i += scale^2 Gb^T Gb by one BLAS gemm and rhs_i += scale
# Gb^T yb by one gemv, so the O(|Omega_i| k^2) work runs in BLAS's packed kernels instead
# of scalar loops over an indexed G. (syrk would do half the flops, but with OpenBLAS's
# syrk at these small shapes the whole half-step measured 1.16-1.43x slower than with
# gemm, k = 10-40, float32 and float64, camera and synthetic cases of
# benchmarks/estimator_speed.py, during development.) B k <= 8192 and B k^2 <= 200000
# keep every call small enough that OpenBLAS runs it on the calling thread: a threaded
# BLAS call inside the OpenMP row loop (OpenBLAS with its default thread count, i.e.
# OMP_NUM_THREADS unset) measured 14x slower on the camera case at k = 40, B = 204. C_i + damping I is factored by LAPACK potrf and solved by potrs. A
# pivot (squared diagonal of the Cholesky factor) below rcond * max diagonal, or potrf's
# failure, marks the system singular (fewer than k observations in the row, or a
# rank-deficient G_{Omega_i}, with damping 0): that row is solved by the eigendecomposition
# of the k x k matrix (LAPACK syev through the shim) with the eigenvalues below
# rcond * max dropped, i.e. the minimal-norm least-squares solution; an empty row gets
# F_i = 0. Cost: 2 m k (k + 1) flops for the Gram matrices (gemm fills both triangles)
# plus n k^3 / 3 for the factorizations, and m k copies for the gathers.
#
# Unpenalized coordinates: with n_unpenalized = u > 0 the damping is added to the first
# k - u diagonal entries only (an intercept column of ones in G gives a per-row bias that
# the ridge does not shrink: MatrixCompletion(center="biases", method="als") solves its
# rows at width k + 1 with u = 1); u = 0, the default, is the plain ridge bit for bit.
#
# Determinism: thread t owns the fixed row range [bounds[t], bounds[t+1]) and every row is
# computed by one thread in a fixed order, so the result is bitwise independent of the
# thread count.

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

cimport _blas
from _blas cimport blas_int
from _indexed cimport index_t


include "_als_rows.pxi"


cdef inline Py_ssize_t _block_entries(Py_ssize_t k) noexcept nogil:
    """B: entries per gathered block, the largest with B k <= 8192 and B k^2 <= 200000
    (and B >= 1): below OpenBLAS's thresholds for threading a gemv (m n < 9216) and a
    gemm (m n k < 262144), so every call runs on the calling OpenMP thread."""
    cdef Py_ssize_t b = 8192 // k if k > 0 else 8192
    cdef Py_ssize_t b2 = 200000 // (k * k) if k > 0 else 8192
    if b2 < b:
        b = b2
    return b if b > 1 else 1


cdef Py_ssize_t _solve_range(Py_ssize_t i0, Py_ssize_t i1, const index_t* ptr,
                             const index_t* idx, const index_t* pos, bint has_pos,
                             const floating* y, const floating* G, Py_ssize_t k, floating* F,
                             floating scale, floating damping, floating rcond,
                             floating* ws, blas_int lwork, int* failed,
                             Py_ssize_t n_pen) noexcept nogil:
    """Rows [i0, i1); ws holds scratch_size(k, lwork) entries. Returns the singular rows."""
    cdef Py_ssize_t B = _block_entries(k)
    cdef floating* C = ws
    cdef floating* L = ws + k * k
    cdef floating* x = ws + 2 * k * k
    cdef floating* w = x + k
    cdef floating* tmp = w + k
    cdef floating* work = tmp + k
    cdef floating* Gb = work + lwork
    cdef floating* yb = Gb + B * k
    cdef const floating* g
    cdef floating s2 = scale * scale, maxdiag, threshold, one = 1
    cdef Py_ssize_t i, e, e0, e1, a, b, nb, n_singular = 0
    cdef bint ok
    cdef blas_int bk = <blas_int>k
    for i in range(i0, i1):
        for a in range(k * k):
            C[a] = 0
        for a in range(k):
            x[a] = 0
        e0 = ptr[i]
        while e0 < ptr[i + 1]:
            e1 = e0 + B if e0 + B < ptr[i + 1] else ptr[i + 1]
            nb = e1 - e0
            for e in range(e0, e1):
                g = G + <Py_ssize_t>idx[e] * k
                for a in range(k):
                    Gb[(e - e0) * k + a] = g[a]
                yb[e - e0] = y[pos[e]] if has_pos else y[e]
            # C += s^2 Gb^T Gb, x += s Gb^T yb (gemm, not syrk: see the module comment)
            _blas.gemm(c't', c'n', bk, bk, <blas_int>nb, s2, Gb, bk, Gb, bk, one, C, bk)
            _blas.gemv(c't', <blas_int>nb, bk, scale, Gb, bk, yb, 1, one, x, 1)
            e0 = e1
        maxdiag = _damp(C, k, n_pen, damping)
        ok = False
        if ptr[i + 1] > ptr[i] or damping > 0:
            for a in range(k):
                for b in range(a, k):
                    L[a * k + b] = C[a * k + b]
            ok = _blas.potrf(bk, L, bk) == 0
            if ok:
                threshold = rcond * maxdiag
                for a in range(k):
                    if not L[a * k + a] * L[a * k + a] > threshold:
                        ok = False
                        break
        if ok:
            _blas.potrs_right(bk, 1, L, bk, x, bk)
        else:
            n_singular += 1   # C is full (gemm): syev reads its row-major upper triangle
            _singular_row(C, x, k, rcond, maxdiag, w, tmp, work, lwork, failed)
        for a in range(k):
            F[i * k + a] = x[a]
    return n_singular


# ---------------------------------------------------------------- scalar-loop baseline
# The kernel as it was before the blocked BLAS version: kept (not used by the solvers) as
# the baseline of benchmarks/estimator_speed.py's sweep section and as an independent
# implementation the tests compare against.

cdef inline bint _cholesky(floating* L, const floating* C, Py_ssize_t k,
                           floating threshold) noexcept nogil:
    """Lower Cholesky factor L of the SPD matrix C (lower triangle used), row-major k x k.

    Returns False when a pivot is <= threshold (C numerically singular)."""
    cdef Py_ssize_t i, j, l
    cdef floating d, s
    for j in range(k):
        d = C[j * k + j]
        for l in range(j):
            d = d - L[j * k + l] * L[j * k + l]
        if not d > threshold:
            return False
        d = sqrt(d)
        L[j * k + j] = d
        for i in range(j + 1, k):
            s = C[i * k + j]
            for l in range(j):
                s = s - L[i * k + l] * L[j * k + l]
            L[i * k + j] = s / d
    return True


cdef inline void _cholesky_solve(const floating* L, floating* x, Py_ssize_t k) noexcept nogil:
    """x <- (L L^T)^{-1} x."""
    cdef Py_ssize_t i, l
    cdef floating s
    for i in range(k):
        s = x[i]
        for l in range(i):
            s = s - L[i * k + l] * x[l]
        x[i] = s / L[i * k + i]
    for i in range(k - 1, -1, -1):
        s = x[i]
        for l in range(i + 1, k):
            s = s - L[l * k + i] * x[l]
        x[i] = s / L[i * k + i]


cdef Py_ssize_t _solve_range_loops(Py_ssize_t i0, Py_ssize_t i1, const index_t* ptr,
                             const index_t* idx, const index_t* pos, bint has_pos,
                             const floating* y, const floating* G, Py_ssize_t k, floating* F,
                             floating scale, floating damping, floating rcond,
                             floating* ws, blas_int lwork, int* failed,
                             Py_ssize_t n_pen) noexcept nogil:
    """The scalar-loop variant of _solve_range (the kernel before the BLAS blocks): C_i
    and the rhs accumulated entry by entry, in-kernel Cholesky. Same scratch layout."""
    cdef floating* C = ws
    cdef floating* L = ws + k * k
    cdef floating* x = ws + 2 * k * k
    cdef floating* w = x + k
    cdef floating* tmp = w + k
    cdef floating* work = tmp + k
    cdef const floating* g
    cdef floating v, ga, s2 = scale * scale, maxdiag
    cdef Py_ssize_t i, e, a, b, p, n_singular = 0
    for i in range(i0, i1):
        for a in range(k * k):
            C[a] = 0
        for a in range(k):
            x[a] = 0
        for e in range(ptr[i], ptr[i + 1]):
            g = G + <Py_ssize_t>idx[e] * k
            p = pos[e] if has_pos else e
            v = y[p]
            for a in range(k):
                ga = g[a]
                x[a] = x[a] + v * ga
                for b in range(a + 1):
                    C[a * k + b] = C[a * k + b] + ga * g[b]
        for a in range(k):
            x[a] = x[a] * scale
            for b in range(a + 1):
                C[a * k + b] = C[a * k + b] * s2
        maxdiag = _damp(C, k, n_pen, damping)
        if (ptr[i + 1] > ptr[i] or damping > 0) and _cholesky(L, C, k, rcond * maxdiag):
            _cholesky_solve(L, x, k)
        else:
            n_singular += 1
            for a in range(k):   # the lower triangle mirrored: syev reads the upper
                for b in range(a):
                    C[b * k + a] = C[a * k + b]
            _singular_row(C, x, k, rcond, maxdiag, w, tmp, work, lwork, failed)
        for a in range(k):
            F[i * k + a] = x[a]
    return n_singular


def block_entries(Py_ssize_t k) -> Py_ssize_t:
    """B, the entries per gathered block of :func:`solve_rows` (B k <= 8192, B k^2 <= 200000)."""
    return _block_entries(k)


def scratch_size(Py_ssize_t k, Py_ssize_t lwork) -> Py_ssize_t:
    """Length of one thread's scratch row for :func:`solve_rows`:
    2 k^2 + 3 k + lwork + B (k + 1), B = :func:`block_entries` (k)."""
    return 2 * k * k + 3 * k + lwork + _block_entries(k) * (k + 1)


def solve_rows(const index_t[::1] ptr, const index_t[::1] idx, const index_t[::1] pos,
               bint has_pos, const floating[::1] y, const floating[:, ::1] G,
               floating[:, ::1] F, double scale, double damping, double rcond,
               floating[:, ::1] work, const Py_ssize_t[::1] bounds, Py_ssize_t lwork,
               bint blocked=True, Py_ssize_t n_unpenalized=0):
    """F_i <- (scale^2 G_Oi^T G_Oi + damping I)^{-1} scale G_Oi^T y_Oi for every row i.

    ptr (n + 1), idx, pos: the observed entries grouped by the rows of F. work (T, >=
    scratch_size(k, lwork)) is per-thread scratch, lwork the syev workspace length;
    bounds (T + 1) the fixed row ranges of the T threads. Returns the number of rows
    solved by the pseudo-inverse (singular systems); raises on a LAPACK failure.
    ``blocked=False`` runs the scalar-loop variant (the baseline of the sweep benchmark
    and the tests' cross-check; same results to rounding).
    ``n_unpenalized`` (0 <= . <= k): the damping is added to the first k - n_unpenalized
    diagonal entries only, so the last n_unpenalized coordinates are not penalized
    (an intercept: G's last column all ones gives (f, b) = argmin ||G'_Oi f + b 1 -
    y_Oi||^2 + damping ||f||^2, the row step of ALS with biases); 0, the default, damps
    every coordinate (the plain ridge above, bit for bit).
    """
    cdef int T = bounds.shape[0] - 1, t
    cdef Py_ssize_t k = F.shape[1], n_singular = 0, n_pen
    cdef int failed = 0
    if not 0 <= n_unpenalized <= k:
        raise ValueError(f"solve_rows: n_unpenalized must be in [0, k = {k}], got "
                         f"{n_unpenalized}")
    n_pen = k - n_unpenalized
    if F.shape[0] != ptr.shape[0] - 1 or G.shape[1] != k:
        raise ValueError("solve_rows: F must have ptr.shape[0] - 1 rows and G k columns")
    if work.shape[0] < T or work.shape[1] < scratch_size(k, lwork):
        raise ValueError("solve_rows: work is too small")
    with nogil:
        for t in prange(T, schedule='static', chunksize=1, num_threads=T):
            if blocked:
                n_singular += _solve_range(bounds[t], bounds[t + 1], &ptr[0], &idx[0],
                                           &pos[0], has_pos, &y[0], &G[0, 0], k, &F[0, 0],
                                           <floating>scale, <floating>damping,
                                           <floating>rcond, &work[t, 0], <blas_int>lwork,
                                           &failed, n_pen)
            else:
                n_singular += _solve_range_loops(bounds[t], bounds[t + 1], &ptr[0], &idx[0],
                                                 &pos[0], has_pos, &y[0], &G[0, 0], k,
                                                 &F[0, 0], <floating>scale,
                                                 <floating>damping, <floating>rcond,
                                                 &work[t, 0], <blas_int>lwork, &failed,
                                                 n_pen)
    if failed:
        raise FloatingPointError("solve_rows: LAPACK syev failed on a row's k x k system "
                                 "(non-finite data?)")
    return n_singular
