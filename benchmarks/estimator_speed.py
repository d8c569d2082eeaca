"""MatrixCompletion versus fancyimpute's SoftImpute / IterativeSVD and a numpy softImpute.

Issue 14's performance benchmark. Cases (``--case``, default ``all``):

* ``sweep``: one ALS sweep (the F and the G half-step) of the compiled row kernel
  ``lowrank_core._als.solve_rows``, the blocked BLAS version (gathered G rows, syrk, gemv,
  potrf/potrs) against the scalar-loop version it replaced (``blocked=False``), same
  process, alternating repeats, CPU time (``time.process_time``) and wall time; the two
  results are checked to agree.
* ``synthetic``: 5000 x 4000 (``--n1``, ``--n2``), M = U V^T with U, V standard normal of
  rank 10, 5 % of the entries observed (independent Bernoulli), Gaussian noise of
  standard deviation sigma = 0.1 sigma_1(M) / sqrt(n), n = max(n1, n2). Held-out RMSE
  against the noiseless M on 100 000 unobserved entries.
* ``camera``: ``skimage.data.camera()`` / 255 (512 x 512), 70 % of the pixels removed
  uniformly at random; PSNR (peak 1) on the removed pixels.

Every competitor gets the same dense array with NaN for the missing entries and its
time includes its own input handling; all are single-threaded when the script runs
with OMP_NUM_THREADS=1 (recommended on a shared machine). Ratios are
time(baseline) / time(MatrixCompletion), measured in the same run.

fancyimpute: if ``import fancyimpute`` works it runs in this process; otherwise pass
``--fancy-python /path/to/python`` of an environment that has it (fancyimpute 0.7 needs
scikit-learn < 1.6: ``python -m venv venv-fancy && venv-fancy/bin/pip install fancyimpute
"scikit-learn<1.6" scikit-image``); that interpreter runs this file with ``--worker`` and
returns JSON (the data are regenerated there from the same seed with numpy only). Without
either the fancyimpute rows are skipped with a message; the numpy softImpute baseline
(``lowrank_core.experiments.realdata.soft_impute``: full SVD per iteration) still runs
on the camera case (on the synthetic case only with ``--numpy-synthetic``: one full SVD
of 5000 x 4000 per iteration).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/estimator_speed.py [--case all|sweep|synthetic|camera]
        [--fancy-python PATH] [--numpy-synthetic] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np

SEED = 0
HELD_OUT = 100_000


# ----------------------------------------------------------------------- the data
def synthetic_data(n1=5000, n2=4000, rank=10, p=0.05, noise_ratio=0.1, seed=SEED):
    """(X with NaN, truth factors (U, V), held-out (rows, cols), sigma, sigma_1); numpy only."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n1, rank))
    V = rng.standard_normal((n2, rank))
    s1 = float(np.linalg.svd(np.linalg.qr(U, mode="r") @ np.linalg.qr(V, mode="r").T,
                             compute_uv=False)[0])
    sigma = noise_ratio * s1 / np.sqrt(max(n1, n2))
    mask = rng.random((n1, n2)) < p
    X = np.full((n1, n2), np.nan)
    r, c = np.nonzero(mask)
    X[r, c] = np.einsum("ij,ij->i", U[r], V[c]) + sigma * rng.standard_normal(r.size)
    flat = rng.choice(n1 * n2, size=min(HELD_OUT * 2, n1 * n2), replace=False)
    flat = flat[~mask.ravel()[flat]][:HELD_OUT]
    hr, hc = np.unravel_index(flat, (n1, n2))
    return X, (U, V), (hr, hc), sigma, s1


def synthetic_rmse(estimate_at, truth, held):
    """RMSE of the estimate against the noiseless truth on the held-out entries."""
    U, V = truth
    hr, hc = held
    ref = np.einsum("ij,ij->i", U[hr], V[hc])
    d = np.asarray(estimate_at(hr, hc), np.float64) - ref
    return float(np.sqrt(np.mean(d * d)))


def camera_data(missing=0.7, seed=SEED):
    """(X with NaN, image, removed mask): camera / 255, the given share of pixels removed."""
    from skimage import data
    img = data.camera().astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    mask = rng.random(img.shape) >= missing
    return np.where(mask, img, np.nan), img, ~mask


def psnr(estimate, truth, selection):
    d = np.asarray(estimate, np.float64)[selection] - truth[selection]
    return float(10.0 * np.log10(1.0 / np.mean(d * d)))


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _load():
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# ----------------------------------------------------------------------- fancyimpute
# (label, class, keyword arguments; "shrinkage_value": ("sigma_max/", d) is the largest
# singular value of the zero-filled observations over d, computed outside the timing)
FANCY_SYNTHETIC = [
    ("SoftImpute max_rank=10", "SoftImpute", {"max_rank": 10}),
]
FANCY_CAMERA = [
    ("SoftImpute max_rank=40", "SoftImpute", {"max_rank": 40}),
    # the best of max_rank {30, 40} x shrinkage sigma_max/{50, 100, 200, 400} x
    # convergence_threshold {1e-3, 1e-2} by the PSNR on the removed pixels (an oracle choice)
    ("SoftImpute max_rank=30 shrinkage=sigma_max/200", "SoftImpute",
     {"max_rank": 30, "shrinkage_value": ("sigma_max/", 200.0)}),
    ("SoftImpute (all defaults: full SVD)", "SoftImpute", {}),
    # the best of rank 20, 30, 40
    ("IterativeSVD rank=20", "IterativeSVD", {"rank": 20}),
]


def fancy_rows(case, quick=False):
    """Run the fancyimpute competitors of ``case`` here (fancyimpute must import)."""
    import fancyimpute
    rows = []
    if case == "synthetic":
        X, truth, held, *_ = synthetic_data(*((1000, 800) if quick else ()))
        specs = FANCY_SYNTHETIC
    else:
        X, img, removed = camera_data()
        specs = FANCY_CAMERA
    sigma_max = float(np.linalg.norm(np.where(np.isnan(X), 0.0, X), 2))
    for label, cls, kw in specs:
        kw = {k: (sigma_max / v[1] if isinstance(v, tuple) else v) for k, v in kw.items()}
        model = getattr(fancyimpute, cls)(verbose=False, **kw)
        out, wall, cpu = _timed(lambda m=model: m.fit_transform(X.copy()))
        row = {"name": "fancyimpute " + label, "wall": wall, "cpu": cpu}
        if case == "synthetic":
            row["rmse"] = synthetic_rmse(lambda r, c, o=out: o[r, c], truth, held)
        else:
            row["psnr"] = psnr(out, img, removed)
        rows.append(row)
    return rows


def fancy_or_skip(case, args):
    """fancyimpute rows (in process or through --fancy-python), or [] with a message."""
    try:
        import fancyimpute  # noqa: F401
        return fancy_rows(case, args.quick)
    except Exception as exc:  # ImportError, or its scikit-learn incompatibility
        reason = f"{type(exc).__name__}: {exc}"
    if args.fancy_python:
        cmd = [args.fancy_python, os.path.abspath(__file__), "--worker", case]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        reason = f"{args.fancy_python} failed: {proc.stderr.strip()[-400:]}"
    print(f"  [fancyimpute skipped: not usable here ({reason}); pass --fancy-python PATH "
          f"of an environment with fancyimpute and scikit-learn<1.6]")
    return []


# ----------------------------------------------------------------------- our side
def ours(X, settings, n_threads):
    """Fit MatrixCompletion(**settings) to X: (fitted estimator, completed X, wall, cpu)."""
    import lowrank_core as lc
    est = lc.MatrixCompletion(random_state=SEED, n_threads=n_threads, **settings)
    out, wall, cpu = _timed(lambda: est.fit_transform(X))
    return est, out, wall, cpu


def _settings_text(s):
    return ", ".join(f"{k}={v}" for k, v in s.items())


# MatrixCompletion settings (everything else the estimator's defaults; init None is the
# method's own, spectral for ALS and AGN; "small" a small random start). The tuned rows'
# rank/reg/tol were chosen on these data by the held-out error (the same oracle
# privilege the baselines' lambda gets).
SYNTHETIC_OURS = [
    {"method": "als", "rank": 10, "reg": 0.0, "tol": 1e-3},
    {"method": "als", "rank": 10, "reg": 100.0, "tol": 1e-3, "init": "small"},
    {"method": "agn", "rank": 10, "reg": 100.0, "tol": 1e-3},
    # softImpute-ALS (Hastie et al. 2015): O(m k) half-steps on the filled-in matrix
    {"method": "softimpute_als", "rank": 10, "reg": 100.0, "tol": 1e-3},
]
CAMERA_OURS = [
    {"method": "als", "rank": 40, "reg": 0.3, "tol": 1e-3},
    {"method": "als", "rank": 35, "reg": 0.5, "tol": 3e-3, "init": "small",
     "dtype": "float32"},
    {"method": "als", "rank": 30, "reg": 0.5, "tol": 3e-3, "init": "small",
     "dtype": "float32"},
    {"method": "als", "rank": 28, "reg": 0.5, "tol": 5e-3, "init": "small",
     "dtype": "float32"},
    {"method": "als", "rank": 20, "reg": 0.5, "tol": 1e-2, "init": "small",
     "dtype": "float32"},
    {"method": "als", "rank": 20, "reg": 0.5, "tol": 2e-2, "init": "small",
     "dtype": "float32"},
    {"method": "agn", "rank": 28, "reg": 0.5, "tol": 5e-3, "init": "small",
     "dtype": "float32"},
    # softImpute-ALS (Hastie et al. 2015): the same objective as ALS at reg, O(m k)
    # half-steps on the filled-in matrix instead of ALS's O(m k^2) row solves, each
    # half-step's length by the exact line search (step="auto", the solve default)
    {"method": "softimpute_als", "rank": 28, "reg": 0.5, "tol": 4e-3, "init": "small",
     "dtype": "float32"},
    {"method": "softimpute_als", "rank": 35, "reg": 0.5, "tol": 4e-3, "init": "small",
     "dtype": "float32"},
    {"method": "softimpute_als", "rank": 28, "reg": 0.5, "tol": 3e-3, "init": "small",
     "dtype": "float32"},
]


def print_table(title, rows, metric):
    """The rows, then for each fancyimpute row the fastest (CPU) MatrixCompletion row at
    an equal or better metric and the time ratio."""
    better = (lambda a, b: a <= b) if metric == "rmse" else (lambda a, b: a >= b)
    fmt = (lambda v: f"{v:.4f}") if metric == "rmse" else (lambda v: f"{v:.2f} dB")
    print(f"\n{title}")
    print(f"| competitor | iterations | wall s | CPU s | {metric} |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r.get('iterations', '-')} | {r['wall']:.3f} | "
              f"{r['cpu']:.3f} | {fmt(r[metric])} |")
    ours_rows = [r for r in rows if r["name"].startswith("MatrixCompletion")]
    for ref in rows:
        if not ref["name"].startswith("fancyimpute"):
            continue
        ok = [r for r in ours_rows if better(r[metric], ref[metric])]
        if not ok:
            print(f"  vs {ref['name']}: no MatrixCompletion row reaches {fmt(ref[metric])}")
            continue
        best = min(ok, key=lambda r: r["cpu"])
        print(f"  vs {ref['name']} ({fmt(ref[metric])}): {best['name']} "
              f"({fmt(best[metric])}) is {ref['cpu'] / best['cpu']:.1f}x faster in CPU "
              f"time, {ref['wall'] / best['wall']:.1f}x in wall time")


def case_synthetic(args):
    shape = (1000, 800) if args.quick else (args.n1, args.n2)
    X, truth, held, sigma, s1 = synthetic_data(*shape)
    n_obs = int(np.sum(~np.isnan(X)))
    print(f"\nsynthetic {shape[0]} x {shape[1]}, rank 10, {n_obs} observed "
          f"({n_obs / X.size:.1%}), sigma_1 {s1:.1f}, noise sigma {sigma:.4f}; "
          f"RMSE vs the noiseless truth on {held[0].size} unobserved entries; {_load()}")
    rows = []
    for s in SYNTHETIC_OURS:
        est, out, wall, cpu = ours(X, s, args.threads)
        rows.append({"name": f"MatrixCompletion({_settings_text(s)})", "wall": wall,
                     "cpu": cpu, "iterations": est.n_iter_,
                     "rmse": synthetic_rmse(est.predict, truth, held)})
        print(f"  {rows[-1]['name']}: {est.n_iter_} iterations, {est.result_.status}")
    rows += fancy_or_skip("synthetic", args)
    if args.numpy_synthetic:
        rows.append(numpy_soft_impute_synthetic(X, truth, held))
    else:
        print("  [numpy softImpute skipped on this case: a full 5000 x 4000 SVD per "
              "iteration; --numpy-synthetic runs it]")
    print_table("synthetic: held-out RMSE (lower is better)", rows, "rmse")
    return rows


def numpy_soft_impute_synthetic(X, truth, held):
    from lowrank_core.experiments.realdata import soft_impute
    mask = ~np.isnan(X)
    lam = float(np.linalg.norm(np.where(mask, X, 0.0), 2)) / 50.0
    path, wall, cpu = _timed(lambda: soft_impute(X, mask, [lam], eps=1e-3, max_iter=100))
    Z = path[0][1]
    return {"name": "numpy softImpute (lambda = sigma_max/50, eps 1e-3)", "wall": wall,
            "cpu": cpu, "rmse": synthetic_rmse(lambda r, c: Z[r, c], truth, held)}


def case_camera(args):
    from lowrank_core.experiments.realdata import soft_impute
    X, img, removed = camera_data()
    print(f"\ncamera 512 x 512 / 255, {removed.mean():.0%} of the pixels removed "
          f"(seed {SEED}), PSNR on the removed pixels; {_load()}")
    rows = []
    for s in CAMERA_OURS:
        est, out, wall, cpu = ours(X, s, args.threads)
        rows.append({"name": f"MatrixCompletion({_settings_text(s)})", "wall": wall,
                     "cpu": cpu, "iterations": est.n_iter_, "psnr": psnr(out, img, removed)})
        print(f"  {rows[-1]['name']}: {est.n_iter_} iterations, {est.result_.status}")
    rows += fancy_or_skip("camera", args)
    mask = ~removed
    lam_max = float(np.linalg.norm(np.where(mask, img, 0.0), 2))
    lambdas = lam_max * np.logspace(0, -3.5, 20)
    path, wall, cpu = _timed(lambda: soft_impute(img, mask, lambdas))
    scores = [psnr(np.where(mask, img, Z), img, removed) for _, Z, _, _ in path]
    best = int(np.argmax(scores))
    rows.append({"name": f"numpy softImpute (20-lambda path, best lambda "
                         f"{path[best][0] / lam_max:.3g} lambda_max by the oracle)",
                 "wall": wall, "cpu": cpu, "psnr": scores[best]})
    print_table("camera: PSNR on the removed pixels (higher is better)", rows, "psnr")
    return rows


def case_sweep(args):
    """One ALS sweep: blocked BLAS kernel vs the scalar loops, same run."""
    from lowrank_core import _kernels
    from lowrank_core.methods import als as als_mod
    print(f"\none ALS sweep (F and G half-steps) of the row kernel, blocked vs scalar "
          f"loops; {_load()}")
    print("| case | k | entries | scalar loops CPU s | blocked CPU s | CPU speed-up | "
          "scalar wall s | blocked wall s | max rel. difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    kern = _kernels.load("_als")
    from lowrank_core import _steps
    from lowrank_core._threads import resolve_n_threads
    Xs, Xc = synthetic_data(*((1000, 800) if args.quick else ()))[0], camera_data()[0]
    cases = [("synthetic", Xs, 10, np.float64), ("synthetic", Xs, 10, np.float32),
             ("camera", Xc, 40, np.float64), ("camera", Xc, 28, np.float32)]
    rows = []
    for name, X, k, dt in cases:
        r, c = np.nonzero(~np.isnan(X))
        y = X[r, c].astype(dt)
        n1, n2 = X.shape
        itype = als_mod._index_type(n1, n2, y.size)
        by_row = als_mod._Grouping(r.astype(itype), c.astype(itype), n1, itype)
        by_col = als_mod._Grouping(c.astype(itype), r.astype(itype), n2, itype)
        nt = resolve_n_threads(args.threads)
        br, bc = als_mod._row_bounds(by_row.ptr, nt), als_mod._row_bounds(by_col.ptr, nt)
        lwork = int(_steps.eigen_workspace_size(k, dt))
        work = np.empty((max(br.size, bc.size) - 1, kern.scratch_size(k, lwork)), dt)
        rng = np.random.default_rng(1)
        G0 = rng.standard_normal((n2, k)).astype(dt)
        F, G = np.empty((n1, k), dt), np.empty((n2, k), dt)
        results, times = {}, {True: [], False: []}
        def sweep(blocked, y=y, G0=G0, F=F, G=G, work=work, br=br, bc=bc, lwork=lwork,
                  by_row=by_row, by_col=by_col):
            kern.solve_rows(by_row.ptr, by_row.idx, by_row.pos, by_row.has_pos, y,
                            G0, F, 1.0, 0.1, 1e-12, work, br, lwork, blocked)
            kern.solve_rows(by_col.ptr, by_col.idx, by_col.pos, by_col.has_pos, y,
                            F, G, 1.0, 0.1, 1e-12, work, bc, lwork, blocked)
        for _ in range(args.repeats):
            for blocked in (False, True):
                _, wall, cpu = _timed(lambda b=blocked: sweep(b))
                times[blocked].append((cpu, wall))
                results[blocked] = (F.copy(), G.copy())
        diff = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                   for a, b in zip(results[True], results[False]))
        (c0, w0), (c1, w1) = (min(times[False]), min(times[True]))
        print(f"| {name} {n1}x{n2} {np.dtype(dt).name} | {k} | {y.size} | {c0:.4f} | {c1:.4f} | "
              f"{c0 / c1:.1f}x | {w0:.4f} | {w1:.4f} | {diff:.1e} |")
        rows.append({"case": name, "dtype": np.dtype(dt).name, "k": k,
                     "entries": int(y.size), "loops_cpu": c0,
                     "blocked_cpu": c1, "loops_wall": w0, "blocked_wall": w1,
                     "max_rel_diff": diff})
        if diff > (1e-3 if dt == np.float32 else 1e-8):
            raise SystemExit(f"the blocked and the scalar-loop sweeps disagree ({diff:.2e})")
    print(f"(best of {args.repeats} alternating repeats each, ridge 0.1, rcond 1e-12; "
          f"max rel. difference: max |blocked - loops| / max |loops| over F and G)")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["all", "sweep", "synthetic", "camera"], default="all")
    ap.add_argument("--fancy-python", default=None,
                    help="python of an environment with fancyimpute (run as a subprocess)")
    ap.add_argument("--numpy-synthetic", action="store_true",
                    help="also run the numpy softImpute on the synthetic case (slow)")
    ap.add_argument("--n1", type=int, default=5000)
    ap.add_argument("--n2", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5, help="sweep repeats (best of)")
    ap.add_argument("--quick", action="store_true", help="small synthetic case (smoke test)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--worker", choices=["synthetic", "camera"], default=None,
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:   # the fancyimpute side in another environment: JSON on stdout
        print(json.dumps(fancy_rows(args.worker, args.quick)))
        return
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"threads={args.threads}, {_load()}")
    out = {}
    for case, fn in (("sweep", case_sweep), ("synthetic", case_synthetic),
                     ("camera", case_camera)):
        if args.case in ("all", case):
            out[case] = fn(args)
    print(f"\nfinished; {_load()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
