"""The shard actor: one row block of the operator and its measurements on a worker.

Built by a Dask task from a recipe (:mod:`.recipes`); the client
(:class:`~lowrank_core.distributed.ShardedOperator`) calls its methods directly each
iteration. Arguments and results are small: factors, k-column products, the shard's
residuals.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict

import numpy as np

from ..operators import MeasurementOperator, available_memory
from ..operators._base import _format_bytes
from .recipes import _npy_shard, _npy_shard_nbytes, _spectral_is_average

#: Returned by a shard asked for measurements it does not hold (the client then sends them).
_MISSING_MEASUREMENTS = "__lowrank_core_missing_measurements__"

#: Token of measurements a recipe built with its shard (kept on the worker, never evicted).
_RESIDENT_TOKEN = -1


def _memory_fraction() -> float:
    """Fraction of a worker's memory limit a shard may use: Dask's pause threshold
    (a paused worker runs nothing, so a solve would stall), else terminate, else 1."""
    import dask

    for name in ("pause", "terminate"):
        frac = dask.config.get(f"distributed.worker.memory.{name}", default=None)
        if frac:
            return float(frac)
    return 1.0


def _shard_too_large_message(index, nbytes, address, limit, frac, in_use) -> str:
    budget = frac * limit - in_use
    need = math.ceil(nbytes / max(budget, 1.0)) if budget > 0 else float("inf")
    return (f"shard {index} needs about {nbytes:,} bytes ({_format_bytes(nbytes)}) but worker "
            f"{address} may use {_format_bytes(max(budget, 0))} (memory_limit "
            f"{_format_bytes(limit)} x pause fraction {frac:g}"
            + (f" - {_format_bytes(in_use)} already in use" if in_use else "")
            + f"); split the measurements into about {need}x more shards, add workers, "
            "give workers more memory or use float32")


class _ShardActor:
    """One shard on a worker (a Dask actor): its operator and its measurement slices.

    Built by a Dask task from a recipe; the client talks to it directly each iteration.
    Method arguments and results are small: factors, k-column products, the shard's
    residuals.
    """

    def __init__(self, index: int, n_threads, nbytes, build, *args):
        from distributed import get_worker

        worker = get_worker()
        self.index = index
        self.address = worker.address
        if nbytes is None and build is _npy_shard:
            nbytes = _npy_shard_nbytes(args[0], args[1], args[3])
        if nbytes:
            self._check_memory(worker, int(nbytes))
        built = build(*args)
        resident = None
        if isinstance(built, tuple):   # (operator, y): measurements made with the shard
            built, resident = built
        op = built
        if not isinstance(op, MeasurementOperator):
            raise TypeError(f"shard {index}: the builder returned {type(op).__name__}, "
                            "not a lowrank_core MeasurementOperator")
        op.n_threads = worker.state.nthreads if n_threads is None else n_threads
        self.op = op
        self.measurements: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_size = 4
        self.resident = resident is not None
        if resident is not None:
            if resident.shape != (op.m,) or resident.dtype != op.dtype:
                raise TypeError(f"shard {index}: the recipe's measurements have shape "
                                f"{resident.shape} and dtype {resident.dtype}, expected "
                                f"({op.m},) {op.dtype}")
            self.measurements[_RESIDENT_TOKEN] = resident
        #: per kernel method: [calls, wall seconds, thread CPU seconds]
        self.stats: dict[str, list] = {}

    def _check_memory(self, worker, nbytes: int) -> None:
        import psutil

        limit = worker.memory_manager.memory_limit
        in_use = psutil.Process().memory_info().rss
        if limit:
            frac = _memory_fraction()
            if nbytes > frac * limit - in_use:
                raise MemoryError(_shard_too_large_message(self.index, nbytes, self.address,
                                                           limit, frac, in_use))
        else:
            avail = available_memory()
            if avail is not None and nbytes > avail:
                raise MemoryError(
                    f"shard {self.index} needs about {_format_bytes(nbytes)} but worker "
                    f"{self.address} has only {_format_bytes(avail)} available")

    # ------------------------------------------------------------------ queries
    def info(self) -> dict:
        op = self.op
        return {"m": op.m, "shape": op.shape, "dtype": op.dtype.str,
                "symmetric": bool(op.symmetric), "nbytes": int(op.nbytes),
                "kind": type(op).__name__, "address": self.address, "pid": os.getpid(),
                "n_threads": op.n_threads, "spectral_average": _spectral_is_average(op),
                "resident": self.resident}

    def kernel_stats(self, reset: bool = False) -> dict:
        """Per kernel method: calls, wall and thread-CPU seconds spent inside it on this
        worker since the last reset (communication and (de)serialization excluded)."""
        out = {k: tuple(v) for k, v in self.stats.items()}
        if reset:
            self.stats = {}
        return out

    def resident_measurements(self):
        """The measurements the recipe built with the shard (None if it built none)."""
        return self.measurements.get(_RESIDENT_TOKEN)

    def _timed(self, name, fn, *args):
        w0, c0 = time.perf_counter(), time.thread_time()
        out = fn(*args)
        rec = self.stats.setdefault(name, [0, 0.0, 0.0])
        rec[0] += 1
        rec[1] += time.perf_counter() - w0
        rec[2] += time.thread_time() - c0
        return out

    def memory(self) -> dict:
        import resource

        import psutil
        from distributed import get_worker

        return {"shard": self.index, "address": self.address, "pid": os.getpid(),
                "rss": psutil.Process().memory_info().rss,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "memory_limit": get_worker().memory_manager.memory_limit,
                "shard_nbytes": int(self.op.nbytes),
                # threads a kernel call made now (in this call's scope) would use
                "n_threads": int(self.op.n_threads)}

    def operator(self) -> MeasurementOperator:
        return self.op

    def scoped(self, n_threads: int, method: str, *args):
        """``method(*args)`` with the kernels on ``n_threads`` threads (the client's
        scoped count, e.g. of ``solve(n_threads=...)``); the shard's setting is kept."""
        from .._threads import thread_limit

        with thread_limit(n_threads):
            return getattr(self, method)(*args)

    def set_n_threads(self, n_threads) -> int:
        """Set the shard's kernel threads (None: the worker's Dask thread count)."""
        from distributed import get_worker

        self.op.n_threads = get_worker().state.nthreads if n_threads is None else n_threads
        return self.op.n_threads

    # ------------------------------------------------------------- measurements
    def _measurements(self, token, y):
        if y is not None:
            self.measurements[token] = np.ascontiguousarray(y)
            while len(self.measurements) > self.cache_size + self.resident:
                oldest = next(t for t in self.measurements if t != _RESIDENT_TOKEN)
                del self.measurements[oldest]
        y = self.measurements.get(token)
        if y is not None:
            self.measurements.move_to_end(token)
        return y

    # ------------------------------------------------------------------ kernels
    def resident_sq_norm(self) -> float:
        """||y_s||^2 of the resident measurements, accumulated in float64."""
        y = self.measurements[_RESIDENT_TOKEN]
        total = 0.0
        for a in range(0, y.shape[0], 1 << 20):
            part = y[a:a + (1 << 20)].astype(np.float64)
            total += float(np.dot(part, part))
        return total

    def residual_gradient(self, F, G, token, y=None, keep=False, row_block=None):
        """(0.5 ||z_s||^2, z_s, A_s^T(z_s) G, A_s^T(z_s)^T F) with z_s = A_s(F G^T) - y_s;
        with ``keep`` z_s stays here (for the line search) and None is sent instead;
        with ``keep="recompute"`` None is sent and z_s is not kept either. With
        ``row_block`` = (start, stop), the shard's measurements touch only those matrix
        rows: F is given as F[start:stop] (placed into zeros) and the first product is
        answered as its rows start:stop (the others are zero)."""
        drop = keep == "recompute"
        keep = bool(keep) and not drop
        y = self._measurements(token, y)
        if y is None:
            return _MISSING_MEASUREMENTS
        op = self.op
        if row_block is not None:
            ra, rb = row_block
            F_block = F
            F = np.zeros((op.shape[0], F_block.shape[1]), F_block.dtype)
            F[ra:rb] = F_block
        G = F if G is None else G
        k = F.shape[1]
        z = getattr(self, "_z", None) if keep else None
        if z is None or z.shape != (op.m,) or z.dtype != op.dtype:
            z = np.empty(op.m, op.dtype)
        self._z = z if keep else None
        SG = np.empty((op.shape[0], k), op.dtype)
        StF = np.empty((op.shape[1], k), op.dtype)
        loss = self._timed("residual_gradient", op._residual_gradient_into,
                           F, G, y, z, SG, StF)
        if row_block is not None:
            SG = SG[row_block[0]:row_block[1]]
        return float(loss), (None if (keep or drop) else z), SG, StF

    def adjoint_products(self, w, F, G):
        """(A_s^T(w_s) G, A_s^T(w_s)^T F) for this shard's slice w_s of the weights."""
        G = F if G is None else G
        op = self.op
        k = F.shape[1]
        SG = np.empty((op.shape[0], k), op.dtype)
        StF = np.empty((op.shape[1], k), op.dtype)
        op._adjoint_products_into(np.ascontiguousarray(w), F, G, SG, StF)
        return SG, StF

    def line_search_products(self, z, F, G, D_F, D_G, same_direction, token=None, y=None,
                             drop=False):
        """This shard's five line-search products (z_s.u_s, u_s.u_s, z_s.v_s, u_s.v_s,
        v_s.v_s) for its slice z_s; G None means F, ``same_direction`` means D_G = D_F.
        z None: the residual kept by the last ``residual_gradient(keep=True)`` (recomputed
        from F, G and the measurements of ``token`` on a shard rebuilt since, or always
        with ``drop``, which also forgets it afterwards)."""
        G = F if G is None else G
        if same_direction:
            D_G = D_F
        if z is None:
            z = getattr(self, "_z", None)
            if z is None:
                if self.residual_gradient(F, G, token, y, keep=True) == _MISSING_MEASUREMENTS:
                    return _MISSING_MEASUREMENTS
                z = self._z
        if drop:
            self._z = None
        return tuple(float(x) for x in self._timed(
            "line_search_products", self.op._line_search_products,
            F, G, D_F, D_G, np.ascontiguousarray(z)))

    def forward_factored(self, F, G, token=None):
        """A_s(F G^T); kept as measurements under ``token`` when one is given."""
        G = F if G is None else G
        out = np.empty(self.op.m, self.op.dtype)
        self.op._forward_factored_into(F, G, out)
        if token is not None:
            self._measurements(token, out.copy())
        return out

    def spectral_product(self, token, X, transpose, y=None):
        """This shard's spectral estimate of M (from its y_s) times X, or its transpose."""
        y = self._measurements(token, y)
        if y is None:
            return _MISSING_MEASUREMENTS
        cached = getattr(self, "_spectral", None)
        if cached is None or cached[0] != token:
            make = getattr(self.op, "spectral_operator", None)
            lin = make(y) if callable(make) else self.op.adjoint_operator(y)
            self._spectral = cached = (token, lin)
        lin = cached[1]
        return lin.rmatmat(X) if transpose else lin.matmat(X)

    def forward(self, M):
        out = np.empty(self.op.m, self.op.dtype)
        self.op._forward_into(M, out)
        return out

    def adjoint(self, z):
        return self.op._adjoint_dense(np.ascontiguousarray(z))
