# Kernels of the sparse-A_i operator.
#
# The nonzeros (i, r, c, v) -- measurement i, matrix row r, matrix column c, value v --
# are stored three times, each a grouping with its own pointer array:
#   by measurement (ptr_m; r_m, c_m, v_m)   -> z_i = sum_e v_e <F_{r_e}, G_{c_e}> - y_i
#   by matrix row  (ptr_r; i_r, c_r, v_r)   -> (S G)_r   = sum_e v_e z_{i_e} G_{c_e}
#   by matrix col  (ptr_c; i_c, r_c, v_c)   -> (S^T F)_c = sum_e v_e z_{i_e} F_{r_e}
# with S = A^T(z) = sum_i z_i A_i never formed. Each output row is accumulated by one
# thread in stored order, so results are bitwise identical for any thread count and
# schedule; no atomics. Cost per pass 2 nnz k flops (plus nnz k for the dots).

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t

ctypedef fused index_t:
    int32_t
    int64_t


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


cdef inline void _weighted_row(Py_ssize_t j, const index_t* ptr, const index_t* meas,
                               const index_t* idx, const floating* vals,
                               const floating* w, const floating* X, Py_ssize_t k,
                               floating* out_all) noexcept nogil:
    cdef floating* out = out_all + j * k
    cdef const floating* x
    cdef floating we
    cdef Py_ssize_t e, l
    for l in range(k):
        out[l] = 0
    for e in range(ptr[j], ptr[j + 1]):
        we = vals[e] * w[meas[e]]
        x = X + <Py_ssize_t>idx[e] * k
        for l in range(k):
            out[l] = out[l] + we * x[l]


def measurement_dots(const index_t[::1] ptr, const index_t[::1] rr, const index_t[::1] cc,
                     const floating[::1] vv, const floating[:, ::1] F,
                     const floating[:, ::1] G, const floating[::1] y, bint has_y,
                     floating[::1] z, int n_threads):
    """z_i = sum_{e in i} v_e <F_{r_e}, G_{c_e}> (- y_i if has_y): A(F G^T) in O(nnz k)."""
    cdef Py_ssize_t m = ptr.shape[0] - 1, k = F.shape[1], i
    with nogil:
        if has_y:
            for i in prange(m, schedule='guided', num_threads=n_threads):
                z[i] = _measurement(i, &ptr[0], &rr[0], &cc[0], &vv[0], &F[0, 0],
                                    &G[0, 0], k) - y[i]
        else:
            for i in prange(m, schedule='guided', num_threads=n_threads):
                z[i] = _measurement(i, &ptr[0], &rr[0], &cc[0], &vv[0], &F[0, 0],
                                    &G[0, 0], k)


def weighted_products(const index_t[::1] ptr, const index_t[::1] meas,
                      const index_t[::1] idx, const floating[::1] vals,
                      const floating[::1] w, const floating[:, ::1] X,
                      floating[:, ::1] out, int n_threads):
    """out_j = sum_{e in group j} v_e w_{i_e} X_{idx_e} for every group j.

    Row grouping with X = G gives A^T(w) G; column grouping with X = F gives A^T(w)^T F.
    """
    cdef Py_ssize_t n = ptr.shape[0] - 1, k = X.shape[1], j
    with nogil:
        for j in prange(n, schedule='guided', num_threads=n_threads):
            _weighted_row(j, &ptr[0], &meas[0], &idx[0], &vals[0], &w[0], &X[0, 0], k,
                          &out[0, 0])


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


def scatter_add(const index_t[::1] ptr, const index_t[::1] meas, const index_t[::1] cc,
                const floating[::1] vals, const floating[::1] z, floating[:, ::1] S,
                int n_threads):
    """S[r, c_e] += v_e z_{i_e} over the row grouping (S zeroed by the caller): dense A^T(z)."""
    cdef Py_ssize_t n1 = ptr.shape[0] - 1, j, e
    with nogil:
        for j in prange(n1, schedule='static', num_threads=n_threads):
            for e in range(ptr[j], ptr[j + 1]):
                S[j, cc[e]] += vals[e] * z[meas[e]]


def half_squared_norm(const floating[::1] z):
    """0.5 sum_i z_i^2, accumulated in double in index order (deterministic)."""
    cdef Py_ssize_t n = z.shape[0], i
    cdef double s = 0
    with nogil:
        for i in range(n):
            s = s + <double>z[i] * <double>z[i]
    return 0.5 * s
