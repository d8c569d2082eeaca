"""Linear measurement operators A: R^{n1 x n2} -> R^m, A(M)_i = <A_i, M>.

Every operator offers the same interface, which is all the solvers use:

* ``shape`` (n1, n2), ``m``, ``dtype``, ``nbytes``, ``symmetric`` (all A_i symmetric),
  ``n_threads`` (OpenMP threads of its kernels);
* ``forward(M)`` -> A(M), shape (m,);
* ``adjoint(z)`` -> A^T(z) = sum_i z_i A_i, shape (n1, n2);
* ``residual_gradient(F, G, y)`` -> ``(loss, z, A^T(z) G, A^T(z)^T F)`` with
  z = A(F G^T) - y and loss = 0.5 ||z||^2: the one fused call a factored gradient method
  needs per iteration;
* ``adjoint_operator(z)`` -> A^T(z) as a :class:`scipy.sparse.linalg.LinearOperator`;
* ``spectral_operator(y)`` -> a LinearOperator estimating M from y = A(M), whose top-k
  SVD (``svds``) is the spectral initialization (A^T(y) unless the operator is biased).

The compiled kernels live in ``lowrank_core._dense`` (and siblings); this module only
validates and orchestrates.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from . import _dense
from ._threads import resolve_n_threads
from ._validation import as_float_array, check_dtype, check_positive_int, check_random_state

__all__ = [
    "MeasurementOperator",
    "DenseOperator",
    "SymmetricDenseOperator",
    "available_memory",
]


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _refuse_if_too_large(nbytes: int, what: str) -> None:
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(
            f"{what} needs {nbytes:,} bytes ({_format_bytes(nbytes)}) but only "
            f"{_format_bytes(avail)} is available; use fewer measurements, a smaller "
            f"problem, float32, a structured operator (sparse, entries, rank-one) or "
            f"lowrank_core.distributed.ShardedOperator"
        )


class MeasurementOperator:
    """Base class: validation and the shared public methods.

    Subclasses set ``shape``, ``m``, ``dtype`` and implement ``_forward_into``,
    ``_adjoint_dense`` and ``_residual_gradient_into`` (no validation, no allocation
    beyond the operator's own cached workspace).
    """

    shape: tuple[int, int]
    m: int
    dtype: np.dtype
    symmetric: bool = False

    def __init__(self, n_threads=None):
        self._n_threads_request = n_threads
        resolve_n_threads(n_threads)  # validate now
        self._lock = threading.Lock()
        self._ws: dict = {}

    # ------------------------------------------------------------------ threads
    @property
    def n_threads(self) -> int:
        """OpenMP threads the kernels use (None at construction = OpenMP default)."""
        return resolve_n_threads(self._n_threads_request)

    @n_threads.setter
    def n_threads(self, value) -> None:
        resolve_n_threads(value)
        self._n_threads_request = value

    # --------------------------------------------------------------- validation
    def _check_matrix(self, M, name="M") -> np.ndarray:
        return as_float_array(M, name, shape=self.shape, dtype=self.dtype)

    def _check_y(self, y, name="y") -> np.ndarray:
        return as_float_array(y, name, shape=(self.m,), dtype=self.dtype)

    def _check_factors(self, F, G):
        n1, n2 = self.shape
        F = as_float_array(F, "F", ndim=2, dtype=self.dtype)
        if F.shape[0] != n1:
            raise ValueError(f"F must have shape ({n1}, k) for an operator of shape "
                             f"{self.shape}, got {F.shape}")
        if G is None:
            if n1 != n2:
                raise ValueError("G may be omitted (G = F) only for a square operator; "
                                 f"this operator has shape {self.shape}")
            return F, F
        G = as_float_array(G, "G", ndim=2, dtype=self.dtype)
        if G.shape != (n2, F.shape[1]):
            raise ValueError(f"G must have shape ({n2}, {F.shape[1]}) to match F "
                             f"{F.shape} and the operator shape {self.shape}, got {G.shape}")
        return F, G

    def _check_out(self, out, k):
        n1, n2 = self.shape
        if out is None:
            return (np.empty(self.m, self.dtype), np.empty((n1, k), self.dtype),
                    np.empty((n2, k), self.dtype))
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise TypeError("out must be a tuple (z, SG, StF) of preallocated arrays")
        for arr, shp, name in zip(out, [(self.m,), (n1, k), (n2, k)], ["z", "SG", "StF"]):
            if not isinstance(arr, np.ndarray) or arr.shape != shp or arr.dtype != self.dtype \
                    or not arr.flags.c_contiguous or not arr.flags.writeable:
                raise ValueError(f"out[{name}] must be a writeable C-contiguous {self.dtype} "
                                 f"array of shape {shp}")
        return tuple(out)

    # ------------------------------------------------------------------- public
    def forward(self, M) -> np.ndarray:
        """A(M): the m measurements <A_i, M>. M has shape ``self.shape``."""
        M = self._check_matrix(M)
        out = np.empty(self.m, dtype=self.dtype)
        self._forward_into(M, out)
        return out

    def forward_factored(self, F, G=None) -> np.ndarray:
        """A(F G^T) without the caller forming F G^T (G = F if omitted, square only).

        Structured operators evaluate it in O(m k); dense ones form F G^T once.
        """
        F, G = self._check_factors(F, G)
        out = np.empty(self.m, dtype=self.dtype)
        self._forward_factored_into(F, G, out)
        return out

    def _forward_factored_into(self, F, G, out):
        P = np.empty(self.shape, self.dtype)
        _dense.outer_product(F, G, P)
        self._forward_into(P, out)

    def adjoint(self, z) -> np.ndarray:
        """A^T(z) = sum_i z_i A_i, shape ``self.shape``. z has length m."""
        z = self._check_y(z, "z")
        return self._adjoint_dense(z)

    def residual_gradient(self, F, G=None, y=None, *, out=None):
        """Fused per-iteration product of every factored method.

        Computes z = A(F G^T) - y, loss = 0.5 ||z||^2, S = A^T(z), and returns
        ``(loss, z, S @ G, S.T @ F)``. The gradient of 0.5 ||A(F G^T) - y||^2 is
        (S G, S^T F); for the symmetric loss 0.25 ||A(X X^T) - y||^2 it is
        (S X + S^T X) / 2.

        Parameters
        ----------
        F : ndarray, shape (n1, k)
        G : ndarray, shape (n2, k), optional
            Omitted (None) for a square operator means G = F.
        y : ndarray, shape (m,)
        out : tuple of ndarray, optional
            Preallocated ``(z, SG, StF)`` of shapes (m,), (n1, k), (n2, k) so that a
            loop allocates nothing per call.

        Returns
        -------
        loss : float
        z : ndarray, shape (m,)
        SG : ndarray, shape (n1, k)
        StF : ndarray, shape (n2, k)
        """
        if y is None:
            raise TypeError("residual_gradient() needs y, the measurements (shape (m,))")
        F, G = self._check_factors(F, G)
        y = self._check_y(y)
        z, SG, StF = self._check_out(out, F.shape[1])
        loss = self._residual_gradient_into(F, G, y, z, SG, StF)
        return float(loss), z, SG, StF

    def adjoint_products(self, w, F, G=None) -> tuple[np.ndarray, np.ndarray]:
        """The two factor products of A^T(w) for a given weight vector w.

        Computes S = A^T(w) = sum_i w_i A_i implicitly and returns ``(S @ G, S.T @ F)``:
        what ``residual_gradient`` returns for z = w, without evaluating A(F G^T). Methods
        whose step needs the adjoint at another vector than the residual (Gauss-Newton,
        alternating least squares) use it.

        Parameters
        ----------
        w : ndarray, shape (m,)
            Weights, in the operator's dtype.
        F : ndarray, shape (n1, k)
        G : ndarray, shape (n2, k), optional
            Omitted (None) for a square operator means G = F.

        Returns
        -------
        SG : ndarray, shape (n1, k)
            A^T(w) G.
        StF : ndarray, shape (n2, k)
            A^T(w)^T F.

        Notes
        -----
        Cost: dense operators one streaming pass over A for S (2 m n1 n2 flops) plus two
        GEMMs (4 n1 n2 k); sparse 4 nnz k; entries 4 m k; rank-one 4 m (n1 + n2) k (half
        for the symmetric model with G = F). Nothing n1 x n2 is formed except by the
        dense operators, which hold S in their cached workspace.
        """
        F, G = self._check_factors(F, G)
        w = self._check_y(w, "w")
        k = F.shape[1]
        SG = np.empty((self.shape[0], k), self.dtype)
        StF = np.empty((self.shape[1], k), self.dtype)
        self._adjoint_products_into(w, F, G, SG, StF)
        return SG, StF

    def adjoint_operator(self, z) -> LinearOperator:
        """A^T(z) as a LinearOperator of shape (n1, n2) (matvec S v, rmatvec S^T u)."""
        z = self._check_y(z, "z")
        return aslinearoperator(self._adjoint_dense(z))

    def spectral_operator(self, y) -> LinearOperator:
        """An estimate of M from y = A(M) as a LinearOperator, for spectral initialization.

        The top-k singular triplets (eigenpairs for symmetric problems) U S V^T of this
        operator give the spectral initialization F0 = U S^{1/2}, G0 = V S^{1/2}
        (ALGORITHMS.md 0.4). The default is A^T(y), unbiased for near-isotropic operators
        (E[A^T A(M)] = M, e.g. the dense Gaussian ensembles); operators whose A^T A is
        biased override it (entries: divide by the sampling rate; symmetric rank-one:
        remove the tr(M) I term).
        """
        y = self._check_y(y, "y")
        return self.adjoint_operator(y)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(m={self.m}, shape={self.shape}, "
                f"dtype={self.dtype}, nbytes={_format_bytes(self.nbytes)})")

    # ----------------------------------------------------- pickling and row shards
    # Used by lowrank_core.distributed to ship operators (or row blocks of them) to Dask
    # workers. The lock and the cached workspace are per process: they are not pickled.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_ws"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _check_row_range(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= self.m:
            raise ValueError(f"row range [{start}, {stop}) must satisfy "
                             f"0 <= start < stop <= m = {self.m}")
        return start, stop


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

    def _workspace(self):
        """Scratch reused across calls: P and S (n1 x n2), per-thread adjoint buffers."""
        nt = self._kernel_threads()
        key = (nt,)
        ws = self._ws.get(key)
        if ws is None:
            n1, n2 = self.shape
            N = self._rows.shape[1]
            ws = {"P": np.empty((n1, n2), self.dtype), "s": np.empty(N, self.dtype)}
            if self.symmetric:  # packed: separate packed vectors and an unpacked S
                ws["p"] = np.empty(N, self.dtype)
                ws["S"] = np.empty((n1, n2), self.dtype)
            else:  # general: the flat adjoint buffer IS S
                ws["S"] = ws["s"].reshape(n1, n2)
            ws["acc"] = ws["s"].reshape(1, N) if nt == 1 else np.empty((nt, N), self.dtype)
            self._ws = {key: ws}
        return nt, ws

    def _with_workspace(self, fn):
        # The cached workspace is not shared between concurrent Python threads: a second
        # caller while the first holds it gets a fresh workspace.
        if self._lock.acquire(blocking=False):
            try:
                nt, ws = self._workspace()
                return fn(nt, ws)
            finally:
                self._lock.release()
        saved, self._ws = self._ws, {}
        try:
            nt, ws = self._workspace()
        finally:
            self._ws = saved
        return fn(nt, ws)


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

    def __init__(self, A, shape=None, *, n_threads=None):
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
    def gaussian(cls, m, n1, n2=None, *, dtype=np.float64, seed=None, n_threads=None):
        """A_i with i.i.d. N(0, 1/m) entries, so E||A(M)||^2 = ||M||_F^2.

        Refused before any allocation (MemoryError stating the bytes) if it cannot fit.
        """
        m = check_positive_int(m, "m")
        n1 = check_positive_int(n1, "n1")
        n2 = n1 if n2 is None else check_positive_int(n2, "n2")
        dtype = check_dtype(dtype)
        _refuse_if_too_large(m * n1 * n2 * dtype.itemsize,
                             f"a dense Gaussian operator with m={m}, shape=({n1}, {n2}), {dtype}")
        rng = check_random_state(seed)
        rows = np.empty((m, n1 * n2), dtype=dtype)
        rng.standard_normal(out=rows, dtype=dtype)
        rows *= dtype.type(1.0 / np.sqrt(m))
        return cls(rows, shape=(n1, n2), n_threads=n_threads)

    @property
    def matrices(self) -> np.ndarray:
        """The A_i as a read-only (m, n1, n2) view."""
        v = self._rows.reshape(self.m, *self.shape)
        v = v.view()
        v.flags.writeable = False
        return v

    def astype(self, dtype) -> "DenseOperator":
        """A copy of this operator in another precision (an explicit, deliberate cast)."""
        dtype = check_dtype(dtype)
        return DenseOperator(self._rows.astype(dtype), shape=self.shape,
                             n_threads=self._n_threads_request)

    def _take_rows(self, start: int, stop: int) -> "DenseOperator":
        """Measurements start..stop-1 as an operator (a view of the rows, no copy)."""
        start, stop = self._check_row_range(start, stop)
        return DenseOperator(self._rows[start:stop], shape=self.shape,
                             n_threads=self._n_threads_request)

    # ------------------------------------------------------------------ kernels
    def _forward_into(self, M, out):
        _dense.forward(self._rows, M.reshape(-1), out, self._kernel_threads())

    def _adjoint_dense(self, z):
        def run(nt, ws):
            _dense.adjoint(self._rows, z, ws["acc"], ws["s"], nt)
            return ws["S"].copy()
        return self._with_workspace(run)

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        def run(nt, ws):
            P = ws["P"]
            _dense.outer_product(F, G, P)
            loss = _dense.fused_residual_adjoint(self._rows, P.reshape(-1), y, z,
                                                 ws["acc"], ws["s"], nt)
            _dense.factor_products(ws["S"], F, G, SG, StF)
            return loss
        return self._with_workspace(run)

    def _adjoint_products_into(self, w, F, G, SG, StF):
        def run(nt, ws):
            _dense.adjoint(self._rows, w, ws["acc"], ws["s"], nt)
            _dense.factor_products(ws["S"], F, G, SG, StF)
        self._with_workspace(run)


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

    def __init__(self, A, *, n_threads=None, rtol=None):
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
    def from_general(cls, A, *, n_threads=None):
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
    def from_packed(cls, packed, n, *, n_threads=None):
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
    def gaussian(cls, m, n, *, dtype=np.float64, seed=None, n_threads=None):
        """The PSD-sensing ensemble A_i = (G_i + G_i^T) / (2 sqrt(m)), G_i i.i.d. N(0, 1).

        Generated packed: diagonal entries N(0, 1/m), off-diagonal N(0, 1/(2m)); then
        E <A_i, M>^2 = ||M||_F^2 / m for symmetric M. Refused before allocation if too big.
        """
        m = check_positive_int(m, "m")
        n = check_positive_int(n, "n")
        dtype = check_dtype(dtype)
        L = _packed_length(n)
        _refuse_if_too_large(m * L * dtype.itemsize,
                             f"a packed symmetric Gaussian operator with m={m}, n={n}, {dtype}")
        rng = check_random_state(seed)
        packed = np.empty((m, L), dtype=dtype)
        rng.standard_normal(out=packed, dtype=dtype)
        weights = np.full(L, 1.0 / np.sqrt(2.0 * m))
        j = np.arange(n)
        weights[j * n - (j * (j - 1)) // 2] = 1.0 / np.sqrt(m)
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

    def astype(self, dtype) -> "SymmetricDenseOperator":
        """A copy in another precision (explicit cast)."""
        return SymmetricDenseOperator.from_packed(self._rows.astype(check_dtype(dtype)),
                                                  self.shape[0],
                                                  n_threads=self._n_threads_request)

    def _take_rows(self, start: int, stop: int) -> "SymmetricDenseOperator":
        """Measurements start..stop-1 as an operator (a view of the packed rows, no copy)."""
        start, stop = self._check_row_range(start, stop)
        return SymmetricDenseOperator.from_packed(self._rows[start:stop], self.shape[0],
                                                  n_threads=self._n_threads_request)

    # ------------------------------------------------------------------ kernels
    def _forward_into(self, M, out):
        nt = self._kernel_threads()
        p = np.empty(self._rows.shape[1], self.dtype)
        _dense.pack_symmetrized(M, p, nt)
        _dense.forward(self._rows, p, out, nt)

    def _adjoint_dense(self, z):
        def run(nt, ws):
            S = np.empty(self.shape, self.dtype)
            _dense.adjoint(self._rows, z, ws["acc"], ws["s"], nt)
            _dense.unpack_symmetric(ws["s"], S, nt)
            return S
        return self._with_workspace(run)

    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        def run(nt, ws):
            P, S, p, s = ws["P"], ws["S"], ws["p"], ws["s"]
            _dense.outer_product(F, G, P)
            _dense.pack_symmetrized(P, p, nt)
            loss = _dense.fused_residual_adjoint(self._rows, p, y, z, ws["acc"], s, nt)
            _dense.unpack_symmetric(s, S, nt)
            _dense.factor_products(S, F, G, SG, StF)
            return loss
        return self._with_workspace(run)

    def _adjoint_products_into(self, w, F, G, SG, StF):
        def run(nt, ws):
            _dense.adjoint(self._rows, w, ws["acc"], ws["s"], nt)
            _dense.unpack_symmetric(ws["s"], ws["S"], nt)
            _dense.factor_products(ws["S"], F, G, SG, StF)
        self._with_workspace(run)
