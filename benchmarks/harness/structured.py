"""Per-iteration residual_gradient of the structured operators against numpy/scipy.sparse.

For each operator, the same data is handed to lowrank_core and to the code a user would
write with numpy and scipy.sparse (:mod:`.references`); the two are run ALTERNATELY in the
same process and the medians are reported as a markdown table. Outputs are checked to
agree before timing.

    python benchmarks/compare.py structured            # the three comparisons
    python benchmarks/compare.py structured --quick    # smaller sizes, a smoke run
    python benchmarks/compare.py structured --threads 1  # both sides single-threaded
    python benchmarks/compare.py structured --only rank-one  # one case (entries, sparse,
                                                             # rank-one); repeatable
    python benchmarks/compare.py structured --scale    # one completion iteration at
                                                       # n1 = n2 = 1e6, |Omega| = 1e8, k = 10

References
----------
entries   z = rowdot(F[rows], G[cols]) - y; S.data[:] = z on a CSR matrix whose structure
          is built once; S @ G and S.T @ F (scipy.sparse).
sparse    p = rowdot(F[r], G[c]) over the nonzeros, z = bincount(meas, v p) - y, then
          either S = csr((v z[meas], (r, c))) per iteration with S @ G, S.T @ F, or
          precomputed CSR selectors R, C with S G = R (w G[c]), S^T F = C (w F[r]): the
          faster of these two sampled variants is the reference (the issue's definition).
          Also timed and printed: the dense-S variant z = A @ vec(F G^T) - y,
          S = reshape(A^T z), S @ G, S.T @ F, which forms n1 x n2 (cheap at n = 2000).
rank-one  U = a F, V = b G, z = rowsum(U V) - y, a^T (z V), b^T (z U): four numpy GEMMs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import time

import numpy as np
import scipy.sparse as sp

import lowrank_core as lc
from lowrank_core._threads import thread_limit
from lowrank_core.operators import sample_entries

from .references import product_discrepancy, reference_products, sparse_per_iteration_csr
from .timing import alternate as _alternate
from .timing import pinned_threads


def alternate(fns: dict, repeats: int) -> dict:
    """Median seconds per named function, run in alternation after one warm-up each."""
    return dict(zip(fns, _alternate(list(fns.values()), repeats)))


def check(ours, ref, what):
    worst = product_discrepancy(ours, ref)
    if worst > 1e-10:
        raise AssertionError(f"{what}: lowrank_core and the reference disagree ({worst:.2e})")
    return worst


# ----------------------------------------------------------------------------- cases
def bench_entries(n1, n2, nobs, k, repeats, rng):
    rows, cols = sample_entries(n1, n2, nobs, rng)  # row-major sorted, like CSR input
    F = rng.standard_normal((n1, k))
    G = rng.standard_normal((n2, k))
    y = rng.standard_normal(nobs)
    op = lc.EntryOperator(rows, cols, (n1, n2))
    out = (np.empty(nobs), np.empty((n1, k)), np.empty((n2, k)))
    reference = reference_products("entries", op, use_torch=False)["scipy.sparse"]

    def ours():
        return op.residual_gradient(F, G, y, out=out)

    err = check(ours(), reference(F, G, y), "entries")
    t = alternate({"ours": ours, "ref": lambda: reference(F, G, y)}, repeats)
    return {"name": "entries (completion)", "size": f"n1={n1}, n2={n2}, #Ω={nobs:.0e}, k={k}",
            "ours": t["ours"], "ref": t["ref"], "ref_name": "einsum + scipy CSR", "err": err,
            "target": 8.0}


def bench_sparse(m, n1, n2, s, k, repeats, rng):
    meas = np.repeat(np.arange(m), s)
    r = rng.integers(0, n1, m * s)
    c = rng.integers(0, n2, m * s)
    v = rng.standard_normal(m * s)
    A = sp.csr_matrix((v, (meas, r * n2 + c)), shape=(m, n1 * n2))
    op = lc.SparseOperator(A, (n1, n2))
    F = rng.standard_normal((n1, k))
    G = rng.standard_normal((n2, k))
    y = rng.standard_normal(m)
    out = (np.empty(m), np.empty((n1, k)), np.empty((n2, k)))
    refs = reference_products("sparse", op, use_torch=False)
    variants = {"sampled": sparse_per_iteration_csr(op), "selectors": refs["scipy.sparse"],
                "dense": refs["scipy.sparse dense-S"]}

    def ours():
        return op.residual_gradient(F, G, y, out=out)

    err = check(ours(), variants["sampled"](F, G, y), "sparse (sampled)")
    check(ours(), variants["selectors"](F, G, y), "sparse (selectors)")
    check(ours(), variants["dense"](F, G, y), "sparse (dense S)")
    t = alternate({"ours": ours, **{name: (lambda fn=fn: fn(F, G, y))
                                    for name, fn in variants.items()}}, repeats)
    names = {"sampled": "einsum + bincount + CSR of S per iteration",
             "selectors": "einsum + bincount + precomputed CSR selectors",
             "dense": "A @ vec(F G^T), dense S = A^T z (forms n1 x n2)"}
    sampled = min(("sampled", "selectors"), key=t.get)  # the issue's reference: best variant
    others = [f"{names[x]}: {t[x] * 1e3:.1f} ms ({t[x] / t['ours']:.1f}×)"
              for x in names if x != sampled]
    return {"name": "sparse A_i", "size": f"m={m}, n1=n2={n1}, {s} nnz/A_i, k={k}",
            "ours": t["ours"], "ref": t[sampled], "ref_name": names[sampled], "err": err,
            "target": 5.0, "note": "; ".join(others)}


def bench_rank_one(m, n1, n2, k, repeats, rng):
    a = rng.standard_normal((m, n1))
    b = rng.standard_normal((m, n2))
    op = lc.RankOneOperator(a, b)
    F = rng.standard_normal((n1, k))
    G = rng.standard_normal((n2, k))
    y = rng.standard_normal(m)
    out = (np.empty(m), np.empty((n1, k)), np.empty((n2, k)))
    reference = reference_products("rank-one", op, use_torch=False)["numpy"]

    def ours():
        return op.residual_gradient(F, G, y, out=out)

    err = check(ours(), reference(F, G, y), "rank-one")
    t = alternate({"ours": ours, "ref": lambda: reference(F, G, y)}, repeats)
    return {"name": "rank-one", "size": f"m={m}, n1=n2={n1}, k={k}", "ours": t["ours"],
            "ref": t["ref"], "ref_name": "4 numpy GEMMs", "err": err, "target": 1.5}


def table(rows) -> str:
    lines = ["| operator | size | lowrank_core | reference | speedup | target | reference code |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ref = r["ref_name"] + (f" (also: {r['note']})" if r.get("note") else "")
        lines.append(f"| {r['name']} | {r['size']} | {r['ours'] * 1e3:.1f} ms | "
                     f"{r['ref'] * 1e3:.1f} ms | {r['ref'] / r['ours']:.1f}× | "
                     f"≥ {r['target']:g}× | {ref} |")
    return "\n".join(lines)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


def scale(n, nobs, k, iters, seed):
    """make_problem + one (or a few) completion iterations at n1 = n2 = n."""
    t0 = time.perf_counter()
    pr = lc.make_problem(n, n, rank=k, m=nobs, operator="entries", seed=seed)
    t_build = time.perf_counter() - t0
    op, y = pr.operator, pr.y
    rng = np.random.default_rng(seed + 1)
    F = rng.standard_normal((n, k)) * 0.1
    G = rng.standard_normal((n, k)) * 0.1
    out = (np.empty(op.m), np.empty((n, k)), np.empty((n, k)))
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        _loss, *_ = op.residual_gradient(F, G, y, out=out)
        times.append(time.perf_counter() - t0)
    # sanity: the residual at the truth is zero (y was measured from the truth factors)
    L, R = pr.truth_factors
    z_truth = op.residual_gradient(L, R, y, out=out)[1]
    assert float(np.max(np.abs(z_truth))) < 1e-10 * float(np.max(np.abs(y)))
    print(f"\nScale test: n1 = n2 = {n:.0e}, |Omega| = {op.m:.3g}, k = {k}, float64, "
          f"{op.n_threads} threads, index dtype {op._cols_r.dtype}")
    print("| phase | value |\n|---|---|")
    print(f"| make_problem (sample Omega, build orderings, measure y) | {t_build:.1f} s |")
    print(f"| residual_gradient, first iteration | {times[0]:.2f} s |")
    if iters > 1:
        print(f"| residual_gradient, median of {iters} | {statistics.median(times):.2f} s |")
    print(f"| operator index memory (op.nbytes) | {op.nbytes / 2**30:.2f} GiB |")
    print(f"| peak resident memory (getrusage maxrss) | {peak_rss_gib():.2f} GiB |")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--scale", action="store_true",
                    help="only the n1 = n2 = 1e6, |Omega| = 1e8 completion iteration")
    ap.add_argument("--scale-n", type=float, default=1e6)
    ap.add_argument("--scale-nobs", type=float, default=1e8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", choices=["entries", "sparse", "rank-one"],
                    help="run only this case (may be given several times)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for lowrank_core (OpenMP) AND numpy's BLAS (default: all)")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.threads is not None:  # compare.py also sets the environment before numpy
            stack.enter_context(thread_limit(args.threads))
            stack.enter_context(pinned_threads(args.threads))
        if args.scale:
            scale(int(args.scale_n), int(args.scale_nobs), 10, 3, args.seed)
            return 0
        rng = np.random.default_rng(args.seed)
        f = 10 if args.quick else 1
        cases = {
            "entries": lambda: bench_entries(20000 // f, 15000 // f, int(2e6) // f**2, 10,
                                             args.repeats, rng),
            "sparse": lambda: bench_sparse(50000 // f, 2000 // f, 2000 // f, 20, 10,
                                           args.repeats, rng),
            "rank-one": lambda: bench_rank_one(20000 // f, 300, 300, 10, args.repeats, rng),
        }
        rows = [run() for name, run in cases.items() if not args.only or name in args.only]
        print(f"lowrank_core {lc.__version__}, numpy {np.__version__}, python "
              f"{platform.python_version()}, {os.cpu_count()} CPUs, float64, "
              f"threads (OpenMP and BLAS) = {lc.DenseOperator(np.ones((1, 1, 1))).n_threads}, "
              f"kernels {lc.simd_variant()}, median of {args.repeats} alternating runs\n")
        print(table(rows))
    return 0
