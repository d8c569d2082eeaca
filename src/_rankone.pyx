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
#
# Hand-written path (the default in the AVX2/FMA build for k <= HAND_MAX_K = 24): blocks
# of 4 rows, F and G copied with k padded to a multiple of the vector width (kp), and
#   U_r = sum_j a_rj F_j,     (4 rows x up to 3 vectors of F_j in registers)
#   S_j += sum_r a_rj W_r     (W_r = z_r V_r held in registers, one pass over j)
# written on GCC/Clang vector types, so the compiler emits broadcast + FMA on 256-bit
# registers (AVX2) or pairs of 128-bit operations (SSE2 baseline, where OpenBLAS is faster
# and the GEMM path stays the default). Compilers without vector extensions use scalars.
# Each 4-row block reads its rows of a and b once from memory and a second time from L1.

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from _blas cimport blas_int, gemm

cdef extern from *:
    """
    #include <string.h>
    #if defined(__GNUC__) || defined(__clang__)
    typedef double lrc_vd __attribute__((vector_size(32)));
    typedef float lrc_vf __attribute__((vector_size(32)));
    #define LRC_VW_D 4
    #define LRC_VW_F 8
    #else
    typedef double lrc_vd;
    typedef float lrc_vf;
    #define LRC_VW_D 1
    #define LRC_VW_F 1
    #endif
    #if defined(__AVX2__) && defined(__FMA__)
    #define LRC_SIMD_BUILD 1
    #else
    #define LRC_SIMD_BUILD 0
    #endif
    static inline lrc_vd lrc_load_d(const double* p) { lrc_vd v; memcpy(&v, p, sizeof v); return v; }
    static inline void lrc_store_d(double* p, lrc_vd v) { memcpy(p, &v, sizeof v); }
    static inline lrc_vd lrc_zero_d(void) { lrc_vd v; memset(&v, 0, sizeof v); return v; }
    static inline lrc_vf lrc_load_f(const float* p) { lrc_vf v; memcpy(&v, p, sizeof v); return v; }
    static inline void lrc_store_f(float* p, lrc_vf v) { memcpy(p, &v, sizeof v); }
    static inline lrc_vf lrc_zero_f(void) { lrc_vf v; memset(&v, 0, sizeof v); return v; }
    """
    # Cython treats the vector types as scalars; C then applies +, * lane-wise (a scalar
    # operand is broadcast), and a * b + c contracts to FMA when the target has it.
    ctypedef double vd "lrc_vd"
    ctypedef float vf "lrc_vf"
    const int VW_D "LRC_VW_D"
    const int VW_F "LRC_VW_F"
    const int SIMD_BUILD "LRC_SIMD_BUILD"
    vd load_d "lrc_load_d"(const double* p) noexcept nogil
    void store_d "lrc_store_d"(double* p, vd v) noexcept nogil
    vd zero_d "lrc_zero_d"() noexcept nogil
    vf load_f "lrc_load_f"(const float* p) noexcept nogil
    void store_f "lrc_store_f"(float* p, vf v) noexcept nogil
    vf zero_f "lrc_zero_f"() noexcept nogil

# Largest k for which fused_pass(method=-1) takes the hand-written path in the AVX2 build.
cdef enum:
    _HAND_MAX_K = 24  # measured crossover (m=20000, n=300): GEMMs win from k ~ 32
HAND_MAX_K = _HAND_MAX_K


def simd_build():
    """True if this module was compiled for AVX2 and FMA (the ``_rankone_avx2`` build)."""
    return bool(SIMD_BUILD)


def hand_path(Py_ssize_t k):
    """True if ``fused_pass(..., method=-1)`` uses the hand-written loops for rank k."""
    return bool(SIMD_BUILD) and k <= _HAND_MAX_K


# ------------------------------------------------------------------ hand-written loops
# _rows4_*: U[r, c0:c0+nv*VW] = sum_j a_r[j] Fp[j, c0:...] for the 4 rows a_0..a_3
# (Fp and U have row stride kp; Fp and U already offset by c0). nv <= 3 is a
# compile-time constant after inlining, so acc[][] lives in registers.
cdef inline void _rows4_d(const double* a0, const double* a1, const double* a2,
                          const double* a3, Py_ssize_t n, const double* Fp,
                          Py_ssize_t kp, double* U, int nv) noexcept nogil:
    cdef vd acc[4][3]
    cdef vd f
    cdef double s0, s1, s2, s3
    cdef Py_ssize_t j
    cdef int v
    for v in range(nv):
        acc[0][v] = zero_d()
        acc[1][v] = zero_d()
        acc[2][v] = zero_d()
        acc[3][v] = zero_d()
    for j in range(n):
        s0 = a0[j]
        s1 = a1[j]
        s2 = a2[j]
        s3 = a3[j]
        for v in range(nv):
            f = load_d(Fp + j * kp + v * VW_D)
            acc[0][v] = acc[0][v] + s0 * f
            acc[1][v] = acc[1][v] + s1 * f
            acc[2][v] = acc[2][v] + s2 * f
            acc[3][v] = acc[3][v] + s3 * f
    for v in range(nv):
        store_d(U + v * VW_D, acc[0][v])
        store_d(U + kp + v * VW_D, acc[1][v])
        store_d(U + 2 * kp + v * VW_D, acc[2][v])
        store_d(U + 3 * kp + v * VW_D, acc[3][v])


cdef inline void _rows4_f(const float* a0, const float* a1, const float* a2,
                          const float* a3, Py_ssize_t n, const float* Fp,
                          Py_ssize_t kp, float* U, int nv) noexcept nogil:
    cdef vf acc[4][3]
    cdef vf f
    cdef float s0, s1, s2, s3
    cdef Py_ssize_t j
    cdef int v
    for v in range(nv):
        acc[0][v] = zero_f()
        acc[1][v] = zero_f()
        acc[2][v] = zero_f()
        acc[3][v] = zero_f()
    for j in range(n):
        s0 = a0[j]
        s1 = a1[j]
        s2 = a2[j]
        s3 = a3[j]
        for v in range(nv):
            f = load_f(Fp + j * kp + v * VW_F)
            acc[0][v] = acc[0][v] + s0 * f
            acc[1][v] = acc[1][v] + s1 * f
            acc[2][v] = acc[2][v] + s2 * f
            acc[3][v] = acc[3][v] + s3 * f
    for v in range(nv):
        store_f(U + v * VW_F, acc[0][v])
        store_f(U + kp + v * VW_F, acc[1][v])
        store_f(U + 2 * kp + v * VW_F, acc[2][v])
        store_f(U + 3 * kp + v * VW_F, acc[3][v])


# _acc4_*: S[j, c0:c0+nv*VW] += sum_r a_r[j] W[r, c0:...] for j < n (S, W row stride
# kp, already offset by c0); the 4 x nv vectors of W stay in registers.
cdef inline void _acc4_d(const double* a0, const double* a1, const double* a2,
                         const double* a3, Py_ssize_t n, const double* W,
                         Py_ssize_t kp, double* S, int nv) noexcept nogil:
    cdef vd w[4][3]
    cdef vd s
    cdef double s0, s1, s2, s3
    cdef Py_ssize_t j
    cdef int v
    for v in range(nv):
        w[0][v] = load_d(W + v * VW_D)
        w[1][v] = load_d(W + kp + v * VW_D)
        w[2][v] = load_d(W + 2 * kp + v * VW_D)
        w[3][v] = load_d(W + 3 * kp + v * VW_D)
    for j in range(n):
        s0 = a0[j]  # scalars first: the stores to S below may alias a for the compiler
        s1 = a1[j]
        s2 = a2[j]
        s3 = a3[j]
        for v in range(nv):
            s = load_d(S + j * kp + v * VW_D)
            s = s + s0 * w[0][v]
            s = s + s1 * w[1][v]
            s = s + s2 * w[2][v]
            s = s + s3 * w[3][v]
            store_d(S + j * kp + v * VW_D, s)


cdef inline void _acc4_f(const float* a0, const float* a1, const float* a2,
                         const float* a3, Py_ssize_t n, const float* W,
                         Py_ssize_t kp, float* S, int nv) noexcept nogil:
    cdef vf w[4][3]
    cdef vf s
    cdef float s0, s1, s2, s3
    cdef Py_ssize_t j
    cdef int v
    for v in range(nv):
        w[0][v] = load_f(W + v * VW_F)
        w[1][v] = load_f(W + kp + v * VW_F)
        w[2][v] = load_f(W + 2 * kp + v * VW_F)
        w[3][v] = load_f(W + 3 * kp + v * VW_F)
    for j in range(n):
        s0 = a0[j]  # scalars first: the stores to S below may alias a for the compiler
        s1 = a1[j]
        s2 = a2[j]
        s3 = a3[j]
        for v in range(nv):
            s = load_f(S + j * kp + v * VW_F)
            s = s + s0 * w[0][v]
            s = s + s1 * w[1][v]
            s = s + s2 * w[2][v]
            s = s + s3 * w[3][v]
            store_f(S + j * kp + v * VW_F, s)


cdef inline void _rows4(const floating** ar, Py_ssize_t n, const floating* Fp,
                        Py_ssize_t kp, floating* U) noexcept nogil:
    """U (4 x kp) = rows ar[0..3] times Fp (n x kp), in chunks of 3, 2 or 1 vectors."""
    cdef Py_ssize_t c0 = 0
    cdef int vw = VW_D if floating is double else VW_F
    while kp - c0 >= 3 * vw:
        if floating is double:
            _rows4_d(ar[0], ar[1], ar[2], ar[3], n, Fp + c0, kp, U + c0, 3)
        else:
            _rows4_f(ar[0], ar[1], ar[2], ar[3], n, Fp + c0, kp, U + c0, 3)
        c0 = c0 + 3 * vw
    if kp - c0 == 2 * vw:
        if floating is double:
            _rows4_d(ar[0], ar[1], ar[2], ar[3], n, Fp + c0, kp, U + c0, 2)
        else:
            _rows4_f(ar[0], ar[1], ar[2], ar[3], n, Fp + c0, kp, U + c0, 2)
    elif kp - c0 == vw:
        if floating is double:
            _rows4_d(ar[0], ar[1], ar[2], ar[3], n, Fp + c0, kp, U + c0, 1)
        else:
            _rows4_f(ar[0], ar[1], ar[2], ar[3], n, Fp + c0, kp, U + c0, 1)


cdef inline void _acc4(const floating** ar, Py_ssize_t n, const floating* W,
                       Py_ssize_t kp, floating* S) noexcept nogil:
    """S (n x kp) += rows ar[0..3]^T times W (4 x kp), in chunks of 3, 2 or 1 vectors."""
    cdef Py_ssize_t c0 = 0
    cdef int vw = VW_D if floating is double else VW_F
    while kp - c0 >= 3 * vw:
        if floating is double:
            _acc4_d(ar[0], ar[1], ar[2], ar[3], n, W + c0, kp, S + c0, 3)
        else:
            _acc4_f(ar[0], ar[1], ar[2], ar[3], n, W + c0, kp, S + c0, 3)
        c0 = c0 + 3 * vw
    if kp - c0 == 2 * vw:
        if floating is double:
            _acc4_d(ar[0], ar[1], ar[2], ar[3], n, W + c0, kp, S + c0, 2)
        else:
            _acc4_f(ar[0], ar[1], ar[2], ar[3], n, W + c0, kp, S + c0, 2)
    elif kp - c0 == vw:
        if floating is double:
            _acc4_d(ar[0], ar[1], ar[2], ar[3], n, W + c0, kp, S + c0, 1)
        else:
            _acc4_f(ar[0], ar[1], ar[2], ar[3], n, W + c0, kp, S + c0, 1)


cdef void _hand_rows(const floating* a, Py_ssize_t n1, const floating* b, Py_ssize_t n2,
                     bint same, bint grad, const floating* Fp, const floating* Gp,
                     Py_ssize_t k, Py_ssize_t kp, const floating* y, bint has_y,
                     floating* z, floating* sg, floating* stf, Py_ssize_t start,
                     Py_ssize_t stop, floating* work) noexcept nogil:
    """Rows [start, stop) of the fused pass on padded factors (see module comment).

    Fp (n1 x kp), Gp (n2 x kp): F, G with zero columns k..kp-1. sg (n1 x kp) and
    stf (n2 x kp) are zeroed here and accumulated (padded columns stay 0).
    work: 4 * 4 * kp scratch (U, V, W, W2 of 4 rows each).
    """
    cdef floating* U = work
    cdef floating* V = work + 4 * kp
    cdef floating* W = work + 8 * kp
    cdef floating* W2 = work + 12 * kp
    cdef const floating* Vp = V if not same else U
    cdef const floating* ar[4]
    cdef const floating* br[4]
    cdef Py_ssize_t i0, nr, r, rr, l
    cdef floating d, zi
    if grad:
        memset(sg, 0, n1 * kp * sizeof(floating))
        if not same:
            memset(stf, 0, n2 * kp * sizeof(floating))
    i0 = start
    while i0 < stop:
        nr = stop - i0
        if nr > 4:
            nr = 4
        for r in range(4):
            rr = i0 + (r if r < nr else nr - 1)  # short last block: repeat a valid row
            ar[r] = a + rr * n1
            br[r] = b + rr * n2
        _rows4(ar, n1, Fp, kp, U)
        if not same:
            _rows4(br, n2, Gp, kp, V)
        for r in range(4):
            if r < nr:
                d = 0
                for l in range(k):
                    d = d + U[r * kp + l] * Vp[r * kp + l]
                zi = d - y[i0 + r] if has_y else d
                z[i0 + r] = zi
            else:
                zi = 0  # padding row: contributes nothing
            for l in range(kp):
                W[r * kp + l] = zi * Vp[r * kp + l]
                W2[r * kp + l] = zi * U[r * kp + l]
        if grad:
            _acc4(ar, n1, W, kp, sg)
            if not same:
                _acc4(br, n2, W2, kp, stf)
        i0 = i0 + nr


cdef void _unpad_sum(const floating* bufs, Py_ssize_t stride, int n_threads,
                     Py_ssize_t n, Py_ssize_t kp, floating[:, ::1] out) noexcept nogil:
    """out[j, l] = sum_t bufs[t * stride + j * kp + l], t in increasing order, l < k."""
    cdef Py_ssize_t k = out.shape[1], j, l
    cdef int t
    cdef floating s
    for j in range(n):
        for l in range(k):
            s = bufs[j * kp + l]
            for t in range(1, n_threads):
                s = s + bufs[t * stride + j * kp + l]
            out[j, l] = s


cdef int _hand_pass(const floating[:, ::1] a, const floating[:, ::1] b, bint same,
                    bint grad, const floating[:, ::1] F, const floating[:, ::1] G,
                    const floating* yp, bint has_y, floating[::1] z,
                    floating[:, ::1] SG, floating[:, ::1] StF, int n_threads) noexcept nogil:
    """The hand-written fused pass; returns -1 if scratch memory cannot be allocated."""
    cdef Py_ssize_t m = a.shape[0], n1 = a.shape[1], n2 = b.shape[1], k = F.shape[1]
    cdef int vw = VW_D if floating is double else VW_F
    cdef Py_ssize_t kp = ((k + vw - 1) // vw) * vw
    cdef Py_ssize_t per_thread = (n1 + n2 + 16) * kp  # sg, stf, work
    cdef Py_ssize_t t, start, stop, j, l
    cdef floating* mem = <floating*>malloc(((n1 + n2) * kp + n_threads * per_thread)
                                           * sizeof(floating))
    cdef floating* Fp
    cdef floating* Gp
    cdef floating* base
    if mem == NULL:
        return -1
    Fp = mem
    Gp = mem + n1 * kp
    for j in range(n1):
        for l in range(kp):
            Fp[j * kp + l] = F[j, l] if l < k else 0
    for j in range(n2):
        for l in range(kp):
            Gp[j * kp + l] = G[j, l] if l < k else 0
    base = mem + (n1 + n2) * kp
    if n_threads == 1:
        _hand_rows(&a[0, 0], n1, &b[0, 0], n2, same, grad, Fp, Gp, k, kp, yp, has_y,
                   &z[0], base, base + n1 * kp, 0, m, base + (n1 + n2) * kp)
    else:
        for t in prange(n_threads, schedule='static', chunksize=1, num_threads=n_threads):
            start = (t * m) // n_threads
            stop = ((t + 1) * m) // n_threads
            _hand_rows(&a[0, 0], n1, &b[0, 0], n2, same, grad, Fp, Gp, k, kp, yp, has_y,
                       &z[0], base + t * per_thread, base + t * per_thread + n1 * kp,
                       start, stop, base + t * per_thread + (n1 + n2) * kp)
    if grad:
        _unpad_sum(base, per_thread, n_threads, n1, kp, SG)
        if not same:
            _unpad_sum(base + n1 * kp, per_thread, n_threads, n2, kp, StF)
    free(mem)
    return 0


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
               int block, int n_threads, int method=-1):
    """One blocked pass over the rows of a and b.

    z_i = (a_i^T F)(b_i^T G)^T - y_i (y only if has_y); with grad also
    SG = sum_i z_i a_i (b_i^T G) and StF = sum_i z_i b_i (a_i^T F).
    acc_sg (T, n1, k) and acc_stf (T, n2, k) are per-thread buffers (T = n_threads; unused
    when T == 1, then SG/StF are written directly); work is (T, 4 block k) scratch. With
    same (b is a, G is F) StF is a copy of SG. Returns 0.5 ||z||^2 (double accumulation
    in index order).
    method: 0 = small GEMMs through the BLAS shim on blocks of ``block`` rows (uses
    acc_sg, acc_stf, work); 1 = hand-written vector loops (allocates its own padded
    buffers; acc_sg, acc_stf, work, block unused); -1 = 1 if ``hand_path(k)`` else 0.
    """
    cdef Py_ssize_t m = a.shape[0], n1 = a.shape[1], n2 = b.shape[1], k = F.shape[1]
    cdef Py_ssize_t t, start, stop, i, j, l
    cdef double loss = 0
    cdef const floating* yp = &y[0] if has_y else NULL
    cdef int status = 0
    if method == -1:
        method = 1 if hand_path(k) else 0
    with nogil:
        if method == 1:
            status = _hand_pass(a, b, same, grad, F, G, yp, has_y, z, SG, StF, n_threads)
        elif n_threads == 1:
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
    if status != 0:
        raise MemoryError("rank-one kernel: cannot allocate the padded factor buffers")
    with nogil:
        if grad and same:
            for j in range(n1):
                for l in range(k):
                    StF[j, l] = SG[j, l]
        for i in range(m):
            loss = loss + <double>z[i] * <double>z[i]
    return 0.5 * loss
