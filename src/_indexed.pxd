# Shared declarations of the kernels that walk index arrays (_entries, _sparse): the index
# fused type (int32 when every index fits, else int64), the per-row local-array width, and
# software prefetch of randomly accessed rows.

from cython cimport floating
from libc.stdint cimport int32_t, int64_t

ctypedef fused index_t:
    int32_t
    int64_t

cdef enum:
    # k up to KMAX runs with the per-row arrays local (registers after specialization on
    # k); larger k uses the pointer variants
    KMAX = 32
    # entries ahead whose randomly accessed rows are prefetched
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


cdef inline void prefetch_row(const floating* X, Py_ssize_t start,
                              Py_ssize_t k) noexcept nogil:
    """Prefetch X[start:start + k] (a factor row) for reading: its first and last element."""
    LOWRANK_PREFETCH(X + start)
    LOWRANK_PREFETCH(X + start + k - 1)


cdef inline void prefetch_row_w(floating* X, Py_ssize_t start, Py_ssize_t k) noexcept nogil:
    """Prefetch X[start:start + k] (a buffer row) for writing: its first and last element."""
    LOWRANK_PREFETCH_W(X + start)
    LOWRANK_PREFETCH_W(X + start + k - 1)
