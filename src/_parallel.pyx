# OpenMP facts of this build, for the Python layer's thread-count resolution (the C
# helpers are declared in _parallel.pxd, which Cython includes here).

def openmp_enabled():
    """True if the compiled core was built with OpenMP."""
    return bool(lowrank_omp_enabled())


def openmp_max_threads():
    """Threads an OpenMP parallel region gets by default (honours OMP_NUM_THREADS)."""
    return lowrank_omp_max_threads()
