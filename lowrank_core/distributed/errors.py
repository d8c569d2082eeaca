"""Errors and warnings of :class:`~lowrank_core.distributed.ShardedOperator`."""

from __future__ import annotations

__all__ = ["ShardError", "ShardLostError", "ShardRecoveredWarning", "ShardTimeoutError"]


class ShardError(RuntimeError):
    """A shard of a :class:`ShardedOperator` failed.

    Attributes
    ----------
    shard : int or None
        Index of the failing shard.
    worker : str or None
        Address of the worker that held it.
    last_factors : tuple (F, G) or None
        Copies of the factors of the last ``residual_gradient`` call that completed, i.e.
        the most recent iterate whose gradient was computed (the partial result of the run);
        G is None when G = F.
    n_calls : int
        Number of ``residual_gradient`` calls that completed before the failure.
    """

    def __init__(self, message, *, shard=None, worker=None, last_factors=None, n_calls=0):
        super().__init__(message)
        self.shard = shard
        self.worker = worker
        self.last_factors = last_factors
        self.n_calls = n_calls


class ShardLostError(ShardError):
    """A shard's worker was lost and the shard could not be rebuilt."""


class ShardTimeoutError(ShardError, TimeoutError):
    """A shard did not answer within the operator's ``timeout``."""


class ShardRecoveredWarning(RuntimeWarning):
    """A shard was lost with its worker and rebuilt from its recipe on another worker."""
