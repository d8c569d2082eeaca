"""The measurement-operator protocol: validation, the shared public methods, the one
workspace cache, row shards and the problem-file arrays.

A kind of operator subclasses :class:`MeasurementOperator`, sets ``kind`` (its name in the
registry :data:`lowrank_core.operators.OPERATORS` and in the problem file format),
``file_format`` and optionally ``ensemble`` (its ``make_problem`` name), and implements the
private kernels

* ``_forward_into(M, out)``, ``_adjoint_dense(z)``,
* ``_residual_gradient_into(F, G, y, z, SG, StF)`` (returns the loss),
* ``_adjoint_products_into(w, F, G, SG, StF)``,
* ``_line_search_products(F, G, D_F, D_G, z)`` (optional: the base class composes it
  from two factored forwards; the kinds override it with one fused compiled pass),
* optional one-sided products, used when present (softImpute-ALS; EntryOperator has
  them): ``_residual_gradient_left_into(F, G, y, z, SG)`` (z and S G only; returns the
  loss) and ``_adjoint_product_into(w, X, out, transpose)`` (S X or S^T X alone),
* optionally the residual-free path (issue 15: no length-m buffer in a solve):
  ``_residual_free(k)`` True when the kind has, for width k,
  ``_loss_gradient_into(F, G, y, SG, StF)`` (``_residual_gradient_into`` without
  writing z; returns the loss) and ``_line_search_products_y(F, G, D_F, D_G, y)`` (the
  full search's products with z = A(F G^T) - y recomputed per measurement). The base
  class answers False (EntryOperator.from_entries' blocked layout has it),

plus ``nbytes``, :meth:`~MeasurementOperator.take_rows`,
:meth:`~MeasurementOperator.to_arrays`, :meth:`~MeasurementOperator.from_arrays` and
:meth:`~MeasurementOperator.random_ensemble`. The private kernels get validated,
C-contiguous arrays of the operator's dtype and allocate nothing per call beyond the
operator's cached workspace (:meth:`MeasurementOperator._workspace`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from .. import _dense
from .._threads import resolve_n_threads
from .._validation import as_float_array

__all__ = ["MeasurementOperator", "available_memory"]


# ------------------------------------------------------------------------- memory
def stack_cross_factors(F, G, D_F, D_G, FD, GD) -> None:
    """Fill FD (n1, 2k) = [D_F | F] and GD (n2, 2k) = [G | D_G] in place.

    Then FD GD^T = D_F G^T + F D_G^T: u = A(FD GD^T) is ONE factored forward of width 2k
    (the linear coefficient of the exact line search). O((n1 + n2) k) copies.
    """
    k = F.shape[1]
    FD[:, :k] = D_F
    FD[:, k:] = F
    GD[:, :k] = G
    GD[:, k:] = D_G


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None if unknown.

    Linux MemAvailable, lowered to the room left under the process's address-space limit
    (``RLIMIT_AS``, e.g. ``ulimit -v``) when one is set.
    """
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    room = _address_space_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


def _address_space_room() -> int | None:
    """Bytes left under RLIMIT_AS (soft limit minus the current virtual size), or None."""
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY or limit < 0:
            return None
        with open("/proc/self/statm") as fh:
            vsize = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        return max(0, limit - vsize)
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


_DEFAULT_FIX = ("use fewer measurements, a smaller problem, float32, a structured operator "
                "(sparse, entries, rank-one) or lowrank_core.distributed.ShardedOperator")


def _refuse_if_too_large(nbytes: int, what: str, fix: str = _DEFAULT_FIX) -> None:
    """MemoryError (before anything is allocated) if ``what`` needs more than is available.

    ``nbytes`` is the caller's estimate of what it is about to allocate; the message
    states it, what is available and ``fix``.
    """
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(
            f"{what} needs {nbytes:,} bytes ({_format_bytes(nbytes)}) but only "
            f"{_format_bytes(avail)} is available; {fix}"
        )


# ------------------------------------------------------------- problem-file arrays
def _file_array(arrays: Mapping[str, np.ndarray], key: str, *, kind: str = "float",
                ndim: int | None = None, optional: bool = False) -> np.ndarray | None:
    """``arrays[key]`` checked for the problem file format.

    kind "float": a numeric array (integers become float64; float32/float64 kept);
    kind "int": an integer array. A missing key raises KeyError(key) unless optional.
    """
    if key not in arrays:
        if optional:
            return None
        raise KeyError(key)
    arr = np.asarray(arrays[key])
    if kind == "float":
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"key {key!r} must be a numeric array, got dtype {arr.dtype}")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    elif kind == "int" and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"key {key!r} must be an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"key {key!r} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _file_shape(arrays: Mapping[str, np.ndarray]) -> tuple[int, int]:
    shape = _file_array(arrays, "shape", kind="int", ndim=1)
    if shape.shape != (2,) or np.any(shape <= 0):
        raise ValueError("key 'shape' must be two positive integers (n1, n2), got "
                         f"{shape.tolist()}")
    return int(shape[0]), int(shape[1])


# ----------------------------------------------------------------- linear operator
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


# ------------------------------------------------------------------------ protocol
class MeasurementOperator:
    """Base class of every operator: validation and the shared public methods.

    Subclasses set ``shape``, ``m``, ``dtype`` and ``kind`` and implement the private
    kernels listed in the module docstring (no validation, no allocation beyond the
    operator's own cached workspace).

    Thread safety: an operator's measurement data are immutable after construction, so
    one operator object may be used from several Python threads at once (e.g. several
    ``solve`` calls in a ThreadPoolExecutor): every public method returns exactly what
    the same call made alone returns. The reusable scratch workspace is held by one call
    at a time; a concurrent caller gets its own buffers (one extra allocation). Setting
    ``n_threads`` while another thread is inside a call is not synchronized (that call
    may use either count); ``solve(n_threads=...)`` never modifies the operator.
    """

    shape: tuple[int, int]
    m: int
    dtype: np.dtype
    symmetric: bool = False
    #: Name of the kind in :data:`lowrank_core.operators.OPERATORS` and in the problem
    #: file format (None: not registered, e.g. a sharded operator).
    kind: ClassVar[str | None] = None
    #: Name of the random ensemble this class builds for
    #: :func:`lowrank_core.make_problem` (``operator=...``), or None.
    ensemble: ClassVar[str | None] = None
    #: One line describing the keys of :meth:`to_arrays` (shown by ``lowrank-core solve
    #: --help``).
    file_format: ClassVar[str] = ""

    def __init__(self, n_threads: int | None = None) -> None:
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

    # ---------------------------------------------------------------- workspace
    @contextmanager
    def _workspace(self, family: str, params: tuple,
                   make: Callable[[], Any]) -> Iterator[Any]:
        """Scratch buffers reused across calls, held for the duration of a ``with``.

        One entry per ``family`` (e.g. "rg" for the residual gradient): it is rebuilt with
        ``make()`` only when ``params`` (thread count, factor width, ...) change, so a
        loop calling the same product every iteration allocates nothing. The cached
        buffers are not shared between concurrent Python threads: a second caller while
        the first holds them gets fresh ones.
        """
        if self._lock.acquire(blocking=False):
            try:
                entry = self._ws.get(family)
                if entry is None or entry[0] != params:
                    entry = (params, make())
                    self._ws[family] = entry
                yield entry[1]
            finally:
                self._lock.release()
        else:
            yield make()

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

    def _check_row_range(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= self.m:
            raise ValueError(f"row range [{start}, {stop}) must satisfy "
                             f"0 <= start < stop <= m = {self.m}")
        return start, stop

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

    def line_search_products(self, z, F, G=None, D_F=None, D_G=None) -> tuple:
        r"""The five inner products of the exact line search along (D_F, D_G).

        Along F - eta D_F, G - eta D_G the loss 1/2 ||A(F(eta) G(eta)^T) - y||^2 is
        1/2 ||z - eta u + eta^2 v||^2 with z = A(F G^T) - y, u = A(D_F G^T + F D_G^T) and
        v = A(D_F D_G^T) (:mod:`lowrank_core.methods.linesearch`). This returns its
        coefficients without the caller (or, for the compiled kinds, the operator)
        forming u or v.

        Parameters
        ----------
        z : ndarray, shape (m,)
            The residual A(F G^T) - y (any weight vector: only the products are taken).
        F : ndarray, shape (n1, k)
        G : ndarray, shape (n2, k), optional
            Omitted (None) for a square operator means G = F (the symmetric X X^T: pass
            ``D_G = D_F`` too, then u = A(D X^T + X D^T), v = A(D D^T)).
        D_F : ndarray, shape (n1, k), optional
        D_G : ndarray, shape (n2, k), optional
            The direction. One of them may be None, meaning a zero block (the one-factor
            searches: u = A(D_F G^T) or A(F D_G^T), v = 0); not both.

        Returns
        -------
        tuple of float
            (z.u, u.u, z.v, u.v, v.v), accumulated in float64 (u_i and v_i themselves
            are formed in the operator's dtype, as the factored forward forms them).

        Notes
        -----
        One pass over the measurements. Cost: completion 6 m k flops, sparse 6 nnz k
        (Omega or the nonzeros read once, nothing of length m stored); rank-one two
        GEMMs of width 2k over a and b (4 m (n1 + n2) k flops; one for the symmetric
        model with G = F, D_G = D_F); dense two GEMMs for D_F G^T + F D_G^T and
        D_F D_G^T (6 n1 n2 k) and ONE streaming pass over A for both (4 m n1 n2). The
        completion, sparse and dense sums are bitwise independent of the thread count,
        the rank-one sums repeatable for a fixed count. Operators without a compiled
        version (the base class) form u and v by two factored forwards.
        """
        F, G = self._check_factors(F, G)
        z = self._check_y(z, "z")
        if D_F is None and D_G is None:
            raise ValueError("line_search_products needs a direction: pass D_F, D_G or "
                             "both")
        same_direction = D_G is D_F
        if D_F is not None:
            D_F = as_float_array(D_F, "D_F", shape=F.shape, dtype=self.dtype)
        if same_direction:
            D_G = D_F
        elif D_G is not None:
            D_G = as_float_array(D_G, "D_G", shape=G.shape, dtype=self.dtype)
        return tuple(float(x) for x in self._line_search_products(F, G, D_F, D_G, z))

    def _line_search_products(self, F, G, D_F, D_G, z):
        """Generic composition: u, v by factored forwards into cached buffers, then five
        dots (length-m work in the operator's dtype). The kinds override it."""
        m, dt, k = self.m, self.dtype, F.shape[1]
        n1, n2 = self.shape
        quad = D_F is None or D_G is None
        with self._workspace("ls-generic", (k, quad), lambda: (
                np.empty(m, dt), np.empty(1 if quad else m, dt),
                np.empty((n1, 1 if quad else 2 * k), dt),
                np.empty((n2, 1 if quad else 2 * k), dt))) as (u, v, FD, GD):
            if quad:
                X, Y = (D_F, G) if D_G is None else (F, D_G)
                self._forward_factored_into(X, Y, u)
                return float(np.dot(z, u)), float(np.dot(u, u)), 0.0, 0.0, 0.0
            stack_cross_factors(F, G, D_F, D_G, FD, GD)
            self._forward_factored_into(FD, GD, u)
            self._forward_factored_into(D_F, D_G, v)
            return (float(np.dot(z, u)), float(np.dot(u, u)), float(np.dot(z, v)),
                    float(np.dot(u, v)), float(np.dot(v, v)))

    def _residual_free(self, k: int) -> bool:
        """Whether this operator has the residual-free kernels for factors of width k
        (module docstring); False unless a kind overrides it."""
        return False

    def _line_search_factors(self, ws, F, G, D_F, D_G):
        """(P, Q, quad) for the compiled line-search kernels (src/_linesearch.pyx.tp).

        Full search: P = [F | D_F], Q = [G | D_G] stacked into ws's (n1, 2k) and (n2, 2k)
        buffers (Q is P when G is F and D_G is D_F). One zero block (quad): P, Q = D_F, G
        or F, D_G, nothing copied.
        """
        if D_G is None:
            return D_F, G, True
        if D_F is None:
            return F, D_G, True
        P, Q = ws
        k = F.shape[1]
        P[:, :k] = F
        P[:, k:] = D_F
        if G is F and D_G is D_F:
            return P, P, False
        Q[:, :k] = G
        Q[:, k:] = D_G
        return P, Q, False

    def _stack_buffers(self, k: int, quad: bool):
        """The (n1, 2k), (n2, 2k) buffers of :meth:`_line_search_factors` (stubs if quad)."""
        n1, n2 = self.shape
        w = 1 if quad else 2 * k
        return (np.empty((1 if quad else n1, w), self.dtype),
                np.empty((1 if quad else n2, w), self.dtype))

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

    # ------------------------------------------------- shards, files and ensembles
    def take_rows(self, start: int, stop: int) -> MeasurementOperator:
        """Measurements ``start .. stop-1`` as an operator of the same kind.

        Used by :class:`lowrank_core.ShardedOperator` to split an operator into row
        shards: A^T(z) = sum_s A_s^T(z_s) over the shards. Dense kinds return a view of
        their rows (no copy); the others rebuild from the rows' data (O(rows) work).

        Parameters
        ----------
        start, stop : int
            0 <= start < stop <= m.
        """
        raise TypeError(f"{type(self).__name__} cannot be split by rows (it does not "
                        "implement take_rows); build its shards on the workers with "
                        "ShardedOperator.from_builders")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The operator as named plain arrays for the problem file format (no ``kind``).

        :meth:`from_arrays` of the same class rebuilds an operator measuring exactly the
        same; see :mod:`lowrank_core.problem_io` for the keys of each kind.
        """
        raise TypeError(f"cannot save a {type(self).__name__} operator in the problem file "
                        "format")

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, dtype: DTypeLike | None = None,
                    n_threads: int | None = None) -> MeasurementOperator:
        """Rebuild an operator from the arrays of :meth:`to_arrays`.

        Parameters
        ----------
        arrays : mapping of str to ndarray
            E.g. an open ``numpy.load`` archive. A missing key raises ``KeyError(key)``.
        dtype : float32 or float64, optional
            The measurements' dtype, used by kinds whose arrays carry no floats
            (entries); the others take their dtype from their float arrays.
        n_threads : int, optional
        """
        raise TypeError(f"{cls.__name__} has no problem-file form")

    @classmethod
    def random_ensemble(cls, rng: np.random.Generator, n1: int, n2: int, m: int | None,
                        psd: bool, dtype: np.dtype, n_threads: int | None = None,
                        **options: Any) -> MeasurementOperator:
        """The random operator of :func:`lowrank_core.make_problem` for this ensemble.

        Parameters
        ----------
        rng : numpy Generator
        n1, n2 : int
            Matrix shape.
        m : int or None
            Number of measurements (None only where the ensemble allows another size
            option).
        psd : bool
            The truth is PSD (symmetric ensembles where the kind has one).
        dtype : np.dtype
        n_threads : int, optional
        **options
            Ensemble options (e.g. ``s`` for sparse, ``p`` for entries).
        """
        raise TypeError(f"{cls.__name__} has no random ensemble")

    @staticmethod
    def _require_m(m: int | None) -> int:
        if m is None:
            raise ValueError("m (the number of measurements) is required for this operator")
        return m

    # ------------------------------------------------------------------- misc
    def __repr__(self) -> str:
        return (f"{type(self).__name__}(m={self.m}, shape={self.shape}, "
                f"dtype={self.dtype}, nbytes={_format_bytes(self.nbytes)})")

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
