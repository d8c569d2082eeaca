"""Dense measurement operators: general A_i (:class:`DenseOperator`) and symmetric A_i
stored packed (:class:`SymmetricDenseOperator`).

Both keep the A_i as a row-major (m, N) matrix (N = n1 n2, or n(n+1)/2 packed) and make
ONE streaming pass over it per ``residual_gradient`` (kernels in ``lowrank_core._dense``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .. import _dense
from .._kernels import load as _load_kernels
from .._threads import resolve_n_threads
from .._validation import as_float_array, check_dtype, check_positive_int, check_random_state
from ._base import MeasurementOperator, _file_array, _refuse_if_too_large, stack_cross_factors

__all__ = ["DenseOperator", "SymmetricDenseOperator"]

_linesearch = _load_kernels("_linesearch")


class _DenseBase(MeasurementOperator):
    """Shared machinery of the dense operators: a row-major (m, N) matrix of A_i rows."""

    _rows: np.ndarray  # (m, N)

    #: A thread is only worth waking for at least this many entries of A; smaller
    #: problems use fewer threads (a pure function of the size and ``n_threads``, so
    #: results stay deterministic).
    min_entries_per_thread = 1 << 17

    def _kernel_threads(self) -> int:
        m, N = self._rows.shape
        return max(1, min(self.n_threads, (m * N) // self.min_entries_per_thread, m))

    @property
    def nbytes(self) -> int:
        """Bytes held by the measurement matrices."""
        return int(self._rows.nbytes)

    def _make_buffers(self, nt: int) -> dict:
        """P and S (n1 x n2), the flat adjoint s and the per-thread adjoint buffers acc."""
        n1, n2 = self.shape
        N = self._rows.shape[1]
        ws = {"P": np.empty((n1, n2), self.dtype), "s": np.empty(N, self.dtype)}
        if self.symmetric:  # packed: separate packed vectors and an unpacked S
            ws["p"] = np.empty(N, self.dtype)
            ws["S"] = np.empty((n1, n2), self.dtype)
        else:  # general: the flat adjoint buffer IS S
            ws["S"] = ws["s"].reshape(n1, n2)
        ws["acc"] = ws["s"].reshape(1, N) if nt == 1 else np.empty((nt, N), self.dtype)
        return ws

    def _buffers(self, nt: int):
        """The cached workspace for ``nt`` kernel threads (a context manager)."""
        return self._workspace("dense", (nt,), lambda: self._make_buffers(nt))

    def take_rows(self, start: int, stop: int):
        """Measurements start..stop-1 as an operator (a view of the rows, no copy)."""
        start, stop = self._check_row_range(start, stop)
        return self._from_rows(self._rows[start:stop])

    # ------------------------------------------------------------------ kernels
    def _adjoint_products_into(self, w, F, G, SG, StF):
        nt = self._kernel_threads()
        with self._buffers(nt) as ws:
            _dense.adjoint(self._rows, w, ws["acc"], ws["s"], nt)
            if self.symmetric:
                _dense.unpack_symmetric(ws["s"], ws["S"], nt)
            _dense.factor_products(ws["S"], F, G, SG, StF)


    def _line_search_products(self, F, G, D_F, D_G, z):
        # P1 = D_F G^T + F D_G^T (one GEMM of width 2k on the stacked factors) and
        # P2 = D_F D_G^T (packed symmetrized for a packed operator), then ONE streaming
        # pass over A for u_i = <A_i, P1> and v_i = <A_i, P2> (src/_linesearch.pyx.tp)
        nt = self._kernel_threads()
        n1, n2 = self.shape
        m, N = self._rows.shape
        k, quad = F.shape[1], D_F is None or D_G is None
        dt = self.dtype
        n_chunks = -(-m // _linesearch.DENSE_CHUNK)

        def make():
            P1 = np.empty((n1, n2), dt)
            P2 = np.empty((1, 1) if quad else (n1, n2), dt)
            packed = (np.empty(N, dt), np.empty(1 if quad else N, dt)) if self.symmetric \
                else (P1.reshape(-1), P2.reshape(-1))
            stack = (np.empty((1, 1), dt), np.empty((1, 1), dt)) if quad else \
                (np.empty((n1, 2 * k), dt), np.empty((n2, 2 * k), dt))
            return P1, P2, packed, stack, np.empty((n_chunks, _linesearch.N_PRODUCTS))

        with self._workspace("ls", (k, quad), make) as (P1, P2, packed, stack, parts):
            if quad:
                X, Y = (D_F, G) if D_G is None else (F, D_G)
                _dense.outer_product(X, Y, P1)
            else:
                FD, GD = stack
                stack_cross_factors(F, G, D_F, D_G, FD, GD)
                _dense.outer_product(FD, GD, P1)
                _dense.outer_product(D_F, D_G, P2)
            p1, p2 = packed
            if self.symmetric:
                _dense.pack_symmetrized(P1, p1, nt)
                if not quad:
                    _dense.pack_symmetrized(P2, p2, nt)
            return _linesearch.dense_products(self._rows, p1, p2, quad, z, parts, nt)


class DenseOperator(_DenseBase):
    r"""Dense measurement operator with general matrices A_i.

    A(M)_i = <A_i, M> = sum_{jl} (A_i)_{jl} M_{jl}.

    Parameters
    ----------
    A : ndarray, shape (m, n1, n2), or (m, n1*n2) with ``shape`` given
        The measurement matrices, float32 or float64 (kept as is; a C-contiguous array is
        used without a copy and must not be modified afterwards).
    shape : tuple (n1, n2), optional
        Required when A is 2-D.
    n_threads : int, optional
        OpenMP threads for the kernels (default: OpenMP's default).

    Notes
    -----
    Cost per ``residual_gradient``: one GEMM for F G^T (n1 n2 k), ONE streaming pass over A
    for both A(F G^T) and A^T(z) (4 m n1 n2 flops, m n1 n2 itemsize bytes), two GEMMs for
    S G and S^T F (4 n1 n2 k). Memory: the A_i plus three n1 x n2 buffers and one length
    n1 n2 buffer per thread.
    """

    kind = "dense"
    ensemble = "gaussian"
    file_format = "A (m, n1, n2)"

    def __init__(self, A: ArrayLike, shape: tuple[int, int] | None = None, *,
                 n_threads: int | None = None) -> None:
        super().__init__(n_threads)
        A = as_float_array(A, "A", ndim=(2, 3))
        if A.ndim == 3:
            if shape is not None and tuple(shape) != A.shape[1:]:
                raise ValueError(f"shape {tuple(shape)} disagrees with A.shape[1:] = {A.shape[1:]}")
            n1, n2 = A.shape[1:]
        else:
            if shape is None:
                raise ValueError("A is 2-D (m, n1*n2): pass shape=(n1, n2)")
            n1, n2 = (check_positive_int(s, "shape") for s in shape)
            if n1 * n2 != A.shape[1]:
                raise ValueError(f"A has {A.shape[1]} columns but shape {(n1, n2)} needs "
                                 f"n1*n2 = {n1 * n2}")
        self.shape = (int(n1), int(n2))
        self.m = int(A.shape[0])
        self.dtype = A.dtype
        self._rows = A.reshape(self.m, n1 * n2)

    @classmethod
    def gaussian(cls, m: int, n1: int, n2: int | None = None, *,
                 dtype: DTypeLike = np.float64, seed: int | np.random.Generator | None = None,
                 n_threads: int | None = None, m_total: int | None = None) -> DenseOperator:
        """A_i with i.i.d. N(0, 1/m) entries, so E||A(M)||^2 = ||M||_F^2.

        Refused before any allocation (MemoryError stating the bytes) if it cannot fit.
        ``m_total`` (default m) normalizes by 1/sqrt(m_total) instead: the m rows are then
        one row shard of an m_total-measurement ensemble (what
        :meth:`lowrank_core.ShardedOperator.gaussian` draws on each worker).
        """
        m = check_positive_int(m, "m")
        m_total = m if m_total is None else check_positive_int(m_total, "m_total")
        n1 = check_positive_int(n1, "n1")
        n2 = n1 if n2 is None else check_positive_int(n2, "n2")
        dtype = check_dtype(dtype)
        _refuse_if_too_large(m * n1 * n2 * dtype.itemsize,
                             f"a dense Gaussian operator with m={m}, shape=({n1}, {n2}), {dtype}")
        rng = check_random_state(seed)
        rows = np.empty((m, n1 * n2), dtype=dtype)
        rng.standard_normal(out=rows, dtype=dtype)
        rows *= dtype.type(1.0 / np.sqrt(m_total))
        return cls(rows, shape=(n1, n2), n_threads=n_threads)

    @property
    def matrices(self) -> np.ndarray:
        """The A_i as a read-only (m, n1, n2) view."""
        v = self._rows.reshape(self.m, *self.shape)
        v = v.view()
        v.flags.writeable = False
        return v

    def astype(self, dtype: DTypeLike) -> DenseOperator:
        """A copy of this operator in another precision (an explicit, deliberate cast)."""
        dtype = check_dtype(dtype)
        return DenseOperator(self._rows.astype(dtype), shape=self.shape,
                             n_threads=self._n_threads_request)

    def _from_rows(self, rows) -> DenseOperator:
        return DenseOperator(rows, shape=self.shape, n_threads=self._n_threads_request)

    def _forward_into(self, M, out):
        _dense.forward(self._rows, M.reshape(-1), out, self._kernel_threads())

    def _adjoint_dense(self, z):
        nt = self._kernel_threads()
        with self._buffers(nt) as ws:
            _dense.adjoint(self._rows, z, ws["acc"], ws["s"], nt)
            return ws["S"].copy()

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        nt = self._kernel_threads()
        with self._buffers(nt) as ws:
            P = ws["P"]
            _dense.outer_product(F, G, P)
            loss = _dense.fused_residual_adjoint(self._rows, P.reshape(-1), y, z,
                                                 ws["acc"], ws["s"], nt)
            _dense.factor_products(ws["S"], F, G, SG, StF)
            return loss

    # ------------------------------------------------------- files and ensembles
    def to_arrays(self) -> dict[str, np.ndarray]:
        """``{"A": (m, n1, n2)}``: the measurement matrices."""
        return {"A": self.matrices}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, dtype: DTypeLike | None = None,
                    n_threads: int | None = None) -> DenseOperator:
        """From ``A`` (m, n1, n2) (see :meth:`MeasurementOperator.from_arrays`)."""
        return cls(_file_array(arrays, "A", ndim=3), n_threads=n_threads)

    @classmethod
    def random_ensemble(cls, rng: np.random.Generator, n1: int, n2: int, m: int | None,
                        psd: bool, dtype: np.dtype, n_threads: int | None = None,
                        symmetric_operator: bool | None = None
                        ) -> DenseOperator | SymmetricDenseOperator:
        """Dense Gaussian: N(0, 1/m) entries; for a PSD truth, by default, the packed
        symmetric ensemble (G_i + G_i^T)/(2 sqrt(m)). ``symmetric_operator=False`` measures
        a PSD truth with general A_i instead: what an asymmetric (F G^T) run on a PSD target
        needs, since symmetric A_i never observe the antisymmetric part of F G^T."""
        m = cls._require_m(m)
        if symmetric_operator is None:
            symmetric_operator = psd
        if symmetric_operator and n1 != n2:
            raise ValueError("symmetric_operator=True needs a square problem")
        if symmetric_operator:
            return SymmetricDenseOperator.gaussian(m, n1, dtype=dtype, seed=rng,
                                                   n_threads=n_threads)
        return cls.gaussian(m, n1, n2, dtype=dtype, seed=rng, n_threads=n_threads)


def _packed_length(n: int) -> int:
    return n * (n + 1) // 2


class SymmetricDenseOperator(_DenseBase):
    r"""Dense operator with symmetric A_i, stored packed.

    Each A_i (n x n, symmetric) is stored as its row-major upper triangle, n(n+1)/2
    numbers, so every pass streams about half the bytes of a general dense operator.
    For any M, A(M)_i = <A_i, M> = <A_i, (M + M^T)/2>: the kernel packs P = F G^T as
    its upper triangle of P + P^T (diagonal once) and takes plain dot products with the
    packed rows; A^T(z) is the symmetric matrix whose upper triangle is sum_i z_i a_i.

    Parameters
    ----------
    A : ndarray, shape (m, n, n)
        Symmetric measurement matrices (checked; use :meth:`from_general` to symmetrize).
    n_threads : int, optional

    See Also
    --------
    SymmetricDenseOperator.gaussian : generate the PSD-sensing ensemble packed directly.
    SymmetricDenseOperator.from_packed : wrap already packed rows.
    """

    symmetric = True
    kind = "symmetric"
    file_format = "A (m, n, n), each A_i symmetric"

    def __init__(self, A: ArrayLike, *, n_threads: int | None = None,
                 rtol: float | None = None) -> None:
        super().__init__(n_threads)
        A = as_float_array(A, "A", ndim=3)
        m, n, n_ = A.shape
        if n != n_:
            raise ValueError(f"A must have shape (m, n, n) with square A_i, got {A.shape}")
        if rtol is None:
            rtol = 1e-5 if A.dtype == np.float32 else 1e-12
        scale = float(np.max(np.abs(A))) or 1.0
        asym = 0.0
        for start in range(0, m, 256):  # chunked: no full-size temporary
            blk = A[start:start + 256]
            asym = max(asym, float(np.max(np.abs(blk - blk.transpose(0, 2, 1)))))
        if asym > rtol * scale:
            raise ValueError(
                f"A is not symmetric (max |A_i - A_i^T| = {asym:.3g}, relative "
                f"{asym / scale:.3g} > rtol={rtol:g}); use "
                "SymmetricDenseOperator.from_general(A) to symmetrize it, or DenseOperator(A)")
        packed = np.empty((m, _packed_length(n)), dtype=A.dtype)
        _dense.pack_upper(A, packed, resolve_n_threads(n_threads))
        self._init_packed(packed, n)

    def _init_packed(self, packed, n):
        self.shape = (int(n), int(n))
        self.m = int(packed.shape[0])
        self.dtype = packed.dtype
        self._rows = packed

    @classmethod
    def from_general(cls, A: ArrayLike, *, n_threads: int | None = None) -> SymmetricDenseOperator:
        """Operator with the symmetrized matrices (A_i + A_i^T)/2.

        For every symmetric M this measures exactly what A does.
        """
        A = as_float_array(A, "A", ndim=3)
        if A.shape[1] != A.shape[2]:
            raise ValueError(f"A must have shape (m, n, n), got {A.shape}")
        sym = np.empty_like(A)
        for start in range(0, A.shape[0], 256):
            blk = A[start:start + 256]
            np.add(blk, blk.transpose(0, 2, 1), out=sym[start:start + 256])
            sym[start:start + 256] *= A.dtype.type(0.5)
        return cls(sym, n_threads=n_threads)

    @classmethod
    def from_packed(cls, packed: ArrayLike, n: int, *,
                    n_threads: int | None = None) -> SymmetricDenseOperator:
        """Wrap rows already packed as row-major upper triangles, shape (m, n(n+1)/2)."""
        n = check_positive_int(n, "n")
        packed = as_float_array(packed, "packed", ndim=2)
        if packed.shape[1] != _packed_length(n):
            raise ValueError(f"packed must have n(n+1)/2 = {_packed_length(n)} columns for "
                             f"n = {n}, got {packed.shape[1]}")
        self = cls.__new__(cls)
        MeasurementOperator.__init__(self, n_threads)
        self._init_packed(packed, n)
        return self

    @classmethod
    def gaussian(cls, m: int, n: int, *, dtype: DTypeLike = np.float64,
                 seed: int | np.random.Generator | None = None, n_threads: int | None = None,
                 m_total: int | None = None) -> SymmetricDenseOperator:
        """The PSD-sensing ensemble A_i = (G_i + G_i^T) / (2 sqrt(m)), G_i i.i.d. N(0, 1).

        Generated packed: diagonal entries N(0, 1/m), off-diagonal N(0, 1/(2m)); then
        E <A_i, M>^2 = ||M||_F^2 / m for symmetric M. Refused before allocation if too big.
        ``m_total`` (default m) normalizes with m_total in place of m (one row shard of a
        larger ensemble, see :meth:`DenseOperator.gaussian`).
        """
        m = check_positive_int(m, "m")
        m_total = m if m_total is None else check_positive_int(m_total, "m_total")
        n = check_positive_int(n, "n")
        dtype = check_dtype(dtype)
        L = _packed_length(n)
        _refuse_if_too_large(m * L * dtype.itemsize,
                             f"a packed symmetric Gaussian operator with m={m}, n={n}, {dtype}")
        rng = check_random_state(seed)
        packed = np.empty((m, L), dtype=dtype)
        rng.standard_normal(out=packed, dtype=dtype)
        weights = np.full(L, 1.0 / np.sqrt(2.0 * m_total))
        j = np.arange(n)
        weights[j * n - (j * (j - 1)) // 2] = 1.0 / np.sqrt(m_total)
        packed *= weights.astype(dtype)
        return cls.from_packed(packed, n, n_threads=n_threads)

    @property
    def packed(self) -> np.ndarray:
        """The packed rows, read-only view of shape (m, n(n+1)/2)."""
        v = self._rows.view()
        v.flags.writeable = False
        return v

    @property
    def matrices(self) -> np.ndarray:
        """The full A_i, shape (m, n, n) (a new array: n^2 per measurement)."""
        n = self.shape[0]
        iu = np.triu_indices(n)
        full = np.zeros((self.m, n, n), self.dtype)
        full[:, iu[0], iu[1]] = self._rows
        full[:, iu[1], iu[0]] = self._rows
        return full

    def astype(self, dtype: DTypeLike) -> SymmetricDenseOperator:
        """A copy in another precision (explicit cast)."""
        return SymmetricDenseOperator.from_packed(self._rows.astype(check_dtype(dtype)),
                                                  self.shape[0],
                                                  n_threads=self._n_threads_request)

    def _from_rows(self, rows) -> SymmetricDenseOperator:
        return SymmetricDenseOperator.from_packed(rows, self.shape[0],
                                                  n_threads=self._n_threads_request)

    # ------------------------------------------------------------------ kernels
    def _forward_into(self, M, out):
        nt = self._kernel_threads()
        with self._buffers(nt) as ws:
            p = ws["p"]
            _dense.pack_symmetrized(M, p, nt)
            _dense.forward(self._rows, p, out, nt)

    def _adjoint_dense(self, z):
        nt = self._kernel_threads()
        S = np.empty(self.shape, self.dtype)
        with self._buffers(nt) as ws:
            _dense.adjoint(self._rows, z, ws["acc"], ws["s"], nt)
            _dense.unpack_symmetric(ws["s"], S, nt)
        return S

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        nt = self._kernel_threads()
        with self._buffers(nt) as ws:
            P, S, p, s = ws["P"], ws["S"], ws["p"], ws["s"]
            _dense.outer_product(F, G, P)
            _dense.pack_symmetrized(P, p, nt)
            loss = _dense.fused_residual_adjoint(self._rows, p, y, z, ws["acc"], s, nt)
            _dense.unpack_symmetric(s, S, nt)
            _dense.factor_products(S, F, G, SG, StF)
            return loss

    # ------------------------------------------------------------------ files
    def to_arrays(self) -> dict[str, np.ndarray]:
        """``{"A": (m, n, n)}``: the full symmetric matrices (unpacked)."""
        return {"A": self.matrices}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, dtype: DTypeLike | None = None,
                    n_threads: int | None = None) -> SymmetricDenseOperator:
        """From ``A`` (m, n, n), symmetric A_i (see :meth:`MeasurementOperator.from_arrays`)."""
        return cls(_file_array(arrays, "A", ndim=3), n_threads=n_threads)

    @classmethod
    def random_ensemble(cls, rng: np.random.Generator, n1: int, n2: int, m: int | None,
                        psd: bool, dtype: np.dtype,
                        n_threads: int | None = None) -> SymmetricDenseOperator:
        """The packed PSD-sensing ensemble of :meth:`gaussian` (square shapes only; the
        ``"gaussian"`` ensemble of make_problem picks it for psd=True)."""
        if n1 != n2:
            raise ValueError(f"a symmetric operator needs n1 == n2, got ({n1}, {n2})")
        return cls.gaussian(cls._require_m(m), n1, dtype=dtype, seed=rng, n_threads=n_threads)
