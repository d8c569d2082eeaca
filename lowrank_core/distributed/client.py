"""The client side of :class:`ShardedOperator`: shard records, creation, the per-call
fan-out in shard order, and recovery of shards lost with their workers."""

from __future__ import annotations

import asyncio
import math
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._threads import _CONTEXT_N_THREADS, resolve_n_threads
from .._validation import (
    check_dtype,
    check_positive_float,
    check_positive_int,
    check_random_state,
)
from ..operators import MeasurementOperator
from ..operators._base import _format_bytes
from .actor import (
    _MISSING_MEASUREMENTS,
    _RESIDENT_TOKEN,
    _memory_fraction,
    _shard_too_large_message,
    _ShardActor,
)
from .errors import ShardLostError, ShardRecoveredWarning, ShardTimeoutError
from .recipes import (
    _call_builder,
    _completion_shard,
    _gaussian_shard,
    _given_operator,
    _npy_shard,
)

__all__ = ["RemoteMeasurements", "ShardedOperator"]

_INSTALL_HINT = "pip install 'lowrank-core[dask]'"


def _require_distributed():
    """Import ``distributed`` or raise an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - exercised only without dask
        raise ImportError(
            "lowrank_core.distributed needs Dask distributed, which is not installed; "
            f"install it with: {_INSTALL_HINT}") from exc
    return distributed


@dataclass
class _Shard:
    """Client-side record of one shard: how to (re)build it and where it lives."""

    index: int
    build: Callable
    args: tuple
    nbytes: int | None          # estimate checked before creation (None: unknown)
    rows: tuple[int, int] | None = None   # [start, stop) once known
    payload: Callable | None = None   # client-side source re-sent on rebuild (from_operator)
    # [start, stop) of the matrix rows this shard's measurements touch, when known (its
    # A_s(F G^T) reads only F[start:stop], and A_s^*(z_s) G is zero outside those rows)
    row_block: tuple[int, int] | None = None
    future: Any = None
    actor: Any = None
    address: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def recoverable(self) -> bool:
        return self.build is not _given_operator or self.payload is not None


def _get_client(client):
    distributed = _require_distributed()
    if client is None:
        try:
            return distributed.get_client()
        except ValueError as exc:
            raise ValueError("no Dask client: pass client=distributed.Client(...) (e.g. "
                             "Client('tcp://scheduler:8786') for a running cluster)") from exc
    if isinstance(client, str):
        raise TypeError("client must be a distributed.Client; to connect to a scheduler "
                        f"address use client=distributed.Client({client!r})")
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    if getattr(client, "asynchronous", False):
        raise ValueError("ShardedOperator needs a synchronous Client (asynchronous=False)")
    return client


def _row_bounds(m: int, n_shards: int) -> list[tuple[int, int]]:
    """Balanced contiguous row blocks: shard s gets rows [s m / S, (s+1) m / S)."""
    return [((s * m) // n_shards, ((s + 1) * m) // n_shards) for s in range(n_shards)]


def _workspace_nbytes(n1: int, n2: int, itemsize: int, n_threads: int) -> int:
    """Scratch a dense shard allocates per call: P, S and per-thread n1 n2 buffers."""
    return (3 + n_threads) * n1 * n2 * itemsize


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError))


class ShardedOperator(MeasurementOperator):
    r"""A measurement operator whose rows live on the workers of a Dask cluster.

    Same interface as every operator (``forward``, ``forward_factored``, ``adjoint``,
    ``residual_gradient``, ``adjoint_operator``), so :func:`lowrank_core.solve` runs on it
    unchanged. Build one with :meth:`from_operator`, :meth:`gaussian`, :meth:`from_files`
    or :meth:`from_builders`; the constructor itself is internal.

    Parameters
    ----------
    client : distributed.Client, optional
        (These options are accepted by every constructor.)
        Client of the cluster (default: ``distributed.get_client()``). For a running
        cluster: ``Client("tcp://scheduler-host:8786")``.
    n_threads : int, optional
        OpenMP threads of each shard's kernels; default: the worker's Dask thread count.
    timeout : float or None
        Seconds one call (one iteration: sending F, G and gathering every shard's reply)
        may take before :class:`ShardTimeoutError`; None waits forever. Default 300.
    build_timeout : float or None
        Seconds building (or, after a worker loss, rebuilding) the shards may take.
        Default 600.
    max_recoveries : int
        Rebuilds allowed per shard within one call before giving up with
        :class:`ShardLostError` (counted per shard: one worker death costs each shard it
        held one rebuild, however many shards that worker held). Default 3.
    y_cache_size : int
        Distinct measurement vectors kept on the shards (default 4).
    residual : {"client", "shards"}
        Where ``residual_gradient``'s residual z = A(F G^T) - y goes. "client" (default):
        every shard sends its z_s back and the caller's z is filled, as for every
        operator. "shards": each shard keeps its z_s (4 or 8 bytes per observation on
        the worker) and sends none (m floats less traffic per iteration, no m floats
        received on the client); the caller's z buffer is not filled (its first entry is
        set to NaN as a marker), and the line search's products, the only use of z by
        the gradient methods (gd, scaledgd, precgd, agn with a fixed step or
        ``step="auto"``), run on the kept z_s when given that same buffer. Methods that
        read z themselves (gnmr, als) need "client". "recompute": as "shards", but the
        shards keep no residual either (no memory per observation beyond the shard); a
        line search recomputes z_s on each shard from F, G (one more fused kernel pass
        per line search; none with a fixed step).
    in_flight : int or None
        Shard calls of ``residual_gradient`` and ``adjoint_products`` the client keeps
        outstanding at once, started and summed in shard order (each reply is added and
        dropped before the next call starts), so the client holds at most ``in_flight``
        replies of (n1 + n2) k numbers instead of one per shard. Default None: two per
        worker (a worker always has its next call queued while it computes); 0: all
        shards at once. The sums, and so the iterates, do not depend on it.

    Notes
    -----
    Thread safety: unlike the in-process operators, a ShardedOperator must be used from
    one Python thread at a time (its measurement cache and recovery bookkeeping are not
    locked); run concurrent solves on separate ShardedOperators.

    Cost per ``residual_gradient`` with S shards: each shard runs its own operator's fused
    kernel on its m_s rows in parallel (for dense shards 4 m_s n1 n2 flops, m_s n1 n2
    itemsize bytes read), plus, on the client, an O(m) check of y and the sums of S
    partial products (S (n1 + n2) k flops). Traffic: (n1 + n2) k floats to every shard and
    (n1 + n2) k + m_s floats back (completion shards: their block of F's rows and all of
    G, their block of S G's rows and all of S^T F; no m_s with a sharded residual); y_s
    once per distinct y (never with :meth:`remote_measurements`). Client memory: at most
    ``in_flight`` replies at a time. Latency: one client-worker round
    trip per iteration on top of the slowest shard's compute (measured 6-12 ms over
    loopback on a loaded 2-core machine; see ``benchmarks/distributed_overhead.py``).
    """

    def __init__(self, client, shards: list[_Shard], *, n_threads=None, timeout=300.0,
                 build_timeout=600.0, max_recoveries: int = 3, y_cache_size: int = 4,
                 residual: str = "client", in_flight: int | None = None,
                 check_memory=True):
        super().__init__(n_threads)
        self._client = _get_client(client)
        self._shard_n_threads = n_threads
        self.timeout = None if timeout is None else check_positive_float(timeout, "timeout")
        self.build_timeout = (None if build_timeout is None
                              else check_positive_float(build_timeout, "build_timeout"))
        self.max_recoveries = check_positive_int(max_recoveries, "max_recoveries", minimum=0)
        self._y_cache_size = check_positive_int(y_cache_size, "y_cache_size")
        if residual not in ("client", "shards", "recompute"):
            raise ValueError("residual must be 'client', 'shards' or 'recompute', got "
                             f"{residual!r}")
        self.residual = residual
        self.in_flight = (None if in_flight is None
                          else check_positive_int(in_flight, "in_flight", minimum=0))
        self._kept_z = None      # (data address, length) of the z the shards hold
        self._shards = shards
        self._y_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._next_token = 0
        self._last_factors = None
        self.n_calls = 0
        self.recoveries: list[dict] = []
        self._closed = False
        workers = self._workers()
        if not workers:
            raise ValueError("the Dask cluster has no workers")
        if check_memory:
            self._check_memory(workers)
        self._create_all(workers)

    # ================================================================ constructors
    @classmethod
    def from_operator(cls, op: MeasurementOperator, n_shards: int, client=None, *,
                      keep_source: bool = True, **options) -> ShardedOperator:
        """Split an existing operator into ``n_shards`` row blocks and send them to workers.

        Shard s gets measurements [s m / n_shards, (s + 1) m / n_shards). Each block is
        sent directly to its worker once (``client.scatter``) and never again.

        Parameters
        ----------
        op : MeasurementOperator
            Any operator implementing :meth:`MeasurementOperator.take_rows` (every
            registered kind: dense, symmetric dense, sparse, entries, rank-one).
        n_shards : int
            Number of shards, 1 <= n_shards <= op.m. Shards are placed round-robin on the
            workers; several per worker is fine (they run one after the other there).
        client : distributed.Client, optional
        keep_source : bool
            Keep a reference to ``op`` so a shard lost with its worker is re-sent from the
            client (no extra memory while the caller holds ``op`` anyway). With False a
            lost shard raises :class:`ShardLostError`.
        **options
            ``n_threads``, ``timeout``, ``build_timeout``, ``max_recoveries``,
            ``y_cache_size``.
        """
        if not isinstance(op, MeasurementOperator) or isinstance(op, ShardedOperator):
            raise TypeError(f"op must be a lowrank_core operator, got {type(op).__name__}")
        if type(op).take_rows is MeasurementOperator.take_rows:
            raise TypeError(
                f"{type(op).__name__} cannot be split by rows (it does not implement "
                "take_rows); build its shards on the workers with "
                "ShardedOperator.from_builders")
        n_shards = check_positive_int(n_shards, "n_shards")
        if n_shards > op.m:
            raise ValueError(f"n_shards = {n_shards} exceeds the m = {op.m} measurements")
        shards = []
        for s, (a, b) in enumerate(_row_bounds(op.m, n_shards)):
            nbytes = math.ceil(op.nbytes * (b - a) / op.m)
            shards.append(_Shard(s, _given_operator, (), nbytes, rows=(a, b),
                                 payload=(lambda a=a, b=b: op.take_rows(a, b))))
        self = cls(client, shards, **options)
        if not keep_source:
            for sh in self._shards:
                sh.payload = None
        return self

    @classmethod
    def gaussian(cls, m: int, n1: int, n2: int | None = None, *, n_shards: int, client=None,
                 seed=None, symmetric: bool = False, dtype=np.float64,
                 **options) -> ShardedOperator:
        """A Gaussian operator generated on the workers, shard by shard, from seeds.

        The client never holds A: shard s draws its rows with the generator
        ``SeedSequence(entropy, spawn_key=(s,))`` on its worker. The ensembles match
        :meth:`DenseOperator.gaussian` (A_i entries N(0, 1/m)) and, with ``symmetric=True``,
        :meth:`SymmetricDenseOperator.gaussian` (A_i = (G_i + G_i^T)/(2 sqrt(m)), packed),
        so E||A(M)||^2 = ||M||_F^2. The draw depends on (seed, n_shards): the same seed with
        another shard count gives another (equally distributed) operator. A lost shard is
        regenerated bit for bit.

        Parameters
        ----------
        m, n1, n2 : int
            Measurements and matrix shape (n2 = n1 if omitted; must equal n1 if symmetric).
        n_shards : int
        client : distributed.Client, optional
        seed : None, int, SeedSequence or Generator
            None draws fresh entropy (recorded, so recovery is still exact).
        symmetric : bool
        dtype : float32 or float64
        **options
            ``n_threads``, ``timeout``, ``build_timeout``, ``max_recoveries``,
            ``y_cache_size``.
        """
        m = check_positive_int(m, "m")
        n1 = check_positive_int(n1, "n1")
        n2 = n1 if n2 is None else check_positive_int(n2, "n2")
        if symmetric and n1 != n2:
            raise ValueError(f"symmetric=True needs n1 == n2, got ({n1}, {n2})")
        n_shards = check_positive_int(n_shards, "n_shards")
        if n_shards > m:
            raise ValueError(f"n_shards = {n_shards} exceeds the m = {m} measurements")
        dtype = check_dtype(dtype)
        entropy = _seed_entropy(seed)
        N = n1 * (n1 + 1) // 2 if symmetric else n1 * n2
        n_threads = options.get("n_threads")
        nt = 1 if n_threads is None else max(1, resolve_n_threads(n_threads))
        shards = []
        for s, (a, b) in enumerate(_row_bounds(m, n_shards)):
            nbytes = (b - a) * N * dtype.itemsize + _workspace_nbytes(n1, n2, dtype.itemsize, nt)
            shards.append(_Shard(s, _gaussian_shard,
                                 (m, b - a, n1, n2, bool(symmetric), dtype.str, entropy, s),
                                 nbytes, rows=(a, b)))
        self = cls(client, shards, **options)
        self.seed_entropy = entropy
        return self

    @classmethod
    def completion(cls, n1: int, n2: int, rank: int, m: int, *, n_shards: int, client=None,
                   seed=None, noise: float = 0.0, dtype=np.float32, layout: str = "blocked",
                   **options) -> ShardedOperator:
        """A planted rank-``rank`` completion problem generated on the workers, measurements
        included: nothing of size m is shipped from the client.

        Shard s is built on its worker by the recipe ``_completion_shard`` (deterministic
        in (seed, n_shards, s), so a lost shard is rebuilt bit for bit): the ground truth
        M* = U V^T from small seeded factors (:func:`planted_factors`, U (n1, rank) and V
        (n2, rank), N(0, 1/n1) and N(0, 1/n2) entries), m_s observations of its row block
        [s n1 / S, (s + 1) n1 / S) at uniform random positions
        (:func:`completion_entries`), their values scale (<U_r, V_c> + noise e) with
        scale = 1/sqrt(m / (n1 n2)) computed on the worker, and
        :meth:`EntryOperator.from_entries` with ``layout`` (tiles for width ``rank``). The
        values stay on the worker as the shard's resident measurements;
        :meth:`measurements` copies them to the client (m numbers), where ``solve`` needs
        them, and a solve given that array ships no y.

        Parameters
        ----------
        n1, n2, rank, m : int
            Shape, rank of M* and total observations (1 <= n_shards <= n1).
        n_shards : int
        client : distributed.Client, optional
        seed : None, int, SeedSequence or Generator
        noise : float
            Standard deviation of the additive N(0, noise^2) noise on each entry.
        dtype : float32 (default) or float64
        layout : {"blocked", "rows", "auto"}
        **options
            ``n_threads``, ``timeout``, ``build_timeout``, ``max_recoveries``,
            ``y_cache_size``.

        Notes
        -----
        Memory per shard: what it keeps, 8 bytes per float32 observation (blocked: a 32-bit
        tile code and the value; rows: a 32-bit column and the value; this is the size
        checked against the workers' memory limits), and while it is built 12 bytes more
        per observation (rows, cols, values) plus 2 (n1 + n2) rank float64 factors.
        """
        n1 = check_positive_int(n1, "n1")
        n2 = check_positive_int(n2, "n2")
        rank = check_positive_int(rank, "rank")
        m = check_positive_int(m, "m")
        n_shards = check_positive_int(n_shards, "n_shards")
        if n_shards > min(n1, m):
            raise ValueError(f"n_shards = {n_shards} exceeds min(n1, m) = {min(n1, m)} (each "
                             "shard owns a block of rows and some observations)")
        if layout not in ("blocked", "rows", "auto"):
            raise ValueError(f"layout must be 'blocked', 'rows' or 'auto', got {layout!r}")
        noise = float(noise)
        if not (np.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        dtype = check_dtype(dtype)
        entropy = _seed_entropy(seed)
        shards = []
        for s, (a, b) in enumerate(_row_bounds(m, n_shards)):
            nbytes = (b - a) * (4 + dtype.itemsize)    # kept: 32-bit codes and y
            shards.append(_Shard(s, _completion_shard,
                                 (n1, n2, rank, m, n_shards, noise, dtype.str, layout,
                                  entropy, s), nbytes, rows=(a, b),
                                 row_block=((s * n1) // n_shards, ((s + 1) * n1) // n_shards)))
        self = cls(client, shards, **options)
        self.seed_entropy = entropy
        self.planted = {"n1": n1, "n2": n2, "rank": rank, "entropy": entropy,
                        "noise": noise}
        return self

    def measurements(self) -> np.ndarray:
        """The measurements the shards' recipes built with them (:meth:`completion`),
        copied to the client shard by shard into one read-only array (m numbers; peak
        client memory m numbers plus one shard's). The array is registered by reference:
        passing it to ``solve`` or ``residual_gradient`` ships nothing and costs no
        comparison; the shards keep their copy."""
        if not all(sh.info.get("resident") for sh in self._shards):
            raise ValueError("these shards were built without measurements (only "
                             "ShardedOperator.completion builds them on the workers); pass "
                             "y to solve, the shards receive their slices on first use")
        ref = self._y_cache.get(_RESIDENT_TOKEN)
        if ref is not None:
            return ref
        y = np.empty(self.m, self.dtype)
        for sh in self._shards:
            part = _call(sh.actor, "resident_measurements", ()).result(
                timeout=_remaining(_deadline(self.timeout)))
            y[sh.rows[0]:sh.rows[1]] = part
            del part
        y.flags.writeable = False
        self._y_cache[_RESIDENT_TOKEN] = y
        return y

    def remote_measurements(self) -> RemoteMeasurements:
        """The shards' resident measurements (:meth:`completion`) named on the client
        without copying them: pass the handle to :func:`lowrank_core.solve` (or
        ``residual_gradient``, ``spectral_operator``) as y, and no m-sized array is
        allocated or compared on the client (the norm of y, which ``solve`` needs, is
        summed on the shards). A method that reads y itself on the client (gnmr, als)
        needs the copy of :meth:`measurements` instead."""
        if not all(sh.info.get("resident") for sh in self._shards):
            raise ValueError("these shards were built without measurements (only "
                             "ShardedOperator.completion builds them on the workers)")
        return RemoteMeasurements(self)

    def _is_remote(self, y) -> bool:
        return isinstance(y, RemoteMeasurements) and y.operator is self

    def _check_y(self, y, name="y"):
        if name == "y" and isinstance(y, RemoteMeasurements):
            if y.operator is not self:
                raise ValueError("these RemoteMeasurements belong to another "
                                 "ShardedOperator")
            return y
        return super()._check_y(y, name)

    def kernel_stats(self, reset: bool = False) -> list[dict]:
        """Per shard: its worker and, per kernel method, (calls, wall s, thread CPU s)
        spent in the shard's kernels since the last reset (``reset=True`` clears them).
        An iteration's wall time on the client minus the slowest worker's kernel time is
        the time spent in communication, (de)serialization and the client's sums."""
        stats = self._run("kernel_stats", lambda sh, missing: (reset,))
        return [{"shard": sh.index, "worker": sh.address, "pid": sh.info.get("pid"),
                 "kernels": st} for sh, st in zip(self._shards, stats)]

    @classmethod
    def from_files(cls, paths: Sequence[str], client=None, *, kind: str = "dense",
                   shape=None, mmap_mode=None, **options) -> ShardedOperator:
        """Shards loaded by the workers from .npy files, one file per shard, in order.

        The paths are opened on the workers (a shared or replicated file system), never on
        the client. Before loading, each worker reads the file's header and checks the
        shard's size against its memory limit.

        Parameters
        ----------
        paths : sequence of str
            One .npy file per shard; shard s holds the rows of ``paths[s]``.
        client : distributed.Client, optional
        kind : {"dense", "symmetric"}
            "dense": each file is (m_s, n1, n2), or (m_s, n1*n2) with ``shape``.
            "symmetric": (m_s, n, n) symmetric matrices, or packed row-major upper
            triangles (m_s, n(n+1)/2) with ``shape=(n, n)``.
        shape : tuple (n1, n2), optional
        mmap_mode : None or "r"
            Memory-map the files read-only instead of loading them.
        **options
            ``n_threads``, ``timeout``, ``build_timeout``, ``max_recoveries``,
            ``y_cache_size``.
        """
        if kind not in ("dense", "symmetric"):
            raise ValueError(f"kind must be 'dense' or 'symmetric', got {kind!r}")
        if mmap_mode not in (None, "r"):
            raise ValueError(f"mmap_mode must be None or 'r', got {mmap_mode!r}")
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError("paths must be a sequence of paths, one per shard")
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("paths is empty")
        shape = None if shape is None else tuple(int(s) for s in shape)
        shards = [_Shard(s, _npy_shard, (p, kind, shape, mmap_mode), None)
                  for s, p in enumerate(paths)]
        return cls(client, shards, **options)

    @classmethod
    def from_builders(cls, builders: Sequence[Callable[[], MeasurementOperator]], client=None,
                      *, nbytes: Sequence[int] | None = None, **options) -> ShardedOperator:
        """Shards of any operator kind, each built on a worker by a zero-argument builder.

        ``builders[s]()`` runs on a worker and returns shard s (any MeasurementOperator,
        e.g. a sparse or rank-one operator read from the worker's disk). Builders must be
        picklable and pure (deterministic): a shard lost with its worker is rebuilt by
        calling its builder again.

        Parameters
        ----------
        builders : sequence of callables
        client : distributed.Client, optional
        nbytes : sequence of int, optional
            Estimated bytes of each shard, checked against the workers' memory limits
            before anything is built.
        **options
            ``n_threads``, ``timeout``, ``build_timeout``, ``max_recoveries``,
            ``y_cache_size``.
        """
        builders = list(builders)
        if not builders or not all(callable(b) for b in builders):
            raise TypeError("builders must be a non-empty sequence of callables")
        if nbytes is not None:
            nbytes = [int(b) for b in nbytes]
            if len(nbytes) != len(builders):
                raise ValueError("nbytes must have one entry per builder")
        shards = [_Shard(s, _call_builder, (b,), None if nbytes is None else nbytes[s])
                  for s, b in enumerate(builders)]
        return cls(client, shards, **options)

    # ==================================================================== creation
    def _workers(self) -> dict[str, dict]:
        """Live workers (address -> info), asked from the scheduler now. Not
        ``client.scheduler_info()``: its cached copy is refreshed in the background without
        the per-worker entries, so it can come back empty."""
        client = self._client
        info = client.sync(client.scheduler.identity, n_workers=-1)
        return dict(sorted(info.get("workers", {}).items()))

    def _check_memory(self, workers: dict[str, dict]) -> None:
        """Refuse, before creating anything, shards that cannot fit their workers."""
        frac = _memory_fraction()
        addresses = list(workers)
        load: dict[str, int] = {a: 0 for a in addresses}
        for sh in self._shards:
            if sh.nbytes is None:
                continue
            addr = addresses[sh.index % len(addresses)]
            limit = workers[addr].get("memory_limit") or 0
            if limit and sh.nbytes > frac * limit:
                raise MemoryError(_shard_too_large_message(sh.index, sh.nbytes, addr, limit,
                                                           frac, 0))
            load[addr] += sh.nbytes
        for addr, total in load.items():
            limit = workers[addr].get("memory_limit") or 0
            if limit and total > frac * limit:
                n_here = sum(1 for sh in self._shards
                             if addresses[sh.index % len(addresses)] == addr)
                raise MemoryError(
                    f"the {n_here} shards placed on worker {addr} need about "
                    f"{_format_bytes(total)} together but it may use "
                    f"{_format_bytes(frac * limit)} (memory_limit {_format_bytes(limit)} x "
                    f"pause fraction {frac:g}); add workers or give them more memory")

    def _submit(self, sh: _Shard, address: str | None, loose: bool):
        """Start creating shard ``sh``'s actor on ``address``; returns its future."""
        client = self._client
        args: tuple = sh.args
        if sh.build is _given_operator:
            workers = [address] if address else None
            payload = client.scatter(sh.payload(), workers=workers, direct=True, hash=False)
            args = (payload,)
        return client.submit(_ShardActor, sh.index, self._shard_n_threads, sh.nbytes,
                             sh.build, *args, actor=True, pure=False,
                             workers=[address] if address else None,
                             allow_other_workers=loose,
                             key=f"lowrank-shard-{sh.index}-{os.urandom(6).hex()}")

    def _finish(self, sh: _Shard, future, deadline) -> None:
        """Wait (until ``deadline``) for a shard actor, then record where it lives and
        what it holds."""
        try:
            actor = future.result(timeout=_remaining(deadline))
            info = actor.info().result(timeout=_remaining(deadline))
        except BaseException as exc:
            if _is_timeout(exc):
                raise ShardTimeoutError(
                    f"shard {sh.index} was not built within build_timeout="
                    f"{self.build_timeout} s "
                    "(are workers alive and not paused for memory?)", shard=sh.index) from exc
            raise
        sh.future, sh.actor, sh.address, sh.info = future, actor, info["address"], info

    def _create_all(self, workers: dict[str, dict]) -> None:
        addresses = list(workers)
        deadline = _deadline(self.build_timeout)
        futures = [self._submit(sh, addresses[sh.index % len(addresses)], loose=False)
                   for sh in self._shards]
        try:
            for sh, fut in zip(self._shards, futures):
                self._finish(sh, fut, deadline)
        except BaseException:
            for fut in futures:
                fut.release()
            raise
        first = self._shards[0].info
        for sh in self._shards:
            i = sh.info
            for key in ("shape", "dtype"):
                if i[key] != first[key]:
                    raise ValueError(f"shard {sh.index} has {key} {i[key]} but shard 0 has "
                                     f"{first[key]}; all shards must agree")
        start = 0
        for sh in self._shards:
            if sh.rows is not None and sh.rows != (start, start + sh.info["m"]):
                raise RuntimeError(f"shard {sh.index} holds {sh.info['m']} rows, expected "
                                   f"{sh.rows[1] - sh.rows[0]}")
            sh.rows = (start, start + sh.info["m"])
            start += sh.info["m"]
        self.m = start
        self.shape = tuple(first["shape"])
        self.dtype = np.dtype(first["dtype"])
        self.symmetric = all(sh.info["symmetric"] for sh in self._shards)

    # =================================================================== properties
    @property
    def n_shards(self) -> int:
        """Number of row shards."""
        return len(self._shards)

    @property
    def shard_rows(self) -> list[tuple[int, int]]:
        """Row range [start, stop) of each shard."""
        return [sh.rows for sh in self._shards]

    @property
    def shard_workers(self) -> list[str]:
        """Address of the worker holding each shard (updated after a recovery)."""
        return [sh.address for sh in self._shards]

    @property
    def nbytes(self) -> int:
        """Bytes of measurement matrices held on the workers (none on the client)."""
        return sum(int(sh.info["nbytes"]) for sh in self._shards)

    @property
    def n_threads(self) -> int:
        """Threads of the shards' kernels: the scoped count of an enclosing
        ``solve(n_threads=...)`` (forwarded with every shard call), else the shards' own."""
        scoped = _CONTEXT_N_THREADS.get()
        if scoped is not None:
            return int(scoped)
        return int(self._shards[0].info["n_threads"])

    @n_threads.setter
    def n_threads(self, value) -> None:
        resolve_n_threads(value)
        self._n_threads_request = value
        self._shard_n_threads = value
        if getattr(self, "_shards", None) and self._shards[0].actor is not None:
            for sh, nt in zip(self._shards, self._run("set_n_threads", lambda s, y: (value,))):
                sh.info["n_threads"] = nt

    @property
    def client(self):
        """The Dask client."""
        return self._client

    def __repr__(self) -> str:
        kinds = sorted({sh.info.get("kind", "?") for sh in self._shards})
        return (f"ShardedOperator(m={self.m}, shape={self.shape}, dtype={self.dtype}, "
                f"n_shards={self.n_shards}, kind={'/'.join(kinds)}, "
                f"nbytes={_format_bytes(self.nbytes)} on {len(set(self.shard_workers))} "
                "worker(s))")

    def __reduce__(self):
        raise TypeError("a ShardedOperator holds a live Dask client and cannot be pickled; "
                        "ship its recipe (e.g. ShardedOperator.gaussian arguments) instead")

    # ================================================================ measurements
    def _token(self, y: np.ndarray) -> tuple[int, bool]:
        """Token of y (recognised by its bits); True when y is new (shards need it)."""
        if self._is_remote(y):
            return _RESIDENT_TOKEN, False
        resident = self._y_cache.get(_RESIDENT_TOKEN)
        if resident is not None and y is resident:   # read-only, built by measurements()
            return _RESIDENT_TOKEN, False
        bits = y.view(np.uint64 if y.dtype.itemsize == 8 else np.uint32)
        for token, ref in self._y_cache.items():
            if token == _RESIDENT_TOKEN:
                if ref.shape == y.shape and np.array_equal(ref, y):
                    self._y_cache.move_to_end(token)
                    return token, False
                continue
            if ref.shape == bits.shape and np.array_equal(ref, bits):
                self._y_cache.move_to_end(token)
                return token, False
        return self._register(y), True

    def _register(self, y: np.ndarray) -> int:
        token = self._next_token
        self._next_token += 1
        self._y_cache[token] = y.view(np.uint64 if y.dtype.itemsize == 8 else np.uint32).copy()
        self._evict()
        return token

    def _evict(self) -> None:
        """Drop the oldest cached y beyond ``y_cache_size`` (never the resident one)."""
        extra = _RESIDENT_TOKEN in self._y_cache
        while len(self._y_cache) > self._y_cache_size + extra:
            oldest = next(t for t in self._y_cache if t != _RESIDENT_TOKEN)
            del self._y_cache[oldest]

    def _y_slice(self, token: int, sh: _Shard) -> np.ndarray:
        a, b = sh.rows
        if token == _RESIDENT_TOKEN and token not in self._y_cache:
            # remote_measurements: the client holds no copy, and none is needed (a recipe
            # rebuilds its shard with its measurements); a shard that still lacks them
            # makes _run raise
            return None
        return self._y_cache[token][a:b].view(self.dtype)   # resident: already float

    # ================================================================ remote calls
    def _run(self, method: str, make_args: Callable[[_Shard, bool], tuple],
             token: int | None = None, consume: Callable[[_Shard, Any], None] | None = None,
             window: int | None = None) -> list:
        """Call ``method`` on every shard; results in shard order.

        ``make_args(shard, with_y)`` gives the call's arguments (with_y: the shard lacks
        the measurements of ``token``, include its slice). Lost shards are rebuilt and
        called again; a shard that does not answer by the deadline raises.

        ``window``: at most this many calls outstanding (started in shard order, the next
        one when the oldest has been consumed); None or 0: all at once. ``consume(shard,
        result)``, when given, receives each result in shard order as it is taken (and
        nothing is kept: the returned list holds None), so with a window the client holds
        at most ``window`` results at a time.
        """
        if self._closed:
            raise RuntimeError("this ShardedOperator was closed")
        deadline = _deadline(self.timeout)
        # solve(..., n_threads=k) scopes the thread count in THIS process
        # (_threads.thread_limit); forward it so the shards' kernels honour it too
        scoped = _CONTEXT_N_THREADS.get() if method != "set_n_threads" else None

        def start(sh, args):
            if scoped is None:
                return _call(sh.actor, method, args)
            return _call(sh.actor, "scoped", (scoped, method, *args))

        shards = self._shards
        window = len(shards) if not window else min(int(window), len(shards))
        pending = {sh.index: start(sh, make_args(sh, False)) for sh in shards[:window]}
        results: list = [None] * len(shards)
        for i, sh in enumerate(shards):
            if sh.index not in pending:        # a window slot freed earlier than planned
                pending[sh.index] = start(sh, make_args(sh, False))
            rebuilds = 0   # per shard: one worker loss costs each of its shards one rebuild
            resent = 0     # measurements re-sent after a "missing" answer
            while True:
                try:
                    res = pending[sh.index].result(timeout=_remaining(deadline))
                except BaseException as exc:
                    if _is_timeout(exc):
                        raise ShardTimeoutError(
                            f"shard {sh.index} (rows {sh.rows[0]}..{sh.rows[1] - 1}, worker "
                            f"{sh.address}) did not answer '{method}' within "
                            f"timeout={self.timeout} s; the worker may be overloaded, paused "
                            "for memory or hung (raise timeout= for slow shards)",
                            **self._error_context(sh)) from exc
                    if not self._is_lost(sh, exc):
                        raise
                    rebuilds += 1
                    if rebuilds > self.max_recoveries:
                        raise ShardLostError(
                            f"shard {sh.index} was lost {rebuilds} times in one call "
                            f"(max_recoveries={self.max_recoveries}); last error: {exc!r}. "
                            "Workers keep dying: check their logs and memory limits "
                            "(a shard too large for its worker is killed again on every "
                            "rebuild), or raise max_recoveries",
                            **self._error_context(sh)) from exc
                    self._rebuild(sh, exc)
                    deadline = _deadline(self.timeout)  # a fresh timeout for the retry
                    pending[sh.index] = start(sh, make_args(sh, True))
                    continue
                if isinstance(res, str) and res == _MISSING_MEASUREMENTS:
                    resent += 1
                    if resent > 1:
                        raise RuntimeError(
                            f"shard {sh.index} lacks the measurements of this call even "
                            "after they were sent (its resident measurements are gone "
                            "and the client holds no copy: remote_measurements)")
                    pending[sh.index] = start(sh, make_args(sh, True))
                    continue
                del pending[sh.index]
                if consume is None:
                    results[sh.index] = res
                else:
                    consume(sh, res)
                del res
                break
            nxt = i + window
            if nxt < len(shards) and shards[nxt].index not in pending:
                pending[shards[nxt].index] = start(shards[nxt], make_args(shards[nxt], False))
        return results

    def _is_lost(self, sh: _Shard, exc: BaseException) -> bool:
        if isinstance(exc, OSError):  # includes CommClosedError: the connection dropped
            return True
        if isinstance(exc, RuntimeError) and "Actor was lost" in str(exc):
            return True
        return sh.future is not None and sh.future.status in ("error", "lost", "cancelled")

    def _error_context(self, sh: _Shard) -> dict:
        return {"shard": sh.index, "worker": sh.address, "last_factors": self._last_factors,
                "n_calls": self.n_calls}

    def _rebuild(self, sh: _Shard, exc: BaseException) -> None:
        """Rebuild a lost shard from its recipe on a live worker (or raise)."""
        lost_address = sh.address
        t_start = time.perf_counter()
        deadline = _deadline(self.build_timeout)
        if not sh.recoverable:
            raise ShardLostError(
                f"shard {sh.index} (rows {sh.rows[0]}..{sh.rows[1] - 1}) was lost with worker "
                f"{lost_address} ({exc!r}); it was sent from the client (from_operator with "
                "keep_source=False) and cannot be rebuilt. Use keep_source=True, or build "
                "shards on the workers (gaussian, from_files, from_builders) so Dask workers "
                "can regenerate them", **self._error_context(sh)) from exc
        try:
            self._client.wait_for_workers(1, timeout=_remaining(deadline))
            workers = [a for a in self._workers() if a != lost_address]
        except BaseException as wexc:  # noqa: BLE001 - any failure means: no worker
            raise ShardLostError(
                f"shard {sh.index} was lost with worker {lost_address} ({exc!r}) and no live "
                f"worker is available to rebuild it ({wexc!r}); add workers to the cluster "
                "(or raise build_timeout= to wait longer for them)",
                **self._error_context(sh)) from exc
        if sh.future is not None:
            sh.future.release()
        target = self._rebuild_target(sh, lost_address, workers, deadline)
        future = self._submit(sh, target, loose=True)
        self._finish(sh, future, deadline)
        self.recoveries.append({"shard": sh.index, "lost_worker": lost_address,
                                "new_worker": sh.address, "error": repr(exc),
                                "n_calls": self.n_calls,
                                # time.perf_counter() when the rebuild began and ended
                                "started": t_start, "finished": time.perf_counter()})
        warnings.warn(f"shard {sh.index} was lost with worker {lost_address} ({exc!r}); "
                      f"rebuilt it from its recipe on {sh.address}",
                      ShardRecoveredWarning, stacklevel=4)

    def _rebuild_target(self, sh: _Shard, lost_address, workers, deadline,
                        poll: float = 0.5):
        """The live worker to rebuild ``sh`` on: the one with the fewest shards among
        those whose memory headroom (memory_limit x pause fraction - the process memory
        the scheduler last saw) holds the shard. When none does (the survivors are full,
        e.g. a nanny is still restarting the lost worker), wait for one until
        ``deadline`` or 60 s (a replacement worker appears with empty memory), then fall back to
        the least loaded. Placing a shard on a full survivor would get that worker killed
        by its memory limit too (measured at 1e8 observations: a second worker lost)."""
        frac = _memory_fraction()
        need = sh.nbytes or 0
        wait_until = time.monotonic() + 60.0        # a nanny restart takes seconds
        if deadline is not None:
            wait_until = min(wait_until, deadline)
        while True:
            info = self._client.sync(self._client.scheduler.identity, n_workers=-1)
            live = {a: w for a, w in info.get("workers", {}).items() if a != lost_address}
            load = {a: 0 for a in live}
            for other in self._shards:
                if other is not sh and other.address in load:
                    load[other.address] += 1

            def headroom(a, live=live):
                w = live[a]
                limit = w.get("memory_limit") or 0
                used = (w.get("metrics") or {}).get("memory") or 0
                return float("inf") if not limit else frac * limit - used

            fits = [a for a in live if headroom(a) >= need]
            if fits:
                return min(fits, key=lambda a: (load[a], -headroom(a), a))
            if time.monotonic() + poll >= wait_until:
                break
            time.sleep(poll)
        if not live:
            live = {a: None for a in workers}
            load = {a: 0 for a in workers}
        return min(load, key=lambda a: (load[a], a)) if load else None

    # ===================================================================== kernels
    def _residual_gradient_into(self, F, G, y, z, SG, StF):
        token, new = self._token(y)
        G_send = None if G is F else G
        with_y = new

        keep = self.residual != "client"
        send_keep = {"client": False, "shards": True, "recompute": "recompute"}[self.residual]

        def args(sh, missing):
            y_s = self._y_slice(token, sh) if (with_y or missing) else None
            if sh.row_block is None or G_send is None:   # G = F: the shard needs all of F
                return (F, G_send, token, y_s, send_keep)
            # the shard reads only its rows of F and answers only its rows of S G
            ra, rb = sh.row_block
            return (F[ra:rb], G_send, token, y_s, send_keep, sh.row_block)

        self._kept_z = None
        total = [0.0]

        def add(sh, reply):
            loss_s, z_s, SG_s, StF_s = reply
            if not keep:
                a, b = sh.rows
                z[a:b] = z_s
            if sh.row_block is not None and G_send is not None:
                # rows outside the block are exact zeros in the full product: adding
                # them would change nothing, so the block is added on its own
                ra, rb = sh.row_block
                if sh.index == 0:
                    SG[...] = 0
                SG[ra:rb] += SG_s
            elif sh.index == 0:
                SG[...] = SG_s
            else:
                SG[...] += SG_s
            if sh.index == 0:
                StF[...] = StF_s
            else:
                StF[...] += StF_s
            total[0] += loss_s

        self._run("residual_gradient", args, consume=add, window=self._window())
        loss = total[0]
        if keep:
            z[:1] = np.nan                      # marker: z lives on the shards
            self._kept_z = (z.__array_interface__["data"][0], z.shape[0], token)
        self.n_calls += 1
        self._last_factors = (F.copy(), None if G is F else G.copy())
        return loss

    def _adjoint_products_into(self, w, F, G, SG, StF):
        G_send = None if G is F else G

        def add(sh, reply):
            SG_s, StF_s = reply
            if sh.index == 0:
                SG[...] = SG_s
                StF[...] = StF_s
            else:
                SG[...] += SG_s
                StF[...] += StF_s

        self._run("adjoint_products",
                  lambda sh, missing: (w[sh.rows[0]:sh.rows[1]], F, G_send),
                  consume=add, window=self._window())

    def _window(self) -> int:
        """Outstanding calls of the (n1 + n2) k-reply methods: ``in_flight``, or two per
        worker holding shards."""
        if self.in_flight is not None:
            return self.in_flight
        return 2 * len({sh.address for sh in self._shards})

    def _line_search_products(self, F, G, D_F, D_G, z):
        # the five products are sums over the measurements, so over the shards: each
        # shard gets its slice of z and the four factors and answers five floats (one
        # round trip; u and v never travel), summed here in shard order
        G_send = None if G is F else G
        same = D_G is D_F
        if self.residual != "client":
            kept = self._kept_z
            if kept is None or kept[:2] != (z.__array_interface__["data"][0], z.shape[0]):
                raise ValueError(
                    "residual='shards': the shards hold only the residual of the last "
                    "residual_gradient call, and this z is not its output buffer; pass that "
                    "buffer (solve does) or build the operator with residual='client'")
            token = kept[2]
            # a shard rebuilt since then has no kept z_s: it recomputes it from F, G and
            # its measurements (sent along only to a rebuilt shard that lacks them)
            drop = self.residual == "recompute"
            results = self._run("line_search_products", lambda sh, missing: (
                None, F, G_send, D_F, None if same else D_G, same, token,
                self._y_slice(token, sh) if missing else None, drop))
        else:
            results = self._run("line_search_products", lambda sh, missing: (
                z[sh.rows[0]:sh.rows[1]], F, G_send, D_F, None if same else D_G, same))
        total = [0.0] * 5
        for part in results:
            total = [a + float(b) for a, b in zip(total, part)]
        return tuple(total)

    def forward_factored(self, F, G=None) -> np.ndarray:
        """A(F G^T) computed on the shards (G = F if omitted, square only).

        The result is also kept on the shards as measurements, so solving with
        ``y = op.forward_factored(L, R)`` sends no y to the workers.
        """
        F, G = self._check_factors(F, G)
        out = np.empty(self.m, dtype=self.dtype)
        token = self._next_token  # reserve; registered once the values are known
        self._next_token += 1
        G_send = None if G is F else G
        parts = self._run("forward_factored", lambda sh, missing: (F, G_send, token))
        for sh, part in zip(self._shards, parts):
            out[sh.rows[0]:sh.rows[1]] = part
        self._y_cache[token] = out.view(np.uint64 if out.dtype.itemsize == 8
                                        else np.uint32).copy()
        self._evict()
        return out

    def _forward_factored_into(self, F, G, out):
        G_send = None if G is F else G
        parts = self._run("forward_factored", lambda sh, missing: (F, G_send, None))
        for sh, part in zip(self._shards, parts):
            out[sh.rows[0]:sh.rows[1]] = part

    def _forward_into(self, M, out):
        parts = self._run("forward", lambda sh, missing: (M,))
        for sh, part in zip(self._shards, parts):
            out[sh.rows[0]:sh.rows[1]] = part

    def _adjoint_dense(self, z):
        parts = self._run("adjoint", lambda sh, missing: (z[sh.rows[0]:sh.rows[1]],))
        S = np.array(parts[0], dtype=self.dtype, copy=True)
        for part in parts[1:]:
            S += part
        return S

    def spectral_operator(self, y) -> LinearOperator:
        r"""An estimate of M from y = A(M) as a LinearOperator, for spectral initialization.

        Every product is computed on the shards and combined in shard order: shards whose
        kind estimates M by the plain adjoint (dense operators) add up to A^T(y) exactly;
        shards whose kind normalizes its estimate (an average over its rows, e.g. entries:
        A_s^T(y_s) / p_s) are averaged with weights m_s / m, which for entries is exactly
        the single-process estimate and for rank-one projections averages per-shard
        unbiased estimates (equal up to the per-shard moment estimates). One round trip
        per matvec/matmat; nothing n1 x n2 is formed on the client.
        """
        y = self._check_y(y, "y")
        token, _ = self._token(y)
        weights = [sh.info["m"] / self.m if sh.info.get("spectral_average") else 1.0
                   for sh in self._shards]
        n1, n2 = self.shape
        dtype = self.dtype

        def product(X, transpose):
            X = np.ascontiguousarray(X, dtype=dtype)
            vec = X.ndim == 1
            X2 = X.reshape(-1, 1) if vec else X
            parts = self._run("spectral_product", lambda sh, missing: (
                token, X2, transpose, self._y_slice(token, sh) if missing else None))
            out = np.zeros(((n2 if transpose else n1), X2.shape[1]), dtype)
            for w, part in zip(weights, parts):
                out += part if w == 1.0 else dtype.type(w) * part
            return out.ravel() if vec else out

        return LinearOperator((n1, n2), dtype=dtype,
                              matvec=lambda v: product(v, False),
                              rmatvec=lambda u: product(u, True),
                              matmat=lambda X: product(X, False),
                              rmatmat=lambda U: product(U, True))

    # ================================================================== utilities
    def memory_usage(self) -> list[dict]:
        """Per shard: worker address and pid, the worker process's resident and peak
        resident bytes (``rss``, ``peak_rss``), its ``memory_limit`` and the shard's bytes."""
        return self._run("memory", lambda sh, missing: ())

    def fetch_shards(self) -> list[MeasurementOperator]:
        """Copy every shard's operator to the client (debugging and tests; needs the
        whole operator's memory on the client)."""
        return self._run("operator", lambda sh, missing: ())

    def close(self) -> None:
        """Release the shards (their workers free the memory). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for sh in self._shards:
            if sh.future is not None:
                try:
                    sh.future.release()
                except Exception:  # noqa: BLE001, S110 - client already closed
                    pass
            sh.actor = sh.future = None

    def __enter__(self) -> ShardedOperator:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RemoteMeasurements:
    """The resident measurements of a :class:`ShardedOperator`'s shards, named on the
    client without being held there (:meth:`ShardedOperator.remote_measurements`).

    Stands for y in :func:`lowrank_core.solve`, ``residual_gradient`` and
    ``spectral_operator`` of its own operator: those send the shards the token of their
    resident measurements and nothing of size m exists on the client. ``shape``,
    ``dtype``, ``size`` and ``len`` describe y; :meth:`norm` is ||y||_2 summed on the
    shards (float64 partial sums of squares added in shard order, cached). It is not an
    array: ``np.asarray`` raises (copy y with :meth:`ShardedOperator.measurements`).
    """

    ndim = 1
    #: recognised by :func:`lowrank_core.solve` without importing Dask
    _lowrank_remote_measurements = True

    def __init__(self, operator: ShardedOperator):
        self.operator = operator
        self.shape = (operator.m,)
        self.size = operator.m
        self.dtype = operator.dtype
        self._norm = None

    def __len__(self) -> int:
        return self.size

    def __array__(self, *args, **kwargs):
        raise TypeError("RemoteMeasurements live on the shards; copy them to the client "
                        "with ShardedOperator.measurements() (m numbers)")

    def norm(self) -> float:
        """||y||_2, from each shard's float64 sum of squares (one round trip, cached)."""
        if self._norm is None:
            parts = self.operator._run("resident_sq_norm", lambda sh, missing: ())
            total = 0.0
            for part in parts:
                total += float(part)
            self._norm = math.sqrt(total)
        return self._norm

    def __repr__(self) -> str:
        return (f"RemoteMeasurements(m={self.size}, dtype={self.dtype}, "
                f"n_shards={self.operator.n_shards})")


class _FailedCall:
    """Stands in for the future of a call that could not even be sent."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def result(self, timeout=None):
        raise self.exc


def _call(actor, method: str, args: tuple):
    """Start ``actor.method(*args)``; a proxy of a lost actor raises here already."""
    try:
        return getattr(actor, method)(*args)
    except Exception as exc:  # noqa: BLE001 - re-raised by _run, classified there
        return _FailedCall(exc)


def _deadline(timeout):
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline):
    return None if deadline is None else max(deadline - time.monotonic(), 1e-3)


def _seed_entropy(seed) -> int:
    """An integer that reproduces ``seed``'s draws on any worker (None: fresh entropy)."""
    if isinstance(seed, (np.random.SeedSequence, np.random.Generator)):
        ss = seed if isinstance(seed, np.random.SeedSequence) else None
        words = (ss.generate_state(4, np.uint32) if ss is not None
                 else seed.integers(0, 2**32, size=4, dtype=np.uint64))
        return int.from_bytes(np.asarray(words, np.uint32).tobytes(), "little")
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    check_random_state(seed)  # validates the type
    return int(seed)
