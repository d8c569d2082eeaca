"""Completion at scale: the cache-blocked EntryOperator layout against the row layout
(today's kernel, kept as the reference path) and a numpy streaming read, in one run.

    python benchmarks/scale.py --scale                 # n1 = n2 = 1e6, |Omega| = 5e7, k = 10
    python benchmarks/scale.py --scale --nobs 1e8      # the issue's size (about 7 GiB RSS)
    python benchmarks/scale.py --n 2e5 --nobs 4e6      # a smoke run (seconds)

The observations are drawn uniformly (repeats allowed) and handed over in random order
(int32 rows and columns, float64 values), as interaction logs arrive. Reported: the build
time of each layout, seconds per ``residual_gradient`` (median of alternating runs) of

* ``rows``: the row layout (grouped by row; y and z reached through the permutation),
* ``blocked``: the cache-blocked layout, y read through the permutation (what the
  operator does),
* ``blocked, y permuted``: the same kernel with y permuted once into the layout's order
  (the alternative the issue asks to measure; z is still written in the user's order),
* ``numpy read``: ``rows.max(); cols.max(); y.max()``, one pass over the user's arrays
  (numpy, one thread), the memory floor the issue compares against,

their ratios, the CPU seconds (all threads; robust to waiting for a core on a loaded
machine) and observations per CPU-second, and the peak RSS (getrusage).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


def alternate(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Median wall-clock and CPU (process, all threads) seconds per named function, run
    in alternation after one warm-up each. On a loaded machine the wall-clock time
    includes waiting for a core; the CPU time does not."""
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return ({name: statistics.median(v) for name, v in wall.items()},
            {name: statistics.median(v) for name, v in cpu.items()})


def run(n: int, nobs: int, k: int, threads: int, repeats: int, seed: int,
        block_shape=None) -> dict:
    import lowrank_core as lc

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    rows = rng.integers(0, n, nobs, dtype=np.int32)
    cols = rng.integers(0, n, nobs, dtype=np.int32)
    y = rng.standard_normal(nobs)
    t_data = time.perf_counter() - t0
    rss_data = peak_rss_gib()

    t0 = time.perf_counter()
    op = lc.EntryOperator(rows, cols, (n, n), n_threads=threads, layout="blocked",
                          block_shape=block_shape)
    t_rows = time.perf_counter() - t0
    F = rng.standard_normal((n, k)) * 0.1
    G = rng.standard_normal((n, k)) * 0.1
    z = np.empty(nobs)
    SG, StF = np.empty((n, k)), np.empty((n, k))
    t0 = time.perf_counter()
    blocked = op._blocked_for(k)
    t_blocked = time.perf_counter() - t0
    shape = blocked["shape"]
    t0 = time.perf_counter()
    y_perm = np.empty(nobs)
    op_kernels = sys.modules[type(op).__module__]._blocked_kernels
    op_kernels.permute(blocked["pos"], y, y_perm, threads)
    t_perm = time.perf_counter() - t0

    def rows_layout():
        op.layout = "rows"
        try:
            return op._residual_gradient_into(F, G, y, z, SG, StF)
        finally:
            op.layout = "blocked"

    def blocked_layout():
        return op._residual_gradient_into(F, G, y, z, SG, StF)

    def blocked_y_permuted():
        return op._blocked_residual_gradient(blocked, F, G, y_perm, z, SG, StF,
                                             y_blocked=True)

    def numpy_read():
        return rows.max(), cols.max(), y.max()

    # agreement before timing: the three kernels give the same loss, z and gradients
    # (z compared on every 7th entry, so that no full copy of z is held)
    outs = []
    for fn in (rows_layout, blocked_layout, blocked_y_permuted):
        loss = fn()
        outs.append((loss, z[::7].copy(), SG.copy(), StF.copy()))
    for other in outs[1:]:
        assert abs(other[0] - outs[0][0]) <= 1e-12 * outs[0][0]
        for a, b in zip(other[1:], outs[0][1:]):
            worst = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
            assert worst < 1e-12, worst
    del outs
    t, cpu = alternate({"rows": rows_layout, "blocked": blocked_layout,
                   "blocked, y permuted": blocked_y_permuted, "numpy read": numpy_read},
                  repeats)
    return {"n": n, "nobs": nobs, "k": k, "threads": op.n_threads, "times": t, "cpu": cpu,
            "t_data": t_data, "t_rows": t_rows, "t_blocked": t_blocked, "t_perm": t_perm,
            "shape": shape, "nbytes": op.nbytes, "rss_data": rss_data,
            "rss": peak_rss_gib(), "load": os.getloadavg()}


def report(r: dict) -> str:
    t = r["times"]
    read = t["numpy read"]
    lines = [f"n1 = n2 = {r['n']:.0e}, |Omega| = {r['nobs']:.3g}, k = {r['k']}, float64, "
             f"{r['threads']} threads, observations in random order; tiles "
             f"{r['shape'][0]} x {r['shape'][1]}; load average at the end "
             f"{r['load'][0]:.1f}", "",
             "| path | s per residual gradient (wall) | vs numpy read | vs rows | CPU s "
             "(all threads) | CPU vs numpy read | obs per CPU-second |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    c = r["cpu"]
    for name in ("rows", "blocked", "blocked, y permuted", "numpy read"):
        lines.append(f"| {name} | {t[name]:.3f} | {t[name] / read:.1f}x | "
                     f"{t['rows'] / t[name]:.1f}x | {c[name]:.3f} | "
                     f"{c[name] / c['numpy read']:.1f}x | {r['nobs'] / c[name]:.3g} |")
    lines += ["", "| phase | value |", "|---|---|",
              f"| draw rows, cols, y | {r['t_data']:.1f} s |",
              f"| row layout build (EntryOperator constructor) | {r['t_rows']:.1f} s |",
              f"| blocked layout build (one counting sort into tiles) | {r['t_blocked']:.1f} s |",
              f"| permute y into the blocked order (once) | {r['t_perm']:.2f} s |",
              f"| operator index memory (op.nbytes, both layouts) | "
              f"{r['nbytes'] / 2**30:.2f} GiB |",
              f"| peak RSS after drawing the problem | {r['rss_data']:.2f} GiB |",
              f"| peak RSS of the run (getrusage maxrss) | {r['rss']:.2f} GiB |"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", action="store_true",
                    help="the issue's case: n1 = n2 = 1e6, k = 10, 2 threads (|Omega| from "
                         "--nobs, default 5e7)")
    ap.add_argument("--n", type=float, default=2e5)
    ap.add_argument("--nobs", type=float, default=None)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--block-shape", type=int, nargs=2, default=None,
                    help="tile rows and columns (default: from the cache sizes)")
    args = ap.parse_args(argv)
    n = int(1e6) if args.scale else int(args.n)
    nobs = int(args.nobs if args.nobs is not None else (5e7 if args.scale else 4e6))
    print(report(run(n, nobs, args.k, args.threads, args.repeats, args.seed,
                     args.block_shape)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
