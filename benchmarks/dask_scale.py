"""A planted completion problem sharded over local Dask worker processes, generated on
the workers (``ShardedOperator.completion``): build time, per-iteration time, the share
of an iteration spent outside the shards' kernels (communication), peak memory per
worker, and optionally a worker killed mid-solve (recovery time, final loss vs an
undisturbed run with the same seeds).

Smoke size (seconds)::

    python benchmarks/dask_scale.py --nobs 1e5 --n 2000 --iters 3

The 10^9 run of docs/dask.rst (about 17 GiB: 4 x 3.75 GiB workers and a 1 GiB client;
35 minutes on the shared 2-core VM)::

    python benchmarks/dask_scale.py --nobs 1e9 --n 1e6 --workers 4 --shards-per-worker 16 \\
        --memory-limit 3.75GiB --iters 2 --kill-at 1 --residual recompute --timeout 5400

Large runs (above 3 GiB in total) go under the shared lock::

    flock /work/notes/bigmem.lock python benchmarks/dask_scale.py --nobs 1e8 --n 1e6 \\
        --workers 4 --shards-per-worker 4 --memory-limit 3.5GiB --iters 6 --kill-at 3

Per iteration the client sends F and G to every shard and gets back its loss, its
residual z_s (not with ``--residual shards``: then z_s stays on the worker) and its two
k-column partial products (``residual_gradient``); with the
fixed step (``--step``, default 0.3: the planted M* has singular values near 1 and the
operator is scaled by 1/sqrt(p)) nothing else runs. The communication share is
1 - (kernel seconds of the busiest worker) / (client wall seconds), both summed over the
timed iterations; kernel seconds are measured inside the actors around the compiled
kernel call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import time
import warnings

import numpy as np


def _size(text: str) -> int:
    return int(float(text))


def _bytes(text: str) -> int:
    from dask.utils import parse_bytes

    return int(parse_bytes(text))


def _worker_memory(client) -> dict:
    """Per worker process: resident and peak resident bytes (VmRSS, VmHWM)."""
    def probe():
        out = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS", "VmHWM")):
                    key, val, _ = line.split()
                    out[key[:-1]] = int(val) * 1024
        return {"pid": os.getpid(), **out}

    return client.run(probe)


def _rss_self() -> dict:
    """The client process's resident and peak resident bytes now."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, val, _ = line.split()
                out[key[:-1]] = int(val) * 1024
    return out


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(args) -> dict:
    import distributed

    import lowrank_core as lc
    from lowrank_core.distributed import ShardedOperator

    n = args.n
    out: dict = {"nobs": args.nobs, "n1": n, "n2": n, "rank": args.rank,
                 "workers": args.workers, "memory_limit": args.memory_limit,
                 "n_shards": args.workers * args.shards_per_worker, "dtype": args.dtype,
                 "layout": args.layout, "residual": args.residual, "y": args.y,
                 "in_flight": args.in_flight, "load_before": os.getloadavg()}
    if args.pause is not None:
        import dask

        dask.config.set({"distributed.worker.memory.pause": args.pause})
        out["pause_fraction"] = args.pause
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=args.memory_limit, silence_logs=40)
    with cluster, distributed.Client(cluster) as client:
        t0 = time.perf_counter()
        _log(f"building {out['n_shards']} shards")
        sop = ShardedOperator.completion(
            n, n, args.rank, args.nobs, n_shards=out["n_shards"], client=client,
            seed=args.seed, dtype=np.dtype(args.dtype), layout=args.layout,
            timeout=args.timeout, build_timeout=args.timeout, residual=args.residual,
            in_flight=args.in_flight)
        out["client_rss_after_build"] = _rss_self()
        if args.full_replies:       # the replies before row blocks: all of S G per shard
            for sh in sop._shards:
                sh.row_block = None
        out["build_s"] = time.perf_counter() - t0
        _log(f"built in {out['build_s']:.1f} s")
        t0 = time.perf_counter()
        if args.y == "copy":
            y = sop.measurements()
            out["measurements_to_client_s"] = time.perf_counter() - t0
        else:
            y = sop.remote_measurements()   # nothing m-sized on the client
            out["y_norm_on_shards_s"] = (y.norm(), time.perf_counter() - t0)[1]
        out["worker_memory_after_build"] = _worker_memory(client)
        _log("after build: workers " + json.dumps(out["worker_memory_after_build"])
             + f", client {_rss_self()}")
        kw = {"method": "gd", "step": args.step, "max_iter": args.iters, "seed": args.seed,
              "tol": None}

        def timed_solve(callback=None):
            sop.kernel_stats(reset=True)
            stamps = []

            def cb(intermediate):
                stamps.append(time.perf_counter())
                _log(f"iteration {intermediate.n_iter} done, "
                     f"{stamps[-1] - (stamps[-2] if len(stamps) > 1 else t0):.1f} s, "
                     f"client {_rss_self()}, load {os.getloadavg()}")
                if callback is not None:
                    callback(intermediate)

            t0, c0 = time.perf_counter(), time.process_time()
            _log("solve started")
            res = lc.solve(sop, y, args.rank, callback=cb, **kw)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            stats = sop.kernel_stats(reset=True)
            per_worker: dict = {}
            for st in stats:
                rg = st["kernels"].get("residual_gradient", (0, 0.0, 0.0))
                w = per_worker.setdefault(st["worker"], [0.0, 0.0])
                w[0] += rg[1]
                w[1] += rg[2]
            busiest = max(v[0] for v in per_worker.values())
            return res, {"wall_s": wall, "client_cpu_s": cpu, "stamps": stamps,
                         "iter_s": list(np.diff([t0, *stamps])),
                         "kernel_wall_per_worker_s": per_worker,
                         "communication_share": 1.0 - busiest / wall,
                         "n_calls": sop.n_calls}

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res, timing = timed_solve()
        out["undisturbed"] = {"loss": float(res.history["loss"][-1]),
                              "residual": float(res.history["residual"][-1]),
                              "n_iter": res.n_iter, **timing}
        out["worker_memory_after_solve"] = _worker_memory(client)
        _log("undisturbed: " + json.dumps(out["undisturbed"], default=str)
             + " workers " + json.dumps(out["worker_memory_after_solve"])
             + f", client {_rss_self()}")
        if args.kill_at:
            def kill(intermediate):
                if intermediate.n_iter == args.kill_at:
                    pid = sop.memory_usage()[0]["pid"]
                    os.kill(pid, signal.SIGKILL)
                    out["killed_pid"] = pid
                    out["kill_time"] = time.perf_counter()

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res2, timing2 = timed_solve(kill)
            out["killed"] = {"loss": float(res2.history["loss"][-1]),
                             "n_iter": res2.n_iter, "status": res2.status, **timing2,
                             "recoveries": sop.recoveries,
                             # kill -> last rebuilt shard answered the retried call's
                             # rebuild (the solve resumes from there)
                             "recovery_s": (max(r["finished"] for r in sop.recoveries)
                                            - out["kill_time"]) if sop.recoveries else None,
                             "rebuild_s": sum(r["finished"] - r["started"]
                                              for r in sop.recoveries),
                             "loss_difference": float(res2.history["loss"][-1]
                                                      - res.history["loss"][-1]),
                             "factor_max_rel_difference": float(max(
                                 np.max(np.abs(a - b)) / np.max(np.abs(b))
                                 for a, b in zip(res2.factors, res.factors)))}
            out["workers_after_kill"] = sorted(sop._workers())
            out["worker_memory_after_kill"] = _worker_memory(client)
        sop.close()
    out["client_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["load_after"] = os.getloadavg()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nobs", type=_size, default=100_000, help="observations (e.g. 1e9)")
    p.add_argument("--n", type=_size, default=2000, help="n1 = n2")
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--shards-per-worker", type=int, default=1)
    p.add_argument("--memory-limit", type=_bytes, default=_bytes("1GiB"))
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--layout", default="blocked", choices=["blocked", "rows", "auto"])
    p.add_argument("--residual", default="client", choices=["client", "shards", "recompute"],
                   help="shards: residuals stay on the workers (not sent each iteration); "
                        "recompute: not kept either (recomputed by a line search)")
    p.add_argument("--y", default="remote", choices=["remote", "copy"],
                   help="remote: solve on op.remote_measurements() (nothing m-sized on the "
                        "client); copy: on op.measurements() (m numbers on the client)")
    p.add_argument("--in-flight", type=int, default=None,
                   help="outstanding shard calls per residual gradient (default two per "
                        "worker; 0: all shards at once, the old behaviour)")
    p.add_argument("--full-replies", action="store_true",
                   help="send all of F and answer all of S G per shard (as before row "
                        "blocks), not the shard's block of rows")
    p.add_argument("--pause", type=float, default=None,
                   help="Dask's worker memory pause fraction (default: Dask's, 0.8)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--step", type=float, default=0.3)
    p.add_argument("--kill-at", type=int, default=0,
                   help="SIGKILL the worker of shard 0 after this iteration (0: no kill)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    out = run(args)
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
