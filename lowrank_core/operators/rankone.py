"""Rank-one projections: :class:`RankOneOperator`, A_i = a_i b_i^T (or a_i a_i^T).

The fused kernel lives in ``lowrank_core._rankone`` (AVX2/FMA build when the CPU has it);
this module validates input and orchestrates. Every call site of the kernel is
:meth:`RankOneOperator._pass`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from scipy.sparse.linalg import LinearOperator

from .._kernels import load as _load_kernels
from .._validation import as_float_array, check_dtype, check_positive_int, check_random_state
from ._base import (
    MeasurementOperator,
    _FactoredLinearOperator,
    _file_array,
    _refuse_if_too_large,
)

_rankone = _load_kernels("_rankone")
_linesearch = _load_kernels("_linesearch")

__all__ = ["RankOneOperator"]

#: below this many flops per thread the fused kernel uses fewer threads
MIN_FLOPS_PER_THREAD = 1 << 23


def _scale_rows(X: np.ndarray, w: np.ndarray) -> None:
    """X[i, :] *= w[i] in place, one column at a time: the broadcast ``X *= w[:, None]``
    makes numpy allocate a 64 KiB iterator buffer on every call."""
    for j in range(X.shape[1]):
        np.multiply(X[:, j], w, out=X[:, j])


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

    kind = "rank-one"
    ensemble = "rank-one"
    file_format = "a (m, n1), b (m, n2) (y_i = a_i^T M b_i); without b: y_i = a_i^T M a_i"

    def __init__(self, a: ArrayLike, b: ArrayLike | None = None, *, n_threads: int | None = None,
                 block: int = 32) -> None:
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
    def gaussian(cls, m: int, n1: int, n2: int | None = None, *, symmetric: bool = False,
                 dtype: DTypeLike = np.float64, seed: int | np.random.Generator | None = None,
                 n_threads: int | None = None) -> RankOneOperator:
        """a_i, b_i i.i.d. N(0, I / sqrt(m)), or symmetric a_i ~ N(0, I / sqrt(2 m)).

        The scaling makes E||A(M)||^2 = ||M||_F^2 (asymmetric), resp.
        ||M||_F^2 + tr(M)^2 / 2 (symmetric M, symmetric model).
        """
        m = check_positive_int(m, "m")
        n1 = check_positive_int(n1, "n1")
        n2 = n1 if n2 is None else check_positive_int(n2, "n2")
        dtype = check_dtype(dtype)
        _refuse_if_too_large(m * (n1 + (0 if symmetric else n2)) * dtype.itemsize,
                             f"a Gaussian rank-one operator with m={m:,}, shape=({n1:,}, "
                             f"{n2:,}), {dtype}")
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

    # ------------------------------------------------ shards, files and ensembles
    def take_rows(self, start: int, stop: int) -> RankOneOperator:
        """Measurements start..stop-1 (views of those rows of a and b)."""
        start, stop = self._check_row_range(start, stop)
        return RankOneOperator(self._a[start:stop],
                               None if self.symmetric else self._b[start:stop],
                               n_threads=self._n_threads_request, block=self.block)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``a`` (m, n1) and ``b`` (m, n2); the symmetric model stores ``a`` only."""
        out = {"a": np.asarray(self.a)}
        if not self.symmetric:
            out["b"] = np.asarray(self.b)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, dtype: DTypeLike | None = None,
                    n_threads: int | None = None) -> RankOneOperator:
        """From ``a`` and optional ``b`` (without ``b``: y_i = a_i^T M a_i)."""
        a = _file_array(arrays, "a", ndim=2)
        b = _file_array(arrays, "b", ndim=2, optional=True)
        return cls(a, b, n_threads=n_threads)

    @classmethod
    def random_ensemble(cls, rng: np.random.Generator, n1: int, n2: int, m: int | None,
                        psd: bool, dtype: np.dtype,
                        n_threads: int | None = None) -> RankOneOperator:
        """Gaussian rank-one projections: a_i, b_i ~ N(0, I/sqrt(m)) so
        E||A(M)||^2 = ||M||_F^2; psd=True gives the symmetric model y_i = a_i^T M a_i with
        a_i ~ N(0, I/sqrt(2m)), for which E||A(M)||^2 = ||M||_F^2 + tr(M)^2/2 (its spectral
        estimate is debiased, see :meth:`spectral_operator`)."""
        return cls.gaussian(cls._require_m(m), n1, n2, symmetric=psd, dtype=dtype, seed=rng,
                            n_threads=n_threads)

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

    def _chunk_rows(self) -> int:
        """Rows per block of the numpy (GEMM) paths: about 4M numbers of a and b."""
        return min(self.m, max(1, (1 << 22) // max(1, self.shape[0] + self.shape[1])))

    def _chunks(self):
        step = self._chunk_rows()
        for s in range(0, self.m, step):
            yield slice(s, min(self.m, s + step))

    # ------------------------------------------------------------------ kernels
    def _pass(self, F, G, y, z, SG=None, StF=None):
        """The fused kernel: z = A(F G^T) (- y), and with SG/StF the two adjoint products.

        Its buffers (per-thread accumulators and the blocked GEMM workspace) come from the
        operator's cached workspace: a loop calling it every iteration allocates nothing.
        """
        flops = 4 * self.m * (self.shape[0] + self.shape[1]) * F.shape[1]
        nt = max(1, min(self.n_threads, flops // MIN_FLOPS_PER_THREAD, self.m))
        k = F.shape[1]
        n1, n2 = self.shape
        grad = SG is not None
        same = self.symmetric and (G is F)
        block = self.block
        if nt > 1:
            # keep each BLAS call below OpenBLAS's threading threshold (m n k < 2^18), so
            # it runs single-threaded inside our OpenMP threads (no oversubscription)
            block = max(4, min(block, (1 << 18) // (k * max(n1, n2)) - 1))
        with self._workspace(("pass", grad), (nt, k, same, block),
                             lambda: self._pass_buffers(nt, k, grad, same, block)) as ws:
            acc_sg, acc_stf, work, stub = ws
            if not grad:
                SG = StF = stub
            has_y = y is not None
            return _rankone.fused_pass(self._a, self._b, same, grad, F, G,
                                       y if has_y else z, has_y, z, acc_sg, acc_stf, SG, StF,
                                       work, block, nt)

    def _pass_buffers(self, nt, k, grad, same, block):
        """(acc_sg, acc_stf, work, stub) for :meth:`_pass` (stubs are (1, 1[, 1]))."""
        n1, n2 = self.shape
        T = max(1, nt)
        # the hand-written path (AVX2 build, small k) allocates its own padded buffers
        gemm_bufs = grad and nt > 1 and not _rankone.hand_path(k)
        shape_sg = (T, n1, k) if gemm_bufs else (1, 1, 1)
        shape_stf = (T, n2, k) if (gemm_bufs and not same) else (1, 1, 1)
        return (np.empty(shape_sg, self.dtype), np.empty(shape_stf, self.dtype),
                np.empty((T, 4 * block * k), self.dtype), np.empty((1, 1), self.dtype))

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
        # S G = a^T (w * (b G)) and S^T F = b^T (w * (a F)) by GEMMs over row blocks of a
        # and b; the block x k and n x k temporaries come from the cached workspace and
        # nothing n1 x n2 is formed (half the work for the symmetric model with G = F)
        n1, n2 = self.shape
        k = F.shape[1]
        same = self.symmetric and G is F
        step = self._chunk_rows()
        dt = self.dtype
        with self._workspace("ap", (k,), lambda: (
                np.empty((step, k), dt), np.empty((step, k), dt), np.empty((n1, k), dt),
                np.empty((n2, k), dt))) as (U, V, T1, T2):
            for i, s in enumerate(self._chunks()):
                r = s.stop - s.start
                a, b, ws = self._a[s], self._b[s], w[s]
                Vb = np.matmul(b, G, out=V[:r])
                _scale_rows(Vb, ws)
                np.matmul(a.T, Vb, out=SG if i == 0 else T1)
                if i:
                    SG += T1
                if not same:
                    Ub = np.matmul(a, F, out=U[:r])
                    _scale_rows(Ub, ws)
                    np.matmul(b.T, Ub, out=StF if i == 0 else T2)
                    if i:
                        StF += T2
        if same:
            StF[...] = SG

    def _line_search_products(self, F, G, D_F, D_G, z):
        # one blocked pass over a and b (src/_linesearch.pyx.tp): per block of rows the
        # GEMMs a_B [F | D_F] and b_B [G | D_G] (one GEMM for the symmetric model with
        # G = F, D_G = D_F), then the float64 partial of the block
        n1, n2 = self.shape
        k, quad = F.shape[1], D_F is None or D_G is None
        same = self.symmetric and not quad and G is F and D_G is D_F
        w = k if quad else 2 * k
        flops = 2 * self.m * (n1 + (0 if same else n2)) * w
        nt = max(1, min(self.n_threads, flops // MIN_FLOPS_PER_THREAD, self.m))
        # rows per block: independent of the thread count (so are the partials), and each
        # GEMM below OpenBLAS's threading threshold (it runs single-threaded in ours)
        block = max(8, min(256, (1 << 18) // (w * max(n1, n2)) - 1))
        n_blocks = -(-self.m // block)
        dt = self.dtype
        with self._workspace("ls", (k, quad, nt, block), lambda: (
                self._stack_buffers(k, quad), np.empty((nt, 2 * block * w), dt),
                np.empty((n_blocks, _linesearch.N_PRODUCTS)))) as (stack, work, parts):
            P, Q, quad = self._line_search_factors(stack, F, G, D_F, D_G)
            return _linesearch.rankone_products(self._a, self._b, same, quad, P, Q, k, z,
                                                work, parts, block, nt)

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
