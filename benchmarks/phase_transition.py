"""Phase transition of every method at its defaults: where does each one recover M*?

Matrix completion (``make_problem(..., operator="entries", cond=kappa)``), n1 = n2 = n
(300), rank r (5), condition numbers kappa in {1, 10, 1e3, 1e5} and oversampling
OS = m / (r (n1 + n2 - r)) in {1.2, 1.5, 2, 2.5, 3, 5}, ``--seeds`` problems per cell; and
dense Gaussian sensing, n = 60, r = 3, m = OS r (2n - r) for OS from 1.5 to 6. Every method
in ``lowrank_core.methods.METHODS`` (or ``--methods``) runs ``solve(op, y, r, method=...)``
at its defaults (step="auto", its own init) with an iteration cap and a time budget per
solve. A run *recovers* when ||F G^T - M*||_F / ||M*||_F <= 1e-8 (``--success``).

Completion sampling follows the published experiments (GNMR, R2RILS, MatrixIRLS): Omega is
uniform among the m-subsets with at least r entries in every row and column
(``make_problem(..., min_per_line=r)``; ``--min-per-line 0`` for plain uniform sampling,
where a row or column with fewer than r entries makes the run unrecoverable for every
method). The runs CSV counts such lines (``short_lines``).

Outputs (``--out`` prefix, default ``phase``): ``<out>_runs.csv`` (one row per solve),
``<out>_summary.csv`` (per kind, method, kappa, OS: the fraction recovered, the median
time and iterations, the statuses seen), and heat maps per method
(``docs/figures/phase-completion.png`` and ``phase-dense.png`` by default; ``--figures``
names the directory, ``--no-plot`` skips them, ``--dpi`` sets the resolution, default 150;
``--replot SUMMARY_CSV`` redraws them from a summary CSV without solving anything).

Usage:
    python benchmarks/phase_transition.py                     # the full grid (~25 min, 2 cores)
    python benchmarks/phase_transition.py --seeds 2 --conds 10,1e3 --os 1.5,2.5,5
    python benchmarks/phase_transition.py --quick             # smoke test, seconds
    python benchmarks/phase_transition.py --replot docs/figures/phase_summary.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
import warnings

import numpy as np

import lowrank_core as lc
from lowrank_core.methods import METHODS
from lowrank_core.operators.entries import line_counts

RUN_COLUMNS = ["kind", "n", "rank", "cond", "os", "m", "seed", "method", "status", "error",
               "n_iter", "time", "recovered", "short_lines"]
SUMMARY_COLUMNS = ["kind", "n", "rank", "cond", "os", "m", "method", "runs", "recovered",
                   "fraction", "median_time", "median_iter", "statuses"]


def _floats(text):
    return [float(v) for v in text.split(",") if v]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="completion size n1 = n2 (300)")
    p.add_argument("--rank", type=int, default=5, help="completion rank (5)")
    p.add_argument("--conds", type=_floats, default=[1, 10, 1e3, 1e5])
    p.add_argument("--os", type=_floats, default=[1.2, 1.5, 2, 2.5, 3, 5],
                   help="completion oversampling m / (r (2n - r))")
    p.add_argument("--seeds", type=int, default=3, help="problems per cell (3)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated (default: every registered method)")
    p.add_argument("--max-iter", type=int, default=3000)
    p.add_argument("--max-time", type=float, default=4.0, help="seconds per solve (4)")
    p.add_argument("--success", type=float, default=1e-8, help="relative error (1e-8)")
    p.add_argument("--dense-n", type=int, default=60)
    p.add_argument("--dense-rank", type=int, default=3)
    p.add_argument("--dense-os", type=_floats, default=[1.5, 2, 3, 4, 6])
    p.add_argument("--dense-conds", type=_floats, default=[1, 10, 1e3])
    p.add_argument("--dense-max-time", type=float, default=3.0)
    p.add_argument("--no-dense", action="store_true", help="completion only")
    p.add_argument("--no-completion", action="store_true", help="dense sensing only")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--min-per-line", type=int, default=None,
                   help="completion: entries required in every row and column (default: "
                        "the rank, the papers' protocol; 0: plain uniform sampling)")
    p.add_argument("--out", default="phase", help="prefix of the CSV files (phase)")
    p.add_argument("--figures", default=os.path.join(os.path.dirname(__file__), os.pardir,
                                                     "docs", "figures"))
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--rst-from", metavar="SUMMARY_CSV", default=None,
                   help="print the docs' list-tables (runs recovered / runs per cell and "
                        "method) from a summary CSV and exit")
    p.add_argument("--replot", metavar="SUMMARY_CSV", default=None,
                   help="redraw the heat maps into --figures from a summary CSV and exit "
                        "(drawing only: no solve, the CSV is not written)")
    p.add_argument("--dpi", type=int, default=None,
                   help="resolution of the PNG heat maps (default 150)")
    p.add_argument("--quick", action="store_true",
                   help="tiny grid (n=30, r=2, 2 x 2 cells, 1 seed, dense n=10) for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.rank, args.conds, args.os, args.seeds = 30, 2, [1, 100], [2, 4], 1
        args.max_iter, args.max_time = min(args.max_iter, 300), 2.0
        args.dense_n, args.dense_rank, args.dense_os, args.dense_conds = 10, 2, [2, 5], [1]
        args.dense_max_time = 2.0
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; registered: {list(METHODS)}")
    return args


def _cells(args):
    """(kind, n, r, cond, os, m, max_time) for every cell of the grid."""
    out = []
    if not args.no_completion:
        n, r = args.n, args.rank
        for cond in args.conds:
            for os_ in args.os:
                m = min(round(os_ * r * (2 * n - r)), n * n)
                out.append(("completion", n, r, cond, os_, m, args.max_time))
    if not args.no_dense:
        n, r = args.dense_n, args.dense_rank
        for cond in args.dense_conds:
            for os_ in args.dense_os:
                m = round(os_ * r * (2 * n - r))
                out.append(("dense", n, r, cond, os_, m, args.dense_max_time))
    return out


def run(args, log=print):
    """Every solve of the grid; returns the run rows (dicts with RUN_COLUMNS)."""
    rows = []
    t_start = time.perf_counter()
    for kind, n, r, cond, os_, m, max_time in _cells(args):
        for seed in range(args.seeds):
            if kind == "completion":
                t = r if args.min_per_line is None else args.min_per_line
                prob = lc.make_problem(n, n, rank=r, m=m, cond=cond, seed=1000 * seed + 17,
                                       operator="entries", n_threads=args.threads,
                                       min_per_line=t)
                per_row, per_col = line_counts(prob.operator.rows, prob.operator.cols,
                                               (n, n))
                short = int(np.sum(per_row < r) + np.sum(per_col < r))
            else:
                prob = lc.make_problem(n, n, rank=r, m=m, cond=cond, seed=1000 * seed + 17,
                                       operator="gaussian", n_threads=args.threads)
                short = 0
            for method in args.methods:
                with warnings.catch_warnings():   # short lines: counted in the CSV
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = lc.solve(prob.operator, prob.y, r, method=method, truth=prob,
                                   record=False, max_iter=args.max_iter, max_time=max_time,
                                   seed=seed, n_threads=args.threads)
                err = float(res.error)
                rows.append({"kind": kind, "n": n, "rank": r, "cond": cond, "os": os_, "m": m,
                             "seed": seed, "method": method, "status": res.status,
                             "error": err, "n_iter": int(res.n_iter),
                             "time": float(res.time + res.init_time),
                             "recovered": int(np.isfinite(err) and err <= args.success),
                             "short_lines": short})
        done = [x for x in rows if (x["kind"], x["cond"], x["os"]) == (kind, cond, os_)]
        summary = ", ".join(
            f"{meth} {sum(x['recovered'] for x in done if x['method'] == meth)}/{args.seeds}"
            for meth in args.methods)
        log(f"[{time.perf_counter() - t_start:7.1f} s] {kind} kappa={cond:g} OS={os_:g} "
            f"m={m}: {summary}")
    return rows


def summarize(rows):
    groups = {}
    for x in rows:
        key = (x["kind"], x["n"], x["rank"], x["cond"], x["os"], x["m"], x["method"])
        groups.setdefault(key, []).append(x)
    out = []
    for key, xs in groups.items():
        rec = sum(x["recovered"] for x in xs)
        statuses = sorted({x["status"] for x in xs})
        out.append(dict(zip(SUMMARY_COLUMNS, [*key, len(xs), rec, rec / len(xs),
                                              statistics.median(x["time"] for x in xs),
                                              statistics.median(x["n_iter"] for x in xs),
                                              "/".join(statuses)])))
    return out


def write_csv(path, columns, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for x in rows:
            w.writerow({c: (f"{x[c]:.6g}" if isinstance(x[c], float) else x[c])
                        for c in columns})


def plot(summary, kind, methods, path, dpi=None):
    """One heat map per method: rows kappa, columns OS, colour = fraction recovered.

    Drawn with :mod:`lowrank_core.plotting` (Agg canvas, no pyplot state) and written at
    ``dpi`` (default :data:`lowrank_core.plotting.DEFAULT_DPI`, 150). Returns the figure,
    or None when ``summary`` has no row of ``kind``.
    """
    from lowrank_core.plotting import new_figure, save_figure

    xs = [x for x in summary if x["kind"] == kind]
    if not xs:
        return None
    conds = sorted({x["cond"] for x in xs})
    oss = sorted({x["os"] for x in xs})
    ncol = min(4, len(methods))
    nrow = -(-len(methods) // ncol)
    fig, axes = new_figure(ncol, nrow, width=3.3, height=2.7 + 0.6 / nrow)
    axes = np.atleast_1d(axes).ravel()
    for ax, method in zip(axes, methods):
        grid = np.full((len(conds), len(oss)), np.nan)
        tmed = np.full_like(grid, np.nan)
        for x in xs:
            if x["method"] == method:
                i, j = conds.index(x["cond"]), oss.index(x["os"])
                grid[i, j], tmed[i, j] = x["fraction"], x["median_time"]
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        for i in range(len(conds)):
            for j in range(len(oss)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0%}\n{tmed[i, j]:.2g}s", ha="center",
                            va="center", fontsize=7,
                            color="black" if grid[i, j] > 0.5 else "white")
        ax.set_xticks(range(len(oss)), [f"{v:g}" for v in oss])
        ax.set_yticks(range(len(conds)), [f"{v:g}" for v in conds])
        if kind == "completion":
            ax.set_xlabel(r"oversampling $m\,/\,(r(n_1+n_2-r))$")
        else:
            ax.set_xlabel(r"oversampling $m\,/\,(r(2n-r))$")
        ax.set_ylabel(r"condition number $\kappa$")
        ax.set_title(method)
    for ax in axes[len(methods):]:
        ax.axis("off")
    x0 = xs[0]
    if kind == "completion":
        what = rf"matrix completion, $n_1=n_2={x0['n']}$, $r={x0['rank']}$"
    else:
        what = rf"dense Gaussian sensing, $n={x0['n']}$, $r={x0['rank']}$"
    fig.suptitle(f"{what}: fraction of runs reaching relative error $10^{{-8}}$ (and median "
                 "time), every method at its defaults")
    save_figure(fig, path, dpi=dpi)
    return fig


def replot(summary_csv, figures, methods, dpi=None, log=print):
    """Redraw ``phase-completion.png`` and ``phase-dense.png`` in ``figures`` from a summary
    CSV (drawing only: nothing is solved and the CSV is only read). Methods are drawn in
    the order of ``methods``, then any other method of the CSV in its order."""
    summary = read_summary(summary_csv)
    in_csv = list(dict.fromkeys(x["method"] for x in summary))
    order = [m for m in methods if m in in_csv] + [m for m in in_csv if m not in methods]
    os.makedirs(figures, exist_ok=True)
    paths = []
    for kind in ("completion", "dense"):
        path = os.path.join(figures, f"phase-{kind}.png")
        if plot(summary, kind, order, path, dpi=dpi) is not None:
            log(f"wrote {os.path.normpath(path)}")
            paths.append(path)
    return paths


def read_summary(path):
    """The rows of a summary CSV, numbers parsed."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for x in rows:
        for c in ("n", "rank", "m", "runs", "recovered"):
            x[c] = int(x[c])
        for c in ("cond", "os", "fraction", "median_time", "median_iter"):
            x[c] = float(x[c])
    return rows


def rst_table(summary, kind, title):
    """An rst list-table: one row per (kappa, OS), one column per method."""
    xs = [x for x in summary if x["kind"] == kind]
    if not xs:
        return ""
    methods = list(dict.fromkeys(x["method"] for x in xs))
    cells = sorted({(x["cond"], x["os"]) for x in xs})
    by = {(x["cond"], x["os"], x["method"]): x for x in xs}
    out = [f".. list-table:: {title}", "   :header-rows: 1", "",
           "   * - κ", "     - OS"] + [f"     - {m}" for m in methods]
    for cond, os_ in cells:
        out += [f"   * - {cond:g}", f"     - {os_:g}"]
        for m in methods:
            x = by.get((cond, os_, m))
            out.append(f"     - {x['recovered']}/{x['runs']}" if x else "     - ")
    return "\n".join(out) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.rst_from:
        summary = read_summary(args.rst_from)
        x0 = {x["kind"]: x for x in summary}
        for kind, what in (("completion", "completion, n1 = n2 = {n}, r = {r}"),
                           ("dense", "dense Gaussian sensing, n = {n}, r = {r}")):
            if kind in x0:
                print(rst_table(summary, kind, what.format(n=x0[kind]["n"],
                                                            r=x0[kind]["rank"])))
        return 0
    if args.replot:
        replot(args.replot, args.figures, args.methods, dpi=args.dpi)
        return 0
    rows = run(args, log=lambda s: print(s, flush=True))
    summary = summarize(rows)
    write_csv(f"{args.out}_runs.csv", RUN_COLUMNS, rows)
    write_csv(f"{args.out}_summary.csv", SUMMARY_COLUMNS, summary)
    print(f"wrote {args.out}_runs.csv ({len(rows)} solves) and {args.out}_summary.csv")
    if not args.no_plot:
        os.makedirs(args.figures, exist_ok=True)
        for kind in ("completion", "dense"):
            path = os.path.join(args.figures, f"phase-{kind}.png")
            if plot(summary, kind, args.methods, path, dpi=args.dpi) is not None:
                print(f"wrote {os.path.normpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
