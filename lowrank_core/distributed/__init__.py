"""Measurement operators sharded by rows over a Dask cluster.

A dense operator grows as m n1 n2 and outgrows one machine quickly (n = 1000, m = 50000 is
400 GB in float64). :class:`ShardedOperator` splits the m measurements into row blocks
(shards); shard s holds its matrices A_i, i in [a_s, b_s), and its slice of y on one Dask
worker, and never moves. Per iteration the client sends F and G to every shard; shard s
returns its residual z_s = A_s(F G^T) - y_s, its loss 0.5 ||z_s||^2 and its partial products
A_s^T(z_s) G and A_s^T(z_s)^T F, and the client adds the partial products up in shard order
0, 1, 2, ... (a fixed order, whatever order the replies arrive in), because

    A^T(z) = sum_s A_s^T(z_s).

So the iterates match a single-process solve to rounding, and traffic per iteration is
O((n1 + n2) k) floats each way per shard plus the shard's m_s residuals (the interface
returns z). The solvers do not change: ``ShardedOperator`` is a
:class:`~lowrank_core.operators.MeasurementOperator` like any other.

Dask (``pip install 'lowrank-core[dask]'``) is imported only when a sharded operator is
built, so ``import lowrank_core`` never needs it.

Design
------
* **Shards are Dask actors.** Each shard is an actor (:class:`_ShardActor`) created by a
  Dask task on a chosen worker; per-iteration calls go straight from the client to that
  worker (no scheduler round trip, no task graph), and the shard's data is never spilled to
  disk, copied by work stealing or re-shipped. (Plain futures were measured at about 4x the
  per-call latency, and a multi-GB shard sized as a tiny Python object by Dask could be
  moved between workers by work stealing.)
* **Shards are built from pure recipes.** A shard is made by a pure function of small
  arguments: Gaussian shards from (seed entropy, shard index), file shards from a path,
  user shards from a picklable zero-argument builder. When a worker dies mid-solve the lost
  shards are rebuilt from their recipes on a live worker and the call is retried; the run
  continues with bit-identical shards. Shards split from a client-side operator
  (:meth:`ShardedOperator.from_operator`) are re-sent from the client when the client still
  holds the operator (``keep_source=True``, the default); otherwise a loss raises
  :class:`ShardLostError`.
* **Measurements are cached on the shards by value.** ``residual_gradient(F, G, y)``
  receives the full y every iteration. The operator keeps a copy of the last few distinct y
  vectors (``y_cache_size``, default 4) and gives each a token; the first call with a new y
  ships y_s with the call, later calls send only the token. A y is recognised by its bits
  (an O(m) comparison on the client, no traffic), so modifying y in place is safe.
  :meth:`ShardedOperator.forward_factored` registers the measurements it computes, so
  ``y = op.forward_factored(L, R)`` followed by a solve never ships y at all.
* **Failures never hang.** Every call waits at most ``timeout`` seconds (default 300) and
  building shards at most ``build_timeout`` (default 600), then raises
  :class:`ShardTimeoutError`; a lost worker is detected at once (its connection drops).
  Errors carry the last iterate the operator saw (``last_factors``); inside
  :func:`lowrank_core.solve` they end the run with status ``"operator_failed"`` (the last
  evaluated iterate, the history so far, the error's message) instead of raising.
* **Memory is checked before allocation.** The estimated bytes of each shard are checked
  against the memory limit of its worker (times Dask's ``pause`` fraction, default 0.8,
  minus what the worker process already uses) on the client before anything is created and
  again on the worker before allocating; a shard that does not fit raises
  :class:`MemoryError` saying how many shards or workers would be needed.

Examples
--------
>>> from distributed import Client                                        # doctest: +SKIP
>>> client = Client("tcp://scheduler-host:8786")                           # doctest: +SKIP
>>> op = ShardedOperator.gaussian(50_000, 1000, 1000, n_shards=16, client=client,
...                               dtype=np.float32, seed=0)                 # doctest: +SKIP
>>> y = op.forward_factored(L, R)      # measure a truth without holding A  # doctest: +SKIP
>>> result = lowrank_core.solve(op, y, rank=10, method="gd")               # doctest: +SKIP
"""

from .client import RemoteMeasurements, ShardedOperator
from .errors import ShardError, ShardLostError, ShardRecoveredWarning, ShardTimeoutError
from .problems import make_sharded_problem

__all__ = [
    "RemoteMeasurements",
    "ShardError",
    "ShardLostError",
    "ShardRecoveredWarning",
    "ShardTimeoutError",
    "ShardedOperator",
    "make_sharded_problem",
]
