"""Solvers: lowrank_core vs a plain-numpy implementation of the same method.

Problem (issue 5): over-parameterized PSD sensing, n = 100, r = 5, k = 10, m = 5000,
Gaussian measurements, sigma_1(M*) = 1. For each method both implementations start from
the same initial factors, use the same step/damping and the same data, and run until the
relative error ||F G^T - M*||_F / ||M*||_F <= 1e-10 (computed the same way, from factors,
every iteration, in both) or the iteration cap. Runs alternate (ours, numpy, ours, ...)
and the table reports medians.

* symmetric methods (gd, scaledgd, scaledgd-lambda, precgd) run X X^T on the packed
  symmetric operator; numpy streams the full (m, n^2) matrix of the same A_i twice per
  iteration (A @ vec(X X^T), then A^T z), which is how one writes it in numpy;
* asymmetric-only methods (onestep, agn) run F G^T; with symmetric A_i the antisymmetric
  part of F G^T is unobserved, so they measure the same PSD truth with a general dense
  Gaussian operator (its (m, n^2) array is shared with numpy, no copy).

Also measures the driver overhead per iteration: time per iteration of ``solve`` minus
the time of the operator's residual_gradient alone, at n1 = n2 = 100, m = 2500, k = 10,
dense.

The numpy side is :func:`.references.reference_solve` (the harness's one plain numpy loop
per method) on :func:`.references.dense_numpy_product`, stopped by the same error test.

Usage: python benchmarks/compare.py solvers [--repeats 3] [--cap 300] [--threads N]
(--threads defaults to the OpenMP default, the same cores numpy's BLAS uses)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lowrank_core as lc
from lowrank_core import metrics
from lowrank_core._threads import resolve_n_threads

from .references import dense_numpy_product, reference_solve

TOL = 1e-10


# ------------------------------------------------------------------ plain numpy
def numpy_solve(method, A2, y, F, G, symmetric, options, truth, cap):
    """The same update rules as lowrank_core (the harness's reference loop), stopped at the
    first iterate with relative error <= TOL or after ``cap`` iterations.

    Returns (iterations, seconds, final relative error)."""
    L, R = truth
    norm = metrics.factored_norm(L, R)
    rg = dense_numpy_product(A2, (F.shape[0], G.shape[0]))

    def reached(F, G):
        return metrics.factored_distance(F, G, L, R) / norm <= TOL

    start = time.perf_counter()
    F, G, t, _ = reference_solve(rg, y, F, None if symmetric else G, method, options,
                                 symmetric=symmetric, tol=0.0, max_iter=cap, stop=reached)
    seconds = time.perf_counter() - start
    return t, seconds, metrics.factored_distance(F, G, L, R) / norm


# --------------------------------------------------------------------- ours
def ours_solve(op, y, k, method, symmetric, init, step, opts, truth, cap, n_threads):
    def stop(res):
        if res.error <= TOL:
            raise StopIteration

    res = lc.solve(op, y, k, method=method, symmetric=symmetric, init=init, step=step,
                   truth=truth, record=["error"], callback=stop, max_iter=cap, tol=1e-300,
                   n_threads=n_threads, **opts)
    # the run ends at the first iterate with error <= TOL (status "callback") or at cap
    return res.n_iter, res.time, res.error, res


def compare(args):
    rng = np.random.default_rng(0)
    n, r, k, m = 100, 5, 10, 5000
    problem = lc.make_problem(n, rank=r, m=m, psd=True, seed=rng)
    truth = problem.truth_factors
    sym_op = problem.operator
    sym_A2 = sym_op.matrices.reshape(m, n * n)          # full matrices for numpy
    gen_op = lc.DenseOperator.gaussian(m, n, n, seed=rng)
    gen_y = gen_op.forward_factored(*truth)
    gen_A2 = gen_op.matrices.reshape(m, n * n)           # a view: same bytes as ours
    rows = []
    for method, symmetric in (("precgd", True), ("scaledgd", True),
                              ("scaledgd-lambda", True), ("gd", True),
                              ("agn", False), ("onestep", False)):
        op, y, A2 = (sym_op, problem.y, sym_A2) if symmetric else (gen_op, gen_y, gen_A2)
        start = lc.solve(op, y, k, method=method, symmetric=symmetric, max_iter=0, seed=1,
                         init="small", step="fixed", n_threads=args.threads)
        init = start.X if symmetric else (start.F, start.G)
        opts = {kk: v for kk, v in start.options.items()
                if kk in ("damping", "trigger")}
        step = start.options["step"]
        cap = args.cap
        mine, theirs = [], []
        for _ in range(args.repeats):
            it, t, err, res = ours_solve(op, y, k, method, symmetric, init, step, opts, truth,
                                         cap, args.threads)
            mine.append((it, t, err))
            F0, G0 = (init, init) if symmetric else init
            theirs.append(numpy_solve(method, A2, y, F0, G0, symmetric, start.options, truth,
                                      cap))
        it_o, it_n = mine[0][0], theirs[0][0]
        t_o = statistics.median(x[1] for x in mine)
        t_n = statistics.median(x[1] for x in theirs)
        rows.append((method, "X X^T" if symmetric else "F G^T", it_o, t_o, mine[0][2],
                     it_n, t_n, theirs[0][2], t_n / t_o,
                     res.n_evaluations))
        print(f"  {method}: ours {it_o} it {t_o:.2f}s err {mine[0][2]:.1e} | numpy {it_n} it "
              f"{t_n:.2f}s err {theirs[0][2]:.1e}", flush=True)
    print()
    print(f"n = {n}, r = {r}, k = {k}, m = {m}, PSD truth, target relative error {TOL:g}, "
          f"cap {args.cap} iterations, median of {args.repeats} alternating runs, "
          f"n_threads = {args.threads}\n")
    print("| method | form | iterations (ours) | time ours [s] | iterations (numpy) "
          "| time numpy [s] | speed-up | final error ours / numpy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (method, form, it_o, t_o, e_o, it_n, t_n, e_n, sp, nev) in rows:
        reached = "" if e_o <= TOL else " (cap, not reached)"
        evals = f" ({nev} evals)" if nev > it_o + 1 else ""
        print(f"| {method} | {form} | {it_o}{reached}{evals} | {t_o:.2f} | {it_n} | "
              f"{t_n:.2f} | {sp:.1f}x | {e_o:.1e} / {e_n:.1e} |")


def overhead(args):
    """Driver overhead per iteration at n1 = n2 = 100, m = 2500, k = 10, dense.

    Measured inside each run: the operator's residual_gradient is wrapped by a timer, and
    the overhead is the solve's wall time minus the time spent in residual_gradient,
    per iteration (so machine-load drift between runs does not enter).
    """
    n, m, k = 100, 2500, 10
    problem = lc.make_problem(n, rank=5, m=m, seed=3)
    op, y = problem.operator, problem.y
    original = op._residual_gradient_into
    spent = [0.0]

    def timed(*a):
        t0 = time.perf_counter()
        out = original(*a)
        spent[0] += time.perf_counter() - t0
        return out

    op._residual_gradient_into = timed
    iters = 50
    print(f"\nDriver overhead, n1 = n2 = {n}, m = {m}, k = {k}, dense, "
          f"n_threads = {args.threads}, {iters} iterations per run, medians of "
          f"{args.repeats} runs\n")
    print("| method | record | residual_gradient per iteration [ms] | overhead per "
          "iteration [ms] | overhead [%] |")
    print("|---|---|---:|---:|---:|")
    try:
        for method, record, truth in (("gd", False, None), ("gd", None, problem),
                                      ("precgd", False, None), ("precgd", None, problem),
                                      ("agn", False, None), ("agn", None, problem)):
            rg, ov = [], []
            for _ in range(args.repeats):
                spent[0] = 0.0
                res = lc.solve(op, y, k, method=method, max_iter=iters, tol=1e-300, seed=0,
                               step="fixed", init="small", record=record, truth=truth,
                               n_threads=args.threads)
                rg.append(spent[0] / res.n_iter)
                ov.append((res.time - spent[0]) / res.n_iter)
            t_rg, t_ov = statistics.median(rg), statistics.median(ov)
            label = "none" if record is False else "all metrics, truth factors"
            print(f"| {method} | {label} | {t_rg * 1e3:.2f} | {t_ov * 1e3:.3f} | "
                  f"{100 * t_ov / t_rg:.2f} |", flush=True)
    finally:
        del op._residual_gradient_into


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cap", type=int, default=300, help="iteration cap per run")
    parser.add_argument("--threads", type=int, default=None,
                        help="lowrank_core's OpenMP threads (default: the OpenMP default, "
                             "i.e. the cores numpy's BLAS also uses)")
    parser.add_argument("--only", choices=("compare", "overhead"), default=None)
    return parser


def main(argv=None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    args.threads = resolve_n_threads(args.threads)
    if args.only != "overhead":
        compare(args)
    if args.only != "compare":
        overhead(args)
    return 0
