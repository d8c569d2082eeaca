"""Shared pieces of the asv suite: thread pinning, problem sizes, feature detection.

The operator kinds, method lists and problem construction are the benchmark harness's
(``benchmarks/harness/problems.py``, shared with ``benchmarks/compare.py``); this module
adds the suite's sizes and the feature detection. Benchmarks run against old commits too,
so every feature is looked up at run time; one that a commit does not have raises
NotImplementedError in ``setup``, which asv records as "not applicable" for that commit
(not as a failure).
"""

from __future__ import annotations

import os

# Pin BLAS and the OpenMP default to one thread before numpy loads its BLAS. asv sets the
# same variables (asv.conf.json "env_nobuild"); this also covers `asv run --python=same`.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

try:  # numpy may already have loaded its BLAS in this process: limit it at run time too
    from threadpoolctl import threadpool_limits
    _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")
except ImportError:  # pragma: no cover
    _BLAS_LIMIT = None

import sys

import lowrank_core

# asv puts benchmarks/ (the parent of this suite) on sys.path; also when run by hand
_BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _BENCHMARKS not in sys.path:
    sys.path.insert(0, _BENCHMARKS)

from harness import problems as _problems

#: operator kinds of the suite
KINDS = list(_problems.KINDS)
DTYPES = ["float64", "float32"]
SIZES = ["small", "medium"]
THREADS = [1, 2]
#: methods of lowrank_core.solve
METHODS = list(_problems.METHODS)
#: methods with a symmetric (X X^T) form: used on the symmetric kind; others run F G^T
SYMMETRIC_METHODS = _problems.SYMMETRIC_METHODS

#: (n1, n2, m) per kind and size; "medium" is the issues' size. sparse: 20 nonzeros per A_i;
#: a kind without its own entry (a newly registered one) uses the dense sizes
SHAPES = _problems._PerKind({
    "dense": {"small": (40, 40, 1000), "medium": (100, 100, 2500)},
    "symmetric": {"small": (40, 40, 1000), "medium": (100, 100, 2500)},
    "sparse": {"small": (500, 500, 10_000), "medium": (2000, 2000, 50_000)},
    "entries": {"small": (2000, 1500, 200_000), "medium": (20_000, 15_000, 2_000_000)},
    "rank-one": {"small": (100, 100, 5000), "medium": (300, 300, 20_000)},
})
SPARSE_NNZ = 20
#: factor width of the product benchmarks (the issues use k = 10)
K = 10

#: small problems for the convergence tracks: rank-3 truth, cond 5, exact k = 3
CONVERGENCE_SHAPES = _problems._PerKind({
    "dense": (30, 30, 900),
    "symmetric": (30, 30, 900),
    "sparse": (200, 200, 6000),
    "entries": (500, 400, 30_000),
    "rank-one": (50, 50, 2000),
})
CONVERGENCE_RANK = 3
CONVERGENCE_COND = 5.0
TOL = {"float64": 1e-6, "float32": 1e-4}
MAX_ITER = 2000


def make(kind, shape, *, rank, dtype, seed=0, cond=1.0, n_threads=1):
    """A fixed-seed Problem of an operator kind (:func:`harness.problems.build_problem`),
    or NotImplementedError if the commit under test does not have that kind."""
    n1, n2, m = shape
    if kind not in _problems.KINDS:
        raise NotImplementedError(f"no {kind!r} operator at this commit")
    if _problems._OPERATORS is None and kind not in ("dense", "symmetric"):
        from lowrank_core.problems import OPERATOR_BUILDERS  # before the registry
        if kind not in OPERATOR_BUILDERS:
            raise NotImplementedError(f"no {kind!r} operator at this commit")
    prob = _problems.build_problem(kind, {"n1": n1, "n2": n2, "m": m, "nnz": SPARSE_NNZ},
                                   rank=rank, dtype=np.dtype(dtype), seed=seed, cond=cond)
    prob.operator.n_threads = n_threads
    return prob


def require_solve():
    """lowrank_core.solve, or NotImplementedError before the solvers landed."""
    solve = getattr(lowrank_core, "solve", None)
    if solve is None:
        raise NotImplementedError("no lowrank_core.solve at this commit")
    return solve


def is_symmetric_run(kind, method):
    """Symmetric kind with a method that has the X X^T form; NotImplementedError for the
    asymmetric-only methods there (symmetric A_i do not observe the antisymmetric part of
    F G^T, so F G^T runs on them need not converge)."""
    if kind != "symmetric":
        return False
    if method not in SYMMETRIC_METHODS:
        raise NotImplementedError(f"{method} is asymmetric only: not run on symmetric A_i")
    return True


def factors(prob, k, *, same=False, seed=1):
    """Fixed random factors (F, G) of width k in the problem's dtype (G is F if same)."""
    return _problems.random_factors(prob.operator.shape, k, prob.operator.dtype, same=same,
                                    seed=seed)
