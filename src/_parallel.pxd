# Shared OpenMP helpers of every kernel module: the static partition of rows over
# threads, the ordered reduction of per-thread buffers, and the loss accumulation.
#
# Determinism contract of the kernels: thread t of T owns a fixed block of rows (or
# groups), per-thread partial results are combined in increasing thread order, and the
# loss is summed sequentially in index order. So a fixed thread count always gives the
# same bits. All helpers are inline, noexcept and nogil; they allocate nothing.

from cython cimport floating
from cython.parallel cimport prange

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int lowrank_omp_enabled(void) { return 1; }
    static int lowrank_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int lowrank_omp_enabled(void) { return 0; }
    static int lowrank_omp_max_threads(void) { return 1; }
    #endif
    """
    int lowrank_omp_enabled() noexcept nogil
    int lowrank_omp_max_threads() noexcept nogil


cdef inline Py_ssize_t block_start(Py_ssize_t n, Py_ssize_t t,
                                   Py_ssize_t n_threads) noexcept nogil:
    """First index of thread t's block of [0, n) in the static partition.

    Thread t owns [block_start(n, t, T), block_start(n, t + 1, T)): T contiguous blocks
    whose sizes differ by at most one, the same for every call with the same (n, T).
    """
    return (t * n) // n_threads


cdef inline void sum_ordered(floating* out, const floating* first, const floating* rest,
                             Py_ssize_t stride, int n_rest, Py_ssize_t n,
                             int n_threads) noexcept nogil:
    """Ordered reduction of per-thread buffers (deterministic: fixed summation order).

    out[i] = (...((first[i] + rest_0[i]) + rest_1[i]) ...) + rest_{n_rest-1}[i] for i < n,
    where rest_t = rest + t * stride (rest is not read when n_rest == 0). out may be first
    (an in-place sum). The entries are split over n_threads; each is summed by one
    thread, so the bits do not depend on n_threads. Cost (n_rest + 1) n reads.
    """
    cdef Py_ssize_t i
    cdef int t
    cdef floating s
    if n_rest == 0 and out == first:
        return
    for i in prange(n, schedule='static', num_threads=n_threads):
        s = first[i]
        for t in range(n_rest):
            s = s + rest[t * stride + i]
        out[i] = s


cdef inline void sum_ordered_rows(floating* out, Py_ssize_t ld_out, const floating* first,
                                  const floating* rest, Py_ssize_t stride, int n_rest,
                                  Py_ssize_t ld_in, Py_ssize_t n_rows, Py_ssize_t n_cols,
                                  int n_threads) noexcept nogil:
    """sum_ordered on (n_rows, n_cols) blocks with row pitches: out (pitch ld_out) from
    first and rest_t (pitch ld_in >= n_cols; padded columns are dropped)."""
    cdef Py_ssize_t j, l
    cdef int t
    cdef floating s
    for j in prange(n_rows, schedule='static', num_threads=n_threads):
        for l in range(n_cols):
            s = first[j * ld_in + l]
            for t in range(n_rest):
                s = s + rest[t * stride + j * ld_in + l]
            out[j * ld_out + l] = s


cdef inline double half_squared_norm(const floating* z, Py_ssize_t n) noexcept nogil:
    """0.5 sum_i z_i^2, accumulated in double in index order (the loss 0.5 ||z||^2)."""
    cdef double s = 0
    cdef Py_ssize_t i
    for i in range(n):
        s = s + <double>z[i] * <double>z[i]
    return 0.5 * s


cdef inline double half_sum(const double* parts, Py_ssize_t n) noexcept nogil:
    """0.5 sum_i parts_i in index order (the loss from per-row partial sums)."""
    cdef double s = 0
    cdef Py_ssize_t i
    for i in range(n):
        s = s + parts[i]
    return 0.5 * s
