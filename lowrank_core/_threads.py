"""Thread-count resolution for the OpenMP kernels."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import numbers
import os
import warnings
from collections.abc import Iterator

import numpy as np

from . import _parallel

#: Thread count every kernel uses in the current context (set by :func:`thread_limit`,
#: e.g. for the duration of one ``solve(n_threads=...)``); None: each operator's own.
_CONTEXT_N_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "lowrank_core_n_threads", default=None)


def openmp_enabled() -> bool:
    """True if the compiled core was built with OpenMP (else kernels run on one thread)."""
    return _parallel.openmp_enabled()


#: Requests are honoured up to max(MAX_THREADS_FLOOR, usable cores) threads (more than the
#: cores only with a warning, see :func:`resolve_n_threads`) and capped there.
MAX_THREADS_FLOOR = 64

_warned: set[int] = set()


@functools.lru_cache(maxsize=1)
def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; os.cpu_count() elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The cap on any thread count: max(:data:`MAX_THREADS_FLOOR`, usable cores)."""
    return max(MAX_THREADS_FLOOR, usable_cores())


def _resolve(n_threads) -> int:
    default = _parallel.openmp_max_threads()
    if n_threads is None:
        n = default
    else:
        if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads,
                                                                     numbers.Integral):
            raise TypeError(f"n_threads must be None or an int, got {n_threads!r}")
        if n_threads == 0:
            raise ValueError("n_threads must be non-zero (None for the default, -1 for all)")
        n = int(n_threads) if n_threads > 0 else max(1, default + 1 + int(n_threads))
    if not _parallel.openmp_enabled():
        return 1
    n = max(1, n)
    if n > usable_cores():
        cap = max_threads()
        if n_threads is not None and n not in _warned:
            _warned.add(n)  # once per value and process: resolution runs on every call
            if n > cap:
                warnings.warn(f"n_threads={n} is capped at {cap} threads (max(64, usable "
                              f"cores = {usable_cores()})); more threads than that only "
                              "cost thread start-up and memory", ThreadCapWarning,
                              stacklevel=3)
            else:
                warnings.warn(f"n_threads={n} exceeds the {usable_cores()} usable cores: the "
                              "kernels run oversubscribed (slower; results are still "
                              "deterministic for this thread count)", ThreadCapWarning,
                              stacklevel=3)
        n = min(n, cap)
    return n


class ThreadCapWarning(RuntimeWarning):
    """A thread count above the usable cores (oversubscribed) or above the cap."""


def resolve_n_threads(n_threads) -> int:
    """Number of threads a kernel uses.

    None means the OpenMP default (``OMP_NUM_THREADS`` or the number of cores);
    a positive int is used as is; a negative int counts back from the default
    (-1 = all, -2 = all but one), as in scikit-learn. Builds without OpenMP always use 1.
    A count above the usable cores (CPU affinity) is honoured with a
    :class:`ThreadCapWarning` (once per value): oversubscription is slow but reproduces a
    result computed with that many threads elsewhere (the partitions depend on the thread
    count). Any count is capped at :func:`max_threads`, max(64, usable cores), so a
    runaway request (1000, 2**31) can neither start thousands of OpenMP threads nor
    overflow the kernels' int argument.
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
