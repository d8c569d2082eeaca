"""What sharding over Dask costs, and a problem no single worker could hold.

Part 1 (overhead): one ``residual_gradient`` call (one iteration's operator work) on a small
dense problem, single-process versus :class:`~lowrank_core.distributed.ShardedOperator` with
1, 2 and 4 shards on a local cluster of two single-threaded worker processes. Medians of
alternating runs; the difference is the per-iteration price of the cluster (serialization,
two loopback messages per shard, the client-side sums). Then a whole ``lowrank_core.solve``
run, single-process and on 2 shards, checked to give the same iterates.

Part 2 (beyond one worker): a float32 Gaussian sensing problem whose operator is larger than
any worker's memory limit (default n = 100, m = 50 000: 2.0 GB against 2 workers x 1.5 GiB),
generated on the workers from seeds, measured through the shards, initialised spectrally
through the shards) and solved by ``lowrank_core.solve(method="gd")``. Reports sizes,
build / per-iteration / total times, the relative error and each worker's resident and peak
memory.

    python benchmarks/compare.py distributed               # both parts (about 2 minutes)
    python benchmarks/compare.py distributed --skip-large  # part 1 only
    python benchmarks/compare.py distributed --large-m 20000 --memory-limit 1GiB

Workers listen on 127.0.0.1 only and are shut down at exit.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import numpy as np

import lowrank_core as lc
from lowrank_core.distributed import ShardedOperator, make_sharded_problem

try:
    import distributed
except ImportError as exc:  # pragma: no cover
    raise SystemExit("this benchmark needs Dask: pip install 'lowrank-core[dask]'") from exc

from .timing import alternate


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.2f} GiB"


def local_cluster(memory_limit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=memory_limit, silence_logs=50)




# ------------------------------------------------------------------------- part 1
def overhead(args) -> None:
    n, m, k = args.small_n, args.small_m, args.k
    prob = lc.make_problem(n, rank=min(5, k), m=m, seed=0, n_threads=1)
    op = prob.operator
    rng = np.random.default_rng(1)
    F, G = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    print(f"\n== Part 1: per-iteration overhead, dense n1 = n2 = {n}, m = {m}, k = {k}, "
          f"float64, A = {fmt_bytes(op.nbytes)}; 2 workers x 1 thread, loopback ==")
    with local_cluster("2GiB") as cluster, distributed.Client(cluster) as client:
        sharded = {s: ShardedOperator.from_operator(op, s, client) for s in (1, 2, 4)}
        fns = [lambda: op.residual_gradient(F, G, prob.y)]
        fns += [lambda s=s: sharded[s].residual_gradient(F, G, prob.y) for s in sharded]
        times = alternate(fns, args.repeats)
        # iterates agree with single process (the benchmark's own sanity check)
        ref = op.residual_gradient(F, G, prob.y)
        for sop in sharded.values():
            got = sop.residual_gradient(F, G, prob.y)
            err = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                      for a, b in zip(got[1:], ref[1:]))
            assert err < 1e-12, err
        print("residual_gradient (the fused per-iteration call):")
        print(f"{'operator':<28}{'ms / iteration':>16}{'overhead ms':>14}"
              f"{'bytes sent+received / it':>28}")
        print(f"{'single process (1 thread)':<28}{times[0] * 1e3:>16.2f}{'':>14}{'':>28}")
        for s, t in zip(sharded, times[1:]):
            traffic = 8 * (s * 2 * (2 * n * k) + m)  # F, G out and SG, StF back per shard; z
            print(f"{f'ShardedOperator, {s} shard(s)':<28}{t * 1e3:>16.2f}"
                  f"{(t - times[0]) * 1e3:>14.2f}{fmt_bytes(traffic):>28}")
        # the whole solver loop: lowrank_core.solve, GD from a small random init
        kw = {"method": "gd", "max_iter": args.solve_iters, "tol": 1e-300, "seed": 0,
              "step": "fixed"}
        ref = lc.solve(op, prob.y, k, **kw)
        got = lc.solve(sharded[2], prob.y, k, **kw)
        err = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                  for a, b in zip(got.factors, ref.factors))
        print(f"solve(method='gd', {ref.n_iter} iterations): single process "
              f"{ref.time / ref.n_iter * 1e3:.2f} ms / iteration, 2 shards "
              f"{got.time / got.n_iter * 1e3:.2f} ms / iteration; iterates agree to {err:.1e}")
        for sop in sharded.values():
            sop.close()


# ------------------------------------------------------------------------- part 2
def beyond_one_worker(args) -> None:
    n, m, r = args.large_n, args.large_m, args.rank
    dtype = np.dtype(np.float32)
    op_bytes = m * n * n * dtype.itemsize
    print(f"\n== Part 2: n1 = n2 = {n}, m = {m}, rank {r}, float32: A = {op_bytes:,} bytes "
          f"({fmt_bytes(op_bytes)}); 2 workers x {args.memory_limit} ==")
    with local_cluster(args.memory_limit) as cluster, distributed.Client(cluster) as client:
        t0 = time.perf_counter()
        prob = make_sharded_problem(n, rank=r, m=m, n_shards=2, client=client, dtype=dtype,
                                    seed=0)
        t_build = time.perf_counter() - t0
        op = prob.operator
        limit = min(info["memory_limit"] for info in op.memory_usage())
        print(f"worker memory_limit {limit:,} bytes ({fmt_bytes(limit)}): A is "
              f"{op_bytes / limit:.2f}x one worker's limit")
        print(f"built on the workers and measured y = A(M*) through the shards in "
              f"{t_build:.1f} s: {op}")
        res = lc.solve(op, prob.y, r, method="gd", init="spectral", step=args.eta,
                       max_iter=args.iters, tol=1e-300, seed=0, truth=prob.truth_factors)
        err = prob.relative_error(*res.factors)
        errors = res.history["error"]
        print(f"lowrank_core.solve(method='gd', init='spectral', step={args.eta}): spectral "
              f"init {res.init_time:.2f} s (relative error {errors[0]:.3e}), {res.n_iter} "
              f"iterations in {res.time:.1f} s = {res.time / res.n_iter * 1e3:.0f} ms / "
              f"iteration; final relative error {err:.3e} ({res.status})")
        mem = op.memory_usage()
        client_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"{'shard':>6} {'rows':>16} {'worker':>24} {'shard bytes':>14} {'worker RSS':>12}"
              f" {'peak RSS':>12} {'limit':>10}")
        for sh, rows, info in zip(range(op.n_shards), op.shard_rows, mem):
            print(f"{sh:>6} {f'{rows[0]}..{rows[1] - 1}':>16} {info['address']:>24} "
                  f"{fmt_bytes(info['shard_nbytes']):>14} {fmt_bytes(info['rss']):>12} "
                  f"{fmt_bytes(info['peak_rss']):>12} {fmt_bytes(info['memory_limit']):>10}")
        print(f"client process peak RSS {fmt_bytes(client_rss)} (A never on the client)")
        op.close()


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--small-n", type=int, default=50)
    parser.add_argument("--small-m", type=int, default=2500)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--solve-iters", type=int, default=100)
    parser.add_argument("--large-n", type=int, default=100)
    parser.add_argument("--large-m", type=int, default=50_000)
    parser.add_argument("--rank", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--eta", type=float, default=0.5)
    parser.add_argument("--memory-limit", default="1.5GiB")
    parser.add_argument("--skip-large", action="store_true")
    return parser


def main(argv=None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    print(f"lowrank_core {lc.__version__}, dask {distributed.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    overhead(args)
    if not args.skip_large:
        beyond_one_worker(args)
    return 0
