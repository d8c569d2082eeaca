"""Thread-count resolution for the OpenMP kernels."""

from __future__ import annotations

import contextlib
import contextvars
import numbers
from collections.abc import Iterator

from . import _parallel

#: Thread count every kernel uses in the current context (set by :func:`thread_limit`,
#: e.g. for the duration of one ``solve(n_threads=...)``); None: each operator's own.
_CONTEXT_N_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "lowrank_core_n_threads", default=None)


def openmp_enabled() -> bool:
    """True if the compiled core was built with OpenMP (else kernels run on one thread)."""
    return _parallel.openmp_enabled()


def _resolve(n_threads) -> int:
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


def resolve_n_threads(n_threads) -> int:
    """Number of threads a kernel uses.

    None means the OpenMP default (``OMP_NUM_THREADS`` or the number of cores);
    a positive int is used as is; a negative int counts back from the default
    (-1 = all, -2 = all but one), as in scikit-learn. Builds without OpenMP always use 1.
    Inside a :func:`thread_limit` block the block's count replaces the request (which is
    still validated).
    """
    n = _resolve(n_threads)
    scoped = _CONTEXT_N_THREADS.get()
    return n if scoped is None else scoped


@contextlib.contextmanager
def thread_limit(n_threads) -> Iterator[int | None]:
    """Run the kernels called in this block (this thread / task) on ``n_threads`` threads.

    The operators are not modified: their thread counts resolve through
    :func:`resolve_n_threads`, which honours the innermost block. ``None`` leaves every
    operator's own setting in force. Yields the resolved count (None for None).
    """
    if n_threads is None:
        yield None
        return
    token = _CONTEXT_N_THREADS.set(_resolve(n_threads))
    try:
        yield _CONTEXT_N_THREADS.get()
    finally:
        _CONTEXT_N_THREADS.reset(token)
