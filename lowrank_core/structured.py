"""Structured measurement operators: sparse A_i, observed entries, rank-one projections.

All three share the interface of :class:`~lowrank_core.operators.MeasurementOperator` and
never form an n1 x n2 matrix inside ``residual_gradient`` or ``adjoint_operator``:

========================  ==================================  ============================
operator                  A(M)_i                              residual_gradient cost
========================  ==================================  ============================
:class:`SparseOperator`   sum_{(r, c)} (A_i)_{rc} M_{rc}       O(nnz k)
:class:`EntryOperator`    scale * M[rows_i, cols_i]           O(|Omega| k)
:class:`RankOneOperator`  a_i^T M b_i  (or a_i^T M a_i)       O(m (n1 + n2) k)
========================  ==================================  ============================

The compiled kernels live in ``lowrank_core._sparse``, ``_entries`` and ``_rankone``;
this module validates input, builds the index orderings once, and orchestrates.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from . import _sparse
from ._kernels import load as _load_kernels
from ._validation import as_float_array, check_dtype, check_positive_int
from .operators import MeasurementOperator

# AVX2/FMA builds when the CPU has them
_entries = _load_kernels("_entries")
_rankone = _load_kernels("_rankone")

__all__ = ["SparseOperator", "EntryOperator", "RankOneOperator", "sample_entries"]

_INT32_MAX = np.iinfo(np.int32).max
#: below this many entries (nonzeros) per thread, or rank-one flops per thread, the
#: kernels use fewer threads (waking a thread team costs up to milliseconds on a busy
#: machine)
_MIN_ENTRIES_PER_THREAD = 65536
_MIN_FLOPS_PER_THREAD = 1 << 23


# --------------------------------------------------------------------------- helpers
def _index_dtype(*sizes: int) -> np.dtype:
    """int32 when every index, position and pointer fits, else int64."""
    return np.dtype(np.int32) if max(sizes) < _INT32_MAX else np.dtype(np.int64)


def _check_shape(shape, name: str = "shape") -> tuple[int, int]:
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
        raise ValueError(f"{name} must be a pair (n1, n2) of positive integers, got {shape!r}")
    return (check_positive_int(shape[0], f"{name}[0]"),
            check_positive_int(shape[1], f"{name}[1]"))


def _as_index_array(x, name: str, bound: int, what: str) -> np.ndarray:
    """Validate a 1-D integer index array with values in [0, bound)."""
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
    return arr


def _grouping(keys: np.ndarray, nbins: int, itype: np.dtype):
    """(ptr, order) grouping positions by key (stable); order is None if keys are sorted."""
    ptr = np.empty(nbins + 1, itype)
    if _entries.is_nondecreasing(keys):
        _entries.group_pointers(keys, ptr)
        return ptr, None
    order = np.empty(keys.shape[0], itype)
    _entries.counting_order(keys, ptr, order)
    return ptr, order


def _readonly(*arrays):
    for a in arrays:
        if a is not None:
            a.flags.writeable = False


def _thread_bounds(ptr: np.ndarray, n_threads: int, *, exact: bool = False) -> np.ndarray:
    """Split the groups of ``ptr`` into n_threads contiguous ranges of ~equal entry counts.

    Returns bounds (T + 1, intp): thread t owns groups [bounds[t], bounds[t+1]). Small
    problems get T < n_threads; ``exact=True`` keeps T = n_threads (some ranges may be
    empty), for passes that must match another split's thread count.
    A pure function of (ptr, n_threads): the partition is deterministic.
    """
    n = ptr.shape[0] - 1
    # small problems stay on fewer threads: a parallel region costs more than it saves
    T = max(1, min(int(n_threads), n, int(ptr[-1]) // _MIN_ENTRIES_PER_THREAD))
    if exact:
        T = max(1, int(n_threads))
    targets = (np.arange(T + 1, dtype=np.float64) * float(ptr[-1]) / T).round()
    bounds = np.searchsorted(ptr, targets.astype(ptr.dtype), side="left").astype(np.intp)
    bounds[0], bounds[-1] = 0, n
    return np.maximum.accumulate(bounds)


class _ScratchMixin:
    """Per-thread buffers cached across calls (reused by a loop calling every iteration).

    A concurrent second caller gets fresh buffers instead of sharing the cached ones.
    """

    def _scratch(self, key, shapes):
        """Arrays of the given (shape, dtype) pairs, cached under ``key``."""
        if self._lock.acquire(blocking=False):
            try:
                cached = self._ws.get(key)
                if cached is None:
                    cached = tuple(np.empty(s, d) for s, d in shapes)
                    self._ws = {key: cached}
                return cached
            finally:
                self._lock.release()
        return tuple(np.empty(s, d) for s, d in shapes)

    def _bounds(self, ptr):
        nt = self.n_threads
        key = ("bounds", nt)
        b = self._bounds_cache.get(key)
        if b is None:
            b = _thread_bounds(ptr, nt)
            self._bounds_cache = {key: b}
        return b


class _FactoredLinearOperator(LinearOperator):
    """A LinearOperator from block products: matmat(X) = S X and rmatmat(U) = S^T U.

    Inputs are converted to the operator's dtype (C-contiguous, 2-D) before the kernel.
    """

    def __init__(self, shape, dtype, matmat, rmatmat):
        self._mm, self._rmm = matmat, rmatmat
        super().__init__(dtype=np.dtype(dtype), shape=shape)

    def _prep(self, X, n):
        X = np.ascontiguousarray(X, dtype=self.dtype)
        return X.reshape(n, -1)

    def _matmat(self, X):
        return self._mm(self._prep(X, self.shape[1]))

    def _rmatmat(self, U):
        return self._rmm(self._prep(U, self.shape[0]))

    def _matvec(self, x):
        return self._matmat(np.reshape(x, (-1, 1))).reshape(-1)

    def _rmatvec(self, u):
        return self._rmatmat(np.reshape(u, (-1, 1))).reshape(-1)

    def _adjoint(self):
        return _FactoredLinearOperator((self.shape[1], self.shape[0]), self.dtype,
                                       self._rmm, self._mm)


# --------------------------------------------------------------------------- entries
class EntryOperator(_ScratchMixin, MeasurementOperator):
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
        Weight of every measurement (default 1: y_i is the entry itself).
        :func:`~lowrank_core.make_problem` uses scale = 1/sqrt(p) with p = m/(n1 n2), which
        makes the operator near-isotropic, E||A(M)||^2 = ||M||_F^2.
    n_threads : int, optional

    Notes
    -----
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

    def __init__(self, rows, cols, shape, *, dtype=np.float64, scale=1.0, n_threads=None):
        super().__init__(n_threads)
        n1, n2 = _check_shape(shape)
        self.dtype = check_dtype(dtype)
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real) \
                or not np.isfinite(scale) or scale == 0:
            raise ValueError(f"scale must be a finite non-zero number, got {scale!r}")
        rows = _as_index_array(rows, "rows", n1, "row")
        cols = _as_index_array(cols, "cols", n2, "column")
        if rows.shape != cols.shape:
            raise ValueError(f"rows and cols must have the same length, got {rows.shape[0]} "
                             f"and {cols.shape[0]}")
        m = int(rows.shape[0])
        itype = _index_dtype(n1, n2, m)
        self.shape = (n1, n2)
        self.m = m
        self.scale = float(scale)
        self._itype = itype
        self._build(rows.astype(itype, copy=False), cols.astype(itype, copy=False))

    def _build(self, rows, cols):
        n1 = self.shape[0]
        itype = self._itype
        # row grouping (identity when the input is already sorted by row, e.g. from CSR)
        self._ptr_r, order_r = _grouping(rows, n1, itype)
        if order_r is None:
            self._cols_r = np.array(cols, dtype=itype, copy=True)
        else:
            self._cols_r = cols[order_r]
        self._pos_r = order_r
        self._dummy = np.zeros(1, itype)
        self._bounds_cache = {}
        _readonly(self._ptr_r, self._cols_r, self._pos_r)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_sparse(cls, X, *, n_threads=None):
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
    def from_dense_with_nan(cls, X, *, n_threads=None):
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

    # ------------------------------------------------------------------ properties
    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return int(sum(a.nbytes for a in (self._ptr_r, self._cols_r, self._pos_r)
                       if a is not None))

    @property
    def rows(self) -> np.ndarray:
        """Row of each measurement (a new int array, measurement order)."""
        rows_r = np.repeat(np.arange(self.shape[0], dtype=self._itype), np.diff(self._ptr_r))
        if self._pos_r is None:
            return rows_r
        out = np.empty(self.m, self._itype)
        out[self._pos_r] = rows_r
        return out

    @property
    def cols(self) -> np.ndarray:
        """Column of each measurement (a new int array, measurement order)."""
        if self._pos_r is None:
            return self._cols_r.copy()
        out = np.empty(self.m, self._itype)
        out[self._pos_r] = self._cols_r
        return out

    def _pr(self):
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
        ptr, cols, pos, has = self._pr()
        bounds = self._bounds(ptr)
        T, (n1, n2), k = bounds.shape[0] - 1, self.shape, F.shape[1]
        rowloss, bufs = self._scratch(("rg", T, k), [((n1,), np.float64),
                                                    ((max(T - 1, 1), n2, k), self.dtype)])
        return _entries.residual_gradient(ptr, cols, pos, has, F, G, y, z, SG, StF, bufs,
                                          self._sc(), rowloss, bounds)

    def _adjoint_products_into(self, w, F, G, SG, StF):
        ptr, cols, pos, has = self._pr()
        bounds = self._bounds(ptr)
        T, k = bounds.shape[0] - 1, F.shape[1]
        (bufs,) = self._scratch(("ap", T, k), [((max(T - 1, 1), self.shape[1], k)
                                                if T > 1 else (1, 1, 1), self.dtype)])
        sc = self._sc()
        _entries.adjoint_products(ptr, cols, pos, has, w, G, SG, False, bufs, sc, bounds)
        _entries.adjoint_products(ptr, cols, pos, has, w, F, StF, True, bufs, sc, bounds)

    def _products(self, z, factor):
        """LinearOperator S = factor * sum_e z_e e_{r_e} e_{c_e}^T (O(m k) per product)."""
        sc = self.dtype.type(factor)
        n1, n2 = self.shape
        ptr, cols, pos, has = self._pr()

        def product(X, transpose):
            bounds = self._bounds(ptr)
            T, k = bounds.shape[0] - 1, X.shape[1]
            n_out = n2 if transpose else n1
            out = np.empty((n_out, k), self.dtype)
            bufs = np.empty((max(T - 1, 1), n2, k) if transpose and T > 1 else (1, 1, 1),
                            self.dtype)
            _entries.adjoint_products(ptr, cols, pos, has, z, X, out, transpose, bufs, sc,
                                      bounds)
            return out

        return _FactoredLinearOperator(self.shape, self.dtype,
                                       lambda X: product(X, False),
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


# --------------------------------------------------------------------------- sparse
class SparseOperator(_ScratchMixin, MeasurementOperator):
    r"""Sparse measurement matrices A_i.

    A(M)_i = <A_i, M> = sum_{(r, c) in supp A_i} (A_i)_{rc} M_{rc}.

    Parameters
    ----------
    A : scipy.sparse matrix of shape (m, n1*n2), or a tuple (meas, rows, cols, vals)
        Sparse form: row i is vec(A_i) in row-major order (column index r*n2 + c).
        Triplet form (COO): nonzero e of measurement meas[e] at (rows[e], cols[e]) with
        value vals[e]. Duplicates are summed (they add up in every product). vals (or
        A.data) must be float32 or float64 and sets the operator dtype.
    shape : tuple (n1, n2)
    m : int, optional
        Number of measurements for the triplet form (default max(meas) + 1; measurements
        without nonzeros are allowed and measure 0).
    n_threads : int, optional

    Notes
    -----
    The nonzeros are stored three times, grouped by measurement (CSR of the (m, n1 n2)
    matrix), by matrix row and by matrix column (int32 indices when everything fits, else
    int64; the two extra groupings are stable reorderings built once, so ``nbytes`` is
    about three times the nonzeros' size). ``residual_gradient`` costs 6 nnz k flops in
    three parallel gather passes: z_i = sum_e v_e
    <F_{r_e}, G_{c_e}> - y_i over measurements, then (S G)_r = sum_{e in row r}
    v_e z_{i_e} G_{c_e} over matrix rows and (S^T F)_c = sum_{e in column c}
    v_e z_{i_e} F_{r_e} over matrix columns. S = A^T(z) is never formed, nothing is shared
    between threads (no atomics, no buffers), and each output entry is summed by one
    thread in a fixed order: z, the loss and both products are bitwise independent of the
    thread count. ``symmetric`` is True when n1 == n2 and every A_i is symmetric (checked
    once).
    """

    def __init__(self, A, shape, *, m=None, n_threads=None):
        super().__init__(n_threads)
        n1, n2 = _check_shape(shape)
        self.shape = (n1, n2)
        if sp.issparse(A):
            if m is not None:
                raise TypeError("m is only for the triplet form; a sparse A has m = A.shape[0]")
            if A.shape[1] != n1 * n2:
                raise ValueError(f"A has {A.shape[1]} columns but shape {(n1, n2)} needs "
                                 f"n1*n2 = {n1 * n2} (row i of A is vec(A_i), row-major)")
            coo = A.tocoo()
            m = int(A.shape[0])
            vals = as_float_array(coo.data, "A.data", ndim=1) if coo.nnz else coo.data
            meas = coo.row
            rr, cc = np.divmod(coo.col, n2)
            names = ("A.row", "A.col // n2", "A.col % n2")
        elif isinstance(A, (tuple, list)) and len(A) == 4:
            meas, rr, cc, vals = A
            names = ("meas", "rows", "cols")
            vals = as_float_array(vals, "vals", ndim=1)
            lens = {len(np.asarray(x).reshape(-1)) for x in (meas, rr, cc)} | {vals.shape[0]}
            if len(lens) != 1:
                raise ValueError("meas, rows, cols and vals must have the same length, got "
                                 + ", ".join(str(np.asarray(x).size)
                                             for x in (meas, rr, cc, vals)))
        else:
            raise TypeError("A must be a scipy.sparse matrix of shape (m, n1*n2) or a tuple "
                            f"(meas, rows, cols, vals) of COO triplets, got {type(A).__name__}")
        if len(vals) == 0:
            raise ValueError("A has no nonzero entries: an operator needs at least one")
        if m is None:
            meas_arr = np.asarray(meas)
            if meas_arr.size and np.issubdtype(meas_arr.dtype, np.integer):
                m = int(meas_arr.max()) + 1
            else:
                m = 1
        m = check_positive_int(m, "m")
        meas = _as_index_array(meas, names[0], m, "measurement")
        rr = _as_index_array(rr, names[1], n1, "row")
        cc = _as_index_array(cc, names[2], n2, "column")
        self.m = m
        self.dtype = vals.dtype
        nnz = int(vals.shape[0])
        itype = _index_dtype(n1, n2, m, nnz)
        self._itype = itype
        self._build(meas.astype(itype, copy=False), rr.astype(itype, copy=False),
                    cc.astype(itype, copy=False), vals)
        self.symmetric = self._is_symmetric()

    def _build(self, meas, rr, cc, vals):
        n1, n2 = self.shape
        self._ptr_m, order = _grouping(meas, self.m, self._itype)
        if order is None:
            self._r_m = np.array(rr, copy=True)
            self._c_m = np.array(cc, copy=True)
            self._v_m = np.array(vals, copy=True)
        else:
            self._r_m, self._c_m, self._v_m = rr[order], cc[order], vals[order]
        # the same nonzeros grouped by matrix row and by matrix column (stable reorderings
        # of the measurement grouping), for the gather passes of A^T(z) G and A^T(z)^T F
        meas_m = np.repeat(np.arange(self.m, dtype=self._itype), np.diff(self._ptr_m))
        self._ptr_r, self._meas_r, self._col_r, self._val_r = self._regroup(
            self._r_m, n1, meas_m, self._c_m)
        self._ptr_c, self._meas_c, self._row_c, self._val_c = self._regroup(
            self._c_m, n2, meas_m, self._r_m)
        self._bounds_cache = {}
        _readonly(self._ptr_m, self._r_m, self._c_m, self._v_m, self._ptr_r, self._meas_r,
                  self._col_r, self._val_r, self._ptr_c, self._meas_c, self._row_c,
                  self._val_c)

    def _regroup(self, keys, nbins, meas_m, other):
        """(ptr, meas, other, vals) of the nonzeros grouped by ``keys`` (stable)."""
        ptr, order = _grouping(keys, nbins, self._itype)
        if order is None:
            return ptr, meas_m, other, self._v_m
        return ptr, meas_m[order], other[order], self._v_m[order]

    def _is_symmetric(self) -> bool:
        n1, n2 = self.shape
        if n1 != n2:
            return False
        meas = np.repeat(np.arange(self.m), np.diff(self._ptr_m))
        r, c = self._r_m.astype(np.int64), self._c_m.astype(np.int64)
        A1 = sp.csr_matrix((self._v_m, (meas, r * n2 + c)), shape=(self.m, n1 * n2))
        A2 = sp.csr_matrix((self._v_m, (meas, c * n2 + r)), shape=(self.m, n1 * n2))
        D = A1 - A2
        if D.nnz == 0:
            return True
        scale = float(abs(A1).max()) or 1.0
        tol = 1e-5 if self.dtype == np.float32 else 1e-12
        return float(abs(D).max()) <= tol * scale

    # ------------------------------------------------------------------ properties
    @property
    def nbytes(self) -> int:
        """Bytes held by the nonzeros: grouped by measurement, by row and by column."""
        arrays = {id(a): a for a in (self._ptr_m, self._r_m, self._c_m, self._v_m,
                                     self._ptr_r, self._meas_r, self._col_r, self._val_r,
                                     self._ptr_c, self._meas_c, self._row_c, self._val_c)}
        return int(sum(a.nbytes for a in arrays.values()))

    @property
    def nnz(self) -> int:
        """Number of stored nonzeros (over all A_i)."""
        return int(self._v_m.shape[0])

    def to_scipy(self) -> sp.csr_matrix:
        """The operator as a scipy CSR matrix of shape (m, n1*n2) (duplicates summed)."""
        meas = np.repeat(np.arange(self.m), np.diff(self._ptr_m))
        flat = self._r_m.astype(np.int64) * self.shape[1] + self._c_m
        return sp.csr_matrix((self._v_m, (meas, flat)),
                             shape=(self.m, self.shape[0] * self.shape[1]))

    # ------------------------------------------------------------------ kernels
    def _forward_into(self, M, out):
        _sparse.forward_dense(self._ptr_m, self._r_m, self._c_m, self._v_m, M, out,
                              self.n_threads)

    def _forward_factored_into(self, F, G, out):
        _sparse.measurement_dots(self._ptr_m, self._r_m, self._c_m, self._v_m, F, G, out,
                                 self.n_threads)

    def _adjoint_dense(self, z):
        S = np.zeros(self.shape, self.dtype)
        _sparse.scatter_add(self._ptr_m, self._r_m, self._c_m, self._v_m, z, S)
        return S

    def _group_bounds(self):
        """Thread ranges of measurements, rows and columns (the thread count T is the
        measurement split's, shared by the three passes)."""
        bm = self._bounds(self._ptr_m)
        key = ("groups", self.n_threads)
        b = self._bounds_cache.get(key)
        if b is None:
            T = bm.shape[0] - 1
            b = (bm, _thread_bounds(self._ptr_r, T, exact=True),
                 _thread_bounds(self._ptr_c, T, exact=True))
            self._bounds_cache[key] = b
        return b

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        bm, br, bc = self._group_bounds()
        return _sparse.residual_gradient(
            self._ptr_m, self._r_m, self._c_m, self._v_m,
            self._ptr_r, self._meas_r, self._col_r, self._val_r,
            self._ptr_c, self._meas_c, self._row_c, self._val_c,
            F, G, y, z, SG, StF, bm, br, bc)

    def _adjoint_products_into(self, w, F, G, SG, StF):
        _, br, bc = self._group_bounds()
        _sparse.adjoint_product(self._ptr_r, self._meas_r, self._col_r, self._val_r, w, G,
                                SG, br)
        _sparse.adjoint_product(self._ptr_c, self._meas_c, self._row_c, self._val_c, w, F,
                                StF, bc)

    def adjoint_operator(self, z) -> LinearOperator:
        """A^T(z) as a LinearOperator (matvec/matmat in O(nnz k), nothing n1 x n2 formed)."""
        z = self._check_y(z, "z")
        n1, n2 = self.shape

        def product(X, transpose):
            _, br, bc = self._group_bounds()
            out = np.empty((n2 if transpose else n1, X.shape[1]), self.dtype)
            if transpose:
                _sparse.adjoint_product(self._ptr_c, self._meas_c, self._row_c,
                                        self._val_c, z, X, out, bc)
            else:
                _sparse.adjoint_product(self._ptr_r, self._meas_r, self._col_r,
                                        self._val_r, z, X, out, br)
            return out

        return _FactoredLinearOperator(self.shape, self.dtype, lambda X: product(X, False),
                                       lambda U: product(U, True))


# --------------------------------------------------------------------------- rank-one
class RankOneOperator(MeasurementOperator):
    r"""Rank-one projections: A_i = a_i b_i^T, or a_i a_i^T when b is None.

    A(M)_i = a_i^T M b_i (asymmetric) or a_i^T M a_i (symmetric), so
    A(F G^T)_i = (a_i^T F)(b_i^T G)^T and A^T(z) G = sum_i z_i a_i (b_i^T G): no A_i and
    no n1 x n2 matrix is ever formed.

    Parameters
    ----------
    a : ndarray, shape (m, n1)
        float32 or float64; row i is a_i.
    b : ndarray, shape (m, n2), optional
        Same dtype as a; omitted for the symmetric model (then ``symmetric`` is True).
    n_threads : int, optional
    block : int
        Rows per block of the fused kernel (default 32).

    Notes
    -----
    ``residual_gradient`` makes one blocked pass over the rows of a and b: per block of B
    rows, U = a_B F and V = b_B G (GEMMs), z, then SG += a_B^T (z * V) and
    StF += b_B^T (z * U) while the block is in cache: 4 m (n1 + n2) k flops, a and b read
    once (numpy needs four GEMMs and two reads of each). Threads own fixed row ranges with
    private SG/StF buffers summed in thread order (same bits for the same thread count).
    For the symmetric model called with G = F the work halves.
    Normalization: with a_i, b_i ~ N(0, I / sqrt(m)) (as in make_problem),
    E||A(M)||^2 = ||M||_F^2; with symmetric a_i ~ N(0, I / sqrt(2 m)),
    E||A(M)||^2 = ||M||_F^2 + tr(M)^2 / 2 for symmetric M.
    """

    def __init__(self, a, b=None, *, n_threads=None, block=32):
        super().__init__(n_threads)
        a = as_float_array(a, "a", ndim=2)
        self.symmetric = b is None
        if b is None:
            b = a
        else:
            b = as_float_array(b, "b", ndim=2, dtype=a.dtype)
            if b.shape[0] != a.shape[0]:
                raise ValueError(f"a and b must have the same number of rows (one pair per "
                                 f"measurement), got a {a.shape} and b {b.shape}")
        self._a, self._b = a, b
        self.m = int(a.shape[0])
        self.shape = (int(a.shape[1]), int(b.shape[1]))
        self.dtype = a.dtype
        self.block = check_positive_int(block, "block")
        self._moments = None

    @classmethod
    def gaussian(cls, m, n1, n2=None, *, symmetric=False, dtype=np.float64, seed=None,
                 n_threads=None):
        """a_i, b_i i.i.d. N(0, I / sqrt(m)), or symmetric a_i ~ N(0, I / sqrt(2 m)).

        The scaling makes E||A(M)||^2 = ||M||_F^2 (asymmetric), resp.
        ||M||_F^2 + tr(M)^2 / 2 (symmetric M, symmetric model).
        """
        from ._validation import check_random_state
        m = check_positive_int(m, "m")
        n1 = check_positive_int(n1, "n1")
        n2 = n1 if n2 is None else check_positive_int(n2, "n2")
        dtype = check_dtype(dtype)
        rng = check_random_state(seed)
        if symmetric:
            if n2 != n1:
                raise ValueError("the symmetric model needs n1 == n2")
            a = rng.standard_normal((m, n1), dtype=dtype)
            a *= dtype.type((2.0 * m) ** -0.25)
            return cls(a, n_threads=n_threads)
        a = rng.standard_normal((m, n1), dtype=dtype)
        b = rng.standard_normal((m, n2), dtype=dtype)
        s = dtype.type(m ** -0.25)
        a *= s
        b *= s
        return cls(a, b, n_threads=n_threads)

    @property
    def a(self) -> np.ndarray:
        """The a_i (read-only view, shape (m, n1))."""
        v = self._a.view()
        v.flags.writeable = False
        return v

    @property
    def b(self) -> np.ndarray:
        """The b_i (read-only view, shape (m, n2)); a itself for the symmetric model."""
        v = self._b.view()
        v.flags.writeable = False
        return v

    @property
    def nbytes(self) -> int:
        return int(self._a.nbytes + (0 if self.symmetric else self._b.nbytes))

    def _chunks(self):
        step = max(1, (1 << 22) // max(1, self.shape[0] + self.shape[1]))
        for s in range(0, self.m, step):
            yield slice(s, min(self.m, s + step))

    # ------------------------------------------------------------------ kernels
    def _pass(self, F, G, y, z, SG=None, StF=None):
        flops = 4 * self.m * (self.shape[0] + self.shape[1]) * F.shape[1]
        nt = max(1, min(self.n_threads, flops // _MIN_FLOPS_PER_THREAD, self.m))
        k = F.shape[1]
        n1, n2 = self.shape
        grad = SG is not None
        same = self.symmetric and (G is F)
        T = nt if nt > 1 else 1
        # the hand-written path (AVX2 build, small k) allocates its own padded buffers
        gemm_bufs = grad and nt > 1 and not _rankone.hand_path(k)
        shape_sg = (T, n1, k) if gemm_bufs else (1, 1, 1)
        shape_stf = (T, n2, k) if (gemm_bufs and not same) else (1, 1, 1)
        acc_sg = np.empty(shape_sg, self.dtype)
        acc_stf = np.empty(shape_stf, self.dtype)
        if not grad:
            SG = StF = np.empty((1, 1), self.dtype)
        block = self.block
        if nt > 1:
            # keep each BLAS call below OpenBLAS's threading threshold (m n k < 2^18), so
            # it runs single-threaded inside our OpenMP threads (no oversubscription)
            block = max(4, min(block, (1 << 18) // (k * max(n1, n2)) - 1))
        work = np.empty((T, 4 * block * k), self.dtype)
        has_y = y is not None
        return _rankone.fused_pass(self._a, self._b, same, grad, F, G,
                                   y if has_y else z, has_y, z, acc_sg, acc_stf, SG, StF,
                                   work, block, nt)

    def _forward_into(self, M, out):
        for s in self._chunks():
            np.einsum("ij,ij->i", self._a[s] @ M, self._b[s], out=out[s])

    def _forward_factored_into(self, F, G, out):
        self._pass(F, G, None, out)

    def _adjoint_dense(self, z):
        S = np.zeros(self.shape, self.dtype)
        for s in self._chunks():
            S += (self._a[s].T * z[s]) @ self._b[s]
        return S

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        return self._pass(F, G, y, z, SG, StF)

    def _adjoint_products_into(self, w, F, G, SG, StF):
        # S G = a^T (w * (b G)) and S^T F = b^T (w * (a F)), by GEMMs over row blocks of
        # a and b (block x k temporaries; nothing n1 x n2)
        same = self.symmetric and G is F
        SG[...] = 0
        if not same:
            StF[...] = 0
        for s in self._chunks():
            a, b, ws = self._a[s], self._b[s], w[s, None]
            SG += a.T @ (ws * (b @ G))
            if not same:
                StF += b.T @ (ws * (a @ F))
        if same:
            StF[...] = SG

    def _weighted(self, w, diag=0.0):
        """LinearOperator S = sum_i w_i a_i b_i^T + diag * I (products by GEMMs)."""
        a, b = self._a, self._b
        dt = self.dtype.type
        dg = dt(diag)

        def matmat(X):
            out = a.T @ (w[:, None] * (b @ X))
            if diag:
                out += dg * X
            return out

        def rmatmat(U):
            out = b.T @ (w[:, None] * (a @ U))
            if diag:
                out += dg * U
            return out

        return _FactoredLinearOperator(self.shape, self.dtype, matmat, rmatmat)

    def adjoint_operator(self, z) -> LinearOperator:
        """A^T(z) = sum_i z_i a_i b_i^T as a LinearOperator: O(m (n1 + n2) k) per matmat."""
        z = self._check_y(z, "z")
        return self._weighted(z)

    def _second_moments(self):
        """(mean ||a_i||^2 / n1, mean ||b_i||^2 / n2): the per-coordinate variances."""
        if self._moments is None:
            sa = sum(float(np.einsum("ij,ij->", self._a[s], self._a[s])) for s in self._chunks())
            sb = sa if self.symmetric else sum(
                float(np.einsum("ij,ij->", self._b[s], self._b[s])) for s in self._chunks())
            self._moments = (sa / (self.m * self.shape[0]), sb / (self.m * self.shape[1]))
        return self._moments

    def spectral_operator(self, y) -> LinearOperator:
        r"""An unbiased estimate of M from y = A(M) for Gaussian a_i, b_i, as a LinearOperator.

        With a_i ~ N(0, s_a I), b_i ~ N(0, s_b I) (s estimated from the data as
        mean ||a_i||^2 / n):

        * asymmetric: E[y_i a_i b_i^T] = s_a s_b M, so M_hat = A^T(y) / (m s_a s_b);
        * symmetric (ALGORITHMS.md 0.1): E[y_i a_i a_i^T] = s_a^2 (2 M + tr(M) I) and
          E[y_i] = s_a tr(M), so
          M_hat = (A^T(y) / m - mean(y) s_a I) / (2 s_a^2),
          i.e. the tr(M) I bias is removed before the top-k eigenvectors are taken.

        Each product costs O(m (n1 + n2) k); nothing n1 x n2 is formed.
        """
        y = self._check_y(y, "y")
        sa, sb = self._second_moments()
        if self.symmetric:
            c = 1.0 / (2.0 * self.m * sa * sa)
            tau = float(np.mean(y, dtype=np.float64)) * sa
            return self._weighted(y * self.dtype.type(c), diag=-tau / (2.0 * sa * sa))
        return self._weighted(y * self.dtype.type(1.0 / (self.m * sa * sb)))


# --------------------------------------------------------------------------- sampling
def sample_entries(n1: int, n2: int, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct entries of an n1 x n2 matrix, uniformly, sorted row-major.

    Memory-efficient: rows are processed in chunks of about 2^18 expected entries; the
    chunk counts come from a multivariate hypergeometric draw (exact uniform subset) or,
    when n1 n2 >= 10^9, a multinomial draw (indistinguishable for sparse sampling; a
    chunk count above its capacity is redrawn); inside a chunk, positions are drawn
    without replacement. Peak extra memory is O(chunk), plus the two int32/int64 outputs.

    Returns
    -------
    rows, cols : ndarray of int32 (int64 if an index or count exceeds int32), shape (count,)
    """
    n1 = check_positive_int(n1, "n1")
    n2 = check_positive_int(n2, "n2")
    count = check_positive_int(count, "count")
    total = n1 * n2
    if count > total:
        raise ValueError(f"cannot observe {count} distinct entries of a {n1} x {n2} matrix "
                         f"({total} entries)")
    itype = _index_dtype(n1, n2, count)
    density = count / total
    rows_per_chunk = int(min(n1, max(1, round((1 << 18) / (density * n2)))))
    starts = np.arange(0, n1, rows_per_chunk)
    sizes = np.minimum(rows_per_chunk, n1 - starts) * n2
    if total < 10**9:
        counts = rng.multivariate_hypergeometric(sizes, count, method="marginals")
    else:
        while True:
            counts = rng.multinomial(count, sizes / total)
            if np.all(counts <= sizes):
                break
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
