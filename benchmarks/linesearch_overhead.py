"""Added cost per iteration of the exact line search (step="auto") over a fixed step.

For each operator kind, in ONE run (so every ratio is against a baseline measured in the
same run, alternating):

* the same method (precgd, asymmetric F G^T, rank k) runs the same number of iterations
  from the same spectral start with ``step=0.5``, with ``step="auto"`` on the operator's
  fused line-search pass (``_line_search_products``), and with ``step="auto"`` on the
  fallback (two factored forwards of widths 2k and k plus five dots of length m, what
  every operator used before the fused kernels and what a duck-typed operator still
  uses); runs alternate (fixed, fused, fallback, fixed, ...) and the table reports the
  median time per iteration and the overhead of each ``auto`` variant over ``fixed``;
* the line search alone (one ``LineSearch.search`` along the gradient at the spectral
  start, fused and fallback, alternating) and the operator's ``residual_gradient`` alone,
  each the median over repeats of 10 calls: the search's cost in residual gradients.

Iterations that stop early (converged or stalled) are divided by the number actually run.

Usage: python benchmarks/linesearch_overhead.py [--repeats 5] [--iters 40] [--threads N]
[--kinds completion,sparse,dense,rank-one]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time

import numpy as np

import lowrank_core as lc
from lowrank_core.methods import _base as methods_base
from lowrank_core.methods.linesearch import LineSearch

#: kind -> (make_problem arguments, search rank k)
CASES = {
    "completion": ({"n1": 2000, "n2": 2000, "rank": 10, "m": 400_000,
                    "operator": "entries"}, 10),
    "sparse": ({"n1": 1000, "n2": 1000, "rank": 10, "m": 40_000, "operator": "sparse"}, 10),
    "dense": ({"n1": 60, "n2": 60, "rank": 3, "m": 2000, "operator": "gaussian"}, 3),
    "rank-one": ({"n1": 300, "n2": 300, "rank": 5, "m": 12_000, "operator": "rank-one"}, 5),
}


@contextlib.contextmanager
def fallback_line_search(enabled: bool):
    """Within the block, solve's line searches take the fallback path (fused=False)."""
    if not enabled:
        yield
        return
    saved = methods_base.LineSearch
    methods_base.LineSearch = functools.partial(LineSearch, fused=False)
    try:
        yield
    finally:
        methods_base.LineSearch = saved


def per_iteration(op, y, k, init, step, iters, threads, fallback=False):
    with fallback_line_search(fallback):
        res = lc.solve(op, y, k, method="precgd", init=init, step=step, max_iter=iters,
                       tol=1e-300, record=False, n_threads=threads)
    return res.time / max(res.n_iter, 1), res.n_iter


def timed(fn, repeats, inner=10):
    """Median over ``repeats`` of the mean time of ``inner`` calls of fn()."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return times


def kernel_times(op, y, F, G, repeats):
    """(residual gradient, fused search, fallback search) seconds, alternating."""
    state = methods_base.SolverState(op, y, F, G, symmetric=False)
    state.evaluate()
    gF, gG = state.SG.copy(), state.StF.copy()
    out = (np.empty(op.m, op.dtype), np.empty_like(F), np.empty_like(G))
    fused = LineSearch(state, fused=True)
    slow = LineSearch(state, fused=False)
    eta_fused = fused.search(F, G, gF, gG)
    eta_slow = slow.search(F, G, gF, gG)
    rg, tf, ts = [], [], []
    for _ in range(repeats):
        rg += timed(lambda: op.residual_gradient(F, G, y, out=out), 1)
        tf += timed(lambda: fused.search(F, G, gF, gG), 1)
        ts += timed(lambda: slow.search(F, G, gF, gG), 1)
    return (statistics.median(rg), statistics.median(tf), statistics.median(ts),
            abs(eta_fused - eta_slow) / max(abs(eta_slow), 1e-300))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--kinds", default=",".join(CASES))
    args = parser.parse_args(argv)
    rows = []
    print("Per iteration of precgd (ms/it, medians of alternating runs):")
    print("| operator | m | k | fixed | auto, fused | auto, fallback | overhead fused | "
          "overhead fallback |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        spec, k = CASES[kind]
        prob = lc.make_problem(**spec, cond=10.0, seed=0, n_threads=args.threads)
        op, y = prob.operator, prob.y
        start = lc.solve(op, y, k, method="precgd", init="spectral", max_iter=0, seed=1)
        init = (start.F, start.G)
        fixed, fused, slow = [], [], []
        for _ in range(args.repeats):
            fixed.append(per_iteration(op, y, k, init, 0.5, args.iters, args.threads)[0])
            fused.append(per_iteration(op, y, k, init, "auto", args.iters, args.threads)[0])
            slow.append(per_iteration(op, y, k, init, "auto", args.iters, args.threads,
                                      fallback=True)[0])
        tx, tf, ts = (statistics.median(t) for t in (fixed, fused, slow))
        print(f"| {kind} | {op.m} | {k} | {1e3 * tx:.3f} | {1e3 * tf:.3f} | {1e3 * ts:.3f} | "
              f"{100 * (tf - tx) / tx:+.0f}% | {100 * (ts - tx) / tx:+.0f}% |", flush=True)
        # the operator's kernels use its n_threads (make_problem's n_threads above)
        rows.append((kind, op.m, k, *kernel_times(op, y, start.F, start.G, args.repeats)))
    print()
    print("One line search along the gradient vs one residual gradient (ms, medians):")
    print("| operator | residual gradient | search, fused | search, fallback | "
          "fused / RG | fallback / RG | fused speed-up | step rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, _m, _k, rg, tf, ts, diff in rows:
        print(f"| {kind} | {1e3 * rg:.3f} | {1e3 * tf:.3f} | {1e3 * ts:.3f} | {tf / rg:.2f} | "
              f"{ts / rg:.2f} | {ts / tf:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
