"""Operator kinds, methods, sizes and fixed-seed problems shared by every benchmark.

The asv suite (``benchmarks/benchmarks/common.py``) and the comparison harness build their
problems here, through :func:`lowrank_core.make_problem` and its operator names.
"""

from __future__ import annotations

import numpy as np

import lowrank_core

try:  # the operator registry (a new kind appears in every benchmark by itself)
    from lowrank_core.operators import OPERATORS as _OPERATORS
except ImportError:  # an old commit under the asv suite: the kinds it may have
    _OPERATORS = None

#: operator kinds (the keys of ``lowrank_core.operators.OPERATORS``: "dense" and
#: "symmetric" are the Gaussian ensemble with ``psd=False`` / ``True``, the others the
#: ``make_problem`` ensemble of their class), in table (registry) order
KINDS = (tuple(_OPERATORS) if _OPERATORS is not None
         else ("dense", "symmetric", "sparse", "entries", "rank-one"))


class _PerKind(dict):
    """Per-kind settings; a kind without its own entry uses the "dense" one."""

    def __missing__(self, kind):
        return self["dense"]


class _Labels(dict):
    def __missing__(self, kind):
        return kind
try:  # the registry of lowrank_core.solve (a new method appears here by itself)
    from lowrank_core.methods import METHODS as _REGISTRY
except ImportError:  # an old commit under the asv suite: the methods it had
    _REGISTRY = None

#: methods of lowrank_core.solve, in table (registry) order
METHODS = (tuple(_REGISTRY) if _REGISTRY is not None
           else ("gd", "onestep", "scaledgd", "scaledgd-lambda", "precgd", "agn"))
#: methods that have a symmetric (X X^T) form. The others (asymmetric only) are not run on
#: the symmetric kind: symmetric A_i do not observe the antisymmetric part of F G^T.
SYMMETRIC_METHODS = (tuple(name for name, rule in _REGISTRY.items()
                           if "symmetric" in rule.forms) if _REGISTRY is not None
                     else ("gd", "scaledgd", "scaledgd-lambda", "precgd"))

KIND_LABELS = _Labels({
    "dense": "dense Gaussian",
    "symmetric": "symmetric packed (PSD)",
    "sparse": "sparse A_i",
    "entries": "entrywise (completion)",
    "rank-one": "rank-one a_i b_i^T",
})

#: per-iteration product sizes: the issues' sizes ("default") and a quick variant.
#: sparse: ``nnz`` nonzeros per A_i. Factor width k is given separately.
PRODUCT_SIZES = {
    "default": _PerKind({
        "dense": {"n1": 100, "n2": 100, "m": 2500},
        "symmetric": {"n1": 100, "n2": 100, "m": 2500},
        "sparse": {"n1": 2000, "n2": 2000, "m": 50_000, "nnz": 20},
        "entries": {"n1": 20_000, "n2": 15_000, "m": 2_000_000},
        "rank-one": {"n1": 300, "n2": 300, "m": 20_000},
    }),
    "quick": _PerKind({
        "dense": {"n1": 40, "n2": 40, "m": 800},
        "symmetric": {"n1": 40, "n2": 40, "m": 800},
        "sparse": {"n1": 300, "n2": 300, "m": 5000, "nnz": 20},
        "entries": {"n1": 2000, "n2": 1500, "m": 100_000},
        "rank-one": {"n1": 100, "n2": 100, "m": 3000},
    }),
}

#: time-to-accuracy problem sizes (rank-3 truth, k = 3, cond 2). Smaller than the product
#: sizes so that every method converges against every baseline within minutes.
SOLVE_SIZES = {
    "default": _PerKind({
        "dense": {"n1": 50, "n2": 50, "m": 1500},
        "symmetric": {"n1": 50, "n2": 50, "m": 1500},
        "sparse": {"n1": 300, "n2": 300, "m": 9000, "nnz": 10},
        "entries": {"n1": 2000, "n2": 1500, "m": 150_000},
        "rank-one": {"n1": 100, "n2": 100, "m": 4000},
    }),
    "quick": _PerKind({
        "dense": {"n1": 20, "n2": 20, "m": 400},
        "symmetric": {"n1": 20, "n2": 20, "m": 400},
        "sparse": {"n1": 100, "n2": 100, "m": 2000, "nnz": 10},
        "entries": {"n1": 300, "n2": 200, "m": 12_000},
        "rank-one": {"n1": 30, "n2": 30, "m": 600},
    }),
}


def build_problem(kind: str, size: dict, *, rank: int, dtype, seed: int = 0,
                  cond: float = 1.0, n_threads=None) -> lowrank_core.Problem:
    """A fixed-seed :class:`~lowrank_core.Problem` of an operator kind and size.

    ``size`` holds n1, n2, m and, for the sparse kind, ``nnz`` (nonzeros per A_i). The
    symmetric kind is ``make_problem(n1, psd=True)`` (packed symmetric Gaussian A_i);
    every other kind is the ``make_problem`` operator of that name.
    """
    size = dict(size)
    n1, n2, m = size.pop("n1"), size.pop("n2"), size.pop("m")
    common = {"rank": rank, "m": m, "dtype": dtype, "seed": seed, "cond": cond}
    if n_threads is not None:  # (the asv suite sets threads itself, also on old commits)
        common["n_threads"] = n_threads
    if kind == "dense":
        return lowrank_core.make_problem(n1, n2, **common)
    if kind == "symmetric":
        return lowrank_core.make_problem(n1, psd=True, **common)
    if kind not in KINDS:
        raise ValueError(f"unknown operator kind {kind!r}; choose from {', '.join(KINDS)}")
    ensemble = getattr(_OPERATORS[kind], "ensemble", None) if _OPERATORS else kind
    if ensemble is None:
        raise ValueError(f"operator kind {kind!r} has no random ensemble for make_problem")
    if kind == "sparse":
        return lowrank_core.make_problem(n1, n2, operator=ensemble, s=size.pop("nnz"),
                                         **common)
    return lowrank_core.make_problem(n1, n2, operator=ensemble, **common)


def random_factors(shape: tuple[int, int], k: int, dtype, *, same: bool = False,
                   seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random factors F (n1, k), G (n2, k) with N(0, 1/n) entries (G is F if same)."""
    n1, n2 = shape
    rng = np.random.default_rng(seed)
    F = (rng.standard_normal((n1, k)) / np.sqrt(n1)).astype(dtype)
    if same:
        return F, F
    G = (rng.standard_normal((n2, k)) / np.sqrt(n2)).astype(dtype)
    return F, G
