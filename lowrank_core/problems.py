"""Synthetic low-rank recovery problems with known truth.

:func:`make_problem` draws a rank-r truth M* = L R^T and a measurement operator, and returns
y = A(M*) + noise. Operators are built through a registry (``OPERATOR_BUILDERS``) so each
operator kind adds itself with one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import metrics
from .operators import DenseOperator, MeasurementOperator, SymmetricDenseOperator
from .structured import EntryOperator, RankOneOperator, SparseOperator, sample_entries
from ._validation import (check_dtype, check_positive_float, check_positive_int,
                          check_random_state)

__all__ = ["Problem", "make_problem", "OPERATOR_BUILDERS"]


@dataclass
class Problem:
    """A recovery problem: operator, measurements and the truth that generated them.

    Attributes
    ----------
    operator : MeasurementOperator
    y : ndarray, shape (m,)
        Measurements A(M*) + noise.
    truth_factors : tuple (L, R)
        M* = L R^T with L (n1, r), R (n2, r); L is R for PSD problems. Metrics use these
        to avoid forming the n1 x n2 truth.
    rank : int
    psd : bool
    cond : float
        sigma_1 / sigma_r of M* (sigma_1 = 1).
    noise : float
        Standard deviation of the additive Gaussian noise on each measurement.
    singular_values : ndarray, shape (r,)
    seed : int or None
    """

    operator: MeasurementOperator
    y: np.ndarray
    truth_factors: tuple
    rank: int
    psd: bool
    cond: float
    noise: float
    singular_values: np.ndarray
    seed: object = None
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.operator.shape

    @property
    def truth(self) -> np.ndarray:
        """The truth M* as a dense n1 x n2 array (formed on each access)."""
        L, R = self.truth_factors
        return L @ R.T

    def relative_error(self, F, G=None) -> float:
        """||F G^T - M*||_F / ||M*||_F from factors (G = F if omitted), O((n1+n2)k^2)."""
        L, R = self.truth_factors
        G = F if G is None else G
        return metrics.factored_distance(F, G, L, R) / metrics.factored_norm(L, R)


def _build_gaussian(rng, n1, n2, m, psd, dtype, n_threads, symmetric_operator=None):
    """Dense Gaussian: N(0, 1/m) entries; for a PSD truth, by default, the packed symmetric
    ensemble (G_i + G_i^T)/(2 sqrt(m)). ``symmetric_operator=False`` measures a PSD truth
    with general A_i instead: what an asymmetric (F G^T) run on a PSD target needs, since
    symmetric A_i never observe the antisymmetric part of F G^T."""
    if symmetric_operator is None:
        symmetric_operator = psd
    if symmetric_operator and n1 != n2:
        raise ValueError("symmetric_operator=True needs a square problem")
    if symmetric_operator:
        return SymmetricDenseOperator.gaussian(m, n1, dtype=dtype, seed=rng, n_threads=n_threads)
    return DenseOperator.gaussian(m, n1, n2, dtype=dtype, seed=rng, n_threads=n_threads)


def _build_sparse(rng, n1, n2, m, psd, dtype, n_threads, s=10):
    """m sparse A_i, each with ``s`` nonzeros at uniformly random positions (drawn with
    replacement; a repeated position adds up) and i.i.d. N(0, n1 n2 / (m s)) values, so
    E<A_i, M>^2 = ||M||_F^2 / m and E||A(M)||^2 = ||M||_F^2 exactly. For psd=True each
    A_i is symmetrized, (B_i + B_i^T)/2, which measures symmetric M exactly as B_i does.
    """
    s = check_positive_int(s, "s")
    nnz = m * s
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
    return SparseOperator((meas, rows, cols, vals), (n1, n2), m=m, n_threads=n_threads)


def _build_entries(rng, n1, n2, m, psd, dtype, n_threads, p=None):
    """Matrix completion on a uniformly random set Omega of distinct entries.

    |Omega| = m (uniform m-subset), or, with ``p`` given and m=None, a Bernoulli(p) set
    (|Omega| ~ Binomial(n1 n2, p), then a uniform subset of that size). The entries are
    scaled by 1/sqrt(p_eff), p_eff = |Omega| / (n1 n2), so E||A(M)||^2 = ||M||_F^2 and
    A^T(y) is the usual unbiased P_Omega(M)/p. Sampled row-major sorted, chunk by chunk,
    never forming anything n1 x n2 (see :func:`lowrank_core.structured.sample_entries`).
    psd=True keeps the same (non-symmetrized) sampling of a PSD truth.
    """
    total = n1 * n2
    if p is not None:
        if m is not None:
            raise ValueError("operator='entries' takes either m (a count) or p (a fraction), "
                             "not both; pass m=None with p")
        p = check_positive_float(p, "p")
        if p > 1:
            raise ValueError(f"p must be a fraction in (0, 1], got {p}")
        m = int(rng.binomial(total, p))
        if m == 0:
            raise ValueError(f"p={p} observed no entry of a {n1} x {n2} matrix; use a larger p")
    elif m is None:
        raise ValueError("operator='entries' needs m (number of observed entries) or p")
    if m > total:
        raise ValueError(f"m={m} exceeds the {total} entries of a {n1} x {n2} matrix")
    rows, cols = sample_entries(n1, n2, m, rng)
    return EntryOperator(rows, cols, (n1, n2), dtype=dtype, scale=1.0 / np.sqrt(m / total),
                         n_threads=n_threads)


def _build_rank_one(rng, n1, n2, m, psd, dtype, n_threads):
    """Gaussian rank-one projections: a_i, b_i ~ N(0, I/sqrt(m)) so E||A(M)||^2 = ||M||_F^2;
    psd=True gives the symmetric model y_i = a_i^T M a_i with a_i ~ N(0, I/sqrt(2m)), for
    which E||A(M)||^2 = ||M||_F^2 + tr(M)^2/2 (its spectral estimate is debiased, see
    RankOneOperator.spectral_operator)."""
    return RankOneOperator.gaussian(m, n1, n2, symmetric=psd, dtype=dtype, seed=rng,
                                    n_threads=n_threads)


def _require_m(builder):
    def build(rng, n1, n2, m, psd, dtype, n_threads, **options):
        if m is None:
            raise ValueError("m (the number of measurements) is required for this operator")
        return builder(rng, n1, n2, m, psd, dtype, n_threads, **options)
    build.__doc__ = builder.__doc__
    return build


#: operator kind -> builder(rng, n1, n2, m, psd, dtype, n_threads, **options) -> operator
OPERATOR_BUILDERS: dict[str, Callable[..., MeasurementOperator]] = {
    "gaussian": _require_m(_build_gaussian),
    "sparse": _require_m(_build_sparse),
    "entries": _build_entries,
    "rank-one": _require_m(_build_rank_one),
}


def _orthonormal(rng, n, r, dtype):
    q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return q.astype(dtype)


def make_problem(n1, n2=None, *, rank, m, operator="gaussian", psd=False, cond=1.0,
                 noise=0.0, dtype=np.float64, seed=None, n_threads=None,
                 **operator_options) -> Problem:
    r"""Draw a rank-``rank`` truth and measure it.

    The truth is M* = U diag(s) V^T with U, V random orthonormal (Haar) and singular values
    s linearly spaced from 1 down to 1/cond (so sigma_1 = 1); for ``psd=True`` it is
    U diag(s) U^T. Operators are normalized to be near-isotropic, E||A(M)||^2 = ||M||_F^2:
    dense Gaussian A_i have N(0, 1/m) entries; for psd=True the A_i are
    (G_i + G_i^T)/(2 sqrt(m)), stored packed. Structured kinds:

    * ``"sparse"`` (option ``s``, nonzeros per A_i, default 10): N(0, n1 n2/(m s)) values
      at uniform positions; symmetrized A_i for psd=True.
    * ``"entries"``: m distinct uniformly sampled entries (or option ``p``, a Bernoulli
      fraction, with m=None), each scaled by 1/sqrt(p_eff), p_eff = m/(n1 n2).
    * ``"rank-one"``: a_i, b_i ~ N(0, I/sqrt(m)); psd=True gives y_i = a_i^T M a_i with
      a_i ~ N(0, I/sqrt(2m)) (E||A(M)||^2 = ||M||_F^2 + tr(M)^2/2).

    y is computed from the truth factors with ``op.forward_factored(L, R)``, so structured
    problems never form an n1 x n2 matrix (O(m k) for sparse and entries).

    Parameters
    ----------
    n1, n2 : int
        Matrix shape (n2 = n1 if omitted; must equal n1 when psd).
    rank : int
        Rank r of the truth, 1 <= r <= min(n1, n2).
    m : int
        Number of measurements (None only for operator="entries" with option ``p``).
    operator : str
        Operator kind, one of ``OPERATOR_BUILDERS``: "gaussian", "sparse", "entries",
        "rank-one".
    psd, cond, noise : see :class:`Problem`.
    dtype : float32 or float64
        dtype of the operator, the measurements and the truth factors.
    seed : None, int or numpy Generator
    n_threads : int, optional
        Threads for the operator's kernels.
    **operator_options
        Passed to the operator's builder.
    """
    n1 = check_positive_int(n1, "n1")
    n2 = n1 if n2 is None else check_positive_int(n2, "n2")
    rank = check_positive_int(rank, "rank")
    if rank > min(n1, n2):
        raise ValueError(f"rank must be between 1 and min(n1, n2) = {min(n1, n2)}, got {rank}")
    m = None if m is None else check_positive_int(m, "m")
    if psd and n1 != n2:
        raise ValueError(f"psd=True needs a square problem, got n1={n1}, n2={n2}")
    cond = check_positive_float(cond, "cond")
    if cond < 1:
        raise ValueError(f"cond must be >= 1, got {cond}")
    noise = check_positive_float(noise, "noise", allow_zero=True)
    dtype = check_dtype(dtype)
    if operator not in OPERATOR_BUILDERS:
        raise ValueError(f"unknown operator {operator!r}; choose one of "
                         f"{', '.join(sorted(OPERATOR_BUILDERS))}")
    rng = check_random_state(seed)

    s = np.linspace(1.0, 1.0 / cond, rank)
    U = _orthonormal(rng, n1, rank, np.float64)
    V = U if psd else _orthonormal(rng, n2, rank, np.float64)
    L = (U * np.sqrt(s)).astype(dtype)
    R = L if psd else (V * np.sqrt(s)).astype(dtype)

    op = OPERATOR_BUILDERS[operator](rng, n1, n2, m, psd, dtype, n_threads, **operator_options)
    y = op.forward_factored(L, R)
    if noise > 0:
        y += (noise * rng.standard_normal(op.m)).astype(dtype)
    return Problem(operator=op, y=y, truth_factors=(L, R), rank=rank, psd=bool(psd),
                   cond=cond, noise=noise, singular_values=s, seed=seed)
