"""Why over-parameterized completion (k > r) does not recover the truth: error vs residual.

Issue 18: the camera image truncated to rank r = 30, 512^2, 30 % observed, completed with
k = 50 > r: precgd and agn fit the observed entries (relative residual 1e-5) while the error
to the truth stays at 1e-2. This script runs the same kind of instance at a smaller size
and scales the rank with it so the oversampling r(n1 + n2 - r) / |Omega| and k / r stay
those of the 512^2 case (``--size 128``: r = 8, k = 13; ``--size 256``: r = 15, k = 25;
``--size 512``: r = 30, k = 50), and records the relative error to the truth and the
relative residual per iteration for

* k = r and k > r at solve's defaults (precgd and agn),
* precgd, k > r, with small inits at several alpha (``init_scale``), with the fixed step
  (``step="fixed"``) instead of the line search, and with 50 % observed,
* the "oracle" check of the information limit: a rank-k matrix that fits the observed
  entries as well as the k > r iterate does is not unique (the iterate's error is
  compared with the distance between the k > r runs from different starts).

Prints one markdown row per run (final error, residual, iterations, status) and, with
``--figure``, draws the error and residual curves (k = r vs k > r) into a PNG.
Runs on one thread (``n_threads=1``; set OMP_NUM_THREADS=1 too). Not a timed test.

Usage: OMP_NUM_THREADS=1 python benchmarks/overparam_completion.py --size 128
       [--max-iter 3000] [--figure docs/figures/overparam-completion.png] [--quick]
       [--long 30000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defaults_cases import image_completion  # noqa: E402

import lowrank_core as lc  # noqa: E402

#: the 512^2 case's rank and width (issue 18), scaled with the side length
RANK_512, K_512 = 30, 50


def ranks(size):
    r = max(2, round(RANK_512 * size / 512))
    return r, max(r + 1, round(K_512 * r / RANK_512))


def run(op, y, M, k, method="precgd", label="", **kw):
    kw.setdefault("max_iter", ARGS.max_iter)
    res = lc.solve(op, y, k, method=method, truth=M, record=["error", "residual"], seed=1,
                   n_threads=1, **kw)
    print(f"| {label} | {method} | {k} | {res.error:.2e} | {res.residual:.2e} | {res.n_iter} "
          f"| {res.status} | {res.time:.1f} |", flush=True)
    return res


def main(argv=None):
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--max-iter", type=int, default=3000)
    p.add_argument("--figure", default=None)
    p.add_argument("--quick", action="store_true", help="only the k = r / k > r curves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--long", type=int, default=0, metavar="N",
                   help="also run precgd k > r for N iterations from two starts")
    ARGS = args = p.parse_args(argv)
    r, k = ranks(args.size)
    op, y, M, source, s = image_completion(args.size, 0.3, "sqrt_p", args.seed, rank=r)
    n1, n2 = M.shape
    print(f"{source} {n1}x{n2} truncated to rank r={r} (sigma_r/sigma_1 = {s[-1]:.2e}), "
          f"k={k}, 30 % observed: |Omega| = {op.m}, r(n1+n2-r)/|Omega| = "
          f"{r * (n1 + n2 - r) / op.m:.2f}, k(n1+n2-k)/|Omega| = {k * (n1 + n2 - k) / op.m:.2f}")
    print("| run | method | k | error | residual | iterations | status | time s |")
    print("|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    curves = {}
    for meth in ("precgd", "agn"):
        for kk in (r, k):
            curves[(meth, kk)] = run(op, y, M, kk, meth, f"default, k={'r' if kk == r else 'k'}")
    if not args.quick:
        for a in (1e-1, 1e-5):
            run(op, y, M, k, label=f"init_scale={a:g}", init_scale=a)
        run(op, y, M, k, label="step=fixed", step="fixed")
        run(op, y, M, k, label="spectral init", init="spectral")
        # two more starts: if the fits differ from each other by as much as from M*, the
        # observed entries do not determine a rank-k fit (the information limit)
        other = lc.solve(op, y, k, method="precgd", seed=7, max_iter=args.max_iter,
                         n_threads=1)
        base = curves[("precgd", k)].matrix()
        print(f"precgd k={k}: ||X(seed 1) - X(seed 7)||_F / ||M*||_F = "
              f"{np.linalg.norm(base - other.matrix()) / np.linalg.norm(M):.2e}, "
              f"seed-7 error {np.linalg.norm(other.matrix() - M) / np.linalg.norm(M):.2e}")
        if args.long:  # longer, without the stalled-progress stop: the error stays flat
            fits = []
            for seed in (1, 7):
                res = lc.solve(op, y, k, method="precgd", truth=M, record=["error", "residual"],
                               seed=seed, max_iter=args.long, stall_tol=0, n_threads=1)
                e, rr = res.history.error, res.history.residual
                marks = [t for t in (1000, 3000, 10000, args.long) if t < len(e)]
                print(f"precgd k={k}, seed {seed}, {args.long} its: " + ", ".join(
                    f"t={t}: error {e[t]:.2e} residual {rr[t]:.2e}" for t in marks))
                fits.append(res.matrix())
            gap = np.linalg.norm(fits[0] - fits[1]) / np.linalg.norm(M)
            print(f"the two fits differ by {gap:.2e} (relative to ||M*||_F)")
        op5, y5, M5, _, _ = image_completion(args.size, 0.5, "sqrt_p", args.seed, rank=r)
        for kk in (r, k):
            run(op5, y5, M5, kk, label=f"50 % observed, k={'r' if kk == r else 'k'}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.figure:
        from lowrank_core.plotting import new_figure, save_figure
        fig, axes = new_figure(2, 1, width=5.0, height=3.8)
        for ax, meth in zip(axes.ravel(), ("precgd", "agn")):
            for kk, col in ((r, "C0"), (k, "C3")):
                h = curves[(meth, kk)].history
                t = np.arange(len(h.error))
                ax.semilogy(t, h.error, color=col, label=f"k={kk}: error to M*")
                ax.semilogy(t, h.residual, color=col, linestyle=":",
                            label=f"k={kk}: residual")
            ax.set_title(f"{meth}, {source} {n1}$^2$, r={r}, 30 % observed", fontsize=10)
            ax.set_xlabel("iteration t")
            ax.set_ylabel("relative error / relative residual")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("over-parameterized completion: the iterate fits the observed entries "
                     "but not M*\n(solve's defaults; 1 thread; "
                     "benchmarks/overparam_completion.py)", fontsize=10)
        save_figure(fig, args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
