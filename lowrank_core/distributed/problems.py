"""Synthetic problems whose operator is generated on the workers."""

from __future__ import annotations

import numpy as np

from .client import ShardedOperator

__all__ = ["make_sharded_problem"]


def make_sharded_problem(n1: int, n2: int | None = None, *, rank: int, m: int, n_shards: int,
                         client=None, psd: bool = False, cond: float = 1.0, noise: float = 0.0,
                         dtype=np.float64, seed=None, **options):
    """:func:`lowrank_core.make_problem` with a Gaussian operator generated on the workers.

    Draws the truth M* = L R^T exactly as ``make_problem`` does (same seed, same truth), then
    builds :meth:`ShardedOperator.gaussian` with entropy drawn from the same generator and
    measures y = A(L R^T) on the shards (plus noise on the client). The client never holds A;
    it holds y (m numbers) and the truth factors. The operator differs from
    ``make_problem``'s (it is drawn per shard), with the same distribution.

    Returns
    -------
    Problem
        With ``operator`` a :class:`ShardedOperator` and ``info["n_shards"]``.
    """
    from ..problems import _check_problem, _measured_problem

    n1, n2, rank, psd, cond, noise, dtype = _check_problem(n1, n2, rank, psd, cond, noise,
                                                           dtype)

    def build(rng):
        return ShardedOperator.gaussian(m, n1, n2, n_shards=n_shards, client=client,
                                        seed=int(rng.integers(0, 2**63 - 1)),
                                        symmetric=psd, dtype=dtype, **options)

    problem = _measured_problem(n1, n2, rank, psd, cond, noise, dtype, seed, build)
    problem.info["n_shards"] = problem.operator.n_shards
    return problem
