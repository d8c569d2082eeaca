# Row and column bias least squares on the observed entries (center="biases" of
# MatrixCompletion; lowrank_core.estimator.BipartiteBiases).
#
# For observations (rows[e], cols[e]), e < m, the normal-equations product of the design
# B = [row indicators, column indicators] is
#
#     t_e = b[rows[e]] + c[cols[e]],   qb = R^T t (row sums),   qc = C^T t (column sums),
#
# one fused pass over the entries (a gather and two scatter-adds, no length-m temporary),
# O(m). ``scatter`` is B^T z and ``subtract`` is z - B (b; c). Single-threaded: the
# scatter-adds are into shared vectors, and one pass costs about as much as reading the
# index arrays; the order is fixed, so results are bitwise repeatable.

from cython cimport floating


def normal(const Py_ssize_t[::1] rows, const Py_ssize_t[::1] cols,
           const double[::1] b, const double[::1] c, double[::1] qb, double[::1] qc):
    """qb <- R^T (R b + C c), qc <- C^T (R b + C c)."""
    cdef Py_ssize_t e, m = rows.shape[0]
    cdef double t
    with nogil:
        qb[:] = 0.0
        qc[:] = 0.0
        for e in range(m):
            t = b[rows[e]] + c[cols[e]]
            qb[rows[e]] += t
            qc[cols[e]] += t


def scatter(const Py_ssize_t[::1] rows, const Py_ssize_t[::1] cols,
            const floating[::1] z, double[::1] rb, double[::1] rc):
    """rb <- R^T z, rc <- C^T z (accumulated in double); returns ||z||^2."""
    cdef Py_ssize_t e, m = rows.shape[0]
    cdef double t, ss = 0.0
    with nogil:
        rb[:] = 0.0
        rc[:] = 0.0
        for e in range(m):
            t = z[e]
            rb[rows[e]] += t
            rc[cols[e]] += t
            ss += t * t
    return ss


def subtract(const Py_ssize_t[::1] rows, const Py_ssize_t[::1] cols,
             const double[::1] b, const double[::1] c, const floating[::1] z,
             floating[::1] out):
    """out <- z - (b[rows] + c[cols]) (out may be z)."""
    cdef Py_ssize_t e, m = rows.shape[0]
    with nogil:
        for e in range(m):
            out[e] = <floating>(z[e] - (b[rows[e]] + c[cols[e]]))
