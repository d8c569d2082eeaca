"""lowrank_core: low-rank matrix recovery from linear measurements with factorized
gradient methods on a compiled (Cython, BLAS, OpenMP) core.

Measurements y = A(M*) (+ noise), A(M)_i = <A_i, M>, M* of rank r; the solvers work on a
factorization X X^T or F G^T. See the README for the architecture.
"""

from . import metrics
from ._kernels import simd_variant
from ._threads import openmp_enabled
from .distributed import ShardedOperator
from .driver import solve
from .operators import DenseOperator, MeasurementOperator, SymmetricDenseOperator
from .problems import Problem, make_problem
from .structured import EntryOperator, RankOneOperator, SparseOperator
from .results import SolveResult

__version__ = "0.1.0"

__all__ = [
    "DenseOperator",
    "EntryOperator",
    "MeasurementOperator",
    "Problem",
    "RankOneOperator",
    "ShardedOperator",
    "SparseOperator",
    "SolveResult",
    "SymmetricDenseOperator",
    "make_problem",
    "metrics",
    "openmp_enabled",
    "simd_variant",
    "solve",
]
