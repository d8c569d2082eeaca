"""ALS with and without its default vanishing ridge (issue 13): recovery per cell.

Completion n1 x n2 (300 x 350), rank r (5), plain uniform sampling (``make_problem``'s
default), seeds 0 .. --seeds-1, the spectral start, tol 1e-10, at most --max-iter (3000)
iterations; ``damping=0`` is plain ALS, ``damping="auto"`` the default ridge
lam_t = c rho_t^2 g(G) of ``lowrank_core/methods/als.py``. A run recovers when its relative
error is <= 1e-8.

Usage:
    python benchmarks/als_ridge.py [--cells 2.5:10,2:1,5:10,2.5:1000] [--seeds 5]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import lowrank_core as lc


def _cells(text):
    return [tuple(float(v) for v in c.split(":")) for c in text.split(",") if c]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n1", type=int, default=300)
    ap.add_argument("--n2", type=int, default=350)
    ap.add_argument("--rank", type=int, default=5)
    ap.add_argument("--cells", type=_cells, default=_cells("2.5:10,2:1,5:10,2.5:1000"),
                    help="comma-separated OS:cond pairs")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-iter", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    n1, n2, r = args.n1, args.n2, args.rank
    print("| OS | cond | damping | recovered | median iterations | median error |")
    print("|---|---|---|---|---|---|")
    for os_, cond in args.cells:
        m = round(os_ * r * (n1 + n2 - r))
        for damping in (0.0, "auto"):
            errs, its = [], []
            for seed in range(args.seeds):
                prob = lc.make_problem(n1, n2, rank=r, m=m, operator="entries", cond=cond,
                                       seed=seed, n_threads=args.threads)
                op, y = prob.operator, prob.y
                F0, G0 = lc.initialization.initial_factors(
                    op, y, r, False, "spectral", None, np.random.default_rng(seed))
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = lc.solve(op, y, r, method="als", init=(F0, G0), tol=1e-10,
                                   max_iter=args.max_iter, truth=prob, record=False,
                                   n_threads=args.threads, damping=damping)
                errs.append(float(res.error))
                its.append(int(res.n_iter))
                print(f"  OS {os_:g} cond {cond:g} damping={damping!r} seed {seed}: "
                      f"{res.status} {res.n_iter} its, error {res.error:.2e}, "
                      f"{time.perf_counter() - t0:.2f} s", flush=True)
            ok = sum(e <= 1e-8 for e in errs)
            print(f"| {os_:g} | {cond:g} | {damping!r} | {ok}/{len(errs)} | "
                  f"{statistics.median(its):g} | {statistics.median(errs):.1e} |", flush=True)


if __name__ == "__main__":
    main()
