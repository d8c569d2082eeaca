# OpenMP facts of this build, for the Python layer's thread-count resolution.

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


def openmp_enabled():
    """True if the compiled core was built with OpenMP."""
    return bool(lowrank_omp_enabled())


def openmp_max_threads():
    """Threads an OpenMP parallel region gets by default (honours OMP_NUM_THREADS)."""
    return lowrank_omp_max_threads()
