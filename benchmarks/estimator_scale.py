"""MatrixCompletion at scale: the fit's training operator from ``EntryOperator.from_entries``
(observations sorted once into the kernels' streaming layout) against the constructor
(y kept in the user's order), same data, same process, alternating fits.

    OMP_NUM_THREADS=2 python benchmarks/estimator_scale.py --n 1e6 --nobs 1e7
    OMP_NUM_THREADS=2 python benchmarks/estimator_scale.py --n 1e6 --nobs 5e7 --memory

The data: n1 = n2 = ``--n``, ``--nobs`` observations drawn uniformly (repeats allowed)
in random order, values of a rank-``--rank`` matrix plus noise, handed to
``MatrixCompletion(rank, method, max_iter, tol=1e-12).fit((rows, cols, values, shape))``
(int32 indices, float64 values). Reported per method: the median wall-clock and CPU
seconds (all threads) of ``--repeats`` alternating fits of each path, their ratio, and
the largest relative difference of the two fits' predictions on 10^5 of the observed
entries. ``--memory``: each path's fit once in a fresh process, the process peak RSS
(VmHWM) before and after the fit, the data included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import _gib  # noqa: E402

PATHS = ("constructor (user order)", "from_entries")


def draw(n: int, nobs: int, rank: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, nobs, dtype=np.int32)
    cols = rng.integers(0, n, nobs, dtype=np.int32)
    U = rng.standard_normal((n, rank)) / rank ** 0.25
    V = rng.standard_normal((n, rank)) / rank ** 0.25
    values = np.einsum("ij,ij->i", U[rows], V[cols]) + 0.1 * rng.standard_normal(nobs)
    return rows, cols, values


def fit(path: str, data, n: int, rank: int, method: str, max_iter: int, threads: int):
    import lowrank_core as lc
    from lowrank_core import estimator

    rows, cols, values = data
    estimator._FIT_FROM_ENTRIES = path == "from_entries"
    try:
        return lc.MatrixCompletion(rank=rank, method=method, max_iter=max_iter, tol=1e-12,
                                   n_threads=threads, random_state=0,
                                   reg=1.0 if method == "als" else 0.0).fit(
            (rows, cols, values, (n, n)))
    finally:
        estimator._FIT_FROM_ENTRIES = True


def timing(n, nobs, rank, methods, max_iter, threads, repeats, seed) -> dict:
    data = draw(n, nobs, rank, seed)
    rows, cols = data[0], data[1]
    pick = np.random.default_rng(1).integers(0, nobs, min(nobs, 100000))
    out = {}
    for method in methods:
        wall = {p: [] for p in PATHS}
        cpu = {p: [] for p in PATHS}
        pred = {}
        for _ in range(repeats):
            for p in PATHS:
                c0, t0 = time.process_time(), time.perf_counter()
                est = fit(p, data, n, rank, method, max_iter, threads)
                wall[p].append(time.perf_counter() - t0)
                cpu[p].append(time.process_time() - c0)
                F, Gt = est.row_factors_, est.components_
                pred[p] = np.einsum("ij,ji->i", F[rows[pick]], Gt[:, cols[pick]])
                del est
        a, b = pred[PATHS[0]], pred[PATHS[1]]
        out[method] = {"wall": {p: statistics.median(v) for p, v in wall.items()},
                       "cpu": {p: statistics.median(v) for p, v in cpu.items()},
                       "prediction_rel_diff": float(np.max(np.abs(a - b))
                                                    / np.max(np.abs(a)))}
    return {"n": n, "nobs": nobs, "rank": rank, "max_iter": max_iter, "threads": threads,
            "repeats": repeats, "methods": out, "load": os.getloadavg()}


def memory_worker(path, n, nobs, rank, method, max_iter, threads, seed) -> dict:
    data = draw(n, nobs, rank, seed)
    before = _gib("VmHWM")
    t0 = time.perf_counter()
    fit(path, data, n, rank, method, max_iter, threads)
    return {"path": path, "method": method, "peak_before_fit": before,
            "peak_after_fit": _gib("VmHWM"), "fit_wall": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--nobs", type=float, default=1e7)
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=["als", "gd"])
    ap.add_argument("--max-iter", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory", action="store_true",
                    help="peak RSS of one fit per path and method, each in a fresh process")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n, nobs = int(args.n), int(args.nobs)
    if args.worker:
        print(json.dumps(memory_worker(args.worker, n, nobs, args.rank, args.methods[0],
                                       args.max_iter, args.threads, args.seed)))
        return 0
    if args.memory:
        print(f"n1 = n2 = {n:.0e}, {nobs:.3g} observations, rank {args.rank}, "
              f"max_iter {args.max_iter}, {args.threads} threads; one fresh process each\n")
        print("| method | path | peak RSS after drawing (GiB) | peak RSS of the fit (GiB) "
              "| fit wall s |\n|---|---|---:|---:|---:|")
        for method in args.methods:
            for p in PATHS:
                cmd = [sys.executable, os.path.abspath(__file__), "--n", str(n), "--nobs",
                       str(nobs), "--rank", str(args.rank), "--methods", method,
                       "--max-iter", str(args.max_iter), "--threads", str(args.threads),
                       "--seed", str(args.seed), "--worker", p]
                r = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                              check=True).stdout.strip().splitlines()[-1])
                print(f"| {method} | {p} | {r['peak_before_fit']:.2f} | "
                      f"{r['peak_after_fit']:.2f} | {r['fit_wall']:.1f} |")
        return 0
    r = timing(n, nobs, args.rank, args.methods, args.max_iter, args.threads, args.repeats,
               args.seed)
    print(f"n1 = n2 = {n:.0e}, {nobs:.3g} observations in random order, rank {r['rank']}, "
          f"max_iter {r['max_iter']}, {r['threads']} threads, median of {r['repeats']} "
          f"alternating fits; load at the end {r['load'][0]:.1f}\n")
    print("| method | path | fit wall s | fit CPU s | CPU constructor / from_entries "
          "| max rel. prediction difference |\n|---|---|---:|---:|---:|---:|")
    for method, m in r["methods"].items():
        ratio = m["cpu"][PATHS[0]] / m["cpu"][PATHS[1]]
        for p in PATHS:
            extra = (f"{ratio:.2f}x | {m['prediction_rel_diff']:.1e}"
                     if p == PATHS[1] else " | ")
            print(f"| {method} | {p} | {m['wall'][p]:.2f} | {m['cpu'][p]:.2f} | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
