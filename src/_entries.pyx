# Kernels of the entrywise (matrix completion) operator.
#
# The observed set Omega = {(r_e, c_e)} is stored twice, once grouped by matrix row
# (CSR-like: ptr_r, cols_r) and once grouped by matrix column (CSC-like: ptr_c, rows_c).
# Measurement e of the user's order is reached through a position array (pos): the
# row-grouped copy may be the user's own order (then pos is the identity and ``has_pos``
# is False), the column-grouped copy always carries pos_c.
#
# Determinism: every output row (of S G, resp. S^T F) is accumulated by ONE thread in
# the stored entry order, and every z_e is written once. So the results do not depend on
# the schedule or even on the thread count; the loss is summed from per-row partial sums
# in row order. No atomics, no per-thread copies of the outputs.
#
# A(M)_e = scale * M[r_e, c_e];  A^T(z) = scale * sum_e z_e e_{r_e} e_{c_e}^T.

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t

ctypedef fused index_t:
    int32_t
    int64_t


cdef inline void _residual_row(Py_ssize_t j, const index_t* ptr, const index_t* cols,
                               const index_t* pos, bint has_pos,
                               const floating* F, const floating* G, Py_ssize_t k,
                               const floating* y, floating* z, floating* sg,
                               floating scale, double* rowloss) noexcept nogil:
    """Row j of Omega: z_e = scale <F_j, G_{c_e}> - y_e, and SG_j = scale sum_e z_e G_{c_e}."""
    cdef const floating* f = F + j * k
    cdef const floating* g
    cdef floating* out = sg + j * k
    cdef floating d, zi, w
    cdef double ls = 0
    cdef Py_ssize_t e, l, p
    for l in range(k):
        out[l] = 0
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
            out[l] = out[l] + w * g[l]
    rowloss[j] = ls


cdef inline void _product_row(Py_ssize_t j, const index_t* ptr, const index_t* idx,
                              const index_t* pos, bint has_pos, const floating* w,
                              const floating* X, Py_ssize_t k, floating* out_all,
                              floating scale) noexcept nogil:
    """out_j = scale * sum_{e in group j} w_{pos(e)} X_{idx_e}."""
    cdef floating* out = out_all + j * k
    cdef const floating* x
    cdef floating we
    cdef Py_ssize_t e, l, p
    for l in range(k):
        out[l] = 0
    for e in range(ptr[j], ptr[j + 1]):
        p = pos[e] if has_pos else e
        we = scale * w[p]
        x = X + <Py_ssize_t>idx[e] * k
        for l in range(k):
            out[l] = out[l] + we * x[l]


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


def residual_rows(const index_t[::1] ptr, const index_t[::1] cols, const index_t[::1] pos,
                  bint has_pos, const floating[:, ::1] F, const floating[:, ::1] G,
                  const floating[::1] y, floating[::1] z, floating[:, ::1] SG,
                  floating scale, double[::1] rowloss, int n_threads):
    """Row-grouped pass: z = scale F G^T|_Omega - y and SG = A^T(z) G; returns 0.5 ||z||^2.

    ptr (n1+1), cols (|Omega|) group Omega by row; pos maps stored entry -> measurement
    (ignored when has_pos is False). rowloss (n1) is scratch. Cost 4 |Omega| k flops.
    """
    cdef Py_ssize_t n1 = ptr.shape[0] - 1, k = F.shape[1], j
    cdef double loss = 0
    cdef const index_t* pp = &pos[0]
    with nogil:
        for j in prange(n1, schedule='guided', num_threads=n_threads):
            _residual_row(j, &ptr[0], &cols[0], pp, has_pos, &F[0, 0], &G[0, 0], k,
                          &y[0], &z[0], &SG[0, 0], scale, &rowloss[0])
        for j in range(n1):
            loss = loss + rowloss[j]
    return 0.5 * loss


def grouped_products(const index_t[::1] ptr, const index_t[::1] idx, const index_t[::1] pos,
                     bint has_pos, const floating[::1] w, const floating[:, ::1] X,
                     floating[:, ::1] out, floating scale, int n_threads):
    """out_j = scale sum_{e in group j} w_{pos(e)} X_{idx_e} for every group j.

    With the column grouping (idx = rows) and X = F this is A^T(w)^T F; with the row
    grouping (idx = cols) and X = G it is A^T(w) G. Cost 2 |Omega| k flops.
    """
    cdef Py_ssize_t n = ptr.shape[0] - 1, k = X.shape[1], j
    with nogil:
        for j in prange(n, schedule='guided', num_threads=n_threads):
            _product_row(j, &ptr[0], &idx[0], &pos[0], has_pos, &w[0], &X[0, 0], k,
                         &out[0, 0], scale)


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
        # ptr[b] is now the start of group b; use ptr[b] as a moving cursor, then shift back
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
