# Kernels of the entrywise (matrix completion) operator.
#
# The observed set Omega = {(r_e, c_e)} is stored grouped by matrix row (CSR-like: ptr,
# cols). Measurement e of the user's order is reached through a position array pos: when
# the user's order is already row-grouped (make_problem, from_sparse, from_dense_with_nan)
# pos is the identity and ``has_pos`` is False, so y and z are streamed sequentially.
#
# A(M)_e = scale * M[r_e, c_e];  S = A^T(z) = scale * sum_e z_e e_{r_e} e_{c_e}^T.
#
# The fused kernel makes ONE pass over Omega: for row j, with F_j held in a local array,
# every entry gives z_e = scale <F_j, G_c> - y_e, adds scale z_e G_c to the row's local
# accumulator (S G)_j and scale z_e F_j to row c of a per-thread (S^T F) buffer.
# Determinism: thread t owns the fixed row range [bounds[t], bounds[t+1]) (balanced by
# entry count), so z, the loss and S G are bitwise independent of the thread count, and
# S^T F is the thread-ordered sum of the per-thread buffers: the same thread count gives
# the same bits. No atomics.

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from _indexed cimport KMAX, LOWRANK_PREFETCH, LOWRANK_PREFETCH_W, PREFETCH, index_t


cdef inline void _fused_rows_small(Py_ssize_t j0, Py_ssize_t j1, const index_t* ptr,
                                   const index_t* cols, const index_t* pos, bint has_pos,
                                   const floating* F, const floating* G, const Py_ssize_t k,
                                   const floating* y, floating* z, floating* SG,
                                   floating* stf, floating scale, double* rowloss,
                                   Py_ssize_t pf) noexcept nogil:
    """Rows [j0, j1) for k <= KMAX. Inlined by _fused_rows with k a literal for the common
    widths: the compiler then unrolls the length-k loops and keeps F_j and the row's
    accumulator in registers (with a run-time k they live on the stack)."""
    cdef floating fl[KMAX]
    cdef floating acc[KMAX]
    cdef floating tmp[KMAX]
    cdef const floating* g
    cdef floating* st
    cdef floating d, zi, w
    cdef double ls
    cdef Py_ssize_t j, e, l, p, c2
    cdef Py_ssize_t e_end = ptr[j1]
    for j in range(j0, j1):
        for l in range(k):
            fl[l] = F[j * k + l]
            acc[l] = 0
        ls = 0
        for e in range(ptr[j], ptr[j + 1]):
            if e + pf < e_end:
                c2 = <Py_ssize_t>cols[e + pf] * k
                LOWRANK_PREFETCH(G + c2)
                LOWRANK_PREFETCH(G + c2 + k - 1)
                LOWRANK_PREFETCH_W(stf + c2)
                LOWRANK_PREFETCH_W(stf + c2 + k - 1)
            g = G + <Py_ssize_t>cols[e] * k
            d = 0
            for l in range(k):
                d = d + fl[l] * g[l]
            p = pos[e] if has_pos else e
            zi = scale * d - y[p]
            z[p] = zi
            ls = ls + <double>zi * <double>zi
            w = scale * zi
            for l in range(k):
                acc[l] = acc[l] + w * g[l]
            # read the buffer row whole, then write it whole: written in place the
            # compiler kept it scalar (10 load-FMA-store triples at k = 10); this way both
            # loops vectorize (measured 1.36-1.43x on the whole kernel)
            st = stf + <Py_ssize_t>cols[e] * k
            for l in range(k):
                tmp[l] = st[l] + w * fl[l]
            for l in range(k):
                st[l] = tmp[l]
        for l in range(k):
            SG[j * k + l] = acc[l]
        rowloss[j] = ls


cdef void _fused_rows_large(Py_ssize_t j0, Py_ssize_t j1, const index_t* ptr,
                            const index_t* cols, const index_t* pos, bint has_pos,
                            const floating* F, const floating* G, Py_ssize_t k,
                            const floating* y, floating* z, floating* SG, floating* stf,
                            floating scale, double* rowloss) noexcept nogil:
    cdef const floating* f
    cdef const floating* g
    cdef floating* acc
    cdef floating* st
    cdef floating d, zi, w
    cdef double ls
    cdef Py_ssize_t j, e, l, p
    for j in range(j0, j1):
        f = F + j * k
        acc = SG + j * k
        for l in range(k):
            acc[l] = 0
        ls = 0
        for e in range(ptr[j], ptr[j + 1]):
            g = G + <Py_ssize_t>cols[e] * k
            d = 0
            for l in range(k):
                d = d + f[l] * g[l]
            p = pos[e] if has_pos else e
            zi = scale * d - y[p]
            z[p] = zi
            ls = ls + <double>zi * <double>zi
            w = scale * zi
            for l in range(k):
                acc[l] = acc[l] + w * g[l]
            st = stf + <Py_ssize_t>cols[e] * k
            for l in range(k):
                st[l] = st[l] + w * f[l]
        rowloss[j] = ls


cdef void _fused_rows(Py_ssize_t j0, Py_ssize_t j1, const index_t* ptr,
                      const index_t* cols, const index_t* pos, bint has_pos,
                      const floating* F, const floating* G, Py_ssize_t k,
                      const floating* y, floating* z, floating* SG, floating* stf,
                      floating scale, double* rowloss, Py_ssize_t pf) noexcept nogil:
    """Dispatch on k: a literal width for k <= 16 (src/meson.build forces these inline
    calls), the run-time width up to KMAX, then the pointer variant."""
    if k == 1:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 1, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 2:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 2, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 3:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 3, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 4:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 4, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 5:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 5, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 6:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 6, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 7:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 7, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 8:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 8, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 9:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 9, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 10:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 10, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 11:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 11, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 12:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 12, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 13:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 13, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 14:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 14, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 15:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 15, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k == 16:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, 16, y, z, SG, stf,
                          scale, rowloss, pf)
    elif k <= KMAX:
        _fused_rows_small(j0, j1, ptr, cols, pos, has_pos, F, G, k, y, z, SG, stf,
                          scale, rowloss, pf)
    else:
        _fused_rows_large(j0, j1, ptr, cols, pos, has_pos, F, G, k, y, z, SG, stf, scale,
                          rowloss)


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


def residual_gradient(const index_t[::1] ptr, const index_t[::1] cols,
                      const index_t[::1] pos, bint has_pos, const floating[:, ::1] F,
                      const floating[:, ::1] G, const floating[::1] y, floating[::1] z,
                      floating[:, ::1] SG, floating[:, ::1] StF, floating[:, :, ::1] bufs,
                      floating scale, double[::1] rowloss, const Py_ssize_t[::1] bounds,
                      Py_ssize_t prefetch=PREFETCH):
    """One pass: z = scale F G^T|_Omega - y, SG = A^T(z) G, StF = A^T(z)^T F.

    bounds (T + 1) splits the rows over T threads; bufs (T - 1, n2, k) holds the S^T F
    buffers of threads 1..T-1 (thread 0 writes StF). rowloss (n1) is scratch.
    Returns 0.5 ||z||^2 (double, summed by rows in order). Cost 6 |Omega| k flops.
    """
    cdef int T = bounds.shape[0] - 1, t
    cdef Py_ssize_t n1 = ptr.shape[0] - 1, n2 = G.shape[0], k = F.shape[1], j
    cdef double loss = 0
    cdef floating* stf
    with nogil:
        memset(&StF[0, 0], 0, n2 * k * sizeof(floating))
        if T > 1:
            memset(&bufs[0, 0, 0], 0, (T - 1) * n2 * k * sizeof(floating))
        for t in prange(T, schedule='static', chunksize=1, num_threads=T):
            stf = &StF[0, 0] if t == 0 else &bufs[t - 1, 0, 0]
            _fused_rows(bounds[t], bounds[t + 1], &ptr[0], &cols[0], &pos[0], has_pos,
                        &F[0, 0], &G[0, 0], k, &y[0], &z[0], &SG[0, 0], stf, scale,
                        &rowloss[0], prefetch)
        if T > 1:
            _sum_into(&StF[0, 0], &bufs[0, 0, 0], n2 * k, T - 1, T)
        for j in range(n1):
            loss = loss + rowloss[j]
    return 0.5 * loss


cdef void _gather_rows(Py_ssize_t j0, Py_ssize_t j1, const index_t* ptr,
                       const index_t* cols, const index_t* pos, bint has_pos,
                       const floating* w, const floating* X, Py_ssize_t k, floating* out,
                       floating scale) noexcept nogil:
    """out_j = scale sum_{e in row j} w_{pos(e)} X_{c_e}."""
    cdef floating* o
    cdef const floating* x
    cdef floating we
    cdef Py_ssize_t j, e, l, p
    for j in range(j0, j1):
        o = out + j * k
        for l in range(k):
            o[l] = 0
        for e in range(ptr[j], ptr[j + 1]):
            p = pos[e] if has_pos else e
            we = scale * w[p]
            x = X + <Py_ssize_t>cols[e] * k
            for l in range(k):
                o[l] = o[l] + we * x[l]


cdef void _scatter_rows(Py_ssize_t j0, Py_ssize_t j1, const index_t* ptr,
                        const index_t* cols, const index_t* pos, bint has_pos,
                        const floating* w, const floating* U, Py_ssize_t k, floating* out,
                        floating scale) noexcept nogil:
    """out_{c_e} += scale w_{pos(e)} U_j over rows j (out zeroed by the caller)."""
    cdef floating* o
    cdef const floating* u
    cdef floating we
    cdef Py_ssize_t j, e, l, p
    for j in range(j0, j1):
        u = U + j * k
        for e in range(ptr[j], ptr[j + 1]):
            p = pos[e] if has_pos else e
            we = scale * w[p]
            o = out + <Py_ssize_t>cols[e] * k
            for l in range(k):
                o[l] = o[l] + we * u[l]


def adjoint_products(const index_t[::1] ptr, const index_t[::1] cols,
                     const index_t[::1] pos, bint has_pos, const floating[::1] w,
                     const floating[:, ::1] X, floating[:, ::1] out, bint transpose,
                     floating[:, :, ::1] bufs, floating scale, const Py_ssize_t[::1] bounds):
    """out = S X (transpose False; X (n2, k), out (n1, k)) or S^T X (transpose True;
    X (n1, k), out (n2, k)) for S = scale sum_e w_e e_{r_e} e_{c_e}^T, in O(|Omega| k).

    The transposed product scatters into per-thread buffers bufs (T - 1, n2, k) summed
    in thread order (thread 0 writes out).
    """
    cdef int T = bounds.shape[0] - 1, t
    cdef Py_ssize_t n_out = out.shape[0], k = X.shape[1]
    cdef floating* o
    with nogil:
        if not transpose:
            for t in prange(T, schedule='static', chunksize=1, num_threads=T):
                _gather_rows(bounds[t], bounds[t + 1], &ptr[0], &cols[0], &pos[0],
                             has_pos, &w[0], &X[0, 0], k, &out[0, 0], scale)
        else:
            memset(&out[0, 0], 0, n_out * k * sizeof(floating))
            if T > 1:
                memset(&bufs[0, 0, 0], 0, (T - 1) * n_out * k * sizeof(floating))
            for t in prange(T, schedule='static', chunksize=1, num_threads=T):
                o = &out[0, 0] if t == 0 else &bufs[t - 1, 0, 0]
                _scatter_rows(bounds[t], bounds[t + 1], &ptr[0], &cols[0], &pos[0],
                              has_pos, &w[0], &X[0, 0], k, o, scale)
            if T > 1:
                _sum_into(&out[0, 0], &bufs[0, 0, 0], n_out * k, T - 1, T)


cdef inline void _dots_row(Py_ssize_t j, const index_t* ptr, const index_t* cols,
                           const index_t* pos, bint has_pos, const floating* F,
                           const floating* G, Py_ssize_t k, floating* out,
                           floating scale) noexcept nogil:
    cdef const floating* f = F + j * k
    cdef const floating* g
    cdef floating d
    cdef Py_ssize_t e, l, p
    for e in range(ptr[j], ptr[j + 1]):
        g = G + <Py_ssize_t>cols[e] * k
        d = 0
        for l in range(k):
            d = d + f[l] * g[l]
        p = pos[e] if has_pos else e
        out[p] = scale * d


def sampled_dots(const index_t[::1] ptr, const index_t[::1] cols, const index_t[::1] pos,
                 bint has_pos, const floating[:, ::1] F, const floating[:, ::1] G,
                 floating[::1] out, floating scale, int n_threads):
    """out_e = scale <F_{r_e}, G_{c_e}>: A(F G^T) in O(|Omega| k)."""
    cdef Py_ssize_t n1 = ptr.shape[0] - 1, k = F.shape[1], j
    with nogil:
        for j in prange(n1, schedule='guided', num_threads=n_threads):
            _dots_row(j, &ptr[0], &cols[0], &pos[0], has_pos, &F[0, 0], &G[0, 0], k,
                      &out[0], scale)


def gather(const index_t[::1] ptr, const index_t[::1] cols, const index_t[::1] pos,
           bint has_pos, const floating[:, ::1] M, floating[::1] out, floating scale,
           int n_threads):
    """out_e = scale M[r_e, c_e] (forward of a dense M)."""
    cdef Py_ssize_t n1 = ptr.shape[0] - 1, j, e, p
    with nogil:
        for j in prange(n1, schedule='static', num_threads=n_threads):
            for e in range(ptr[j], ptr[j + 1]):
                p = pos[e] if has_pos else e
                out[p] = scale * M[j, cols[e]]


def scatter_add(const index_t[::1] ptr, const index_t[::1] cols, const index_t[::1] pos,
                bint has_pos, const floating[::1] z, floating[:, ::1] S, floating scale,
                int n_threads):
    """S[r_e, c_e] += scale z_e for every e (S zeroed by the caller): dense A^T(z).

    Rows are split over threads; within a row, entries are added in stored order.
    """
    cdef Py_ssize_t n1 = ptr.shape[0] - 1, j, e, p
    with nogil:
        for j in prange(n1, schedule='static', num_threads=n_threads):
            for e in range(ptr[j], ptr[j + 1]):
                p = pos[e] if has_pos else e
                S[j, cols[e]] += scale * z[p]


def counting_order(const index_t[::1] keys, index_t[::1] ptr, index_t[::1] order):
    """Stable counting sort: order lists the positions of keys grouped by key.

    ptr (nbins + 1) receives the group boundaries: positions with key b are
    order[ptr[b]:ptr[b+1]], in increasing position. keys must lie in [0, nbins).
    O(len(keys) + nbins) time, no temporaries beyond ptr and order.
    """
    cdef Py_ssize_t n = keys.shape[0], nb = ptr.shape[0] - 1, e, b
    with nogil:
        for b in range(nb + 1):
            ptr[b] = 0
        for e in range(n):
            ptr[keys[e] + 1] += 1
        for b in range(nb):
            ptr[b + 1] += ptr[b]
        # ptr[b] is now the start of group b; use it as a moving cursor, then shift back
        for e in range(n):
            b = keys[e]
            order[ptr[b]] = <index_t>e
            ptr[b] += 1
        for b in range(nb, 0, -1):
            ptr[b] = ptr[b - 1]
        ptr[0] = 0


def group_pointers(const index_t[::1] sorted_keys, index_t[::1] ptr):
    """ptr (nbins+1) of already sorted keys: group b is [ptr[b], ptr[b+1])."""
    cdef Py_ssize_t n = sorted_keys.shape[0], nb = ptr.shape[0] - 1, e, b
    with nogil:
        for b in range(nb + 1):
            ptr[b] = 0
        for e in range(n):
            ptr[sorted_keys[e] + 1] += 1
        for b in range(nb):
            ptr[b + 1] += ptr[b]


def is_nondecreasing(const index_t[::1] keys):
    """True if keys[e] <= keys[e+1] for all e (one pass, no temporaries)."""
    cdef Py_ssize_t n = keys.shape[0], e
    cdef bint ok = True
    with nogil:
        for e in range(n - 1):
            if keys[e + 1] < keys[e]:
                ok = False
                break
    return ok
