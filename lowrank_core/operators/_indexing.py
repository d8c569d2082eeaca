"""Index helpers shared by the indexed operator kinds (entries, sparse).

Index validation, the int32/int64 choice, stable groupings of positions by key (the
counting-sort kernels ``counting_order`` / ``group_pointers``, compiled in
``src/_entries.pyx.tp``; imported here once so that no operator module needs another kind's
kernels) and the deterministic static partition of groups over threads.
"""

from __future__ import annotations

import numpy as np

from .._kernels import load as _load_kernels
from .._validation import check_positive_int

# the grouping kernels (AVX2/FMA build when the CPU has them)
_grouping_kernels = _load_kernels("_entries")

_INT32_MAX = np.iinfo(np.int32).max

#: below this many entries (nonzeros) per thread the indexed kernels use fewer threads
#: (waking a thread team costs up to milliseconds on a busy machine)
MIN_ENTRIES_PER_THREAD = 65536


def index_dtype(*sizes: int) -> np.dtype:
    """int32 when every index, position and pointer fits, else int64."""
    return np.dtype(np.int32) if max(sizes) < _INT32_MAX else np.dtype(np.int64)


def check_shape(shape, name: str = "shape") -> tuple[int, int]:
    """``shape`` as a pair of positive ints (n1, n2), else ValueError naming it."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
        raise ValueError(f"{name} must be a pair (n1, n2) of positive integers, got {shape!r}")
    return (check_positive_int(shape[0], f"{name}[0]"),
            check_positive_int(shape[1], f"{name}[1]"))


def as_index_array(x, name: str, bound: int, what: str) -> np.ndarray:
    """Validate a 1-D integer index array with values in [0, bound); returned
    C-contiguous (a strided or reversed view, e.g. a column of an (m, 2) array, is
    copied; the kernels read indices with unit stride)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty (an operator needs at least one "
                         "measurement)")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an array of integer indices, got dtype {arr.dtype}"
                        + ("; convert integral floats with "
                           f"{name}.astype(np.int64)" if np.issubdtype(arr.dtype, np.floating)
                           else ""))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise ValueError(f"{name} contains negative index {lo}; {what} indices must lie in "
                         f"[0, {bound}) (no wrap-around)")
    if hi >= bound:
        raise ValueError(f"{name} contains index {hi} out of range: {what} indices must lie "
                         f"in [0, {bound}); check the operator shape")
    return np.ascontiguousarray(arr)


def grouping(keys: np.ndarray, nbins: int, itype: np.dtype):
    """(ptr, order) grouping positions by key (stable); order is None if keys are sorted.

    O(len(keys) + nbins) by counting sort: group g holds positions
    ``order[ptr[g]:ptr[g + 1]]`` (or ``ptr[g]:ptr[g + 1]`` themselves when sorted).
    """
    ptr = np.empty(nbins + 1, itype)
    if _grouping_kernels.is_nondecreasing(keys):
        _grouping_kernels.group_pointers(keys, ptr)
        return ptr, None
    order = np.empty(keys.shape[0], itype)
    _grouping_kernels.counting_order(keys, ptr, order)
    return ptr, order


def readonly(*arrays) -> None:
    """Mark the given arrays (None skipped) read-only."""
    for a in arrays:
        if a is not None:
            a.flags.writeable = False


def thread_bounds(ptr: np.ndarray, n_threads: int, *, exact: bool = False) -> np.ndarray:
    """Split the groups of ``ptr`` into n_threads contiguous ranges of ~equal entry counts.

    Returns bounds (T + 1, intp): thread t owns groups [bounds[t], bounds[t+1]). Small
    problems get T < n_threads (fewer than :data:`MIN_ENTRIES_PER_THREAD` entries per
    thread); ``exact=True`` keeps T = n_threads (some ranges may be empty), for passes that
    must match another split's thread count. A pure function of (ptr, n_threads): the
    partition is deterministic.
    """
    n = ptr.shape[0] - 1
    # small problems stay on fewer threads: a parallel region costs more than it saves
    T = max(1, min(int(n_threads), n, int(ptr[-1]) // MIN_ENTRIES_PER_THREAD))
    if exact:
        T = max(1, int(n_threads))
    targets = (np.arange(T + 1, dtype=np.float64) * float(ptr[-1]) / T).round()
    bounds = np.searchsorted(ptr, targets.astype(ptr.dtype), side="left").astype(np.intp)
    bounds[0], bounds[-1] = 0, n
    return np.maximum.accumulate(bounds)


class BoundsCache:
    """Mixin: thread partitions cached per (purpose, thread count) for indexed kinds."""

    _bounds_cache: dict

    def _bounds(self, ptr):
        nt = self.n_threads
        key = ("bounds", nt)
        b = self._bounds_cache.get(key)
        if b is None:
            b = thread_bounds(ptr, nt)
            self._bounds_cache = {key: b}
        return b
