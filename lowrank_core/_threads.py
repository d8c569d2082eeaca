"""Thread-count resolution for the OpenMP kernels."""

from __future__ import annotations

import numbers

from . import _parallel


def openmp_enabled() -> bool:
    """True if the compiled core was built with OpenMP (else kernels run on one thread)."""
    return _parallel.openmp_enabled()


def resolve_n_threads(n_threads) -> int:
    """Number of threads a kernel uses.

    None means the OpenMP default (``OMP_NUM_THREADS`` or the number of cores);
    a positive int is used as is; a negative int counts back from the default
    (-1 = all, -2 = all but one), as in scikit-learn. Builds without OpenMP always use 1.
    """
    default = _parallel.openmp_max_threads()
    if n_threads is None:
        n = default
    else:
        if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
            raise TypeError(f"n_threads must be None or an int, got {n_threads!r}")
        if n_threads == 0:
            raise ValueError("n_threads must be non-zero (None for the default, -1 for all)")
        n = int(n_threads) if n_threads > 0 else max(1, default + 1 + int(n_threads))
    if not _parallel.openmp_enabled():
        return 1
    return max(1, n)
