r"""Minimal per-iteration throughput table of the dense operators against plain numpy.

``lowrank-core bench`` uses :mod:`lowrank_core.comparison` when this build has it (every
operator kind, numpy / scipy.sparse / PyTorch baselines, time to accuracy); this module is
the fallback for builds without it: one ``residual_gradient`` of the dense operators
(general and symmetric packed) in float64 and float32, beside the same computation in
numpy (``z = A @ vec(F G^T) - y``, ``S = (A.T @ z).reshape(n1, n2)``, ``S @ G``,
``S.T @ F``), checked to agree before anything is timed.
"""

from __future__ import annotations

import time

import numpy as np

from .operators import DenseOperator, SymmetricDenseOperator

__all__ = ["run_dense_benchmark"]


def _median_time(fn, repeats):
    fn()  # warm-up (workspaces, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_dense_benchmark(*, quick=False, dtypes=(np.float64, np.float32),
                        kinds=("dense", "symmetric"), k=5, repeats=7, n_threads=None,
                        out=print) -> list:
    """Time ``residual_gradient`` of the dense operators against numpy.

    Parameters
    ----------
    quick : bool
        n = 40, m = 800 instead of n = 100, m = 2500.
    dtypes : sequence of float32 / float64
    kinds : sequence of {"dense", "symmetric"}
    k : int
        Factor width.
    repeats : int
        Timed repetitions (median reported).
    n_threads : int, optional
    out : callable
        Receives the table lines.

    Returns
    -------
    list of dict
        One row per (operator, dtype): seconds per call for lowrank_core and numpy,
        the speed-up and the bytes of A streamed per second.
    """
    n, m = (40, 800) if quick else (100, 2500)
    rows = []
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        dtype = np.dtype(dtype)
        for kind in kinds:
            if kind == "dense":
                op = DenseOperator.gaussian(m, n, n, dtype=dtype, seed=1, n_threads=n_threads)
            else:
                op = SymmetricDenseOperator.gaussian(m, n, dtype=dtype, seed=1,
                                                     n_threads=n_threads)
            A = op.matrices.reshape(m, n * n)
            F = rng.standard_normal((n, k)).astype(dtype)
            G = rng.standard_normal((n, k)).astype(dtype)
            y = rng.standard_normal(m).astype(dtype)

            def ours():
                return op.residual_gradient(F, G, y)

            def reference():
                z = A @ (F @ G.T).ravel() - y
                S = (A.T @ z).reshape(n, n)
                return 0.5 * float(z @ z), z, S @ G, S.T @ F

            a, b = ours(), reference()
            tol = 2e-3 if dtype == np.float32 else 1e-8
            for x1, x2 in zip(a[2:], b[2:]):
                if np.linalg.norm(x1 - x2) > tol * max(np.linalg.norm(x2), 1e-30):
                    raise RuntimeError(f"{kind} {dtype}: lowrank_core and numpy disagree")
            t_ours = _median_time(ours, repeats)
            t_ref = _median_time(reference, repeats)
            rows.append({"operator": kind, "dtype": str(dtype), "n": n, "m": m, "k": k,
                         "seconds": t_ours, "numpy_seconds": t_ref, "speedup": t_ref / t_ours,
                         "gbytes_per_s": op.nbytes / t_ours / 1e9})
    out(f"per-iteration residual_gradient, n1=n2={n}, m={m}, k={k}, median of {repeats} "
        f"(threads requested: {op.n_threads})")
    out(f"{'operator':<12} {'dtype':<8} {'lowrank_core [ms]':>18} {'numpy [ms]':>11} "
        f"{'speed-up':>9} {'A GB/s':>8}")
    for r in rows:
        out(f"{r['operator']:<12} {r['dtype']:<8} {r['seconds'] * 1e3:>18.3f} "
            f"{r['numpy_seconds'] * 1e3:>11.3f} {r['speedup']:>9.2f} {r['gbytes_per_s']:>8.2f}")
    return rows
