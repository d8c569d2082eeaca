# Kernels of the sparse-A_i operator.
#
# The nonzeros (r, c, v) -- matrix row r, matrix column c, value v -- are stored three
# times, each a CSR-like grouping: by measurement (ptr_m, rr, cc, vv), by matrix row
# (ptr_r, meas_r, col_r, val_r) and by matrix column (ptr_c, meas_c, row_c, val_c); the
# row and column groupings are stable reorderings of the measurement one, built once.
#
# The residual gradient is three parallel gather passes, none of which writes shared
# memory (no atomics, no per-thread buffers to zero and sum):
#   z_i       = sum_{e in i} v_e <F_{r_e}, G_{c_e}> - y_i      over measurements
#   (S G)_r   = sum_{e in r} v_e z_{i_e} G_{c_e}                over matrix rows
#   (S^T F)_c = sum_{e in c} v_e z_{i_e} F_{r_e}                over matrix columns
# with S = A^T(z) never formed. Each thread owns a fixed range of groups balanced by
# nonzeros, and every output entry is summed by one thread in the stored order, so z, the
# loss, S G and S^T F are bitwise independent of the thread count.
# Cost: 6 nnz k flops; the nonzeros read three times (16 bytes each with int32 indices);
# the randomly accessed factor rows and z entries are software-prefetched.

from cython cimport floating
from cython.parallel cimport prange

from _indexed cimport KMAX, LOWRANK_PREFETCH, PREFETCH, index_t


cdef inline void _dots_rows(Py_ssize_t i0, Py_ssize_t i1, const index_t* ptr,
                            const index_t* rr, const index_t* cc, const floating* vv,
                            const floating* F, const floating* G, const Py_ssize_t k,
                            const floating* y, floating* z, Py_ssize_t pf) noexcept nogil:
    """z_i = sum_{e in i} v_e <F_{r_e}, G_{c_e}> - y_i for measurements [i0, i1)
    (y may be NULL: then z_i is the sum alone, the forward A(F G^T))."""
    cdef const floating* f
    cdef const floating* g
    cdef floating d, s
    cdef Py_ssize_t i, e, l, r2, c2
    cdef Py_ssize_t e_end = ptr[i1]
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
            f = F + <Py_ssize_t>rr[e] * k
            g = G + <Py_ssize_t>cc[e] * k
            d = 0
            for l in range(k):
                d = d + f[l] * g[l]
            s = s + vv[e] * d
        z[i] = s - y[i] if y != NULL else s


cdef void _dots(Py_ssize_t i0, Py_ssize_t i1, const index_t* ptr, const index_t* rr,
                const index_t* cc, const floating* vv, const floating* F,
                const floating* G, Py_ssize_t k, const floating* y, floating* z,
                Py_ssize_t pf) noexcept nogil:
    """Dispatch on k: a literal width for k <= 16 (forced inline, see src/meson.build)."""
    if k == 1:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 1, y, z, pf)
    elif k == 2:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 2, y, z, pf)
    elif k == 3:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 3, y, z, pf)
    elif k == 4:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 4, y, z, pf)
    elif k == 5:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 5, y, z, pf)
    elif k == 6:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 6, y, z, pf)
    elif k == 7:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 7, y, z, pf)
    elif k == 8:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 8, y, z, pf)
    elif k == 9:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 9, y, z, pf)
    elif k == 10:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 10, y, z, pf)
    elif k == 11:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 11, y, z, pf)
    elif k == 12:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 12, y, z, pf)
    elif k == 13:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 13, y, z, pf)
    elif k == 14:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 14, y, z, pf)
    elif k == 15:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 15, y, z, pf)
    elif k == 16:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, 16, y, z, pf)
    else:
        _dots_rows(i0, i1, ptr, rr, cc, vv, F, G, k, y, z, pf)


cdef inline void _gather_rows(Py_ssize_t g0, Py_ssize_t g1, const index_t* ptr,
                              const index_t* meas, const index_t* other,
                              const floating* vals, const floating* w, const floating* X,
                              const Py_ssize_t k, floating* out, Py_ssize_t pf) noexcept nogil:
    """out_g = sum_{e in group g} vals_e w_{meas_e} X_{other_e} for groups [g0, g1),
    k <= KMAX: the group's sum is kept in a local array, written once. Inlined by _gather
    with k a literal for the common widths (registers instead of the stack)."""
    cdef floating acc[KMAX]
    cdef const floating* x
    cdef floating we
    cdef Py_ssize_t g, e, l, x2
    cdef Py_ssize_t e_end = ptr[g1]
    for g in range(g0, g1):
        for l in range(k):
            acc[l] = 0
        for e in range(ptr[g], ptr[g + 1]):
            if e + pf < e_end:
                x2 = <Py_ssize_t>other[e + pf] * k
                LOWRANK_PREFETCH(X + x2)
                LOWRANK_PREFETCH(X + x2 + k - 1)
                LOWRANK_PREFETCH(w + meas[e + pf])
            we = vals[e] * w[meas[e]]
            x = X + <Py_ssize_t>other[e] * k
            for l in range(k):
                acc[l] = acc[l] + we * x[l]
        for l in range(k):
            out[g * k + l] = acc[l]


cdef void _gather_rows_large(Py_ssize_t g0, Py_ssize_t g1, const index_t* ptr,
                             const index_t* meas, const index_t* other,
                             const floating* vals, const floating* w, const floating* X,
                             Py_ssize_t k, floating* out) noexcept nogil:
    """The same for any k, accumulating in place."""
    cdef const floating* x
    cdef floating* o
    cdef floating we
    cdef Py_ssize_t g, e, l
    for g in range(g0, g1):
        o = out + g * k
        for l in range(k):
            o[l] = 0
        for e in range(ptr[g], ptr[g + 1]):
            we = vals[e] * w[meas[e]]
            x = X + <Py_ssize_t>other[e] * k
            for l in range(k):
                o[l] = o[l] + we * x[l]


cdef void _gather(Py_ssize_t g0, Py_ssize_t g1, const index_t* ptr, const index_t* meas,
                  const index_t* other, const floating* vals, const floating* w,
                  const floating* X, Py_ssize_t k, floating* out,
                  Py_ssize_t pf) noexcept nogil:
    """out_g = sum_{e in group g} vals_e w_{meas_e} X_{other_e} for groups [g0, g1).
    Dispatch on k: a literal width for k <= 16 (src/meson.build forces these inline
    calls), the run-time width up to KMAX, then the in-place variant."""
    if k == 1:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 1, out, pf)
    elif k == 2:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 2, out, pf)
    elif k == 3:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 3, out, pf)
    elif k == 4:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 4, out, pf)
    elif k == 5:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 5, out, pf)
    elif k == 6:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 6, out, pf)
    elif k == 7:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 7, out, pf)
    elif k == 8:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 8, out, pf)
    elif k == 9:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 9, out, pf)
    elif k == 10:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 10, out, pf)
    elif k == 11:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 11, out, pf)
    elif k == 12:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 12, out, pf)
    elif k == 13:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 13, out, pf)
    elif k == 14:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 14, out, pf)
    elif k == 15:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 15, out, pf)
    elif k == 16:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, 16, out, pf)
    elif k <= KMAX:
        _gather_rows(g0, g1, ptr, meas, other, vals, w, X, k, out, pf)
    else:
        _gather_rows_large(g0, g1, ptr, meas, other, vals, w, X, k, out)


def residual_gradient(const index_t[::1] ptr_m, const index_t[::1] rr,
                      const index_t[::1] cc, const floating[::1] vv,
                      const index_t[::1] ptr_r, const index_t[::1] meas_r,
                      const index_t[::1] col_r, const floating[::1] val_r,
                      const index_t[::1] ptr_c, const index_t[::1] meas_c,
                      const index_t[::1] row_c, const floating[::1] val_c,
                      const floating[:, ::1] F, const floating[:, ::1] G,
                      const floating[::1] y, floating[::1] z, floating[:, ::1] SG,
                      floating[:, ::1] StF, const Py_ssize_t[::1] bounds_m,
                      const Py_ssize_t[::1] bounds_r, const Py_ssize_t[::1] bounds_c,
                      Py_ssize_t prefetch=PREFETCH):
    """z = A(F G^T) - y, SG = A^T(z) G, StF = A^T(z)^T F; returns 0.5 ||z||^2.

    Three gather passes (see the top of this file). bounds_m, bounds_r, bounds_c
    (T + 1 each) split measurements, matrix rows and matrix columns over the same T
    threads. Cost 6 nnz k flops.
    """
    cdef int T = bounds_m.shape[0] - 1, t
    cdef Py_ssize_t m = ptr_m.shape[0] - 1, k = F.shape[1], i
    cdef double loss = 0
    with nogil:
        for t in prange(T, schedule='static', chunksize=1, num_threads=T):
            _dots(bounds_m[t], bounds_m[t + 1], &ptr_m[0], &rr[0], &cc[0], &vv[0],
                  &F[0, 0], &G[0, 0], k, &y[0], &z[0], prefetch)
        for t in prange(T, schedule='static', chunksize=1, num_threads=T):
            _gather(bounds_r[t], bounds_r[t + 1], &ptr_r[0], &meas_r[0], &col_r[0],
                    &val_r[0], &z[0], &G[0, 0], k, &SG[0, 0], prefetch)
            _gather(bounds_c[t], bounds_c[t + 1], &ptr_c[0], &meas_c[0], &row_c[0],
                    &val_c[0], &z[0], &F[0, 0], k, &StF[0, 0], prefetch)
        for i in range(m):
            loss = loss + <double>z[i] * <double>z[i]
    return 0.5 * loss


def adjoint_product(const index_t[::1] ptr, const index_t[::1] meas,
                    const index_t[::1] other, const floating[::1] vals,
                    const floating[::1] w, const floating[:, ::1] X, floating[:, ::1] out,
                    const Py_ssize_t[::1] bounds):
    """out_g = sum_{e in group g} vals_e w_{meas_e} X_{other_e}, in O(nnz k).

    With the row grouping (ptr_r, meas_r, col_r, val_r) this is out = A^T(w) X; with the
    column grouping (ptr_c, meas_c, row_c, val_c) it is out = A^T(w)^T X. bounds (T + 1)
    splits the groups over T threads; no buffers, bitwise independent of T.
    """
    cdef int T = bounds.shape[0] - 1, t
    cdef Py_ssize_t k = X.shape[1]
    with nogil:
        for t in prange(T, schedule='static', chunksize=1, num_threads=T):
            _gather(bounds[t], bounds[t + 1], &ptr[0], &meas[0], &other[0], &vals[0],
                    &w[0], &X[0, 0], k, &out[0, 0], PREFETCH)


def measurement_dots(const index_t[::1] ptr, const index_t[::1] rr, const index_t[::1] cc,
                     const floating[::1] vv, const floating[:, ::1] F,
                     const floating[:, ::1] G, floating[::1] z, int n_threads):
    """z_i = sum_{e in i} v_e <F_{r_e}, G_{c_e}>: A(F G^T) in O(nnz k), the first pass of
    residual_gradient without y (measurements split over threads in fixed ranges)."""
    cdef Py_ssize_t m = ptr.shape[0] - 1, k = F.shape[1], t, start, stop
    with nogil:
        for t in prange(n_threads, schedule='static', chunksize=1, num_threads=n_threads):
            start = (t * m) // n_threads
            stop = ((t + 1) * m) // n_threads
            _dots(start, stop, &ptr[0], &rr[0], &cc[0], &vv[0], &F[0, 0], &G[0, 0], k,
                  <const floating*>NULL, &z[0], PREFETCH)


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
