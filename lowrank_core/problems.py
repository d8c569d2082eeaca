"""Synthetic low-rank recovery problems with known truth.

:func:`make_problem` draws a rank-r truth M* = L R^T and a measurement operator, and returns
y = A(M*) + noise. Operators are built by the ``random_ensemble`` of the registered kinds
(:data:`lowrank_core.operators.ENSEMBLES`, mirrored here as ``OPERATOR_BUILDERS``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import metrics
from ._validation import check_dtype, check_positive_float, check_positive_int, check_random_state
from .operators import ENSEMBLES, MeasurementOperator
from .operators._base import _refuse_if_too_large

__all__ = ["OPERATOR_ALIASES", "OPERATOR_BUILDERS", "OPERATOR_NAMES", "Problem",
           "make_problem", "operator_name"]


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

    def __repr__(self) -> str:
        """One line: shape, rank, m, operator kind, dtype, psd/cond/noise, seed (no arrays)."""
        op = self.operator
        n1, n2 = op.shape
        kind = getattr(op, "kind", None) or type(op).__name__
        parts = [f"shape=({n1}, {n2})", f"rank={self.rank}", f"m={op.m}",
                 f"operator={kind!r}", f"dtype={np.dtype(op.dtype).name}"]
        if self.psd:
            parts.append("psd=True")
        if self.cond != 1:
            parts.append(f"cond={self.cond:g}")
        if self.noise:
            parts.append(f"noise={self.noise:g}")
        if self.seed is not None:
            seed = self.seed
            parts.append(f"seed={seed!r}" if isinstance(seed, (int, np.integer))
                         else f"seed=<{type(seed).__name__}>")
        return f"Problem({', '.join(parts)})"

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


#: make_problem operator name -> builder(rng, n1, n2, m, psd, dtype, n_threads, **options),
#: the ``random_ensemble`` of each registered kind that has an ensemble
OPERATOR_BUILDERS: dict[str, Callable[..., MeasurementOperator]] = {
    name: cls.random_ensemble for name, cls in ENSEMBLES.items()
}


#: The public operator names of make_problem (and ``lowrank-core solve --operator``):
#: the operators' ``kind`` names, "dense" for the Gaussian ensemble's DenseOperator.
OPERATOR_NAMES = tuple(["dense"] + sorted(n for n in OPERATOR_BUILDERS if n != "gaussian"))

#: Accepted other spellings -> public name ("gaussian", the ensemble's name, stays valid).
OPERATOR_ALIASES = {"gaussian": "dense", "rankone": "rank-one", "rank_one": "rank-one"}


def operator_name(operator) -> str:
    """The public name (:data:`OPERATOR_NAMES`) of a make_problem ``operator``: case-
    insensitive, aliases (:data:`OPERATOR_ALIASES`) resolved; ValueError otherwise."""
    if not isinstance(operator, str):
        raise TypeError(f"operator must be a string, one of {', '.join(OPERATOR_NAMES)}; "
                        f"got {operator!r}")
    key = operator.strip().lower()
    key = OPERATOR_ALIASES.get(key, key)
    if key not in OPERATOR_NAMES:
        near = difflib.get_close_matches(key, OPERATOR_NAMES + tuple(OPERATOR_ALIASES), n=1)
        hint = f"; did you mean {OPERATOR_ALIASES.get(near[0], near[0])!r}?" if near else ""
        raise ValueError(f"unknown operator {operator!r}{hint} (choose one of "
                         f"{', '.join(OPERATOR_NAMES)}; 'gaussian' = 'dense')")
    return key


def _builder_name(operator) -> str:
    """The OPERATOR_BUILDERS key (ensemble name) of a make_problem ``operator``."""
    name = operator_name(operator)
    return "gaussian" if name == "dense" else name


def _orthonormal(rng, n, r, dtype):
    q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return q.astype(dtype)


def make_problem(n1: int, n2: int | None = None, *, rank: int, m: int | None,
                 operator: str = "dense", psd: bool = False, cond: float = 1.0,
                 noise: float = 0.0, dtype: DTypeLike = np.float64,
                 seed: int | np.random.Generator | None = None, n_threads: int | None = None,
                 **operator_options: Any) -> Problem:
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
        Operator kind: "dense" (Gaussian A_i, a :class:`DenseOperator`, or for psd=True a
        packed :class:`SymmetricDenseOperator`; "gaussian" is accepted as an alias),
        "sparse", "entries" or "rank-one" -- the ``kind`` names of the operators and of
        the problem file format.
    psd, cond, noise : see :class:`Problem`.
    dtype : float32 or float64
        dtype of the operator, the measurements and the truth factors.
    seed : None, int or numpy Generator
    n_threads : int, optional
        Threads for the operator's kernels.
    **operator_options
        Passed to the operator's builder.
    """
    n1, n2, rank, psd, cond, noise, dtype = _check_problem(n1, n2, rank, psd, cond, noise,
                                                           dtype)
    m = None if m is None else check_positive_int(m, "m")
    builder = OPERATOR_BUILDERS[_builder_name(operator)]
    _refuse_truth_if_too_large(n1, n2, rank, m, dtype)
    return _measured_problem(
        n1, n2, rank, psd, cond, noise, dtype, seed,
        lambda rng: builder(rng, n1, n2, m, psd, dtype, n_threads, **operator_options))


def _measured_problem(n1, n2, rank, psd, cond, noise, dtype, seed, build, info=None):
    """Draw the truth from ``seed``, then the operator ``build(rng)`` from the same
    generator, and measure y = A(L R^T) (+ noise): the one recipe of every synthetic
    problem (arguments already validated by :func:`_check_problem`)."""
    rng = check_random_state(seed)
    s, L, R = _draw_truth(rng, n1, n2, rank, psd, cond, dtype)
    op = build(rng)
    y = op.forward_factored(L, R)
    if noise > 0:
        y += (noise * rng.standard_normal(op.m)).astype(dtype)
    return Problem(operator=op, y=y, truth_factors=(L, R), rank=rank, psd=bool(psd),
                   cond=cond, noise=noise, singular_values=s, seed=seed,
                   info={} if info is None else info)


def _refuse_truth_if_too_large(n1, n2, rank, m, dtype) -> None:
    """MemoryError before drawing if the truth factors (float64 draws, their QR and the
    dtype copies) and y cannot fit; the operator's own builder checks its arrays."""
    _refuse_if_too_large((n1 + n2) * rank * (3 * 8 + dtype.itemsize),
                         f"the rank-{rank} truth factors of a {n1:,} x {n2:,} problem",
                         "use a smaller shape or rank")
    if m is not None:
        _refuse_if_too_large(m * dtype.itemsize, f"the y of m={m:,} measurements",
                             "use fewer measurements (m)")


def _check_problem(n1, n2, rank, psd, cond, noise, dtype):
    """Validated (n1, n2, rank, psd, cond, noise, dtype) of a synthetic problem."""
    n1 = check_positive_int(n1, "n1")
    n2 = n1 if n2 is None else check_positive_int(n2, "n2")
    rank = check_positive_int(rank, "rank")
    if rank > min(n1, n2):
        raise ValueError(f"rank must be between 1 and min(n1, n2) = {min(n1, n2)}, got {rank}")
    if psd and n1 != n2:
        raise ValueError(f"psd=True needs a square problem, got n1={n1}, n2={n2}")
    cond = check_positive_float(cond, "cond")
    if cond < 1:
        raise ValueError(f"cond must be >= 1, got {cond}")
    noise = check_positive_float(noise, "noise", allow_zero=True)
    return n1, n2, rank, psd, cond, noise, check_dtype(dtype)


def _draw_truth(rng, n1, n2, rank, psd, cond, dtype):
    """(s, L, R): singular values 1 .. 1/cond and truth factors M* = L R^T (R is L for
    PSD), U, V Haar-random orthonormal; the first draws of ``rng`` of every problem."""
    s = np.linspace(1.0, 1.0 / cond, rank)
    U = _orthonormal(rng, n1, rank, np.float64)
    V = U if psd else _orthonormal(rng, n2, rank, np.float64)
    L = (U * np.sqrt(s)).astype(dtype)
    R = L if psd else (V * np.sqrt(s)).astype(dtype)
    return s, L, R
