"""Issue 13's table, before and after the line search: completion 300 x 350, rank 5.

``make_problem(300, 350, rank=5, m=OS r (n1 + n2 - r), operator="entries", cond=kappa)``.
"before": the fixed steps (``step="fixed"``: 0.5, gd 0.3/||A^T y||) from the inits of the
issue's table, at most ``--before-max-iter`` (3000) iterations and no stalled-progress stop
(it is off with a fixed step); "after": ``solve`` at its current defaults (``step="auto"``,
each method's own init and init scale, each method's ``max_iter``:
``StepRule.default_max_iter``, and the stalled-progress stop) unless ``--max-iter`` is
given. Prints status, relative error, iterations and the cap used. The per-default
before/after cases of issue 18 are in ``benchmarks/defaults_cases.py``.

Usage: python benchmarks/defaults_table.py [--cells 10:1.5,10:2.5,10:5,1000:2.5,1000:5]
       [--max-iter N] [--before-max-iter 3000] [--seed 0]
       [--methods precgd,scaledgd,scaledgd-lambda,agn,gd,onestep] [--no-before]
"""

from __future__ import annotations

import argparse

import lowrank_core as lc

BEFORE = [("precgd", "spectral"), ("precgd", "small"), ("scaledgd", "spectral"),
          ("agn", "spectral"), ("gd", "spectral")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="10:1.5,10:2.5,10:5,1000:2.5,1000:5")
    p.add_argument("--max-iter", type=int, default=None,
                   help="cap of the 'after' runs (default: each method's default_max_iter)")
    p.add_argument("--before-max-iter", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="precgd,scaledgd,scaledgd-lambda,agn,gd,onestep")
    p.add_argument("--no-before", action="store_true")
    args = p.parse_args(argv)
    n1, n2, r = 300, 350, 5
    methods = args.methods.split(",")
    print("| kappa, OS | run | method (init) | status | error | iterations | max_iter "
          "| time s |")
    print("|---|---|---|---|---|---|---|---|")
    for cell in args.cells.split(","):
        cond, os_ = (float(v) for v in cell.split(":"))
        m = round(os_ * r * (n1 + n2 - r))
        prob = lc.make_problem(n1, n2, rank=r, m=m, operator="entries", cond=cond,
                               seed=args.seed)
        runs = [] if args.no_before else \
            [("before", meth, init, "fixed", args.before_max_iter)
             for meth, init in BEFORE if meth in methods]
        runs += [("after", meth, None, "auto", args.max_iter) for meth in methods]
        for label, meth, init, step, cap in runs:
            res = lc.solve(prob.operator, prob.y, r, method=meth, init=init, step=step,
                           truth=prob, record=False, max_iter=cap, seed=1)
            used = res.options["init"]
            print(f"| {cond:g}, {os_:g} | {label} | {meth} ({used}) | {res.status} | "
                  f"{res.error:.1e} | {res.n_iter} | {res.options['max_iter']} | "
                  f"{res.time:.2f} |", flush=True)


if __name__ == "__main__":
    main()
