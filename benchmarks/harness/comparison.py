r"""One-run comparison of lowrank_core against what a user would otherwise write.

Same data, same process, alternating runs, medians. Two measurements:

* **per-iteration product** of every operator kind: ``residual_gradient`` (z = A(F G^T) - y,
  loss = 1/2 ||z||^2, A^T(z) G, A^T(z)^T F) against the same computation in plain numpy,
  in scipy.sparse (sparse and entrywise operators) and in PyTorch on the CPU (when
  installed). For the dense operators also the bytes of A streamed per second next to a
  plain streaming read of the same array (the memory-bandwidth floor).
* **time to accuracy** of every method of :func:`lowrank_core.solve`: wall time from the
  same initial factors, with the same step and options, until the relative residual
  ||A(F G^T) - y|| / ||y|| reaches ``tol``; the references run the same update rule
  (:func:`.references.reference_solve`) in a numpy loop on top of each baseline's product.

Every reference result is checked against lowrank_core's before anything is timed (a
benchmark of a wrong answer is worthless): products to a relative tolerance, solves by
their iteration counts and the distance between the recovered matrices.

Entry points: :func:`run_comparison` (returns a :class:`Comparison` with ``rows``,
``method_rows`` and :meth:`Comparison.to_markdown`), :func:`main` (``python
benchmarks/compare.py [all]``, also ``lowrank-core bench`` from a source checkout).

    python benchmarks/compare.py            # the issue sizes, float64 and float32
    python benchmarks/compare.py --quick    # small sizes, well under a minute
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field

import numpy as np

import lowrank_core
from lowrank_core import _dense, metrics
from lowrank_core._threads import resolve_n_threads

from .problems import (
    KIND_LABELS,
    KINDS,
    METHODS,
    PRODUCT_SIZES,
    SOLVE_SIZES,
    SYMMETRIC_METHODS,
    build_problem,
    random_factors,
)
from .references import (
    PRODUCT_RTOL,
    Unavailable,
    product_discrepancy,
    reference_products,
    reference_solve,
)
from .timing import (
    alternate,
    has_threadpoolctl,
    machine_description,
    pinned_threads,
    torch_or_none,
)

__all__ = ["Comparison", "build_parser", "main", "method_row", "product_row",
           "run_comparison"]


# ----------------------------------------------------------------------- product rows
def product_row(kind: str, size: dict, dtype, *, k: int, repeats: int, n_threads: int,
                use_torch: bool = True, seed: int = 0) -> dict:
    """Verify and time one operator's residual gradient against every baseline."""
    dtype = np.dtype(dtype)
    prob = build_problem(kind, size, rank=min(5, k), dtype=dtype, seed=seed,
                         n_threads=n_threads)
    op = prob.operator
    n1, n2 = op.shape
    F, G = random_factors(op.shape, k, dtype, same=kind == "symmetric", seed=seed + 1)
    y = prob.y
    out = (np.empty(op.m, dtype), np.empty((n1, k), dtype), np.empty((n2, k), dtype))
    refs = reference_products(kind, op, use_torch=use_torch)

    ours = op.residual_gradient(F, G, y)
    ours = (ours[0], *(np.array(x) for x in ours[1:]))
    discrepancy = {}
    for name, fn in refs.items():
        d = product_discrepancy(ours, fn(F, G, y))
        discrepancy[name] = d
        if not d <= PRODUCT_RTOL[dtype]:
            raise AssertionError(f"{kind} {dtype}: the {name} reference disagrees with "
                                 f"lowrank_core by {d:.3g} (tolerance "
                                 f"{PRODUCT_RTOL[dtype]:g}); refusing to time a wrong answer")

    fns = [lambda: op.residual_gradient(F, G, y, out=out)]
    fns += [lambda fn=fn: fn(F, G, y) for fn in refs.values()]
    bandwidth = kind in ("dense", "symmetric")
    if bandwidth:
        stored = op._rows  # what the kernel streams (packed rows for the symmetric kind)
        fns += [lambda: _dense.stream_sum(stored, n_threads), lambda: stored.sum()]
    times = alternate(fns, repeats)
    row = {"kind": kind, "label": KIND_LABELS[kind], "dtype": dtype.name, "n1": n1, "n2": n2,
               "m": op.m,
               "k": k, "n_threads": n_threads, "ours_s": times[0],
               "baselines": {name: t for name, t in zip(refs, times[1:1 + len(refs)])},
               "discrepancy": discrepancy}
    if kind == "sparse":
        row["nnz"] = op.nnz
    if bandwidth:
        t_stream, t_sum = times[-2:]
        nb = stored.nbytes
        full = op.m * n1 * n2 * dtype.itemsize
        row.update(a_bytes=nb, ours_gbs=nb / times[0] / 1e9,
                   stream_gbs=nb / t_stream / 1e9, npsum_gbs=nb / t_sum / 1e9,
                   numpy_gbs=2 * full / row["baselines"]["numpy"] / 1e9)
    return row


def method_row(kind: str, method: str, size: dict, *, repeats: int, n_threads: int,
               tol: float, max_iter: int, use_torch: bool = True, seed: int = 0) -> dict:
    """Verify and time one method's solve to ``tol`` against every baseline's loop."""
    solve = lowrank_core.solve
    if kind == "symmetric" and method not in SYMMETRIC_METHODS:
        raise Unavailable("asymmetric only; symmetric A_i do not observe the antisymmetric "
                          "part of F G^T")
    rank = 3
    prob = build_problem(kind, size, rank=rank, dtype=np.float64, seed=seed, cond=2.0,
                         n_threads=n_threads)
    op, y = prob.operator, prob.y
    symmetric = kind == "symmetric" and method in SYMMETRIC_METHODS
    start = solve(op, y, rank, method=method, symmetric=symmetric, init="spectral",
                  max_iter=0, record=False, seed=seed)
    init = start.X if symmetric else (start.F, start.G)
    F0, G0 = (init, None) if symmetric else init
    probe = solve(op, y, rank, method=method, symmetric=symmetric, init=init, max_iter=0,
                  step="fixed", record=False)
    options = dict(probe.options)
    fixed = {"step": options["step"]}
    if method == "scaledgd-lambda":
        fixed["damping"] = options["damping"]

    def ours():
        return solve(op, y, rank, method=method, symmetric=symmetric, init=init, tol=tol,
                     max_iter=max_iter, record=False, **fixed)

    res = ours()
    F_ours = res.X if symmetric else res.F
    G_ours = F_ours if symmetric else res.G
    refs = reference_products(kind, op, use_torch=use_torch)

    def make_ref(rg):
        return lambda: reference_solve(rg, y, F0, G0, method, options, symmetric=symmetric,
                                       tol=tol, max_iter=max_iter)

    ref_fns = {name: make_ref(rg) for name, rg in refs.items()}
    agreement = {}
    iters = {}
    scale = metrics.factored_norm(F_ours, G_ours)
    for name, fn in ref_fns.items():
        F, G, n_iter, status = fn()
        d = metrics.factored_distance(F, G, F_ours, G_ours) / scale
        iters[name] = n_iter
        agreement[name] = d
        close_iters = abs(n_iter - res.n_iter) <= max(2, 0.1 * res.n_iter)
        if status != res.status or not close_iters or not d <= 1e-3:
            raise AssertionError(
                f"{method} on {kind}: the {name} reference loop ({status}, {n_iter} "
                f"iterations) disagrees with lowrank_core ({res.status}, {res.n_iter} "
                f"iterations; relative distance of the estimates {d:.3g}); refusing to time")
    times = alternate([ours, *ref_fns.values()], repeats, warmup=False)
    n1, n2 = op.shape
    return {"kind": kind, "label": KIND_LABELS[kind], "method": method, "symmetric": symmetric,
                "n1": n1, "n2": n2, "m": op.m, "rank": rank, "status": res.status,
                "n_iter": res.n_iter,
                "error": float(prob.relative_error(F_ours, G_ours)), "ours_s": times[0],
                "baselines": dict(zip(ref_fns, times[1:])), "ref_iters": iters,
                "agreement": agreement, "n_threads": n_threads, "tol": tol}


# ------------------------------------------------------------------------------ report
def _ms(t: float) -> str:
    ms = 1e3 * t
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _times(x: float) -> str:
    """A speed ratio to two significant digits (0.03×, 0.7×, 12×): one decimal would print
    a ratio below 0.05 as "0.0×", which says nothing."""
    return f"{x:.2g}" if x < 10 else f"{x:.0f}"


def _ratio(base: float | None, ours: float) -> str:
    return "—" if base is None else f"{_ms(base)} ({_times(base / ours)}×)"


def _best(baselines: dict, lib: str):
    """Fastest time among a library's variants ("scipy.sparse", "scipy.sparse dense-S")."""
    times = [t for name, t in baselines.items() if name == lib or name.startswith(lib + " ")]
    return min(times) if times else None


def _shape(r) -> str:
    s = f"{r['n1']}×{r['n2']}, m={r['m']:,}"
    if "nnz" in r:
        s += f", nnz={r['nnz']:,}"
    return s


@dataclass
class Comparison:
    """Result of :func:`run_comparison`: rows, the conditions, and the markdown."""

    rows: list = field(default_factory=list)
    method_rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    machine: str = ""
    conditions: str = ""
    command: str = ""

    def to_markdown(self) -> str:
        out = [f"Machine: {self.machine}", "", f"Conditions: {self.conditions}", "",
               f"Command: `{self.command}`", ""]
        libs = ["numpy", "scipy.sparse", "torch"]
        if self.rows:
            out += [("**Per-iteration product** `residual_gradient` (z = A(FGᵀ) − y, Aᵀ(z)G, "
                    "Aᵀ(z)ᵀF), median ms; in brackets the baseline's time over "
                    "lowrank_core's (>1× = lowrank_core faster). Every baseline was checked "
                    "against lowrank_core before timing (max relative difference in the last "
                    "column). scipy.sparse for sparse A_i: the faster of gather + precomputed CSR "
                    "selectors (the issue's reference) and CSR (m, n1·n2) times vec(FGᵀ), "
                    "which forms n1 × n2 (both listed below the table); for entries: CSR "
                    "structure of Aᵀ(z) built once, data rewritten per call."), "",
                    ("| operator | size | k | dtype | lowrank_core ms | numpy ms | "
                    "scipy.sparse ms | torch ms | max rel. diff |"),
                    "|---|---|---|---|---|---|---|---|---|"]
            for r in self.rows:
                cells = [_ratio(_best(r["baselines"], lib), r["ours_s"]) for lib in libs]
                out.append(f"| {r['label']} | {_shape(r)} | {r['k']} | {r['dtype']} | "
                           f"{_ms(r['ours_s'])} | {' | '.join(cells)} | "
                           f"{max(r['discrepancy'].values()):.1e} |")
            variants = [r for r in self.rows if "scipy.sparse dense-S" in r["baselines"]]
            if variants:
                out.append("")
            for r in variants:
                b = r["baselines"]
                out.append(f"scipy.sparse variants for {r['label']} {r['dtype']}: gather + "
                           f"precomputed CSR selectors {_ratio(b['scipy.sparse'], r['ours_s'])}"
                           f"; CSR times vec(FGᵀ), dense S "
                           f"{_ratio(b['scipy.sparse dense-S'], r['ours_s'])}.  ")
            bw = [r for r in self.rows if "a_bytes" in r]
            if bw:
                out += ["", ("**Dense operators: bytes of A streamed per second** "
                        "(lowrank_core reads its stored A once per iteration, packed for the "
                        "symmetric kind; numpy reads the full A twice) next to a plain "
                        "streaming read of the stored A (the bandwidth floor: lowrank_core's "
                        "`stream_sum` with the same threads / `numpy.sum`)."), "",
                        ("| operator | dtype | stored A | lowrank_core GB/s | numpy GB/s | "
                        "streaming read GB/s (ours / numpy sum) | lowrank_core / streaming "
                        "read |"),
                        "|---|---|---|---|---|---|---|"]
                for r in bw:
                    out.append(f"| {r['label']} | {r['dtype']} | {r['a_bytes'] / 1e6:.0f} MB "
                               f"| {r['ours_gbs']:.1f} | {r['numpy_gbs']:.1f} | "
                               f"{r['stream_gbs']:.1f} / {r['npsum_gbs']:.1f} | "
                               f"{r['ours_gbs'] / r['stream_gbs']:.0%} |")
        if self.method_rows:
            out += ["", ("**Time to accuracy** (float64, rank-3 truth with cond 2, k = 3, "
                    "spectral initialization computed once and shared, same step and "
                    "options): median ms of the whole solve until the relative residual "
                    f"≤ {self.method_rows[0]['tol']:g}; the baselines run the same update "
                    "rule as a numpy loop on their own product. In brackets: baseline time "
                    "over lowrank_core's."), "",
                    ("| method | operator | size | iterations | final error | lowrank_core "
                    "ms | numpy ms | scipy.sparse ms | torch ms |"),
                    "|---|---|---|---|---|---|---|---|---|"]
            for r in self.method_rows:
                cells = [_ratio(_best(r["baselines"], lib), r["ours_s"]) for lib in libs]
                form = "XXᵀ" if r["symmetric"] else "FGᵀ"
                out.append(f"| {r['method']} ({form}) | {r['label']} | {_shape(r)} | "
                           f"{r['n_iter']} ({r['status']}) | {r['error']:.1e} | "
                           f"{_ms(r['ours_s'])} | {' | '.join(cells)} |")
        if self.skipped:
            out += ["", "Not measured: " + "; ".join(self.skipped) + "."]
        return "\n".join(out)


def run_comparison(*, quick: bool = False, kinds=KINDS, dtypes=("float64", "float32"),
                   methods=METHODS, k: int = 10, repeats: int | None = None,
                   solve_repeats: int | None = None, n_threads: int | None = None,
                   tol: float = 1e-6, max_iter: int | None = None, use_torch: bool = True,
                   products: bool = True, solves: bool = True, command: str = "",
                   log=None) -> Comparison:
    """Run the comparison and return a :class:`Comparison`.

    Parameters
    ----------
    quick : bool
        Small sizes (:data:`PRODUCT_SIZES` / :data:`SOLVE_SIZES` "quick") and few repeats.
    kinds, dtypes, methods : sequences
        What to measure. Methods are timed in float64 only.
    k : int
        Factor width of the product measurement (the issues use 10).
    repeats, solve_repeats : int, optional
        Timed runs per implementation (defaults 15 / 3, quick 5 / 1); every
        implementation has run once before (verification, warm-up).
    n_threads : int, optional
        Threads for every library (OpenMP kernels, BLAS via threadpoolctl, torch);
        default: the OpenMP default (``OMP_NUM_THREADS`` or all cores).
    log : callable, optional
        Called with a progress line per measurement (e.g. ``print``).
    """
    profile = "quick" if quick else "default"
    repeats = repeats if repeats is not None else (5 if quick else 15)
    solve_repeats = solve_repeats if solve_repeats is not None else (1 if quick else 3)
    max_iter = max_iter if max_iter is not None else (1000 if quick else 2000)
    if not command:
        command = _equivalent_command(quick, kinds, dtypes, methods, k, repeats,
                                      solve_repeats, n_threads, tol, use_torch, products,
                                      solves)
    n_threads = resolve_n_threads(n_threads)
    use_torch = use_torch and torch_or_none() is not None
    result = Comparison(command=command)
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    with pinned_threads(n_threads):
        if products:
            for kind in kinds:
                for dtype in dtypes:
                    try:
                        row = product_row(kind, PRODUCT_SIZES[profile][kind], dtype, k=k,
                                          repeats=repeats, n_threads=n_threads,
                                          use_torch=use_torch)
                    except Unavailable as exc:
                        result.skipped.append(f"{kind} product ({exc})")
                        break
                    result.rows.append(row)
                    if log:
                        log(f"product {kind} {dtype}: {_ms(row['ours_s'])} ms")
        if solves:
            for method in methods:
                for kind in kinds:
                    try:
                        row = method_row(kind, method, SOLVE_SIZES[profile][kind],
                                         repeats=solve_repeats, n_threads=n_threads, tol=tol,
                                         max_iter=max_iter, use_torch=use_torch)
                    except Unavailable as exc:
                        result.skipped.append(f"{method} on {kind} ({exc})")
                        continue
                    result.method_rows.append(row)
                    if log:
                        log(f"solve {method} {kind}: {row['n_iter']} iterations, "
                            f"{_ms(row['ours_s'])} ms")
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    result.machine = machine_description(n_threads)
    blas = "threadpoolctl" if has_threadpoolctl() else "not pinned (threadpoolctl missing)"
    result.conditions = (
        f"{n_threads} thread(s) for every library (lowrank_core OpenMP, BLAS via {blas}, "
        f"torch.set_num_threads); {'quick' if quick else 'default'} sizes; median of "
        f"{repeats} alternating runs per product, {solve_repeats} per solve, after one "
        f"warm-up each; same arrays for all libraries, in the operator's dtype"
        + (f"; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end"
           if load0 else ""))
    return result


def _equivalent_command(quick, kinds, dtypes, methods, k, repeats, solve_repeats, n_threads,
                        tol, use_torch, products, solves) -> str:
    """The benchmarks/compare.py command line that reproduces these settings."""
    parts = ["python benchmarks/compare.py"] + (["--quick"] if quick else [])
    if list(kinds) != list(KINDS):
        parts += ["--kinds", *kinds]
    if list(dtypes) != ["float64", "float32"]:
        parts += ["--dtypes", *dtypes]
    if list(methods) != list(METHODS):
        parts += ["--methods", *methods]
    if k != 10:
        parts += ["--k", str(k)]
    parts += ["--repeats", str(repeats), "--solve-repeats", str(solve_repeats),
              "--threads", str(n_threads)]
    if tol != 1e-6:
        parts += ["--tol", f"{tol:g}"]
    parts += (["--no-torch"] if not use_torch else []) + (
        ["--no-products"] if not products else []) + (["--no-solves"] if not solves else [])
    return " ".join(parts)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=(
        "One-run comparison of lowrank_core against plain numpy, scipy.sparse and PyTorch "
        "(same data, same process, alternating runs, medians); prints a markdown table."))
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and few repeats (well under a minute)")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--dtypes", nargs="+", choices=("float64", "float32"),
                    default=["float64", "float32"])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--k", type=int, default=10, help="factor width of the products")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs per product (default 15, quick 5)")
    ap.add_argument("--solve-repeats", type=int, default=None,
                    help="timed runs per solve (default 3, quick 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every library (default: the OpenMP default)")
    ap.add_argument("--tol", type=float, default=1e-6,
                    help="relative residual of the time-to-accuracy runs")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--no-products", action="store_true", help="skip the product table")
    ap.add_argument("--no-solves", action="store_true", help="skip time to accuracy")
    ap.add_argument("--output", help="also write the markdown to this file")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    """Command line: parse ``argv``, run, print the markdown (and write ``--output``)."""
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    shown = list(sys.argv[1:] if argv is None else argv)
    command = " ".join([prog or "python benchmarks/compare.py", *map(shlex.quote, shown)])
    result = run_comparison(
        quick=args.quick, kinds=args.kinds, dtypes=args.dtypes, methods=args.methods,
        k=args.k, repeats=args.repeats, solve_repeats=args.solve_repeats,
        n_threads=args.threads, tol=args.tol, use_torch=not args.no_torch,
        products=not args.no_products, solves=not args.no_solves, command=command,
        log=lambda s: print(s, file=sys.stderr, flush=True))
    text = result.to_markdown()
    print(text)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    return 0
