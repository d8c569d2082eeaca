"""Matrix completion: :class:`EntryOperator` observes single entries, and
:func:`sample_entries` draws uniformly random sets of them.

The compiled kernels live in ``lowrank_core._entries`` (AVX2/FMA build when the CPU has
it); this module validates input, builds the row grouping once and orchestrates.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, DTypeLike
from scipy.sparse.linalg import LinearOperator

from .._kernels import load as _load_kernels
from .._validation import as_float_array, check_dtype, check_positive_float, check_positive_int
from . import _indexing as ix
from ._base import (
    MeasurementOperator,
    _FactoredLinearOperator,
    _file_array,
    _file_shape,
    _refuse_if_too_large,
)
from ._indexing import BoundsCache

_entries = _load_kernels("_entries")
_linesearch = _load_kernels("_linesearch")
_blocked_kernels = _load_kernels("_entries_blocked")

#: largest tile side of the blocked layout (tile-local row and column share 32 bits)
_MAX_BLOCK = 1 << 16


def _read_cache_size(level: int) -> int | None:
    """Bytes of cpu0's unified or data cache of ``level`` from sysfs (None if unknown)."""
    import glob
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(f"{d}/level") as fh:
                lev = int(fh.read())
            with open(f"{d}/type") as fh:
                kind = fh.read().strip()
            with open(f"{d}/size") as fh:
                text = fh.read().strip()
        except (OSError, ValueError):
            continue
        if lev != level or kind == "Instruction":
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        try:
            return int(text.rstrip("KMGkmg")) * mult
        except ValueError:
            continue
    return None


_CACHE_SIZES: tuple[int, int] | None = None


def cache_sizes() -> tuple[int, int]:
    """(per-core L2 bytes, last-level cache bytes) of this machine, read once from sysfs
    (then ``os.sysconf``); 1 MiB and 8 MiB when neither tells."""
    global _CACHE_SIZES
    if _CACHE_SIZES is None:
        import os

        def conf(name):
            try:
                v = os.sysconf(name)
            except (ValueError, OSError):
                return None
            return v if v and v > 0 else None

        l2 = _read_cache_size(2) or conf("SC_LEVEL2_CACHE_SIZE") or (1 << 20)
        llc = (_read_cache_size(3) or conf("SC_LEVEL3_CACHE_SIZE") or max(l2, 8 << 20))
        _CACHE_SIZES = (int(l2), int(max(llc, l2)))
    return _CACHE_SIZES

__all__ = ["EntryOperator", "sample_entries", "short_lines_message"]


class EntryOperator(BoundsCache, MeasurementOperator):
    r"""Matrix completion: each measurement observes one entry.

    A(M)_i = scale * M[rows_i, cols_i], i.e. A_i = scale * e_{rows_i} e_{cols_i}^T, and
    A^T(z) = scale * sum_i z_i e_{rows_i} e_{cols_i}^T (the sparse matrix P_Omega of z).

    Parameters
    ----------
    rows, cols : array_like of int, shape (m,)
        Row and column of each observed entry, in [0, n1) and [0, n2). Any order;
        repeated entries are allowed (each is a separate measurement).
    shape : tuple (n1, n2)
    dtype : float32 or float64
        Precision of the factors and measurements this operator works with.
    scale : float
        Weight of every measurement (default 1: y_i is the entry itself). Must be a
        normal number of ``dtype`` (float32: ``1.2e-38 <= abs(scale) <= 3.4e38``).
        :func:`~lowrank_core.make_problem` uses scale = 1/sqrt(p) with p = m/(n1 n2), which
        makes the operator near-isotropic, E||A(M)||^2 = ||M||_F^2.
    n_threads : int, optional
    layout : {"auto", "rows", "blocked"}
        Storage the fused ``residual_gradient`` walks. "rows": grouped by row (below).
        "blocked": cache-blocked tiles (below). "auto" (default): blocked when G and the
        S^T F buffer, 2 n2 k itemsize bytes, exceed the last-level cache (the row layout
        then misses the cache twice per observation), else rows (measured in
        docs/benchmarks.rst, "At scale"). With observations in random order,
        :meth:`from_entries` also removes the random accesses to y and z.
    block_shape : tuple (rows, columns), optional
        Tile shape of the blocked layout (each in [1, 65536]); default from the cache
        sizes and k (see :meth:`block_shape`).
    cache_size : int, optional
        Bytes of the cache that holds a column block's G and S^T F slices (default: the
        last-level cache size read from /sys/devices/system/cpu/cpu0/cache, else
        ``os.sysconf``).

    Notes
    -----
    The blocked layout (built on the first ``residual_gradient`` with a given k, by one
    stable counting sort into tiles, O(m + n_tiles), from the row layout) orders the
    observations by (row block, column block, row): br x bc tiles whose G and S^T F
    slices stay in L2 while F and S G are walked in row order inside a row block's slice
    that stays in the last-level cache. Each entry is one 32-bit tile-local code (row
    << 16 | column) and its position in the user's order (int32 when m < 2**31), 8 bytes,
    plus 8 bytes per tile; y is read and z written at that position (the user's order; no
    copy of y). Threads own whole row blocks (balanced by entry count), S^T F goes to
    per-thread buffers summed in thread order: bitwise repeatable for a fixed thread
    count, and bitwise equal to the row layout run with the same within-row order (input
    sorted by row and column, e.g. make_problem) and the same row split.

    The entries are stored grouped by row (CSR-like; int32 indices when
    ``max(n1, n2, m) < 2**31 - 1``, else int64), built once in O(m + n1) by counting sort;
    input already sorted by row (from_sparse, from_dense_with_nan, make_problem) is used in
    place, other orders reach y and z through a permutation (slower: random access).
    ``residual_gradient`` makes ONE parallel pass over the entries, 6 m k flops: for each
    row j, z_e, (A^T(z) G)_j accumulated locally and scale z_e F_j added to row c_e of a
    per-thread A^T(z)^T F buffer (T - 1 buffers of n2 x k, summed in thread order). Rows
    are split over threads in fixed ranges balanced by entry count: z, the loss and S G
    are bitwise independent of the thread count, S^T F is bitwise repeatable for a fixed
    thread count. Memory: m index words (2 m if unsorted) plus n1 + 1 pointers.
    """

    kind = "entries"
    ensemble = "entries"
    file_format = ("rows, cols (m,) int; shape (2,); optional scale "
                   "(y_i = scale*M[rows_i, cols_i])")

    def __init__(self, rows: ArrayLike, cols: ArrayLike, shape: tuple[int, int], *,
                 dtype: DTypeLike = np.float64, scale: float = 1.0, n_threads: int | None = None,
                 layout: Literal["auto", "rows", "blocked"] = "auto",
                 block_shape: tuple[int, int] | None = None,
                 cache_size: int | None = None) -> None:
        rows, cols = self._setup(rows, cols, shape, dtype, scale, n_threads, layout,
                                 block_shape, cache_size)
        self._build(rows, cols)

    def _setup(self, rows, cols, shape, dtype, scale, n_threads, layout, block_shape,
               cache_size):
        """Validate the arguments and set everything but the index arrays; returns rows
        and cols as C-contiguous arrays of the index dtype (no copy when they are)."""
        super().__init__(n_threads)
        self._set_layout(layout, block_shape, cache_size)
        n1, n2 = ix.check_shape(shape)
        self.dtype = check_dtype(dtype)
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real) \
                or not np.isfinite(scale) or scale == 0:
            raise ValueError(f"scale must be a finite non-zero number, got {scale!r}")
        info = np.finfo(self.dtype)
        if not float(info.tiny) <= abs(float(scale)) <= float(info.max):
            raise ValueError(
                f"scale={float(scale)!r} is not representable in {self.dtype} (normal numbers "
                f"have magnitude {float(info.tiny):.3g} to {float(info.max):.3g}): every "
                f"measurement would be {'inf' if abs(float(scale)) > 1 else 'zero'}; rescale "
                f"y and scale together (scale=1 measures the entries themselves) or use "
                f"dtype=np.float64")
        rows = ix.as_index_array(rows, "rows", n1, "row")
        cols = ix.as_index_array(cols, "cols", n2, "column")
        if rows.shape != cols.shape:
            raise ValueError(f"rows and cols must have the same length, got {rows.shape[0]} "
                             f"and {cols.shape[0]}")
        m = int(rows.shape[0])
        itype = ix.index_dtype(n1, n2, m)
        # pointers per matrix row, the row-grouped columns, the order and the index casts
        _refuse_if_too_large(
            itype.itemsize * (n1 + 1 + 4 * m),
            f"EntryOperator with shape=({n1:,}, {n2:,}) and m={m:,} entries",
            "its row pointers grow with n1 = shape[0] (pass the transposed problem if n1 is "
            "the huge side) and its indices with m: check shape, rows and cols")
        self.shape = (n1, n2)
        self.m = m
        self.scale = float(scale)
        self._itype = itype
        self._dummy = np.zeros(1, itype)
        self._bounds_cache = {}
        return rows.astype(itype, copy=False), cols.astype(itype, copy=False)

    def _build(self, rows, cols):
        n1 = self.shape[0]
        itype = self._itype
        # row grouping (identity when the input is already sorted by row, e.g. from CSR)
        self._ptr_r, order_r = ix.grouping(rows, n1, itype)
        if order_r is None:
            self._cols_r = np.array(cols, dtype=itype, copy=True)
        else:
            self._cols_r = cols[order_r]
        self._pos_r = order_r
        ix.readonly(self._ptr_r, self._cols_r, self._pos_r)

    def _build_tiles_direct(self, rows, cols, values, tiles, want_order):
        """from_entries' blocked layout straight from the user's arrays (no row layout,
        no permutation of length m): one stable scatter into the tiles, then each tile
        sorted by row through a scratch of the largest tile's size. Returns y (values
        in the layout's order) and order (y = values[order]) or None."""
        br, bc = tiles
        n1, n2 = self.shape
        m, it = self.m, self._itype
        n_tiles = -(-n1 // br) * -(-n2 // bc)
        tptr = np.empty(n_tiles + 1, np.int64)
        self._ptr_r = np.empty(n1 + 1, it)
        _blocked_kernels.count_tiles(rows, cols, br, bc, self._ptr_r, tptr)
        big = int(np.diff(tptr).max())          # the largest tile bounds the scratch
        code = np.empty(m, np.uint32)
        y = np.empty(m, self.dtype)
        order = np.empty(m if want_order else 1, it)
        _blocked_kernels.build_direct(
            rows, cols, values, br, bc, n1, tptr, code, y, order, want_order,
            np.empty(br + 1, np.int64), np.empty(big, np.uint32), np.empty(big, self.dtype),
            np.empty(big if want_order else 1, it))
        self._cols_r = self._pos_r = None          # row layout built from the tiles on use
        ix.readonly(self._ptr_r)
        self._block_shape = tiles
        self._set_blocked(tiles, tptr, code, None)
        return y, (order if want_order else None)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_sparse(cls, X: sp.spmatrix | sp.sparray, *,
                    n_threads: int | None = None) -> tuple[EntryOperator, np.ndarray]:
        """Operator and measurements from a scipy.sparse matrix of observations.

        Every STORED entry of X (explicit zeros included; duplicates of a COO matrix kept
        as repeated measurements) is one observation.

        Returns
        -------
        op : EntryOperator
            With X's shape and dtype (float32 or float64).
        y : ndarray, shape (m,)
            The observed values, in the order of ``X.tocoo()`` (row-major for CSR input).
        """
        if not sp.issparse(X):
            raise TypeError(f"X must be a scipy.sparse matrix or array, got {type(X).__name__}"
                            "; for a dense array with NaN for missing entries use "
                            "EntryOperator.from_dense_with_nan")
        coo = X.tocoo()
        if coo.nnz == 0:
            raise ValueError("X has no stored entries: an operator needs at least one "
                             "observation")
        y = as_float_array(coo.data, "X.data", ndim=1)
        op = cls(coo.row, coo.col, coo.shape, dtype=y.dtype, n_threads=n_threads)
        return op, np.array(y, copy=True)

    @classmethod
    def from_dense_with_nan(cls, X: ArrayLike, *,
                            n_threads: int | None = None) -> tuple[EntryOperator, np.ndarray]:
        """Operator and measurements from a dense array with NaN marking missing entries.

        Returns
        -------
        op : EntryOperator
            Observing the non-NaN entries of X in row-major order.
        y : ndarray, shape (m,)
            Their values (X's dtype, float32 or float64).
        """
        X = as_float_array(X, "X", ndim=2, finite=False)
        observed = ~np.isnan(X)
        if np.isinf(X).any():
            raise ValueError("X contains infinite values; only NaN marks a missing entry "
                             "(replace inf by NaN or a finite value)")
        if not observed.any():
            raise ValueError("X has no observed (non-NaN) entries")
        rows, cols = np.nonzero(observed)
        y = X[observed]
        return cls(rows, cols, X.shape, dtype=X.dtype, n_threads=n_threads), y

    @classmethod
    def from_entries(cls, rows: ArrayLike, cols: ArrayLike, values: ArrayLike,
                     shape: tuple[int, int], *, scale: float = 1.0,
                     n_threads: int | None = None,
                     layout: Literal["auto", "rows", "blocked"] = "auto", k: int = 10,
                     block_shape: tuple[int, int] | None = None,
                     cache_size: int | None = None, return_order: bool = False,
                     ) -> (tuple[EntryOperator, np.ndarray]
                           | tuple[EntryOperator, np.ndarray, np.ndarray]):
        """Operator and measurements with the observations reordered into the order its
        fused kernel streams (the fast path for observations in random order).

        ``EntryOperator(rows, cols, ...)`` keeps the user's measurement order: with
        observations in random order (as interaction logs arrive) every
        ``residual_gradient`` then reads y and writes z at random positions, two cache
        misses per observation. This builder sorts the observations once (O(m + n1 +
        tiles), two counting sorts) and returns y in the operator's order, as
        :meth:`from_sparse` does: the operator's measurement i is ``rows[order[i]],
        cols[order[i]]``, y and z are streamed, and no position array is stored.

        Parameters
        ----------
        rows, cols : array_like of int, shape (m,)
        values : array_like of float32 or float64, shape (m,)
            The observed entries (the operator's dtype is theirs).
        shape : tuple (n1, n2)
        scale, n_threads, layout, block_shape, cache_size
            As for :class:`EntryOperator`. The layout is chosen for factors of width
            ``k`` (for "auto" and the default tile shape); the order then stays fixed,
            other widths run on the same tiles.
        k : int, default 10
            The rank the operator will be used with.
        return_order : bool, default False
            Also return ``order`` (m,): y = values[order].

        Returns
        -------
        op : EntryOperator
        y : ndarray, shape (m,)
            values in the operator's order: by (row block, column block, row) tiles
            for the blocked layout, by row for the row layout.
        order : ndarray, shape (m,), only with ``return_order``

        Notes
        -----
        Blocked: the operator holds the row pointers (n1 + 1), one 32-bit tile code per
        observation and 8 bytes per tile (4 bytes per observation, against 8-16 for the
        constructor's layouts). ``residual_gradient`` and the line search walk the
        tiles; the row layout the other products (adjoint, forward, spectral
        initialization) walk is built from the tiles on first use (2 index words per
        observation). The build reads the user's arrays directly: one counting pass,
        one stable scatter into the tiles, and each tile sorted by row through a
        scratch of the largest tile's size, O(m + n1 + tiles x rows per tile); its peak
        memory is the inputs plus what it returns, y and the codes (12 bytes per
        float64 observation; plus the order, 4 or 8, with ``return_order``). With very
        many tiny tiles (tiles x rows per tile > 4 m) it goes through the row layout
        instead (2 index words per observation more, transiently).
        """
        k = check_positive_int(k, "k")
        values = as_float_array(values, "values", ndim=1)
        op = cls.__new__(cls)
        rows, cols = op._setup(rows, cols, shape, values.dtype, scale, n_threads, layout,
                               block_shape, cache_size)
        if values.shape[0] != op.m:
            raise ValueError(f"values must have one entry per observation (rows and cols "
                             f"have {op.m}), got {values.shape[0]}")
        tiles = op.block_shape(k)
        if tiles is None:
            # row layout: the row order becomes the measurement order (no positions)
            op._build(rows, cols)
            order = op._pos_r
            y = values.copy() if order is None else values[order]
            op._pos_r = None
        elif -(-op.shape[0] // tiles[0]) * -(-op.shape[1] // tiles[1]) * tiles[0] \
                <= 4 * op.m + (1 << 20):
            y, order = op._build_tiles_direct(rows, cols, values, tiles, return_order)
        else:
            # very many small tiles (the per-tile row sort would cost n_tiles * rows):
            # through the constructor's row layout, one counting sort into the tiles
            op._build(rows, cols)
            br, bc = tiles
            n1, n2 = op.shape
            tptr = np.empty(-(-n1 // br) * -(-n2 // bc) + 1, np.int64)
            code = np.empty(op.m, np.uint32)
            order = np.empty(op.m, op._itype)
            ptr, cols_r, pos_r, has = op._pr()
            _blocked_kernels.build_layout(ptr, cols_r, pos_r, has, br, bc, tptr, code,
                                          order)
            op._cols_r = op._pos_r = None          # rebuilt from the tiles on demand
            del cols_r, pos_r
            y = np.empty(op.m, op.dtype)
            _blocked_kernels.permute(order, values, y, op.n_threads)
            op._block_shape = tiles
            op._set_blocked(tiles, tptr, code, None)
        if return_order:
            return op, y, (np.arange(op.m, dtype=op._itype) if order is None else order)
        return op, y

    # ------------------------------------------------ shards, files and ensembles
    def take_rows(self, start: int, stop: int) -> EntryOperator:
        """Measurements start..stop-1 (rebuilt from their rows and columns, O(m))."""
        start, stop = self._check_row_range(start, stop)
        return EntryOperator(self.rows[start:stop], self.cols[start:stop], self.shape,
                             dtype=self.dtype, scale=self.scale,
                             n_threads=self._n_threads_request, layout=self.layout,
                             block_shape=self._block_shape, cache_size=self._cache_size)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``rows``, ``cols`` (m,) int, ``shape`` (2,) and ``scale``."""
        return {"rows": np.asarray(self.rows), "cols": np.asarray(self.cols),
                "shape": np.asarray(self.shape, np.int64), "scale": np.float64(self.scale)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, dtype: DTypeLike | None = None,
                    n_threads: int | None = None) -> EntryOperator:
        """From ``rows``, ``cols``, ``shape`` and optional ``scale`` (default 1); ``dtype``
        is the measurements' (default float64)."""
        rows = _file_array(arrays, "rows", kind="int", ndim=1)
        cols = _file_array(arrays, "cols", kind="int", ndim=1)
        scale = _file_array(arrays, "scale", optional=True)
        return cls(rows, cols, _file_shape(arrays),
                   dtype=np.float64 if dtype is None else dtype,
                   scale=1.0 if scale is None else float(scale), n_threads=n_threads)

    @classmethod
    def random_ensemble(cls, rng: np.random.Generator, n1: int, n2: int, m: int | None,
                        psd: bool, dtype: np.dtype, n_threads: int | None = None,
                        p: float | None = None, min_per_line: int = 0) -> EntryOperator:
        """Matrix completion on a uniformly random set Omega of distinct entries.

        ``|Omega| = m`` (uniform m-subset), or, with ``p`` given and m=None, a Bernoulli(p)
        set (``|Omega| ~ Binomial(n1 n2, p)``, then a uniform subset of that size). The
        entries are scaled by 1/sqrt(p_eff), ``p_eff = |Omega| / (n1 n2)``, so
        E||A(M)||^2 = ||M||_F^2 and
        A^T(y) is the usual unbiased P_Omega(M)/p. Sampled row-major sorted, chunk by chunk,
        never forming anything n1 x n2 (see :func:`sample_entries`). psd=True keeps the
        same (non-symmetrized) sampling of a PSD truth. ``min_per_line = t > 0``
        conditions Omega on every row and column having >= t entries (rejection; with
        ``p``, whole Bernoulli draws are repeated, the GNMR/R2RILS authors' protocol; see
        :func:`sample_entries` for the feasibility condition).
        """
        total = n1 * n2
        if p is not None:
            if m is not None:
                raise ValueError("operator='entries' takes either m (a count) or p (a "
                                 "fraction), not both; pass m=None with p")
            p = check_positive_float(p, "p")
            if p > 1:
                raise ValueError(f"p must be a fraction in (0, 1], got {p}")
            m = int(rng.binomial(total, p))
            if min_per_line:
                m = _bernoulli_feasible_count(rng, n1, n2, p, m, min_per_line)
            if m == 0:
                raise ValueError(f"p={p} observed no entry of a {n1} x {n2} matrix; use a "
                                 "larger p")
        elif m is None:
            raise ValueError("operator='entries' needs m (number of observed entries) or p")
        if m > total:
            raise ValueError(f"m={m} exceeds the {total} entries of a {n1} x {n2} matrix")
        itype = ix.index_dtype(n1, n2, m)
        _refuse_if_too_large(
            itype.itemsize * (n1 + 1 + 6 * m),
            f"a random completion operator with m={m:,} entries of a {n1:,} x {n2:,} matrix",
            "use fewer entries (m or p) or a smaller shape")
        rows, cols = sample_entries(n1, n2, m, rng, min_per_line=min_per_line)
        return cls(rows, cols, (n1, n2), dtype=dtype, scale=1.0 / np.sqrt(m / total),
                   n_threads=n_threads)

    # ------------------------------------------------------------------ properties
    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        blocked = () if self._blocked is None else (
            self._blocked["tptr"], self._blocked["code"], self._blocked["pos"])
        if self._cols_r is None:      # from_entries, blocked: row layout not built yet
            return int(sum(a.nbytes for a in (self._ptr_r, *blocked) if a is not None))
        return int(sum(a.nbytes for a in (self._ptr_r, self._cols_r, self._pos_r, *blocked)
                       if a is not None))

    @property
    def rows(self) -> np.ndarray:
        """Row of each measurement (a new int array, measurement order)."""
        self._row_layout()
        rows_r = np.repeat(np.arange(self.shape[0], dtype=self._itype), np.diff(self._ptr_r))
        if self._pos_r is None:
            return rows_r
        out = np.empty(self.m, self._itype)
        out[self._pos_r] = rows_r
        return out

    @property
    def cols(self) -> np.ndarray:
        """Column of each measurement (a new int array, measurement order)."""
        self._row_layout()
        if self._pos_r is None:
            return self._cols_r.copy()
        out = np.empty(self.m, self._itype)
        out[self._pos_r] = self._cols_r
        return out

    def _row_layout(self) -> None:
        """Build the row layout of a from_entries blocked operator on first use (the
        products other than residual_gradient walk it): one pass over the tiles."""
        if self._cols_r is not None:
            return
        b = self._blocked
        cols_r = np.empty(self.m, self._itype)
        pos_r = np.empty(self.m, self._itype)
        _blocked_kernels.rows_from_tiles(b["tptr"], b["code"], *b["shape"], self._ptr_r,
                                         cols_r, pos_r, np.empty(self.shape[0], self._itype))
        ix.readonly(cols_r, pos_r)
        self._cols_r, self._pos_r = cols_r, pos_r

    def _pr(self):
        self._row_layout()
        return (self._ptr_r, self._cols_r,
                self._dummy if self._pos_r is None else self._pos_r, self._pos_r is not None)

    def _sc(self):
        return self.dtype.type(self.scale)

    # ------------------------------------------------------------------ kernels
    def _forward_into(self, M, out):
        ptr, cols, pos, has = self._pr()
        _entries.gather(ptr, cols, pos, has, M, out, self._sc(), self.n_threads)

    def _forward_factored_into(self, F, G, out):
        ptr, cols, pos, has = self._pr()
        _entries.sampled_dots(ptr, cols, pos, has, F, G, out, self._sc(), self.n_threads)

    def _adjoint_dense(self, z):
        S = np.zeros(self.shape, self.dtype)
        ptr, cols, pos, has = self._pr()
        _entries.scatter_add(ptr, cols, pos, has, z, S, self._sc(), self.n_threads)
        return S

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        blocked = self._blocked_for(F.shape[1])
        if blocked is not None:
            return self._blocked_residual_gradient(blocked, F, G, y, z, SG, StF)
        ptr, cols, pos, has = self._pr()
        bounds = self._bounds(ptr)
        T, k = bounds.shape[0] - 1, F.shape[1]
        with self._rg_workspace(T, k) as (rowloss, bufs):
            return _entries.residual_gradient(ptr, cols, pos, has, F, G, y, z, SG, StF,
                                              bufs, self._sc(), rowloss, bounds)

    def _residual_gradient_left_into(self, F, G, y, z, SG):
        """z = A(F G^T) - y and SG = A^T(z) G only; returns 1/2 ||z||^2.

        The one-sided residual gradient (``_entries.residual_gradient_left``): one pass
        over the row layout, 4 m k flops, nothing scattered into an n2 x k buffer. Its
        z, loss and SG are those of :meth:`_residual_gradient_into` to rounding
        (separately compiled loops). The blocked layout has no one-sided kernel: there
        the two-sided one runs with S^T F into scratch."""
        k = F.shape[1]
        blocked = self._blocked_for(k)
        if blocked is not None:
            with self._workspace("rg-left-stf", (k,), lambda: np.empty(
                    (self.shape[1], k), self.dtype)) as StF:
                return self._blocked_residual_gradient(blocked, F, G, y, z, SG, StF)
        ptr, cols, pos, has = self._pr()
        bounds = self._bounds(ptr)
        T = bounds.shape[0] - 1
        with self._workspace("rg-left", (T,), lambda: np.empty(
                self.shape[0], np.float64)) as rowloss:
            return _entries.residual_gradient_left(ptr, cols, pos, has, F, G, y, z, SG,
                                                   self._sc(), rowloss, bounds)

    def _adjoint_product_into(self, w, X, out, transpose):
        """out <- A^T(w) X (transpose False) or A^T(w)^T X (True): one of the two
        products of :meth:`_adjoint_products_into`, one pass over the row layout."""
        ptr, cols, pos, has = self._pr()
        bounds = self._bounds(ptr)
        T, k = bounds.shape[0] - 1, X.shape[1]
        with self._workspace("ap", (T, k), lambda: self._scatter_buffers(T, k)) as bufs:
            _entries.adjoint_products(ptr, cols, pos, has, w, X, out, bool(transpose), bufs,
                                      self._sc(), bounds)

    # ------------------------------------------------------ cache-blocked layout
    def _set_layout(self, layout, block_shape, cache_size) -> None:
        """Validate and store the layout options (the layout itself is built lazily)."""
        if layout not in ("auto", "rows", "blocked"):
            raise ValueError(f"layout must be 'auto', 'rows' or 'blocked', got {layout!r}")
        if block_shape is not None:
            if isinstance(block_shape, (str, bytes)) or not hasattr(block_shape, "__len__") \
                    or len(block_shape) != 2:
                raise ValueError("block_shape must be a pair (rows, columns) of tile sizes "
                                 f"in [1, 65536], got {block_shape!r}")
            block_shape = tuple(check_positive_int(b, "block_shape") for b in block_shape)
            if max(block_shape) > _MAX_BLOCK:
                raise ValueError(f"block_shape={block_shape} exceeds {_MAX_BLOCK} (tile-local "
                                 "indices are 16-bit); use smaller tiles")
        if cache_size is not None:
            cache_size = check_positive_int(cache_size, "cache_size")
        self.layout = layout
        #: traversal of the tiles (column blocks outermost; False: row blocks, for
        #: benchmarks/scale.py's comparison); the same bits either way
        self._col_major = True
        self._block_shape = block_shape
        self._cache_size = cache_size
        self._blocked = None

    def block_shape(self, k: int) -> tuple[int, int] | None:
        """Tile shape (rows, columns) the blocked layout uses for factors of width k, or
        None when the row layout is used (``layout="rows"``, or "auto" while G and the
        S^T F buffer fit in the last-level cache).

        The tiles are walked column block by column block (each thread its own row
        blocks), so a column block's G and S^T F slices stay cached while F and S G
        are streamed in row order. Columns: the slices, 2 bc k itemsize bytes, take a
        quarter of a thread's share of ``cache_size`` (default the last-level cache read
        from the system; a quarter because on the shared development machine larger
        slices measured slower, docs/benchmarks.rst); rows: 65536 (the tile-local
        index limit; fewer tiles). Both in [64, 65536].
        """
        k = check_positive_int(k, "k")
        n1, n2 = self.shape
        item = self.dtype.itemsize
        l2, llc = cache_sizes()
        if self._blocked is not None and self._blocked["pos"] is None:
            return self._blocked["shape"]     # from_entries: the order is the tiles'
        if self.layout == "rows" or (self.layout == "auto"
                                     and not self._auto_blocked(k, llc)):
            return None
        if self._block_shape is not None:
            br, bc = self._block_shape
        else:
            cache = self._cache_size or llc
            T = max(1, self.n_threads)
            bc = min(max(cache // (8 * T * k * item), 64), _MAX_BLOCK)
            br = _MAX_BLOCK
        return int(min(br, n1)), int(min(bc, n2))

    def _auto_blocked(self, k: int, llc: int) -> bool:
        """layout="auto": blocked when G and the S^T F buffer (2 n2 k itemsize bytes)
        exceed the last-level cache (then the row layout misses on both for every
        observation); rows otherwise, where everything it touches at random stays in
        cache (docs/benchmarks.rst, "At scale")."""
        return 2 * self.shape[1] * k * self.dtype.itemsize > llc

    def _blocked_for(self, k: int):
        """The blocked layout for width k (built on first use, kept until the tile shape
        changes), or None for the row layout."""
        shape = self.block_shape(k)
        if shape is None:
            return None
        cached = self._blocked
        if cached is not None and (cached["shape"] == shape or cached["pos"] is None):
            return cached
        br, bc = shape
        n1, n2 = self.shape
        n_rb, n_cb = -(-n1 // br), -(-n2 // bc)
        _refuse_if_too_large(
            self.m * (4 + self._itype.itemsize) + 8 * (n_rb * n_cb + 1),
            f"the blocked layout of an EntryOperator with m={self.m:,} entries",
            "use layout='rows'")
        tptr = np.empty(n_rb * n_cb + 1, np.int64)
        code = np.empty(self.m, np.uint32)
        pos = np.empty(self.m, self._itype)
        ptr, cols, pos_r, has = self._pr()
        _blocked_kernels.build_layout(ptr, cols, pos_r, has, br, bc, tptr, code, pos)
        return self._set_blocked(shape, tptr, code, pos)

    def _set_blocked(self, shape, tptr, code, pos):
        """Keep a built blocked layout (pos None: its order is the measurement order)."""
        ix.readonly(tptr, code, pos)
        n_cb = -(-self.shape[1] // shape[1])
        self._blocked = cached = {"shape": shape, "tptr": tptr, "code": code, "pos": pos,
                                  "rb_ptr": np.ascontiguousarray(tptr[::n_cb]),
                                  "bounds": {}}
        return cached

    def _rg_workspace(self, T: int, k: int):
        """The gradient kernels' scratch, cached per (T, k): a float64 partial loss per
        row (n1) and the S^T F buffers of threads 1..T-1 (T - 1, n2, k)."""
        n1, n2 = self.shape
        return self._workspace("rg", (T, k), lambda: (
            np.empty(n1, np.float64), np.empty((max(T - 1, 1), n2, k), self.dtype)))

    def _blocked_bounds(self, blocked) -> np.ndarray:
        nt = self.n_threads
        b = blocked["bounds"].get(nt)
        if b is None:
            b = blocked["bounds"][nt] = ix.thread_bounds(blocked["rb_ptr"], nt)
        return b

    def _blocked_residual_gradient(self, blocked, F, G, y, z, SG, StF, *, y_blocked=False):
        br, bc = blocked["shape"]
        bounds = self._blocked_bounds(blocked)
        T, k = bounds.shape[0] - 1, F.shape[1]
        with self._rg_workspace(T, k) as (rowloss, bufs):
            pos = blocked["pos"]
            return _blocked_kernels.residual_gradient(
                blocked["tptr"], blocked["code"], self._dummy if pos is None else pos,
                pos is not None, y_blocked, br, bc, F, G, y, z, SG, StF, bufs, self._sc(),
                rowloss, bounds, self._col_major)

    def _blocked_line_search(self, blocked, F, G, D_F, D_G, z):
        """The line-search products over the tiles (no row layout, no stacked factors).

        One float64 partial per matrix row, accumulated tile by tile and summed in row
        order: bitwise independent of the thread count. Not bitwise the row layout's
        (its per-row sums are register reductions the compiler may re-associate,
        -fassociative-math); equal to it to rounding (tests/test_blocked_entries.py)."""
        br, bc = blocked["shape"]
        bounds = self._blocked_bounds(blocked)
        quad = D_F is None or D_G is None
        if quad:
            X, Y = (D_F, G) if D_G is None else (F, D_G)
            D_X, D_Y = X, Y                          # not read
        else:
            X, Y, D_X, D_Y = F, G, D_F, D_G
        pos = blocked["pos"]
        with self._workspace("ls-blocked", (), lambda: np.empty(
                (self.shape[0], _linesearch.N_PRODUCTS))) as parts:
            return _blocked_kernels.line_search_products(
                blocked["tptr"], blocked["code"], self._dummy if pos is None else pos,
                pos is not None, br, bc, X, D_X, Y, D_Y, quad, z, self._sc(), parts,
                bounds, self._col_major)

    # ------------------------------------------------------ residual-free path
    def _residual_free(self, k: int) -> bool:
        """Whether :meth:`_loss_gradient_into` and :meth:`_line_search_products_y` (no
        length-m residual) exist: from_entries' blocked layout (measurement order = the
        tiles'), any k."""
        blocked = self._blocked
        return blocked is not None and blocked["pos"] is None

    def _loss_gradient_into(self, F, G, y, SG, StF):
        """0.5 ||z||^2, SG = A^T(z) G, StF = A^T(z)^T F for z = A(F G^T) - y, z never
        stored: one pass over the tiles by the storing tile kernel, z of each chunk of
        Z_CHUNK entries into a per-thread scratch (src/_entries_blocked.pyx.tp,
        ``loss_gradient``): bitwise :meth:`_residual_gradient_into`. From_entries'
        blocked layout only (:meth:`_residual_free`)."""
        blocked = self._blocked
        br, bc = blocked["shape"]
        bounds = self._blocked_bounds(blocked)
        T, k = bounds.shape[0] - 1, F.shape[1]
        with self._rg_workspace(T, k) as (rowloss, bufs):
            # has_pos False (required): the layout's order is the measurement order
            return _blocked_kernels.loss_gradient(
                blocked["tptr"], blocked["code"], self._dummy, False, False, br, bc, F, G,
                y, SG, StF, bufs, self._sc(), rowloss, bounds, self._col_major)

    def _line_search_products_y(self, F, G, D_F, D_G, y):
        """The five line-search products along (D_F, D_G) at z = A(F G^T) - y formed
        per entry from F, G and y (2 k more flops per entry, no z read): those of
        :meth:`line_search_products` on the z :meth:`_residual_gradient_into` stores.
        The full search only (both directions given); from_entries' blocked layout."""
        if D_F is None or D_G is None:
            raise ValueError("the residual-free line search is the full search (D_F and "
                             "D_G both given); a one-factor search needs z")
        blocked = self._blocked
        br, bc = blocked["shape"]
        bounds = self._blocked_bounds(blocked)
        with self._workspace("ls-blocked", (), lambda: np.empty(
                (self.shape[0], _linesearch.N_PRODUCTS))) as parts:
            return _blocked_kernels.line_search_products_y(
                blocked["tptr"], blocked["code"], self._dummy, False, False, br, bc, F,
                D_F, G, D_G, y, self._sc(), parts, bounds, self._col_major)

    def _adjoint_products_into(self, w, F, G, SG, StF):
        ptr, cols, pos, has = self._pr()
        bounds = self._bounds(ptr)
        T, k = bounds.shape[0] - 1, F.shape[1]
        sc = self._sc()
        with self._workspace("ap", (T, k), lambda: self._scatter_buffers(T, k)) as bufs:
            _entries.adjoint_products(ptr, cols, pos, has, w, G, SG, False, bufs, sc, bounds)
            _entries.adjoint_products(ptr, cols, pos, has, w, F, StF, True, bufs, sc, bounds)

    def _line_search_products(self, F, G, D_F, D_G, z):
        # one pass over Omega (src/_linesearch.pyx.tp); float64 partial per matrix row
        # from_entries' blocked operators walk their tiles (no row layout built); the
        # constructor's keep the row layout's search (they hold it anyway)
        blocked = self._blocked
        if blocked is not None and blocked["pos"] is None:
            return self._blocked_line_search(blocked, F, G, D_F, D_G, z)
        ptr, cols, pos, has = self._pr()
        bounds = self._bounds(ptr)
        k, quad = F.shape[1], D_F is None or D_G is None
        with self._workspace("ls", (k, quad), lambda: (
                self._stack_buffers(k, quad),
                np.empty((self.shape[0], _linesearch.N_PRODUCTS)))) as (stack, parts):
            P, Q, quad = self._line_search_factors(stack, F, G, D_F, D_G)
            return _linesearch.entries_products(ptr, cols, pos, has, P, Q, k, quad, z,
                                                self._sc(), parts, bounds)

    def _scatter_buffers(self, T: int, k: int) -> np.ndarray:
        """Per-thread (T - 1, n2, k) buffers of the transposed product (a stub if T = 1)."""
        return np.empty((T - 1, self.shape[1], k) if T > 1 else (1, 1, 1), self.dtype)

    def _products(self, z, factor):
        """LinearOperator S = factor * sum_e z_e e_{r_e} e_{c_e}^T (O(m k) per product)."""
        if self._residual_free(1) and self.scale != 0:
            return self._tile_products(z, factor)
        sc = self.dtype.type(factor)
        n1, n2 = self.shape
        ptr, cols, pos, has = self._pr()

        def product(X, transpose):
            bounds = self._bounds(ptr)
            T, k = bounds.shape[0] - 1, X.shape[1]
            n_out = n2 if transpose else n1
            out = np.empty((n_out, k), self.dtype)
            bufs = (self._scatter_buffers(T, k) if transpose
                    else np.empty((1, 1, 1), self.dtype))
            _entries.adjoint_products(ptr, cols, pos, has, z, X, out, transpose, bufs, sc,
                                      bounds)
            return out

        return _FactoredLinearOperator(self.shape, self.dtype,
                                       lambda X: product(X, False),
                                       lambda U: product(U, True))

    def _tile_products(self, w, factor):
        """:meth:`_products` over from_entries' tiles, without the row layout (two index
        words per observation) the row kernels walk.

        The loss-gradient pass at (F, G) = (0, X) has z = -w and SG = -scale S_w X
        (S_w = sum_e w_e e_r e_c^T), at (U, 0) StF = -scale S_w^T U: each product is one
        pass over the tiles (the other output is zero), scaled by -factor / scale.
        O(m k) per product, three (n, k) arrays per call; equal to the row kernels'
        products to rounding (another summation order).
        """
        n1, n2 = self.shape
        dt = self.dtype
        sc = dt.type(-factor / self.scale)

        def product(X, transpose):
            k = X.shape[1]
            SG, StF = np.empty((n1, k), dt), np.empty((n2, k), dt)
            if transpose:
                self._loss_gradient_into(X, np.zeros((n2, k), dt), w, SG, StF)
                out = StF
            else:
                self._loss_gradient_into(np.zeros((n1, k), dt), X, w, SG, StF)
                out = SG
            del SG, StF
            out *= sc
            return out

        return _FactoredLinearOperator(self.shape, dt, lambda X: product(X, False),
                                       lambda U: product(U, True))

    def adjoint_operator(self, z) -> LinearOperator:
        """A^T(z) as a LinearOperator (matvec/matmat in O(m k), nothing n1 x n2 formed)."""
        z = self._check_y(z, "z")
        return self._products(z, self.scale)

    def spectral_operator(self, y) -> LinearOperator:
        r"""A^T(y) / (scale^2 p), p = m / (n1 n2): for uniformly sampled entries
        E[A^T A(M)] = scale^2 p M, so this is an unbiased estimate of M whose top-k SVD
        is the spectral initialization (ALGORITHMS.md 0.1: svds(Y/p) for scale = 1)."""
        y = self._check_y(y, "y")
        p = self.m / (self.shape[0] * self.shape[1])
        return self._products(y, 1.0 / (self.scale * p))


_INT64_MAX = int(np.iinfo(np.int64).max)
#: most positions one chunk of :func:`sample_entries` spans (its flat indices fit int64)
_CHUNK_CAPACITY = 1 << 62


def _chunk_counts(rng, sizes: np.ndarray, count: int, total: int) -> np.ndarray:
    """Entries per chunk for n1 n2 >= 10^9: a multinomial draw with probabilities
    size_j / total (exact integers turned into floats once), redrawn while a chunk exceeds
    its capacity; after 100 redraws (only near-full sampling) chunk by chunk instead, each
    a binomial draw conditioned on the remaining count and clipped so the rest still fits.
    Always terminates."""
    pvals = sizes.astype(np.float64) / float(total)
    for _ in range(100):
        counts = rng.multinomial(count, pvals)
        if np.all(counts <= sizes):
            return counts
    counts = np.zeros(sizes.shape[0], np.int64)
    remaining, room = count, total
    for j, size in enumerate(sizes.tolist()):
        room -= size
        c = int(rng.binomial(remaining, min(1.0, size / (room + size)))) if room else remaining
        c = min(size, max(remaining - room, c))
        counts[j] = c
        remaining -= c
    return counts


def sample_entries(n1: int, n2: int, count: int, rng: np.random.Generator, *,
                   min_per_line: int = 0,
                   max_tries: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    r"""``count`` distinct entries of an n1 x n2 matrix, uniformly, sorted row-major.

    Memory-efficient: rows are processed in chunks of about 2^18 expected entries (and at
    most 2^62 positions, so a chunk's flat indices fit int64; the shape itself may have
    n1 n2 beyond int64); the chunk counts come from a multivariate hypergeometric draw
    (exact uniform subset) or, when n1 n2 >= 10^9, a multinomial draw (indistinguishable
    for sparse sampling; a chunk count above its capacity is redrawn, see
    :func:`_chunk_counts`); inside a chunk, positions are drawn without replacement.
    Peak extra memory is O(chunk), plus the two int32/int64 outputs.

    ``min_per_line = t > 0`` draws Omega uniformly among the count-subsets in which every
    row and every column has at least t entries, by rejection: whole uniform subsets are
    drawn until one qualifies (each draw independent, so the accepted one is exactly
    uniform on the qualifying subsets). This is the protocol of the published experiments
    with t = r (the GNMR and R2RILS authors' ``generate_mask``, Bernoulli sampling
    resampled until every row and column has >= r entries; MatrixIRLS's
    ``sample_phi_MatrixCompletion(..., 'resample', r, ...)``, fixed-size sampling
    resampled likewise): a row i with |Omega_i| < r leaves the r coefficients of F_i in
    M = F G^T underdetermined, so no method can recover it. ``min_per_line=0`` (default)
    consumes ``rng`` exactly as before (the same draw).

    Feasibility: a qualifying subset exists iff t <= min(n1, n2) and
    t max(n1, n2) <= count (checked, ValueError otherwise). Rejection is practical when the
    expected number of short lines lam = n1 P(B_r < t) + n2 P(B_c < t) (B_r ~ Binomial(n2,
    q), B_c ~ Binomial(n1, q), q = count / (n1 n2)) is small: the acceptance probability
    is about exp(-lam) (Poisson approximation), so a draw costs about exp(lam) tries.
    ValueError up front when exp(lam) > 10 max_tries; RuntimeError after max_tries
    rejected draws. Measured acceptance at n1 = n2 = 300, t = 5 (OS = m / (t (n1 + n2 -
    t))): OS 1.2 1.0 % (exp(-lam) = 1.3 %), OS 1.5 62 % (63 %), OS >= 2 over 99 %.

    Parameters
    ----------
    n1, n2 : int
        Matrix shape.
    count : int
        Number of distinct entries, 1 <= count <= n1 n2.
    rng : numpy Generator
    min_per_line : int, default 0
        Entries required in every row and every column (0: no condition).
    max_tries : int, default 10000
        Uniform draws tried before giving up (only with min_per_line > 0).

    Returns
    -------
    rows, cols : ndarray of int32 (int64 if an index or count exceeds int32), shape (count,)
    """
    n1 = check_positive_int(n1, "n1")
    n2 = check_positive_int(n2, "n2")
    count = check_positive_int(count, "count")
    if max(n1, n2) > _INT64_MAX:
        raise ValueError(f"a {n1} x {n2} matrix has indices beyond int64 (2**63 - 1); "
                         "row and column indices must fit int64")
    total = n1 * n2   # exact (Python int), may exceed int64
    if count > total:
        raise ValueError(f"cannot observe {count} distinct entries of a {n1} x {n2} matrix "
                         f"({total} entries)")
    t = _check_min_per_line(min_per_line, n1, n2, count)
    max_tries = check_positive_int(max_tries, "max_tries")
    if t == 0:
        return _uniform_entries(n1, n2, count, rng)
    _refuse_unlikely(n1, n2, count, t, max_tries)
    for _ in range(max_tries):
        rows, cols = _uniform_entries(n1, n2, count, rng)
        if _lines_covered(rows, cols, n1, n2, t):
            return rows, cols
    raise RuntimeError(f"sample_entries: {max_tries} uniform draws of {count} entries of a "
                       f"{n1} x {n2} matrix all left a row or column with fewer than "
                       f"min_per_line={t} entries; use more entries, a smaller "
                       f"min_per_line or a larger max_tries")


def _uniform_entries(n1, n2, count, rng):
    """One uniform count-subset, sorted row-major (validated arguments)."""
    total = n1 * n2
    itype = ix.index_dtype(n1, n2, count)
    density = count / total
    # a chunk's positions r * n2 + c must fit int64: at most _CHUNK_CAPACITY per chunk
    rows_per_chunk = int(min(n1, max(1, round((1 << 18) / (density * n2))),
                             max(1, _CHUNK_CAPACITY // n2)))
    starts = np.arange(0, n1, rows_per_chunk, dtype=np.int64)
    sizes = np.minimum(rows_per_chunk, n1 - starts) * np.int64(n2)
    if total < 10**9:
        counts = rng.multivariate_hypergeometric(sizes, count, method="marginals")
    else:
        counts = _chunk_counts(rng, sizes, count, total)
    rows = np.empty(count, itype)
    cols = np.empty(count, itype)
    at = 0
    for start, size, cnt in zip(starts, sizes, counts):
        if cnt == 0:
            continue
        flat = rng.choice(int(size), int(cnt), replace=False, shuffle=False)
        flat.sort()
        r, c = np.divmod(flat, n2)
        rows[at:at + cnt] = r + start
        cols[at:at + cnt] = c
        at += cnt
    return rows, cols


def _check_min_per_line(min_per_line, n1, n2, count) -> int:
    """Validated t = min_per_line (0 allowed); ValueError when no subset can qualify."""
    t = min_per_line
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral) or t < 0:
        raise ValueError(f"min_per_line must be an integer >= 0 (entries required in every "
                         f"row and column, usually the rank r), got {t!r}")
    t = int(t)
    if t and (t > min(n1, n2) or t * max(n1, n2) > count):
        raise ValueError(f"no set of {count} entries of a {n1} x {n2} matrix has "
                         f">= {t} entries in every row and column (that needs "
                         f"min_per_line <= min(n1, n2) = {min(n1, n2)} and at least "
                         f"min_per_line * max(n1, n2) = {t * max(n1, n2)} entries); use "
                         f"more entries or a smaller min_per_line")
    return t


def expected_short_lines(n1: int, n2: int, count: int, t: int) -> float:
    """lam = n1 P(Bin(n2, q) < t) + n2 P(Bin(n1, q) < t), q = count / (n1 n2): the expected
    number of rows and columns with fewer than t entries in a uniform count-subset
    (binomial approximation of the hypergeometric line counts)."""
    from scipy.stats import binom
    q = min(1.0, count / (float(n1) * float(n2)))
    return float(n1 * binom.cdf(t - 1, n2, q) + n2 * binom.cdf(t - 1, n1, q))


def _refuse_unlikely(n1, n2, count, t, max_tries) -> None:
    lam = expected_short_lines(n1, n2, count, t)
    if lam > np.log(10.0 * max_tries):
        raise ValueError(f"a uniform set of {count} entries of a {n1} x {n2} matrix has "
                         f"about {lam:.3g} rows and columns with fewer than min_per_line="
                         f"{t} entries: rejection would need about exp({lam:.3g}) draws "
                         f"(max_tries={max_tries}); use more entries or a smaller "
                         f"min_per_line")


def _bernoulli_feasible_count(rng, n1, n2, p, m, t, max_tries=10_000) -> int:
    """|Omega| of a Bernoulli(p) set conditioned on every line having >= t entries.

    P(Omega) is proportional to p^|Omega| (1 - p)^(n1 n2 - |Omega|) on the qualifying sets,
    so |Omega| = m has probability Binomial(n1 n2, p)(m) times the acceptance at m: each
    try draws m ~ Binomial and one uniform m-subset; the first qualifying subset's size is
    returned and the subset itself is redrawn by ``sample_entries(..., min_per_line=t)``
    (conditioned on its size, the qualifying sets are uniform, so the pair is exact).
    """
    total = n1 * n2
    _check_min_per_line(t, n1, n2, max(t * max(n1, n2), 1))
    _refuse_unlikely(n1, n2, max(1, round(p * total)), t, max_tries)
    for _ in range(max_tries):
        if m >= t * max(n1, n2) and (
                m == total or _lines_covered(*_uniform_entries(n1, n2, m, rng), n1, n2, t)):
            return m
        m = int(rng.binomial(total, p))
    raise RuntimeError(f"{max_tries} Bernoulli(p={p}) draws of a {n1} x {n2} matrix all left "
                       f"a row or column with fewer than min_per_line={t} entries; use a "
                       f"larger p or a smaller min_per_line")


def _lines_covered(rows, cols, n1, n2, t) -> bool:
    return bool(np.bincount(rows, minlength=n1).min() >= t
                and np.bincount(cols, minlength=n2).min() >= t)


def line_counts(rows, cols, shape) -> tuple[np.ndarray, np.ndarray]:
    """(entries per row, entries per column) of an observed set: two bincounts, O(m + n1 +
    n2)."""
    n1, n2 = shape
    return (np.bincount(np.asarray(rows), minlength=n1),
            np.bincount(np.asarray(cols), minlength=n2))


def short_lines_message(rows, cols, shape, k: int) -> str:
    """'' when every row and column has >= k observed entries, else a sentence saying how
    many do not (those lines of a rank-k completion are not determined by the data)."""
    return short_lines_message_counts(*line_counts(rows, cols, shape), shape, k)


def short_lines_message_counts(per_row, per_col, shape, k: int) -> str:
    """:func:`short_lines_message` from the entries per row and per column."""
    n_r = int(np.count_nonzero(per_row < k))
    n_c = int(np.count_nonzero(per_col < k))
    if n_r == 0 and n_c == 0:
        return ""
    parts = []
    if n_r:
        parts.append(f"{n_r} row{'s' if n_r > 1 else ''}")
    if n_c:
        parts.append(f"{n_c} column{'s' if n_c > 1 else ''}")
    return (f"{' and '.join(parts)} of the {shape[0]} x {shape[1]} completion problem "
            f"{'have' if n_r + n_c > 1 else 'has'} fewer than k={k} observed entries: those "
            f"lines are not determined by the data (a rank-k row F_i with fewer than k "
            f"equations), so no method recovers them; observe more entries, or draw the "
            f"problem with make_problem(..., operator='entries', min_per_line={k})")
