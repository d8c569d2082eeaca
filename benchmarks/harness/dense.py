"""Dense operators' per-iteration product against plain numpy in float64 (issue 3's check).

Same data, same process, alternating runs, medians. For each case: the time of
``residual_gradient`` (z = A(FG^T) - y, A^T(z) G, A^T(z)^T F) for lowrank_core and for the
same computation in numpy (:func:`.references.dense_numpy_product`, ALWAYS float64 on the
full (m, n*n) matrices), their ratio, and the bytes of A streamed per second next to a
plain streaming read of the same array (the memory-bandwidth floor).

    python benchmarks/compare.py dense            # n1 = n2 = 100, m = 2500, k = 10
    python benchmarks/compare.py dense --n 60 --m 1000 --repeats 9
"""

from __future__ import annotations

import argparse

import numpy as np

import lowrank_core as lc
from lowrank_core import _dense
from lowrank_core._threads import resolve_n_threads

from .references import dense_numpy_product
from .timing import alternate, machine_description


def run(n: int, m: int, k: int, repeats: int) -> list[dict]:
    """One row per case: general float64, symmetric packed float64, general float32."""
    rng = np.random.default_rng(0)
    rows = []
    cases = [
        ("general dense float64", False, np.float64),
        ("symmetric packed float64 (PSD)", True, np.float64),
        ("general dense float32", False, np.float32),
    ]
    for label, psd, dtype in cases:
        prob = lc.make_problem(n, rank=5, m=m, psd=psd, dtype=dtype, seed=1)
        op = prob.operator
        # the numpy baseline is ALWAYS float64 on the full (m, n*n) matrices
        A2 = op.matrices.reshape(m, n * n).astype(np.float64)
        numpy_rg = dense_numpy_product(A2, (n, n))
        y64 = prob.y.astype(np.float64)
        F64 = rng.standard_normal((n, k))
        G64 = F64 if psd else rng.standard_normal((n, k))
        F, G, y = F64.astype(dtype), G64.astype(dtype), prob.y
        out = (np.empty(m, dtype), np.empty((n, k), dtype), np.empty((n, k), dtype))
        stored = op._rows  # what the kernel streams (packed for the symmetric operator)
        nt = op.n_threads
        t_ours, t_np, t_stream, t_npsum = alternate([
            lambda op=op, F=F, G=G, y=y, out=out: op.residual_gradient(F, G, y, out=out),
            lambda rg=numpy_rg, F=F64, G=G64, y=y64: rg(F, G, y),
            lambda stored=stored, nt=nt: _dense.stream_sum(stored, nt),
            stored.sum,
        ], repeats)
        rows.append({"case": label, "ours_ms": 1e3 * t_ours, "numpy_ms": 1e3 * t_np,
                     "speedup": t_np / t_ours, "bytes": stored.nbytes,
                     "ours_gbs": stored.nbytes / t_ours / 1e9,
                     "stream_gbs": stored.nbytes / t_stream / 1e9,
                     "npsum_gbs": stored.nbytes / t_npsum / 1e9,
                     "numpy_gbs": 2 * A2.nbytes / t_np / 1e9})
    return rows


def to_markdown(rows, n, m, k) -> str:
    out = [f"n1 = n2 = {n}, m = {m}, k = {k}; numpy baseline in float64 on the full matrices.",
           "",
           ("| case | lowrank_core ms | numpy ms | speed-up | A bytes | lowrank_core GB/s "
           "(A read once) | numpy GB/s (A read twice) | streaming read GB/s (ours / numpy sum) |"),
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['case']} | {r['ours_ms']:.2f} | {r['numpy_ms']:.2f} | "
                   f"{r['speedup']:.2f}x | {r['bytes'] / 1e6:.0f} MB | {r['ours_gbs']:.1f} | "
                   f"{r['numpy_gbs']:.1f} | {r['stream_gbs']:.1f} / {r['npsum_gbs']:.1f} |")
    return "\n".join(out)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--m", type=int, default=2500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=25)
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    rows = run(args.n, args.m, args.k, args.repeats)
    print(f"Machine: {machine_description(resolve_n_threads(None))}\n")
    print(to_markdown(rows, args.n, args.m, args.k))
    return 0
