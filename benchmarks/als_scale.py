"""ALS at scale on a from_entries blocked EntryOperator: the tile path (ALS option
``layout="blocked"``, src/_als_blocked.pyx.tp) against the row path (``layout="rows"``,
src/_als.pyx ``solve_rows``), in one run.

    python benchmarks/als_scale.py --n 1e6 --nobs 1e7 --k 10 --threads 2
    flock /work/notes/bigmem.lock python benchmarks/als_scale.py --n 1e6 --nobs 1e8
    python benchmarks/als_scale.py --n 1e6 --nobs 1e8 --memory rows     # fresh process
    python benchmarks/als_scale.py --n 1e6 --nobs 1e8 --memory blocked  # each

The observations are drawn uniformly (repeats allowed) in random order (int32 rows and
columns, float64 values), as scale.py draws them, and handed to
``EntryOperator.from_entries(..., layout="blocked", k=k)``; both paths run on that one
operator. Reported: the setup of each path (the row path: the operator's rows and cols,
which build its row layout from the tiles, and the row and column groupings; the tile
path: the transposed tiles), then the seconds of one ALS iteration (the F half-step then
the G half-step, the same ridge), median of alternating runs, wall and CPU (all threads),
the load average, and the largest difference between the two paths' factors.
``--memory PATH`` instead runs, in this process, the build, drops the user's arrays,
resets the peak RSS (VmHWM) and runs ``solve(op, y, k, method="als", max_iter=1,
layout=PATH)``: the peak of one ALS iteration including the problem.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import _draw, _status_gib, reset_peak_rss  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def build(n: int, nobs: int, k: int, threads: int, seed: int):
    import lowrank_core as lc
    rng, rows, cols, vals = _draw(n, nobs, seed)
    c0, t0 = time.process_time(), time.perf_counter()
    op, y = lc.EntryOperator.from_entries(rows, cols, vals, (n, n), k=k, layout="blocked",
                                          n_threads=threads)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    del rows, cols, vals          # the user's arrays dropped (as in scale.py --memory)
    F = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(y.dtype)
    G = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(y.dtype)
    return op, y, F, G, wall, cpu


def run(n: int, nobs: int, k: int, threads: int, repeats: int, seed: int,
        lam: float, subs=()) -> dict:
    from lowrank_core.methods.als import RowSolves, TileSolves, _index_type
    op, y, F, G, bw, bc = build(n, nobs, k, threads, seed)
    out = {"n": n, "nobs": nobs, "k": k, "threads": threads, "load": [_load()],
           "build": (bw, bc), "tile_shape": op._blocked["shape"]}
    rcond = 10.0 * k * float(np.finfo(y.dtype).eps)
    scale = float(op.scale)

    def setup_rows():
        it = _index_type(n, n, op.m)
        rows = np.asarray(op.rows).astype(it, copy=False)
        cols = np.asarray(op.cols).astype(it, copy=False)
        return (RowSolves(rows, cols, n, it, k, y.dtype, threads),
                RowSolves(cols, rows, n, it, k, y.dtype, threads))

    (rs_f, rs_g), w, c = _timed(setup_rows)
    out["setup rows"] = (w, c)
    tiles, w, c = _timed(lambda: TileSolves(op, op._blocked, y, k, y.dtype, threads))
    out["setup blocked"] = (w, c)
    out["tile_bytes"] = tiles.nbytes
    out["sub_rows"] = tiles.by_row.sub
    halves = {"rows": (rs_f, rs_g), "blocked": (tiles.by_row, tiles.by_col)}
    for sub in subs:       # the same tiles, other row passes (a smaller workspace each)
        t2 = TileSolves(op, op._blocked, y, k, y.dtype, threads, sub_rows=sub)
        halves[f"blocked, {t2.by_row.sub}-row passes"] = (t2.by_row, t2.by_col)
    res = {name: [np.empty_like(F), np.empty_like(G)] for name in halves}
    sing = {}

    def iteration(name):
        Fn, Gn = res[name]
        a, b = halves[name]
        s = a.solve(y, G, Fn, scale, lam, rcond)
        s += b.solve(y, Fn, Gn, scale, lam, rcond)
        sing[name] = s

    times = {name: [] for name in halves}
    out["paths"] = list(halves)
    for _ in range(repeats):
        for name in halves:
            _, w, c = _timed(lambda name=name: iteration(name))
            times[name].append((w, c))
            out["load"].append(_load())
            print(f"  {name}: {w:.2f} s wall, {c:.2f} s CPU (load {out['load'][-1]})",
                  file=sys.stderr, flush=True)
    for name in times:
        out[name] = (statistics.median(t[0] for t in times[name]),
                     statistics.median(t[1] for t in times[name]))
        out[name + " all"] = times[name]
    out["singular"] = dict(sing)
    out["max rel diff F"] = float(np.abs(res["rows"][0] - res["blocked"][0]).max()
                                  / np.abs(res["rows"][0]).max())
    out["max rel diff G"] = float(np.abs(res["rows"][1] - res["blocked"][1]).max()
                                  / np.abs(res["rows"][1]).max())
    out["peak_rss_gib"] = _status_gib("VmHWM")
    return out


def report(r: dict) -> str:
    lines = [f"ALS iteration, n1 = n2 = {r['n']:,}, |Omega| = {r['nobs']:,}, k = {r['k']}, "
             f"{r['threads']} threads, tiles {r['tile_shape']}",
             f"from_entries blocked build: {r['build'][0]:.1f} s wall, "
             f"{r['build'][1]:.1f} s CPU",
             f"setup, row path (rows, cols, two groupings): {r['setup rows'][0]:.1f} s wall, "
             f"{r['setup rows'][1]:.1f} s CPU",
             f"setup, tile path (transposed tiles): {r['setup blocked'][0]:.1f} s wall, "
             f"{r['setup blocked'][1]:.1f} s CPU; it holds {r['tile_bytes'] / 2**20:.0f} MiB "
             f"(default row passes of {r['sub_rows']} rows)",
             "| path | wall s / iteration | CPU s / iteration | all (wall, CPU) |",
             "|---|---|---|---|"]
    for name in r["paths"]:
        w, c = r[name]
        runs = ", ".join(f"({a:.2f}, {b:.2f})" for a, b in r[name + " all"])
        lines.append(f"| {name} | {w:.2f} | {c:.2f} | {runs} |")
    lines.append(f"ratio rows / blocked: {r['rows'][0] / r['blocked'][0]:.2f}x wall, "
                 f"{r['rows'][1] / r['blocked'][1]:.2f}x CPU")
    lines.append(f"singular rows: {r['singular']}; max relative difference F "
                 f"{r['max rel diff F']:.2e}, G {r['max rel diff G']:.2e}")
    lines.append(f"load average during the runs: {'; '.join(r['load'])}")
    lines.append(f"peak RSS of the process (both paths' structures): "
                 f"{r['peak_rss_gib']:.2f} GiB")
    return "\n".join(lines)


def memory(n: int, nobs: int, k: int, threads: int, seed: int, path: str) -> str:
    import lowrank_core as lc
    op, y, F, G, bw, bc = build(n, nobs, k, threads, seed)
    build_peak = _status_gib("VmHWM")
    before = _status_gib("VmRSS")
    op_before = op.nbytes
    reset = reset_peak_rss()
    _, w, c = _timed(lambda: lc.solve(op, y, k, method="als", init=(F, G), max_iter=1,
                                      record=False, layout=path, damping=0.1))
    peak = _status_gib("VmHWM")
    return (f"ALS memory, layout={path!r}, n1 = n2 = {n:,}, |Omega| = {nobs:,}, k = {k}, "
            f"{threads} threads: build peak {build_peak:.2f} GiB; resident before the "
            f"solve {before:.2f} GiB (operator {op_before / 2**30:.2f} GiB, y, F, G; "
            f"operator after the solve {op.nbytes / 2**30:.2f} GiB); "
            f"peak of solve(max_iter=1) {peak:.2f} GiB"
            f"{'' if reset else ' (VmHWM not reset: includes the build)'}; "
            f"{w:.1f} s wall, {c:.1f} s CPU; load {_load()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=2e5)
    ap.add_argument("--nobs", type=float, default=4e6)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--damping", type=float, default=0.1,
                    help="the ridge of both half-steps (default 0.1)")
    ap.add_argument("--sub-rows", type=int, nargs="*", default=[],
                    help="also time the tile path with these row passes (0: whole blocks)")
    ap.add_argument("--memory", choices=("rows", "blocked"), default=None,
                    help="only the peak RSS of one solve iteration on this path")
    a = ap.parse_args(argv)
    n, nobs = int(a.n), int(a.nobs)
    if a.memory:
        print(memory(n, nobs, a.k, a.threads, a.seed, a.memory))
    else:
        print(report(run(n, nobs, a.k, a.threads, a.repeats, a.seed, a.damping,
                         a.sub_rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
