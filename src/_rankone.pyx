# Kernels of the rank-one projection operator, A_i = a_i b_i^T (b_i = a_i if symmetric).
#
# For a block of rows (a_B, b_B) the fused kernel computes, while the block is in cache:
#   U = a_B F, V = b_B G                (two small GEMMs, B x k each)
#   z_i = <U_i, V_i> - y_i
#   SG  += a_B^T (z * V),  StF += b_B^T (z * U)   (two small GEMMs into thread buffers)
# so a and b are read from memory once per iteration: O(m (n1 + n2) k) flops.
# Thread t owns the fixed rows [t m / T, (t + 1) m / T) and its own SG/StF buffers, which
# are summed in thread order: the same thread count gives the same bits. BLAS calls are
# small (B x n x k) so OpenBLAS runs them single-threaded inside the OpenMP region.

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from _blas cimport blas_int, gemm


cdef void _rank_one_rows(const floating* a, Py_ssize_t n1, const floating* b,
                         Py_ssize_t n2, bint same, bint grad,
                         const floating* F, const floating* G, Py_ssize_t k,
                         const floating* y, bint has_y, floating* z,
                         floating* sg, floating* stf, Py_ssize_t start, Py_ssize_t stop,
                         Py_ssize_t block, floating* work) noexcept nogil:
    """Rows [start, stop) of the fused pass (see module comment).

    same: b is a and G is F (then V = U and StF = SG, computed once).
    grad: accumulate sg (n1 x k) and stf (n2 x k), zeroed here; else only z.
    work: 4 * block * k scratch.
    """
    cdef floating* U = work
    cdef floating* V = work + block * k
    cdef floating* W = work + 2 * block * k
    cdef floating* W2 = work + 3 * block * k
    cdef const floating* Vp
    cdef Py_ssize_t i0, nb, ii, l
    cdef floating d, zi
    if grad:
        memset(sg, 0, n1 * k * sizeof(floating))
        if not same:
            memset(stf, 0, n2 * k * sizeof(floating))
    i0 = start
    while i0 < stop:
        nb = stop - i0
        if nb > block:
            nb = block
        gemm(c'n', c'n', <blas_int>nb, <blas_int>k, <blas_int>n1, <floating>1,
             a + i0 * n1, <blas_int>n1, F, <blas_int>k, <floating>0, U, <blas_int>k)
        if same:
            Vp = U
        else:
            gemm(c'n', c'n', <blas_int>nb, <blas_int>k, <blas_int>n2, <floating>1,
                 b + i0 * n2, <blas_int>n2, G, <blas_int>k, <floating>0, V, <blas_int>k)
            Vp = V
        for ii in range(nb):
            d = 0
            for l in range(k):
                d = d + U[ii * k + l] * Vp[ii * k + l]
            if has_y:
                zi = d - y[i0 + ii]
            else:
                zi = d
            z[i0 + ii] = zi
            if grad:
                for l in range(k):
                    W[ii * k + l] = zi * Vp[ii * k + l]
                if not same:
                    for l in range(k):
                        W2[ii * k + l] = zi * U[ii * k + l]
        if grad:
            gemm(c't', c'n', <blas_int>n1, <blas_int>k, <blas_int>nb, <floating>1,
                 a + i0 * n1, <blas_int>n1, W, <blas_int>k, <floating>1, sg, <blas_int>k)
            if not same:
                gemm(c't', c'n', <blas_int>n2, <blas_int>k, <blas_int>nb, <floating>1,
                     b + i0 * n2, <blas_int>n2, W2, <blas_int>k, <floating>1, stf,
                     <blas_int>k)
        i0 = i0 + nb


cdef void _sum_buffers(floating[:, :, ::1] acc, floating[:, ::1] out,
                       int n_threads) noexcept nogil:
    """out = sum_t acc[t], t in increasing order."""
    cdef Py_ssize_t n = acc.shape[1], k = acc.shape[2], j, l
    cdef int t
    cdef floating s
    for j in range(n):
        for l in range(k):
            s = acc[0, j, l]
            for t in range(1, n_threads):
                s = s + acc[t, j, l]
            out[j, l] = s


def fused_pass(const floating[:, ::1] a, const floating[:, ::1] b, bint same, bint grad,
               const floating[:, ::1] F, const floating[:, ::1] G,
               const floating[::1] y, bint has_y, floating[::1] z,
               floating[:, :, ::1] acc_sg, floating[:, :, ::1] acc_stf,
               floating[:, ::1] SG, floating[:, ::1] StF, floating[:, ::1] work,
               int block, int n_threads):
    """One blocked pass over the rows of a and b.

    z_i = (a_i^T F)(b_i^T G)^T - y_i (y only if has_y); with grad also
    SG = sum_i z_i a_i (b_i^T G) and StF = sum_i z_i b_i (a_i^T F).
    acc_sg (T, n1, k) and acc_stf (T, n2, k) are per-thread buffers (T = n_threads; unused
    when T == 1, then SG/StF are written directly); work is (T, 4 block k) scratch. With
    same (b is a, G is F) StF is a copy of SG. Returns 0.5 ||z||^2 (double accumulation
    in index order).
    """
    cdef Py_ssize_t m = a.shape[0], n1 = a.shape[1], n2 = b.shape[1], k = F.shape[1]
    cdef Py_ssize_t t, start, stop, i, j, l
    cdef double loss = 0
    cdef const floating* yp = &y[0] if has_y else NULL
    with nogil:
        if n_threads == 1:
            _rank_one_rows(&a[0, 0], n1, &b[0, 0], n2, same, grad, &F[0, 0], &G[0, 0],
                           k, yp, has_y, &z[0], &SG[0, 0], &StF[0, 0], 0, m, block,
                           &work[0, 0])
        else:
            for t in prange(n_threads, schedule='static', chunksize=1,
                            num_threads=n_threads):
                start = (t * m) // n_threads
                stop = ((t + 1) * m) // n_threads
                _rank_one_rows(&a[0, 0], n1, &b[0, 0], n2, same, grad, &F[0, 0],
                               &G[0, 0], k, yp, has_y, &z[0], &acc_sg[t, 0, 0],
                               &acc_stf[t, 0, 0], start, stop, block, &work[t, 0])
            if grad:
                _sum_buffers(acc_sg, SG, n_threads)
                if not same:
                    _sum_buffers(acc_stf, StF, n_threads)
        if grad and same:
            for j in range(n1):
                for l in range(k):
                    StF[j, l] = SG[j, l]
        for i in range(m):
            loss = loss + <double>z[i] * <double>z[i]
    return 0.5 * loss
