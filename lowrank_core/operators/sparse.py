"""Sparse measurement matrices: :class:`SparseOperator`.

The compiled kernels live in ``lowrank_core._sparse``; this module validates input, builds
the three groupings of the nonzeros once (by measurement, matrix row and matrix column)
and orchestrates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, DTypeLike
from scipy.sparse.linalg import LinearOperator

from .. import _sparse
from .._kernels import load as _load_kernels
from .._validation import as_float_array, check_positive_int
from . import _indexing as ix
from ._base import (
    MeasurementOperator,
    _FactoredLinearOperator,
    _file_array,
    _file_shape,
    _refuse_if_too_large,
)
from ._indexing import BoundsCache

__all__ = ["SparseOperator"]

_linesearch = _load_kernels("_linesearch")


class SparseOperator(BoundsCache, MeasurementOperator):
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

    kind = "sparse"
    ensemble = "sparse"
    file_format = "meas, rows, cols (nnz,) int; vals (nnz,) float; shape (2,); optional m"

    def __init__(self, A: sp.spmatrix | sp.sparray | tuple[ArrayLike, ArrayLike, ArrayLike,
                                                             ArrayLike],
                 shape: tuple[int, int], *, m: int | None = None,
                 n_threads: int | None = None) -> None:
        super().__init__(n_threads)
        n1, n2 = ix.check_shape(shape)
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
        nnz = int(vals.shape[0])
        inferred = m is None
        if inferred:
            meas_arr = np.asarray(meas)
            if meas_arr.size and np.issubdtype(meas_arr.dtype, np.integer):
                m = int(meas_arr.max()) + 1
            else:
                m = 1
        m = check_positive_int(m, "m")
        meas = ix.as_index_array(meas, names[0], m, "measurement")
        rr = ix.as_index_array(rr, names[1], n1, "row")
        cc = ix.as_index_array(cc, names[2], n2, "column")
        if inferred and m > 2 * nnz:
            # nnz nonzeros touch at most nnz measurements: most of the inferred ones are empty
            raise ValueError(
                f"meas has maximum {m - 1}, so m = max(meas) + 1 = {m:,} measurements, but "
                f"there are only {nnz:,} nonzeros: at least {m - nnz:,} measurements would be "
                "empty (measure 0); check meas for a bad index, or pass m=... explicitly if "
                "the empty measurements are intended")
        itype = ix.index_dtype(n1, n2, m, nnz)
        _refuse_if_too_large(
            self._build_nbytes(n1, n2, m, nnz, itype, vals.dtype),
            f"SparseOperator with m={m:,}, shape=({n1:,}, {n2:,}) and {nnz:,} nonzeros",
            "the index arrays grow with m + n1 + n2 + nnz: check meas, rows, cols, m and "
            "shape for a bad value, or split the operator (ShardedOperator)")
        self.m = m
        self.dtype = vals.dtype
        self._itype = itype
        self._build(meas.astype(itype, copy=False), rr.astype(itype, copy=False),
                    cc.astype(itype, copy=False), vals)
        self.symmetric = self._is_symmetric()

    @staticmethod
    def _build_nbytes(n1: int, n2: int, m: int, nnz: int, itype, vtype) -> int:
        """Bytes :meth:`_build` allocates (three pointer arrays, three groupings of the
        nonzeros and their temporaries, plus the symmetry check's CSR pair if square)."""
        isz, vsz = np.dtype(itype).itemsize, np.dtype(vtype).itemsize
        total = isz * (m + n1 + n2 + 3) + nnz * (12 * isz + 3 * vsz)
        if n1 == n2:
            total += 2 * (8 * (m + 1) + nnz * (8 + vsz)) + nnz * 24
        return int(total)

    def _build(self, meas, rr, cc, vals):
        n1, n2 = self.shape
        self._ptr_m, order = ix.grouping(meas, self.m, self._itype)
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
        ix.readonly(self._ptr_m, self._r_m, self._c_m, self._v_m, self._ptr_r, self._meas_r,
                  self._col_r, self._val_r, self._ptr_c, self._meas_c, self._row_c,
                  self._val_c)

    def _regroup(self, keys, nbins, meas_m, other):
        """(ptr, meas, other, vals) of the nonzeros grouped by ``keys`` (stable)."""
        ptr, order = ix.grouping(keys, nbins, self._itype)
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

    # ------------------------------------------------ shards, files and ensembles
    def take_rows(self, start: int, stop: int) -> SparseOperator:
        """Measurements start..stop-1 (rebuilt from those rows of the CSR matrix)."""
        start, stop = self._check_row_range(start, stop)
        return SparseOperator(self.to_scipy()[start:stop], self.shape,
                              n_threads=self._n_threads_request)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """COO triplets ``meas``, ``rows``, ``cols`` (int), ``vals``, plus ``shape`` and
        ``m`` (duplicates summed)."""
        coo = self.to_scipy().tocoo()
        rows, cols = np.divmod(coo.col.astype(np.int64), self.shape[1])
        return {"meas": coo.row.astype(np.int64), "rows": rows, "cols": cols,
                "vals": coo.data, "shape": np.asarray(self.shape, np.int64),
                "m": np.int64(self.m)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, dtype: DTypeLike | None = None,
                    n_threads: int | None = None) -> SparseOperator:
        """From ``meas``, ``rows``, ``cols``, ``vals``, ``shape`` and optional ``m``."""
        triplet = tuple(_file_array(arrays, k, kind="int", ndim=1)
                        for k in ("meas", "rows", "cols"))
        vals = _file_array(arrays, "vals", ndim=1)
        m = _file_array(arrays, "m", kind="int", optional=True)
        return cls((*triplet, vals), _file_shape(arrays), m=None if m is None else int(m),
                   n_threads=n_threads)

    @classmethod
    def random_ensemble(cls, rng: np.random.Generator, n1: int, n2: int, m: int | None,
                        psd: bool, dtype: np.dtype, n_threads: int | None = None,
                        s: int = 10) -> SparseOperator:
        """m sparse A_i, each with ``s`` nonzeros at uniformly random positions (drawn with
        replacement; a repeated position adds up) and i.i.d. N(0, n1 n2 / (m s)) values, so
        E<A_i, M>^2 = ||M||_F^2 / m and E||A(M)||^2 = ||M||_F^2 exactly. For psd=True each
        A_i is symmetrized, (B_i + B_i^T)/2, which measures symmetric M exactly as B_i does.
        """
        m = cls._require_m(m)
        s = check_positive_int(s, "s")
        nnz = m * s
        copies = 2 if psd else 1
        itype = ix.index_dtype(n1, n2, m, copies * nnz)
        _refuse_if_too_large(
            copies * nnz * (24 + dtype.itemsize)
            + cls._build_nbytes(n1, n2, m, copies * nnz, itype, dtype),
            f"a random sparse operator with m={m:,}, s={s}, shape=({n1:,}, {n2:,})",
            "use fewer measurements (m), fewer nonzeros per measurement (s) or float32")
        meas = np.repeat(np.arange(m, dtype=np.int64), s)
        rows = rng.integers(0, n1, nnz)
        cols = rng.integers(0, n2, nnz)
        vals = rng.standard_normal(nnz, dtype=dtype)
        vals *= dtype.type(np.sqrt(n1 * n2 / (m * s)))
        if psd:
            half = dtype.type(0.5)
            meas = np.concatenate([meas, meas])
            rows, cols = np.concatenate([rows, cols]), np.concatenate([cols, rows])
            vals = np.concatenate([vals * half, vals * half])
        return cls((meas, rows, cols, vals), (n1, n2), m=m, n_threads=n_threads)

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
            b = (bm, ix.thread_bounds(self._ptr_r, T, exact=True),
                 ix.thread_bounds(self._ptr_c, T, exact=True))
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

    def _line_search_products(self, F, G, D_F, D_G, z):
        # one pass over the measurement grouping (src/_linesearch.pyx.tp); float64
        # partial per chunk of SPARSE_CHUNK measurements
        T = self._group_bounds()[0].shape[0] - 1
        k, quad = F.shape[1], D_F is None or D_G is None
        n_chunks = -(-self.m // _linesearch.SPARSE_CHUNK)
        with self._workspace("ls", (k, quad), lambda: (
                self._stack_buffers(k, quad),
                np.empty((n_chunks, _linesearch.N_PRODUCTS)))) as (stack, parts):
            P, Q, quad = self._line_search_factors(stack, F, G, D_F, D_G)
            return _linesearch.sparse_products(self._ptr_m, self._r_m, self._c_m, self._v_m,
                                               P, Q, k, quad, z, parts, T)

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
