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


def _build_gaussian(rng, n1, n2, m, psd, dtype, n_threads, **options):
    if options:
        raise TypeError(f"operator='gaussian' takes no options, got {sorted(options)}")
    if psd:
        return SymmetricDenseOperator.gaussian(m, n1, dtype=dtype, seed=rng, n_threads=n_threads)
    return DenseOperator.gaussian(m, n1, n2, dtype=dtype, seed=rng, n_threads=n_threads)


#: operator kind -> builder(rng, n1, n2, m, psd, dtype, n_threads, **options) -> operator
OPERATOR_BUILDERS: dict[str, Callable[..., MeasurementOperator]] = {
    "gaussian": _build_gaussian,
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
    (G_i + G_i^T)/(2 sqrt(m)), stored packed.

    Parameters
    ----------
    n1, n2 : int
        Matrix shape (n2 = n1 if omitted; must equal n1 when psd).
    rank : int
        Rank r of the truth, 1 <= r <= min(n1, n2).
    m : int
        Number of measurements.
    operator : str
        Operator kind, one of ``OPERATOR_BUILDERS`` (e.g. "gaussian").
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
    m = check_positive_int(m, "m")
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
