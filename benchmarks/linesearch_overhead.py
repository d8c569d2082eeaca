"""Added cost per iteration of the exact line search (step="auto") over a fixed step.

For each operator kind, the same method (precgd, asymmetric F G^T, rank k) runs the same
number of iterations from the same spectral start with ``step=0.5`` and with
``step="auto"``; runs alternate (fixed, auto, fixed, auto, ...) and the table reports the
median time per iteration of each, their difference (the line search: forward passes of
widths 2k and k, five dots of length m, the cubic), and the operator's residual gradient
alone for scale. Iterations that stop early (converged or stalled) are divided by the
number actually run.

Usage: python benchmarks/linesearch_overhead.py [--repeats 5] [--iters 40] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lowrank_core as lc

#: kind -> (make_problem arguments, search rank k)
CASES = {
    "completion": ({"n1": 2000, "n2": 2000, "rank": 10, "m": 400_000,
                    "operator": "entries"}, 10),
    "sparse": ({"n1": 1000, "n2": 1000, "rank": 10, "m": 40_000, "operator": "sparse"}, 10),
    "dense": ({"n1": 60, "n2": 60, "rank": 3, "m": 2000, "operator": "gaussian"}, 3),
    "rank-one": ({"n1": 300, "n2": 300, "rank": 5, "m": 12_000, "operator": "rank-one"}, 5),
}


def per_iteration(op, y, k, init, step, iters, threads):
    res = lc.solve(op, y, k, method="precgd", init=init, step=step, max_iter=iters,
                   tol=1e-300, record=False, n_threads=threads)
    return res.time / max(res.n_iter, 1), res.n_iter


def residual_gradient_time(op, y, F, G, repeats):
    out = (np.empty(op.m, op.dtype), np.empty_like(F), np.empty_like(G))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            op.residual_gradient(F, G, y, out=out)
        times.append((time.perf_counter() - t0) / 10)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--kinds", default=",".join(CASES))
    args = parser.parse_args(argv)
    print("| operator | m | k | fixed ms/it | auto ms/it | line search ms/it | "
          "residual gradient ms | overhead |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        spec, k = CASES[kind]
        prob = lc.make_problem(**spec, cond=10.0, seed=0, n_threads=args.threads)
        op, y = prob.operator, prob.y
        start = lc.solve(op, y, k, method="precgd", init="spectral", max_iter=0, seed=1)
        init = (start.F, start.G)
        fixed, auto = [], []
        for _ in range(args.repeats):
            fixed.append(per_iteration(op, y, k, init, 0.5, args.iters, args.threads)[0])
            auto.append(per_iteration(op, y, k, init, "auto", args.iters, args.threads)[0])
        tf, ta = statistics.median(fixed), statistics.median(auto)
        trg = residual_gradient_time(op, y, start.F, start.G, args.repeats)
        print(f"| {kind} | {op.m} | {k} | {1e3 * tf:.3f} | {1e3 * ta:.3f} | "
              f"{1e3 * (ta - tf):.3f} | {1e3 * trg:.3f} | {100 * (ta - tf) / tf:+.0f}% |",
              flush=True)


if __name__ == "__main__":
    main()
