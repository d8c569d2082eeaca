"""Completion at scale: the cache-blocked EntryOperator layout against the row layout
(today's kernel, kept as the reference path) and a numpy streaming read, in one run.

    python benchmarks/scale.py --scale                 # n1 = n2 = 1e6, |Omega| = 5e7, k = 10
    python benchmarks/scale.py --scale --nobs 1e8      # the issue's size (about 7 GiB RSS)
    python benchmarks/scale.py --scale --nobs 1e8 --memory   # peak RSS of the fast path
    python benchmarks/scale.py --n 2e5 --nobs 4e6      # a smoke run (seconds)
    python benchmarks/scale.py --scale --nobs 1e8 --fixed-step --iters 3  # step="fixed"

The observations are drawn uniformly (repeats allowed) and handed over in random order
(int32 rows and columns, float64 values), as interaction logs arrive. Reported: the build
time of each layout, seconds per ``residual_gradient`` (median of alternating runs) of

* ``rows, user order``: ``EntryOperator(rows, cols, ...)`` with the row layout (grouped
  by row; y read and z written through the permutation to the user's order): today's
  kernel, the reference path,
* ``blocked, user order``: the same operator's cache-blocked layout (y and z still at
  the user-order positions),
* ``rows, from_entries``: ``EntryOperator.from_entries(..., layout="rows")``, the
  observations sorted by row once and y returned in that order (y and z streamed),
* ``blocked, from_entries``: ``EntryOperator.from_entries(..., layout="blocked")``, the
  observations sorted into tiles once (y and z streamed, no positions stored),
* ``numpy read``: ``rows.max(); cols.max(); y.max()``, one pass over the user's arrays
  (numpy, one thread), the memory floor the issue compares against,
* ``numpy gather of G rows, tile order``: ``np.take(G, c, axis=0, out=buf)`` over the
  observations' columns in the blocked layout's order, in chunks of 65536 rows (numpy,
  one thread): the random reads any kernel must make (each observation needs its row
  of G), with nothing computed and nothing written back. The blocked kernel reads that
  row, reads and writes the observation's S^T F row, and walks F and S G,

their ratios, the CPU seconds (all threads; robust to waiting for a core on a loaded
machine) and observations per CPU-second, and the peak RSS (getrusage). ``--memory``
runs only the from_entries blocked path, in a fresh process, and reports the peak RSS of
the build and, separately (the peak reset through /proc/self/clear_refs after the user's
rows and cols are dropped), of two iterations including the problem.
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


def _status_gib(field: str) -> float | None:
    """A memory field of /proc/self/status (e.g. "VmHWM") in GiB; None where the file or
    the field does not exist (not Linux): the --memory columns then print as missing."""
    try:
        with open("/proc/self/status") as fh:
            lines = fh.readlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 2**30
    return None


def _gib(field: str) -> float:
    v = _status_gib(field)
    return float("nan") if v is None else v


class StepMemory:
    """Named steps run one after the other, each with its extra peak RSS (the peak mark
    VmHWM reset through /proc/self/clear_refs before it, VmRSS read before it), what it
    left resident, the process peak, wall and CPU seconds and the load; printed on
    stderr as they end (the report is the last stdout line)."""

    def __init__(self):
        self.steps = []

    def __call__(self, name, fn):
        reset_peak_rss()
        rss0 = _gib("VmRSS")
        c0, t0 = time.process_time(), time.perf_counter()
        res = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.steps.append({"step": name, "peak": _gib("VmHWM") - rss0,
                           "kept": _gib("VmRSS") - rss0, "total_peak": _gib("VmHWM"),
                           "wall": wall, "cpu": cpu, "load": os.getloadavg()})
        print(self.steps[-1], file=sys.stderr, flush=True)
        return res


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


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


def _timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _draw(n, nobs, seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, nobs, dtype=np.int32)
    cols = rng.integers(0, n, nobs, dtype=np.int32)
    y = rng.standard_normal(nobs)
    return rng, rows, cols, y


PATHS = ("rows, user order", "blocked, user order", "rows, from_entries",
         "blocked, from_entries", "blocked, from_entries, row blocks outermost",
         "numpy read", "numpy gather of G rows, tile order")


def tile_order_columns(op) -> np.ndarray:
    """The column of every observation of a blocked operator, in the layout's order
    (int32): tile c's columns are c * bc + (code & 0xFFFF)."""
    b = op._blocked
    tptr, code = b["tptr"], b["code"]
    bc = b["shape"][1]
    n_cb = (op.shape[1] + bc - 1) // bc
    tile = np.repeat(np.arange(tptr.shape[0] - 1, dtype=np.int64), np.diff(tptr))
    cols = (tile % n_cb).astype(np.int32)
    del tile
    cols *= np.int32(bc)
    cols += (code & 0xFFFF).astype(np.int32)
    return cols


def gather_rows(G: np.ndarray, cols: np.ndarray, chunk: int = 65536):
    """A function reading G[cols] (row gathers in the order of cols) chunk by chunk into
    one reused buffer: the random-access reference of the kernels."""
    buf = np.empty((chunk, G.shape[1]), G.dtype)

    def gather():
        for a in range(0, cols.shape[0], chunk):
            c = cols[a:a + chunk]
            np.take(G, c, axis=0, out=buf[:c.shape[0]])
        return float(buf[0, 0])
    return gather


def run(n: int, nobs: int, k: int, threads: int, repeats: int, seed: int,
        block_shape=None) -> dict:
    import lowrank_core as lc

    t0 = time.perf_counter()
    rng, rows, cols, y = _draw(n, nobs, seed)
    t_data = time.perf_counter() - t0
    rss_data = peak_rss_gib()
    build = {}

    def built(name, fn):
        out, wall, cpu = _timed(fn)
        build[name] = (wall, cpu)
        return out

    op = built("row layout (constructor)", lambda: lc.EntryOperator(
        rows, cols, (n, n), n_threads=threads, layout="blocked", block_shape=block_shape))
    blocked = built("blocked layout of it (tiles of the row layout)",
                    lambda: op._blocked_for(k))
    shape = blocked["shape"]
    op_r, y_r, order_r = built("from_entries, rows", lambda: lc.EntryOperator.from_entries(
        rows, cols, y, (n, n), n_threads=threads, layout="rows", return_order=True))
    op_b, y_b, order_b = built("from_entries, blocked", lambda: lc.EntryOperator.from_entries(
        rows, cols, y, (n, n), n_threads=threads, layout="blocked", k=k,
        block_shape=block_shape, return_order=True))
    assert op_b._blocked["shape"] == shape and op_b._cols_r is None
    F = rng.standard_normal((n, k)) * 0.1
    G = rng.standard_normal((n, k)) * 0.1
    z = np.empty(nobs)
    SG, StF = np.empty((n, k)), np.empty((n, k))

    def rows_layout():
        op.layout = "rows"
        try:
            return op._residual_gradient_into(F, G, y, z, SG, StF)
        finally:
            op.layout = "blocked"

    def blocked_layout():
        return op._residual_gradient_into(F, G, y, z, SG, StF)

    def rows_sorted():
        return op_r._residual_gradient_into(F, G, y_r, z, SG, StF)

    def blocked_sorted():
        return op_b._residual_gradient_into(F, G, y_b, z, SG, StF)

    def blocked_sorted_row_major():
        op_b._col_major = False
        try:
            return op_b._residual_gradient_into(F, G, y_b, z, SG, StF)
        finally:
            op_b._col_major = True

    def numpy_read():
        return rows.max(), cols.max(), y.max()

    # agreement before timing: the four kernels give the same loss, z (in the user's
    # order: z[order] for the sorted operators) and gradients; z compared on every 7th
    # entry, so that no full copy of z is held
    outs = []
    for fn, order in ((rows_layout, None), (blocked_layout, None), (rows_sorted, order_r),
                      (blocked_sorted, order_b), (blocked_sorted_row_major, order_b)):
        loss = fn()
        zs = z[::7].copy() if order is None else None
        outs.append((loss, zs, SG.copy(), StF.copy(), order))
    ref = outs[0]
    for loss, zs, sg, stf, _order in outs[1:]:
        assert abs(loss - ref[0]) <= 1e-12 * ref[0]
        for a, b in zip((sg, stf), ref[2:4]):
            assert float(np.max(np.abs(a - b)) / np.max(np.abs(b))) < 1e-12
        if zs is not None:
            assert float(np.max(np.abs(zs - ref[1])) / np.max(np.abs(ref[1]))) < 1e-12
    for fn, order in ((rows_sorted, order_r), (blocked_sorted, order_b)):
        fn()
        zref = np.empty(nobs)
        rows_layout()
        zref[...] = z
        fn()
        assert float(np.max(np.abs(z[::7] - zref[order[::7]]))) <= 1e-12 * float(
            np.max(np.abs(zref)))
        del zref
    del outs, order_r, order_b
    numpy_gather = gather_rows(G, tile_order_columns(op_b))
    t, cpu = alternate(dict(zip(PATHS, (rows_layout, blocked_layout, rows_sorted,
                                        blocked_sorted, blocked_sorted_row_major,
                                        numpy_read, numpy_gather))), repeats)
    return {"n": n, "nobs": nobs, "k": k, "threads": op.n_threads, "times": t, "cpu": cpu,
            "t_data": t_data, "build": build, "shape": shape,
            "nbytes": {"user order, both layouts": op.nbytes,
                       "from_entries, rows": op_r.nbytes,
                       "from_entries, blocked": op_b.nbytes},
            "rss_data": rss_data, "rss": peak_rss_gib(), "load": os.getloadavg()}


def _phase_memory(phase: str, n: int, nobs: int, k: int, threads: int, seed: int,
                  block_shape=None, repeats: int = 3) -> dict:
    """One memory phase, in this (fresh) process: RSS deltas from /proc/self/status.

    Each step resets the peak mark (VmHWM, /proc/self/clear_refs), reads VmRSS before it
    and VmHWM after it: "peak" is the step's extra peak over what was resident before
    it, "kept" what it left resident. Phases: "problem" (the user's arrays), "build"
    (from_entries, the user's arrays resident), "iteration" (the user's arrays dropped,
    y and the operator kept: one residual_gradient into preallocated outputs, one line
    search, the residual-free gradient and search where the operator has them, a
    same-run timing of those kernels (alternating, median of ``repeats``), then one
    iteration of ``solve`` with step="auto", a fixed numeric step and step="fixed").
    """
    import lowrank_core as lc

    out = {"phase": phase, "base": _gib("VmRSS")}
    step = StepMemory()
    steps = step.steps

    rng, rows, cols, values = step("draw the problem (rows, cols int32, values float64)",
                                   lambda: _draw(n, nobs, seed))
    if phase != "problem":
        op, y = step("from_entries (blocked)", lambda: lc.EntryOperator.from_entries(
            rows, cols, values, (n, n), n_threads=threads, layout="blocked", k=k,
            block_shape=block_shape))
        out.update(shape=op._blocked["shape"], nbytes=op.nbytes)
    if phase == "iteration":
        del rows, cols, values
        F = rng.standard_normal((n, k)) * 0.1
        G = rng.standard_normal((n, k)) * 0.1
        bufs = step("outputs z, SG, StF allocated", lambda: (
            np.ones(nobs), np.ones((n, k)), np.ones((n, k))))
        z = bufs[0]
        step("residual_gradient (preallocated outputs; first call)",
             lambda: op.residual_gradient(F, G, y, out=bufs))
        if repeats > 0:
            step("residual_gradient (second call)",
                 lambda: op.residual_gradient(F, G, y, out=bufs))
        step("line search products (first call)",
             lambda: op.line_search_products(z, F, G, bufs[1], bufs[2]))
        if repeats > 0:
            step("line search products (second call)",
                 lambda: op.line_search_products(z, F, G, bufs[1], bufs[2]))
        fns = {"residual_gradient (z stored)": lambda: op.residual_gradient(
                   F, G, y, out=bufs),
               "line search (z read)": lambda: op.line_search_products(
                   z, F, G, bufs[1], bufs[2])}
        if hasattr(op, "_loss_gradient_into"):
            # the residual-free kernels (no z): the gradient pass and the search with z
            # recomputed from F, G and y
            D_F, D_G = bufs[1].copy(), bufs[2].copy()
            step("loss_gradient, residual-free (first call)",
                 lambda: op._loss_gradient_into(F, G, y, bufs[1], bufs[2]))
            step("line search from y, residual-free (first call)",
                 lambda: op._line_search_products_y(F, G, D_F, D_G, y))
            fns["line search (z read)"] = lambda: op.line_search_products(
                z, F, G, D_F, D_G)
            fns["loss_gradient (residual-free)"] = lambda: op._loss_gradient_into(
                F, G, y, bufs[1], bufs[2])
            fns["line search from y (residual-free)"] = \
                lambda: op._line_search_products_y(F, G, D_F, D_G, y)
        # same-run timing of the storing and the residual-free kernels (alternating,
        # median of `repeats`; CPU s over both threads); repeats 0: none
        if repeats > 0:
            wall, cpu = alternate(fns, repeats)
            out["timing"] = {"wall": wall, "cpu": cpu, "load": os.getloadavg()}
        fns = D_F = D_G = None
        del bufs, z
        # the preconditioned methods (residual-free too): one iteration, step="auto"
        for method in ("precgd", "scaledgd"):
            step(f"solve(method={method!r}, max_iter=1, init=(F, G)), step='auto'",
                 lambda method=method: lc.solve(op, y, k, method=method, init=(F, G),
                                                max_iter=1, n_threads=threads) and None)
        # one gd iteration with the exact line search (step="auto", the default), with a
        # fixed numeric step, then step="fixed" (0.3 / ||A^T(y)||_2: the spectral-norm
        # estimate first); each result dropped before the next
        step("solve(method='gd', max_iter=1, init=(F, G)), step='auto'", lambda: lc.solve(
            op, y, k, method="gd", init=(F, G), max_iter=1, n_threads=threads) and None)
        step("solve(method='gd', max_iter=1, init=(F, G)), step=1e-3", lambda: lc.solve(
            op, y, k, method="gd", init=(F, G), max_iter=1, step=1e-3,
            n_threads=threads) and None)
        step("solve(method='gd', max_iter=1, init=(F, G)), step='fixed'", lambda: lc.solve(
            op, y, k, method="gd", init=(F, G), max_iter=1, step="fixed",
            n_threads=threads) and None)
        out["row_layout_built"] = op._cols_r is not None
        out["nbytes_after"] = op.nbytes
    out.update(steps=steps, load=os.getloadavg())
    return out


def _phase_fixed_step(n: int, nobs: int, k: int, threads: int, seed: int, iters: int,
                      block_shape=None) -> dict:
    """step="fixed" against step="auto" (the baseline), in this (fresh) process, on the
    benchmark's pure-noise y: draw, from_entries (blocked), the user's arrays dropped,
    then ``solve(method="gd", max_iter=iters)`` with step="auto", the spectral-norm
    estimate alone (``top_singular_value_info`` of A^T(y): wall, CPU, products, status),
    and ``solve`` with step="fixed" (which runs the estimate again, then the same
    iterations). Each step's peak and the process peak (VmHWM, reset before each step)
    as in :func:`_phase_memory`; the process peak of the build is reported too."""
    import lowrank_core as lc
    from lowrank_core.initialization import top_singular_value_info

    out = {"phase": "fixedstep", "base": _gib("VmRSS"), "iters": iters}
    step = StepMemory()
    steps = step.steps

    data = list(step("draw the problem (rows, cols int32, values float64)",
                     lambda: _draw(n, nobs, seed)))
    rng = data[0]
    op, y = step("from_entries (blocked)", lambda: lc.EntryOperator.from_entries(
        data[1], data[2], data[3], (n, n), n_threads=threads, layout="blocked", k=k,
        block_shape=block_shape))
    data.clear()     # the user's rows, cols and values dropped
    F = rng.standard_normal((n, k)) * 0.1
    G = rng.standard_normal((n, k)) * 0.1

    def solve(stepsize):
        res = lc.solve(op, y, k, method="gd", init=(F, G), max_iter=iters, step=stepsize,
                       n_threads=threads, record=False)
        return {"n_iter": res.n_iter, "init_time": res.init_time, "time": res.time,
                "step": res.options["step"], "loss": res.loss,
                "spectral_norm": res.options.get("spectral_norm")}

    out["auto"] = step(f"solve(method='gd', max_iter={iters}, init=(F, G)), step='auto'",
                       lambda: solve("auto"))
    out["estimate"] = step("top_singular_value_info(A^T(y)) alone",
                           lambda: top_singular_value_info(op.adjoint_operator(y),
                                                           np.random.default_rng(0))[1])
    out["fixed"] = step(f"solve(method='gd', max_iter={iters}, init=(F, G)), step='fixed'",
                        lambda: solve("fixed"))
    out["row_layout_built"] = op._cols_r is not None
    out.update(steps=steps, load=os.getloadavg(), process_peak=peak_rss_gib(),
               shape=op._blocked["shape"])
    return out


def fixed_step_report(r: dict) -> str:
    est, fx, au = r["estimate"], r["fixed"], r["auto"]
    lines = [f"step='fixed' vs step='auto' (gd, {r['iters']} iterations, init (F, G) given, "
             f"pure-noise y), from_entries blocked, tiles {r['shape'][0]} x {r['shape'][1]}; "
             f"one fresh process; load average at the end {r['load'][0]:.1f}", "",
             "| step | extra peak GiB | kept GiB | process peak GiB | wall s | CPU s "
             "| load (1 min) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for s in r["steps"]:
        lines.append(f"| {s['step']} | {s['peak']:.2f} | {s['kept']:.2f} | "
                     f"{s['total_peak']:.2f} | {s['wall']:.1f} | {s['cpu']:.1f} | "
                     f"{s['load'][0]:.1f} |")
    lines += ["", f"estimate alone: sigma = {est['value']:.6g} ({est['method']}, "
              f"{est['status']}, {est['products']} products, {est.get('steps')} steps, "
              f"Ritz value {est.get('ritz', float('nan')):.6g}, residual bound "
              f"{est.get('residual_bound', float('nan')):.3g})",
              f"step='fixed': step {fx['step']:.6g}, init_time {fx['init_time']:.1f} s "
              f"(the estimate), iterations {fx['time']:.1f} s, n_iter {fx['n_iter']}, "
              f"options['spectral_norm'] = {fx['spectral_norm']}",
              f"step='auto': init_time {au['init_time']:.1f} s, iterations "
              f"{au['time']:.1f} s, n_iter {au['n_iter']}",
              f"ru_maxrss at the end {r['process_peak']:.2f} GiB (reset with VmHWM by "
              f"each step's clear_refs: the process peak is the largest 'process peak' "
              f"above); row layout built: {r['row_layout_built']}"]
    return "\n".join(lines)


def memory_run(n: int, nobs: int, k: int, threads: int, seed: int, block_shape=None,
               repeats: int = 3):
    """The three memory phases, each in a fresh subprocess (VmHWM of a process only
    grows: a fresh one per phase keeps each phase's peak its own)."""
    import json
    import subprocess

    results = []
    for phase in ("problem", "build", "iteration"):
        cmd = [sys.executable, os.path.abspath(__file__), "--n", str(n), "--nobs", str(nobs),
               "--k", str(k), "--threads", str(threads), "--seed", str(seed),
               "--repeats", str(repeats), "--memory-phase", phase]
        if block_shape is not None:
            cmd += ["--block-shape", *map(str, block_shape)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"n": n, "nobs": nobs, "k": k, "threads": threads, "phases": results}


def memory_report(r: dict) -> str:
    it = r["phases"][-1]
    lines = [f"from_entries, blocked: n1 = n2 = {r['n']:.0e}, |Omega| = {r['nobs']:.3g}, "
             f"k = {r['k']}, float64, {r['threads']} threads, tiles {it['shape'][0]} x "
             f"{it['shape'][1]}; each phase a fresh process; load average at the end "
             f"{it['load'][0]:.1f}; bytes per observation in brackets", "",
             "| phase | step | extra peak GiB | kept GiB | process peak GiB "
             "| wall s | CPU s |", "|---|---|---:|---:|---:|---:|---:|"]
    per = 2**30 / r["nobs"]
    for ph in r["phases"]:
        for s in ph["steps"]:
            lines.append(f"| {ph['phase']} | {s['step']} | {s['peak']:.2f} "
                         f"({s['peak'] * per:.1f} B) | {s['kept']:.2f} "
                         f"({s['kept'] * per:.1f} B) | {s['total_peak']:.2f} | "
                         f"{s['wall']:.2f} | {s['cpu']:.2f} |")
    lines += ["", f"python + numpy + lowrank_core before the problem: "
              f"{r['phases'][0]['base']:.2f} GiB; operator index memory (op.nbytes) "
              f"{it['nbytes'] / 2**30:.2f} GiB after the build, "
              f"{it['nbytes_after'] / 2**30:.2f} GiB after the solve (row layout built: "
              f"{it['row_layout_built']})"]
    tm = it.get("timing")
    if tm:
        lines += ["", f"same-run kernel timing (median of alternating runs; load "
                  f"{tm['load'][0]:.1f}):", "", "| kernel | wall s | CPU s |",
                  "|---|---:|---:|"]
        lines += [f"| {name} | {tm['wall'][name]:.3f} | {tm['cpu'][name]:.3f} |"
                  for name in tm["wall"]]
    return "\n".join(lines)


def report(r: dict) -> str:
    t, c = r["times"], r["cpu"]
    read = t["numpy read"]
    ref = "rows, user order"
    lines = [f"n1 = n2 = {r['n']:.0e}, |Omega| = {r['nobs']:.3g}, k = {r['k']}, float64, "
             f"{r['threads']} threads, observations in random order; tiles "
             f"{r['shape'][0]} x {r['shape'][1]}; load average at the end "
             f"{r['load'][0]:.1f}", "",
             "| path | s per residual gradient (wall) | vs numpy read | vs rows, user order "
             "| CPU s (all threads) | CPU vs numpy read | CPU vs numpy gather "
             "| CPU vs rows, user order | obs per CPU-second |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    gather = c[PATHS[-1]]
    for name in PATHS:
        lines.append(f"| {name} | {t[name]:.3f} | {t[name] / read:.1f}x | "
                     f"{t[ref] / t[name]:.1f}x | {c[name]:.3f} | "
                     f"{c[name] / c['numpy read']:.1f}x | {c[name] / gather:.2f}x | "
                     f"{c[ref] / c[name]:.1f}x | {r['nobs'] / c[name]:.3g} |")
    lines += ["", "| phase | value |", "|---|---|",
              f"| draw rows, cols, y | {r['t_data']:.1f} s |"]
    for name, (wall, cpu) in r["build"].items():
        lines.append(f"| build: {name} | {wall:.1f} s wall, {cpu:.1f} CPU s |")
    for name, nb in r["nbytes"].items():
        lines.append(f"| operator index memory (op.nbytes), {name} | {nb / 2**30:.2f} GiB |")
    lines += [f"| peak RSS after drawing the problem | {r['rss_data']:.2f} GiB |",
              f"| peak RSS of the run (getrusage maxrss; all operators) | "
              f"{r['rss']:.2f} GiB |"]
    return "\n".join(lines)


def probe(n: int, nobs: int, k: int, threads: int, seed: int, path: str, iters: int,
          block_shape=None) -> None:
    """Build one path and run ``iters`` residual gradients, nothing else: for a cache
    simulator (valgrind --tool=cachegrind), whose counts at two values of iters give
    the misses of one gradient by difference."""
    import lowrank_core as lc

    rng, rows, cols, y = _draw(n, nobs, seed)
    layout = "blocked" if path.startswith("blocked") else "rows"
    if path.endswith("from_entries"):
        op, y = lc.EntryOperator.from_entries(rows, cols, y, (n, n), n_threads=threads,
                                              layout=layout, k=k, block_shape=block_shape)
    else:
        op = lc.EntryOperator(rows, cols, (n, n), n_threads=threads, layout=layout,
                              block_shape=block_shape)
    F = rng.standard_normal((n, k)) * 0.1
    G = rng.standard_normal((n, k)) * 0.1
    out = (np.empty(nobs), np.empty((n, k)), np.empty((n, k)))
    for _ in range(iters):
        op.residual_gradient(F, G, y, out=out)


def sweep(n: int, nobs: int, k: int, threads: int, repeats: int, seed: int,
          shapes: list, prefetch: list) -> list:
    """Same-run comparison of tile shapes and software-prefetch distances for the
    from_entries blocked path: per tile shape one build, then per prefetch distance the
    residual gradient (the kernel called directly), and, at the default distance, the
    line search, each against the numpy read and the numpy gather of G rows, in
    alternation (median of ``repeats``).
    Also the minor page faults per gradient (getrusage)."""
    import lowrank_core as lc

    kernels = lc.operators.entries._blocked_kernels
    rng, rows, cols, values = _draw(n, nobs, seed)
    F = rng.standard_normal((n, k)) * 0.1
    G = rng.standard_normal((n, k)) * 0.1
    z, SG, StF = np.ones(nobs), np.ones((n, k)), np.ones((n, k))
    rowloss, bufs = np.ones(n), np.ones((max(threads - 1, 1), n, k))
    out = []
    for shape in shapes:
        op, y = lc.EntryOperator.from_entries(rows, cols, values, (n, n), n_threads=threads,
                                              layout="blocked", k=k, block_shape=shape)
        b = op._blocked
        bounds = op._blocked_bounds(b)

        def rg(pf, b=b, bounds=bounds, y=y, op=op):
            return kernels.residual_gradient(b["tptr"], b["code"], op._dummy, False, False,
                                             *b["shape"], F, G, y, z, SG, StF, bufs, 1.0,
                                             rowloss, bounds, True, pf)

        fns = {f"residual gradient, prefetch {pf}": (lambda pf=pf: rg(pf))
               for pf in prefetch}
        fns["line search"] = lambda op=op: op.line_search_products(z, F, G, SG, StF)
        fns["numpy read"] = lambda: (rows.max(), cols.max(), values.max())
        fns["numpy gather of G rows, tile order"] = gather_rows(G, tile_order_columns(op))
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        wall, cpu = alternate(fns, repeats)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
        out.append({"shape": b["shape"], "wall": wall, "cpu": cpu, "load": os.getloadavg(),
                    "minflt_per_call": faults / ((repeats + 1) * len(fns))})
        del op, y, b, fns
    return out


def sweep_report(res: list, nobs: int) -> str:
    lines = ["| tiles | path | wall s | CPU s | vs numpy read (wall, CPU) "
             "| CPU vs numpy gather | obs per CPU-s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in res:
        w, c = r["wall"], r["cpu"]
        gather = c[PATHS[-1]]
        for name in w:
            lines.append(f"| {r['shape'][0]} x {r['shape'][1]} | {name} | {w[name]:.3f} | "
                         f"{c[name]:.3f} | {w[name] / w['numpy read']:.1f}x, "
                         f"{c[name] / c['numpy read']:.1f}x | {c[name] / gather:.2f}x | "
                         f"{nobs / c[name]:.3g} |")
        lines.append(f"| | minor page faults per call {r['minflt_per_call']:.1f}; load "
                     f"{r['load'][0]:.1f} | | | | | |")
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
    ap.add_argument("--memory", action="store_true",
                    help="only the from_entries blocked path: peak RSS of build and "
                         "iteration")
    ap.add_argument("--probe", choices=PATHS[:4], default=None,
                    help="only build this path and run --iters gradients (for cachegrind)")
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--sweep", nargs="+", default=None, metavar="BRxBC",
                    help="same-run comparison of from_entries tile shapes (e.g. "
                         "65536x65536 65536x8192) and of --prefetch distances")
    ap.add_argument("--prefetch", type=int, nargs="+", default=[8],
                    help="software-prefetch distances (entries ahead) for --sweep")
    ap.add_argument("--fixed-step", action="store_true",
                    help="step='fixed' (its spectral-norm estimate) against step='auto': "
                         "time, products, peak RSS of --iters gd iterations")
    ap.add_argument("--memory-phase", choices=("problem", "build", "iteration"),
                    default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n = int(1e6) if args.scale else int(args.n)
    nobs = int(args.nobs if args.nobs is not None else (5e7 if args.scale else 4e6))
    if args.sweep:
        shapes = [tuple(int(v) for v in t.lower().split("x")) for t in args.sweep]
        print(sweep_report(sweep(n, nobs, args.k, args.threads, args.repeats, args.seed,
                                 shapes, args.prefetch), nobs))
    elif args.fixed_step:
        print(fixed_step_report(_phase_fixed_step(n, nobs, args.k, args.threads, args.seed,
                                                  args.iters, args.block_shape)))
    elif args.memory_phase:
        import json
        print(json.dumps(_phase_memory(args.memory_phase, n, nobs, args.k, args.threads,
                                       args.seed, args.block_shape, args.repeats)))
    elif args.probe:
        probe(n, nobs, args.k, args.threads, args.seed, args.probe, args.iters,
              args.block_shape)
    elif args.memory:
        print(memory_report(memory_run(n, nobs, args.k, args.threads, args.seed,
                                       args.block_shape, args.repeats)))
    else:
        print(report(run(n, nobs, args.k, args.threads, args.repeats, args.seed,
                         args.block_shape)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
