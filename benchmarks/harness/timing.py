"""Timing: alternating runs and medians, thread pinning, the machine line.

Every benchmark of the harness times its candidates in ALTERNATION (ours, reference,
ours, ...) after one warm-up each and reports medians, so drift of a shared machine's
load hits all candidates alike.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time

import numpy as np
import scipy

__all__ = ["alternate", "machine_description", "pinned_threads", "torch_or_none"]


def torch_or_none():
    """The torch module if installed, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def alternate(fns, repeats: int, warmup: bool = True) -> list[float]:
    """Median seconds of each callable, run in alternation after one warm-up each
    (``warmup=False`` when the caller has just run each once, e.g. to verify it)."""
    for fn in fns if warmup else ():
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def has_threadpoolctl() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def pinned_threads(n: int):
    """Run BLAS (through threadpoolctl, when installed) and torch with ``n`` threads."""
    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits
        stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
    except ImportError:
        pass
    torch = torch_or_none()
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with stack:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def machine_description(n_threads: int) -> str:
    """CPU model, cores, memory, library versions and BLAS of this process."""
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            mem = f", {int(fh.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    from lowrank_core import __version__
    parts = [(f"{cpu}, {os.cpu_count()} logical cores{mem}, {platform.system()} "
             f"{platform.release()}"),
             (f"Python {platform.python_version()}, lowrank_core {__version__} (OpenMP "
             f"threads used: {n_threads}), numpy {np.__version__}, scipy {scipy.__version__}")]
    torch = torch_or_none()
    parts.append(f"torch {torch.__version__}" if torch is not None else "torch not installed")
    try:
        from threadpoolctl import threadpool_info
        blas = {(i.get("internal_api"), i.get("version")) for i in threadpool_info()
                if i.get("user_api") == "blas"}
        if blas:
            parts.append("BLAS " + ", ".join(f"{a} {v}" for a, v in sorted(blas, key=str)))
    except ImportError:
        pass
    waits = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT",
                                             "KMP_BLOCKTIME", "OMP_WAIT_POLICY")
             if v in os.environ]
    if waits:
        parts.append("idle-thread policy " + " ".join(waits))
    return "; ".join(parts)
