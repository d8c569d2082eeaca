# Kernels of the sparse-A_i operator.
#
# The nonzeros (r, c, v) -- matrix row r, matrix column c, value v -- are stored grouped
# by measurement (CSR of the (m, n1 n2) operator matrix: ptr, rr, cc, vv).
#
# The fused kernel makes ONE pass over the nonzeros. For measurement i it first forms
#   z_i = sum_e v_e <F_{r_e}, G_{c_e}> - y_i
# and then, with the same few nonzeros still in L1, scatters
#   (S G)_{r_e} += v_e z_i G_{c_e},   (S^T F)_{c_e} += v_e z_i F_{r_e}
# into per-thread buffers; S = A^T(z) = sum_i z_i A_i is never formed. Thread t owns the
# fixed measurement range [bounds[t], bounds[t+1]) (balanced by nonzeros); buffers are
# summed in thread order, so z and the loss are bitwise independent of the thread count
# and S G, S^T F are bitwise identical for a fixed thread count. No atomics.
# Cost: 6 nnz k flops, the nonzeros read once, F and G rows read twice (second from L1).

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memset

ctypedef fused index_t:
    int32_t
    int64_t


cdef enum:
    KMAX = 32
    # nonzeros ahead whose factor and output rows are prefetched (random access)
    PREFETCH = 8

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define LOWRANK_PREFETCH(p) __builtin_prefetch((const void*)(p))
    #define LOWRANK_PREFETCH_W(p) __builtin_prefetch((const void*)(p), 1)
    #else
    #define LOWRANK_PREFETCH(p) ((void)0)
    #define LOWRANK_PREFETCH_W(p) ((void)0)
    #endif
    """
    void LOWRANK_PREFETCH(const void* p) noexcept nogil
    void LOWRANK_PREFETCH_W(const void* p) noexcept nogil


cdef void _fused_measurements(Py_ssize_t i0, Py_ssize_t i1, const index_t* ptr,
                              const index_t* rr, const index_t* cc, const floating* vv,
                              const floating* F, const floating* G, Py_ssize_t k,
                              const floating* y, floating* z, floating* sg,
                              floating* stf, Py_ssize_t pf) noexcept nogil:
    """Measurements [i0, i1): z_i, then the scatter into sg (n1 x k) and stf (n2 x k).

    For k <= KMAX the two factor rows are copied to local arrays before the scatter, so
    the compiler knows they do not alias the outputs and vectorizes the updates.
    """
    cdef floating fl[KMAX]
    cdef floating gl[KMAX]
    cdef const floating* f
    cdef const floating* g
    cdef floating* o
    cdef floating d, s, zi, w
    cdef Py_ssize_t i, e, l, r2, c2
    cdef Py_ssize_t e_end = ptr[i1]
    cdef bint small = k <= KMAX
    for i in range(i0, i1):
        s = 0
        for e in range(ptr[i], ptr[i + 1]):
            if e + pf < e_end:
                r2 = <Py_ssize_t>rr[e + pf] * k
                c2 = <Py_ssize_t>cc[e + pf] * k
                LOWRANK_PREFETCH(F + r2)
                LOWRANK_PREFETCH(F + r2 + k - 1)
                LOWRANK_PREFETCH(G + c2)
                LOWRANK_PREFETCH(G + c2 + k - 1)
                LOWRANK_PREFETCH_W(sg + r2)
                LOWRANK_PREFETCH_W(sg + r2 + k - 1)
                LOWRANK_PREFETCH_W(stf + c2)
                LOWRANK_PREFETCH_W(stf + c2 + k - 1)
            f = F + <Py_ssize_t>rr[e] * k
            g = G + <Py_ssize_t>cc[e] * k
            d = 0
            for l in range(k):
                d = d + f[l] * g[l]
            s = s + vv[e] * d
        zi = s - y[i]
        z[i] = zi
        for e in range(ptr[i], ptr[i + 1]):
            w = vv[e] * zi
            f = F + <Py_ssize_t>rr[e] * k
            g = G + <Py_ssize_t>cc[e] * k
            if small:
                for l in range(k):
                    fl[l] = w * f[l]
                    gl[l] = w * g[l]
                o = sg + <Py_ssize_t>rr[e] * k
                for l in range(k):
                    o[l] = o[l] + gl[l]
                o = stf + <Py_ssize_t>cc[e] * k
                for l in range(k):
                    o[l] = o[l] + fl[l]
            else:
                o = sg + <Py_ssize_t>rr[e] * k
                for l in range(k):
                    o[l] = o[l] + w * g[l]
                o = stf + <Py_ssize_t>cc[e] * k
                for l in range(k):
                    o[l] = o[l] + w * f[l]


cdef void _sum_into(floating* out, const floating* bufs, Py_ssize_t n, int n_bufs,
                    int n_threads) noexcept nogil:
    """out[i] += bufs[0, i] + bufs[1, i] + ... in buffer order (deterministic)."""
    cdef Py_ssize_t i
    cdef int t
    cdef floating s
    for i in prange(n, schedule='static', num_threads=n_threads):
        s = out[i]
        for t in range(n_bufs):
            s = s + bufs[t * n + i]
        out[i] = s


def residual_gradient(const index_t[::1] ptr, const index_t[::1] rr, const index_t[::1] cc,
                      const floating[::1] vv, const floating[:, ::1] F,
                      const floating[:, ::1] G, const floating[::1] y, floating[::1] z,
                      floating[:, ::1] SG, floating[:, ::1] StF,
                      floating[:, :, ::1] buf_sg, floating[:, :, ::1] buf_stf,
                      const Py_ssize_t[::1] bounds, Py_ssize_t prefetch=PREFETCH):
    """One pass: z = A(F G^T) - y, SG = A^T(z) G, StF = A^T(z)^T F; returns 0.5 ||z||^2.

    bounds (T + 1) splits the measurements over T threads; buf_sg (T-1, n1, k) and
    buf_stf (T-1, n2, k) are the buffers of threads 1..T-1 (thread 0 writes SG, StF).
    """
    cdef int T = bounds.shape[0] - 1, t
    cdef Py_ssize_t m = ptr.shape[0] - 1, n1 = F.shape[0], n2 = G.shape[0], k = F.shape[1]
    cdef Py_ssize_t i
    cdef double loss = 0
    cdef floating* sg
    cdef floating* stf
    with nogil:
        memset(&SG[0, 0], 0, n1 * k * sizeof(floating))
        memset(&StF[0, 0], 0, n2 * k * sizeof(floating))
        if T > 1:
            memset(&buf_sg[0, 0, 0], 0, (T - 1) * n1 * k * sizeof(floating))
            memset(&buf_stf[0, 0, 0], 0, (T - 1) * n2 * k * sizeof(floating))
        for t in prange(T, schedule='static', chunksize=1, num_threads=T):
            sg = &SG[0, 0] if t == 0 else &buf_sg[t - 1, 0, 0]
            stf = &StF[0, 0] if t == 0 else &buf_stf[t - 1, 0, 0]
            _fused_measurements(bounds[t], bounds[t + 1], &ptr[0], &rr[0], &cc[0], &vv[0],
                                &F[0, 0], &G[0, 0], k, &y[0], &z[0], sg, stf, prefetch)
        if T > 1:
            _sum_into(&SG[0, 0], &buf_sg[0, 0, 0], n1 * k, T - 1, T)
            _sum_into(&StF[0, 0], &buf_stf[0, 0, 0], n2 * k, T - 1, T)
        for i in range(m):
            loss = loss + <double>z[i] * <double>z[i]
    return 0.5 * loss


cdef void _scatter_measurements(Py_ssize_t i0, Py_ssize_t i1, const index_t* ptr,
                                const index_t* idx_out, const index_t* idx_in,
                                const floating* vv, const floating* w, const floating* X,
                                Py_ssize_t k, floating* out) noexcept nogil:
    cdef floating* o
    cdef const floating* x
    cdef floating we
    cdef Py_ssize_t i, e, l
    for i in range(i0, i1):
        for e in range(ptr[i], ptr[i + 1]):
            we = vv[e] * w[i]
            x = X + <Py_ssize_t>idx_in[e] * k
            o = out + <Py_ssize_t>idx_out[e] * k
            for l in range(k):
                o[l] = o[l] + we * x[l]


def adjoint_products(const index_t[::1] ptr, const index_t[::1] idx_out,
                     const index_t[::1] idx_in, const floating[::1] vv,
                     const floating[::1] w, const floating[:, ::1] X, floating[:, ::1] out,
                     floating[:, :, ::1] bufs, const Py_ssize_t[::1] bounds):
    """out_{idx_out_e} += v_e w_{i(e)} X_{idx_in_e} over all nonzeros (out zeroed here).

    (idx_out, idx_in) = (rr, cc) gives out = A^T(w) X; (cc, rr) gives A^T(w)^T X.
    bufs (T - 1, n_out, k) are the buffers of threads 1..T-1, summed in thread order.
    """
    cdef int T = bounds.shape[0] - 1, t
    cdef Py_ssize_t n_out = out.shape[0], k = X.shape[1]
    cdef floating* o
    with nogil:
        memset(&out[0, 0], 0, n_out * k * sizeof(floating))
        if T > 1:
            memset(&bufs[0, 0, 0], 0, (T - 1) * n_out * k * sizeof(floating))
        for t in prange(T, schedule='static', chunksize=1, num_threads=T):
            o = &out[0, 0] if t == 0 else &bufs[t - 1, 0, 0]
            _scatter_measurements(bounds[t], bounds[t + 1], &ptr[0], &idx_out[0],
                                  &idx_in[0], &vv[0], &w[0], &X[0, 0], k, o)
        if T > 1:
            _sum_into(&out[0, 0], &bufs[0, 0, 0], n_out * k, T - 1, T)


cdef inline floating _measurement(Py_ssize_t i, const index_t* ptr, const index_t* rr,
                                  const index_t* cc, const floating* vv,
                                  const floating* F, const floating* G,
                                  Py_ssize_t k) noexcept nogil:
    cdef const floating* f
    cdef const floating* g
    cdef floating d, s = 0
    cdef Py_ssize_t e, l
    for e in range(ptr[i], ptr[i + 1]):
        f = F + <Py_ssize_t>rr[e] * k
        g = G + <Py_ssize_t>cc[e] * k
        d = 0
        for l in range(k):
            d = d + f[l] * g[l]
        s = s + vv[e] * d
    return s


def measurement_dots(const index_t[::1] ptr, const index_t[::1] rr, const index_t[::1] cc,
                     const floating[::1] vv, const floating[:, ::1] F,
                     const floating[:, ::1] G, floating[::1] z, int n_threads):
    """z_i = sum_{e in i} v_e <F_{r_e}, G_{c_e}>: A(F G^T) in O(nnz k)."""
    cdef Py_ssize_t m = ptr.shape[0] - 1, k = F.shape[1], i
    with nogil:
        for i in prange(m, schedule='guided', num_threads=n_threads):
            z[i] = _measurement(i, &ptr[0], &rr[0], &cc[0], &vv[0], &F[0, 0], &G[0, 0], k)


def forward_dense(const index_t[::1] ptr, const index_t[::1] rr, const index_t[::1] cc,
                  const floating[::1] vv, const floating[:, ::1] M, floating[::1] out,
                  int n_threads):
    """out_i = sum_{e in i} v_e M[r_e, c_e]."""
    cdef Py_ssize_t m = ptr.shape[0] - 1, i, e
    cdef floating s
    with nogil:
        for i in prange(m, schedule='guided', num_threads=n_threads):
            s = 0
            for e in range(ptr[i], ptr[i + 1]):
                s = s + vv[e] * M[rr[e], cc[e]]
            out[i] = s


def scatter_add(const index_t[::1] ptr, const index_t[::1] rr, const index_t[::1] cc,
                const floating[::1] vv, const floating[::1] z, floating[:, ::1] S):
    """S[r_e, c_e] += v_e z_{i(e)} (S zeroed by the caller): dense A^T(z), sequential."""
    cdef Py_ssize_t m = ptr.shape[0] - 1, i, e
    with nogil:
        for i in range(m):
            for e in range(ptr[i], ptr[i + 1]):
                S[rr[e], cc[e]] += vv[e] * z[i]
