# Kernels of the dense measurement operators (general and packed symmetric).
#
# The operator is stored as a row-major (m, N) array whose row i is vec(A_i): N = n1*n2
# for a general operator, N = n(n+1)/2 for a packed symmetric one (row-major upper
# triangle of A_i). Every kernel below releases the GIL, is noexcept, and partitions
# rows over threads by the static partition of _parallel.pxd (thread t owns rows
# [t*m/T, (t+1)*m/T)), so a given thread count always gives the same bits.
#
# The fused kernel streams A ONCE per iteration: for each row it forms
# z_i = <A_i, P> - y_i and immediately accumulates z_i * A_i into a per-thread adjoint
# buffer while the row is still in cache; the per-thread buffers are then summed in
# thread order. numpy needs two passes over A (A @ p, then A.T @ z).

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memset

import numpy as np

from _blas cimport blas_int, gemm
from _parallel cimport block_start, half_squared_norm, sum_ordered


cdef inline floating _row_dot(const floating* a, const floating* p,
                              Py_ssize_t n) noexcept nogil:
    cdef floating s = 0
    cdef Py_ssize_t j
    for j in range(n):
        s = s + a[j] * p[j]
    return s


cdef inline void _row_dot4(const floating* a0, const floating* a1, const floating* a2,
                           const floating* a3, const floating* p, Py_ssize_t n,
                           floating* out) noexcept nogil:
    """Four dot products against one p: four independent reduction chains and one
    read of p for four rows of A."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0, pj
    cdef Py_ssize_t j
    for j in range(n):
        pj = p[j]
        s0 = s0 + a0[j] * pj
        s1 = s1 + a1[j] * pj
        s2 = s2 + a2[j] * pj
        s3 = s3 + a3[j] * pj
    out[0] = s0
    out[1] = s1
    out[2] = s2
    out[3] = s3


cdef inline void _row_axpy(floating alpha, const floating* a, floating* out,
                           Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = out[j] + alpha * a[j]


cdef inline void _row_axpy4(const floating* w, const floating* a0, const floating* a1,
                            const floating* a2, const floating* a3, floating* out,
                            Py_ssize_t n) noexcept nogil:
    """out += w0 a0 + w1 a1 + w2 a2 + w3 a3: one read-modify-write of out per 4 rows."""
    cdef floating w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3]
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = out[j] + ((w0 * a0[j] + w1 * a1[j]) + (w2 * a2[j] + w3 * a3[j]))


cdef void _fused_rows(const floating* A, Py_ssize_t N, const floating* p,
                      const floating* y, floating* z, floating* acc,
                      Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Rows [start, stop): z_i = <A_i, p> - y_i and acc = sum_i z_i A_i (acc zeroed first).

    Rows go in blocks of four: the block's dot products, then its accumulation while
    the four rows are still in cache, so A is read from memory once.
    """
    cdef Py_ssize_t i = start
    cdef floating zi
    cdef floating d[4]
    memset(acc, 0, N * sizeof(floating))
    while i + 4 <= stop:
        _row_dot4(&A[i * N], &A[(i + 1) * N], &A[(i + 2) * N], &A[(i + 3) * N], p, N, d)
        d[0] = d[0] - y[i]
        d[1] = d[1] - y[i + 1]
        d[2] = d[2] - y[i + 2]
        d[3] = d[3] - y[i + 3]
        z[i] = d[0]
        z[i + 1] = d[1]
        z[i + 2] = d[2]
        z[i + 3] = d[3]
        _row_axpy4(d, &A[i * N], &A[(i + 1) * N], &A[(i + 2) * N], &A[(i + 3) * N], acc, N)
        i = i + 4
    while i < stop:
        zi = _row_dot(&A[i * N], p, N) - y[i]
        z[i] = zi
        _row_axpy(zi, &A[i * N], acc, N)
        i = i + 1


cdef void _forward_rows(const floating* A, Py_ssize_t N, const floating* p, floating* z,
                        Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i = start
    while i + 4 <= stop:
        _row_dot4(&A[i * N], &A[(i + 1) * N], &A[(i + 2) * N], &A[(i + 3) * N], p, N, &z[i])
        i = i + 4
    while i < stop:
        z[i] = _row_dot(&A[i * N], p, N)
        i = i + 1


cdef void _adjoint_rows(const floating* A, Py_ssize_t N, const floating* z,
                        floating* acc, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i = start
    memset(acc, 0, N * sizeof(floating))
    while i + 4 <= stop:
        _row_axpy4(&z[i], &A[i * N], &A[(i + 1) * N], &A[(i + 2) * N], &A[(i + 3) * N],
                   acc, N)
        i = i + 4
    while i < stop:
        _row_axpy(z[i], &A[i * N], acc, N)
        i = i + 1


def fused_residual_adjoint(const floating[:, ::1] A, const floating[::1] p,
                           const floating[::1] y, floating[::1] z,
                           floating[:, ::1] acc, floating[::1] s, int n_threads):
    """z <- A p - y and s <- A^T z in one pass over A. Returns 0.5 * ||z||^2.

    acc is (n_threads, N) scratch (may alias s when n_threads == 1).
    Cost: 2 m N flops each way, m N * itemsize bytes read once.
    """
    cdef Py_ssize_t m = A.shape[0], N = A.shape[1]
    cdef Py_ssize_t t, start, stop
    cdef double loss
    with nogil:
        if n_threads == 1:
            _fused_rows(&A[0, 0], N, &p[0], &y[0], &z[0], &acc[0, 0], 0, m)
        else:
            with parallel(num_threads=n_threads):
                for t in prange(n_threads, schedule='static', chunksize=1):
                    start = block_start(m, t, n_threads)
                    stop = block_start(m, t + 1, n_threads)
                    _fused_rows(&A[0, 0], N, &p[0], &y[0], &z[0], &acc[t, 0], start, stop)
        sum_ordered(&s[0], &acc[0, 0], &acc[0, 0] + N, N, n_threads - 1, N, n_threads)
        loss = half_squared_norm(&z[0], m)
    return loss


def forward(const floating[:, ::1] A, const floating[::1] p, floating[::1] out,
            int n_threads):
    """out <- A p (one pass over A, rows split over threads in fixed blocks)."""
    cdef Py_ssize_t m = A.shape[0], N = A.shape[1]
    cdef Py_ssize_t t, start, stop
    with nogil, parallel(num_threads=n_threads):
        for t in prange(n_threads, schedule='static', chunksize=1):
            start = block_start(m, t, n_threads)
            stop = block_start(m, t + 1, n_threads)
            _forward_rows(&A[0, 0], N, &p[0], &out[0], start, stop)


def adjoint(const floating[:, ::1] A, const floating[::1] z,
            floating[:, ::1] acc, floating[::1] s, int n_threads):
    """s <- A^T z (one pass over A; per-thread buffers summed in thread order)."""
    cdef Py_ssize_t m = A.shape[0], N = A.shape[1]
    cdef Py_ssize_t t, start, stop
    with nogil:
        if n_threads == 1:
            _adjoint_rows(&A[0, 0], N, &z[0], &acc[0, 0], 0, m)
        else:
            with parallel(num_threads=n_threads):
                for t in prange(n_threads, schedule='static', chunksize=1):
                    start = block_start(m, t, n_threads)
                    stop = block_start(m, t + 1, n_threads)
                    _adjoint_rows(&A[0, 0], N, &z[0], &acc[t, 0], start, stop)
        sum_ordered(&s[0], &acc[0, 0], &acc[0, 0] + N, N, n_threads - 1, N, n_threads)


def outer_product(const floating[:, ::1] F, const floating[:, ::1] G, floating[:, ::1] P):
    """P <- F G^T (one GEMM): F (n1, k), G (n2, k), P (n1, n2)."""
    cdef blas_int n1 = F.shape[0], n2 = G.shape[0], k = F.shape[1]
    with nogil:
        gemm(c'n', c't', n1, n2, k, <floating>1, &F[0, 0], k, &G[0, 0], k,
             <floating>0, &P[0, 0], n2)


def factor_products(const floating[:, ::1] S, const floating[:, ::1] F,
                    const floating[:, ::1] G, floating[:, ::1] SG, floating[:, ::1] StF):
    """SG <- S G and StF <- S^T F (two GEMMs): S (n1, n2), F (n1, k), G (n2, k)."""
    cdef blas_int n1 = S.shape[0], n2 = S.shape[1], k = F.shape[1]
    with nogil:
        gemm(c'n', c'n', n1, k, n2, <floating>1, &S[0, 0], n2, &G[0, 0], k,
             <floating>0, &SG[0, 0], k)
        gemm(c't', c'n', n2, k, n1, <floating>1, &S[0, 0], n2, &F[0, 0], k,
             <floating>0, &StF[0, 0], k)


def pack_symmetrized(const floating[:, ::1] P, floating[::1] out, int n_threads):
    """out <- packed upper triangle of P + P^T with the diagonal counted once.

    For a symmetric A_i stored as its upper triangle a_i, <A_i, P> = <a_i, out>.
    """
    cdef Py_ssize_t n = P.shape[0], j, l, base
    for j in prange(n, nogil=True, schedule='static', num_threads=n_threads):
        base = j * n - (j * (j - 1)) // 2
        out[base] = P[j, j]
        for l in range(j + 1, n):
            out[base + l - j] = P[j, l] + P[l, j]


def unpack_symmetric(const floating[::1] packed, floating[:, ::1] S, int n_threads):
    """S <- the symmetric matrix whose upper triangle is `packed` (row-major)."""
    cdef Py_ssize_t n = S.shape[0], j, l, base
    for j in prange(n, nogil=True, schedule='static', num_threads=n_threads):
        base = j * n - (j * (j - 1)) // 2
        for l in range(j, n):
            S[j, l] = packed[base + l - j]
    for j in prange(n, nogil=True, schedule='static', num_threads=n_threads):
        for l in range(j):
            S[j, l] = S[l, j]


def pack_upper(const floating[:, :, ::1] A, floating[:, ::1] out, int n_threads):
    """out[i] <- row-major upper triangle of A[i] (A[i] assumed symmetric)."""
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1], i, j, l, base
    for i in prange(m, nogil=True, schedule='static', num_threads=n_threads):
        for j in range(n):
            base = j * n - (j * (j - 1)) // 2
            for l in range(j, n):
                out[i, base + l - j] = A[i, j, l]


def stream_sum(const floating[:, ::1] A, int n_threads):
    """Sum of all entries: a plain streaming read of A, the memory-bandwidth floor
    against which the operator kernels are compared (same partition and threads,
    four independent accumulation chains so it is not latency bound)."""
    cdef Py_ssize_t m = A.shape[0], N = A.shape[1]
    cdef Py_ssize_t t, start, stop
    cdef double[::1] partial = np.zeros(max(n_threads, 1))
    with nogil, parallel(num_threads=n_threads):
        for t in prange(n_threads, schedule='static', chunksize=1):
            start = block_start(m, t, n_threads)
            stop = block_start(m, t + 1, n_threads)
            partial[t] = _sum_rows(&A[0, 0], N, start, stop)
    return float(np.sum(partial))


cdef double _sum_rows(const floating* A, Py_ssize_t N, Py_ssize_t start,
                      Py_ssize_t stop) noexcept nogil:
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = start, j
    cdef const floating* a0
    cdef const floating* a1
    cdef const floating* a2
    cdef const floating* a3
    while i + 4 <= stop:
        a0 = &A[i * N]
        a1 = &A[(i + 1) * N]
        a2 = &A[(i + 2) * N]
        a3 = &A[(i + 3) * N]
        for j in range(N):
            s0 = s0 + a0[j]
            s1 = s1 + a1[j]
            s2 = s2 + a2[j]
            s3 = s3 + a3[j]
        i = i + 4
    while i < stop:
        a0 = &A[i * N]
        for j in range(N):
            s0 = s0 + a0[j]
        i = i + 1
    return <double>((s0 + s1) + (s2 + s3))
