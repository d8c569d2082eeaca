"""Issue 18's defaults, before and after, each on the instance the issue names.

Every case runs the same solve twice: "before" passes the old defaults explicitly
(``max_iter=1000``, ScaledGD(lambda) ``damping=0.01 ||A^T y||_2``, gd ``init_scale=1e-3``,
no stalled-progress stop ``stall_tol=0``, ...), "after" uses ``solve``'s defaults. It
prints one markdown row per run: status, relative error ||F G^T - M*||_F / ||M*||_F,
iterations and the message where useful. Not a timed test; times are only indicative (the
machine is shared).

Cases (``--cases``, comma separated; default all):

* ``lambda``: scaledgd-lambda, symmetric PSD n=100, r=5, k=10, m=5000, cond=100, and the
  AGN paper's Table 2 instance n=100, r=5, k=15, m=25,000, cond 10 and 50 (3000 its).
* ``scale``: completion of a rank-30 image (scikit-image's camera truncated to rank 30,
  or a synthetic rank-30 matrix without scikit-image), 30 % observed, EntryOperator at
  scale 1 and 1/sqrt(p), precgd / scaledgd / agn at defaults.
* ``max_iter``: the same image, precgd at scale 1/sqrt(p): converges after 1000 its.
* ``gd``: gd, asymmetric, n=50, r=3, k=6, cond=10, m=1500 (the peer: 1349 iterations).
* ``stall``: a noisy instance (gaussian 60 x 60, r=3, m=1500, noise=1e-3), precgd/gd.
* ``onestep``: onestep (the single step ``unstall=0``, the default, trigger "auto") vs
  gd, asymmetric gaussian n=50, r=3, k=6, m=1500, cond=100 (and 10, 1).
* ``onestep_trace``: the per-iteration trace behind onestep's ``unstall`` (cond=100;
  ``--trace-cond``); not in the default set of cases.
* ``overparam``: the rank-30 image, k=50, 30 % observed (precgd, agn; 5000 its).

Usage: python benchmarks/defaults_cases.py [--cases lambda,gd] [--size 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lowrank_core as lc
from lowrank_core.operators import EntryOperator


def _row(case, label, res, extra=""):
    print(f"| {case} | {label} | {res.method} | {res.status} | {res.error:.2e} | "
          f"{res.n_iter} | {res.time:.1f} | {extra} |", flush=True)


def image_truth(size: int, rank: int = 30, seed: int = 0):
    """(M*, source): the camera image (resized to size x size) truncated to ``rank``,
    scaled to sigma_1 = 1; a synthetic rank-``rank`` matrix with decaying singular values
    when scikit-image is not installed."""
    try:
        from skimage import data
        img = data.camera().astype(np.float64)
        step = max(1, img.shape[0] // size)
        img = img[::step, ::step][:size, :size]
        source = "camera"
    except ImportError:  # pragma: no cover - depends on the environment
        rng = np.random.default_rng(seed)
        U, _ = np.linalg.qr(rng.standard_normal((size, rank)))
        V, _ = np.linalg.qr(rng.standard_normal((size, rank)))
        img = (U * np.geomspace(1, 1e-2, rank)) @ V.T
        source = "synthetic"
    U, s, Vt = np.linalg.svd(img, full_matrices=False)
    M = (U[:, :rank] * s[:rank]) @ Vt[:rank] / s[0]
    return M, source, s[:rank] / s[0]


def image_completion(size, p=0.3, scale="sqrt_p", seed=0, rank=30):
    """EntryOperator observing a fraction p of the rank-30 image; y = A(M*)."""
    M, source, s = image_truth(size, rank, seed)
    rng = np.random.default_rng(seed + 1)
    n1, n2 = M.shape
    m = int(round(p * n1 * n2))
    flat = np.sort(rng.choice(n1 * n2, size=m, replace=False))
    rows, cols = np.divmod(flat, n2)
    c = 1.0 if scale == 1 else 1.0 / np.sqrt(m / (n1 * n2))
    op = EntryOperator(rows, cols, (n1, n2), scale=c)
    y = c * M[rows, cols]
    return op, y, M, source, s


def case_lambda(args):
    cases = [("psd n=100 r=5 k=10 m=5000 cond=100", 100, 5, 10, 5000, 100.0),
             ("AGN Table 2 n=100 r=5 k=15 m=25000 cond=10", 100, 5, 15, 25000, 10.0),
             ("AGN Table 2 n=100 r=5 k=15 m=25000 cond=50", 100, 5, 15, 25000, 50.0)]
    for name, n, r, k, m, cond in cases:
        prob = lc.make_problem(n, rank=r, m=m, psd=True, cond=cond, seed=args.seed)
        sigma = np.linalg.norm(prob.operator.adjoint(prob.y), 2)
        for label, kw in (("before: damping=0.01 ||A^T y||", {"damping": 0.01 * sigma}),
                          ("after: default", {})):
            res = lc.solve(prob.operator, prob.y, k, method="scaledgd-lambda", symmetric=True,
                           truth=prob, record=False, max_iter=3000, seed=1, **kw)
            _row(name, label, res, f"lambda={res.options['damping']}")


def case_scale(args):
    for meth in ("precgd", "scaledgd", "agn"):
        for scale in (1, "sqrt_p"):
            op, y, M, source, _ = image_completion(args.size, 0.3, scale, args.seed)
            res = lc.solve(op, y, 30, method=meth, truth=M, record=False, seed=1)
            _row(f"{source} {args.size}^2 r=30 p=0.3", f"scale={scale}", res)


def case_max_iter(args):
    op, y, M, source, _ = image_completion(args.size, 0.3, "sqrt_p", args.seed)
    for label, kw in (("before: max_iter=1000", {"max_iter": 1000, "stall_tol": 0}),
                      ("after: default", {})):
        for meth in ("precgd", "scaledgd"):
            res = lc.solve(op, y, 30, method=meth, truth=M, record=False, seed=1, **kw)
            _row(f"{source} {args.size}^2 r=30 p=0.3", label, res, res.options["max_iter"])


def case_gd(args):
    prob = lc.make_problem(50, rank=3, m=1500, cond=10.0, seed=args.seed)
    runs = [("before: init_scale=1e-3", {"init_scale": 1e-3, "max_iter": 5000}),
            ("after: default", {"max_iter": 5000}),
            ("peer: step 0.5/||A^T y||, N(0,1)/10", None)]
    for label, kw in runs:
        if kw is None:  # the peer's fixed step and start
            rng = np.random.default_rng(1)
            F0, G0 = rng.standard_normal((50, 6)) / 10, rng.standard_normal((50, 6)) / 10
            sigma = np.linalg.norm(prob.operator.adjoint(prob.y), 2)
            kw = {"init": (F0, G0), "step": 0.5 / sigma, "max_iter": 5000}
        res = lc.solve(prob.operator, prob.y, 6, method="gd", truth=prob, record=False,
                       seed=1, **kw)
        _row("gd n=50 r=3 k=6 cond=10 m=1500", label, res)


def case_stall(args):
    prob = lc.make_problem(60, rank=3, m=1500, noise=1e-3, seed=args.seed)
    for meth in ("precgd", "scaledgd", "gd"):
        for label, kw in (("before: stall_tol=0, max_iter=5000",
                           {"stall_tol": 0, "max_iter": 5000}),
                          ("after: default (max_iter=5000)", {"max_iter": 5000})):
            res = lc.solve(prob.operator, prob.y, 3, method=meth, truth=prob, record=False,
                           seed=1, **kw)
            _row("noisy gaussian 60^2 r=3 m=1500 noise=1e-3", label, res)


def case_onestep(args):
    """The named instance (cond=100) and the same at cond 10 and 1: gd; onestep "before"
    (``unstall=0``: the paper's single rebalance at the residual 0.1, the old default);
    onestep "after" (the default: the same plus the second rebalance on a stall,
    ``OneStepGD.unstall``); ``trigger="auto"`` (with the default ``unstall``). Fixed steps
    from the small start and step="auto" from the default start. The note is
    "first rebalance iteration / second rebalance iteration"."""
    for cond in (100.0, 10.0, 1.0):
        prob = lc.make_problem(50, rank=3, m=1500, cond=cond, seed=args.seed)
        runs = [("gd", "default", {}),
                ("onestep", "before: unstall=0 (single step)", {"unstall": 0}),
                ("onestep", "after: default", {}),
                ("onestep", "trigger='auto'", {"trigger": "auto"})]
        for step in ("fixed", "auto"):
            for meth, label, kw in runs:
                init = {"init": "small"} if step == "fixed" else {}
                res = lc.solve(prob.operator, prob.y, 6, method=meth, truth=prob, record=False,
                               seed=1, max_iter=3000, step=step, **init, **kw)
                _row(f"asym n=50 r=3 k=6 m=1500 cond={cond:g}", f"step={step} {label}", res,
                     f"{res.get('rebalance_iteration')} / {res.get('unstall_iteration')}")


def case_onestep_trace(args):
    """Per-iteration trace of the named instance (cond=100; ``--trace-cond``): relative
    residual, line-search/fixed step, imbalance ||F^T F - G^T G||_F, sigma_{r+1}(F G^T),
    error, the fit u_i^T F G^T v_i / sigma_i of each component of M*, the spurious part
    ||P_U^perp F G^T P_V^perp||_F and ||u_r^T F||, ||v_r^T G|| (the smallest component's
    rows), for gd and onestep with ``unstall=0`` and the default, at both steps."""
    prob = lc.make_problem(50, rank=3, m=1500, cond=args.trace_cond, seed=args.seed)
    U, sv, Vt = np.linalg.svd(prob.truth)
    r = prob.rank
    U, V, sv = U[:, :r], Vt[:r].T, sv[:r]
    marks = sorted({0, 5, 10, 11, 12, 20, 50, 59, 60, 61, 62, 100, 131, 132, 133, 150, 200,
                    213, 214, 215, 300, 500, 1000, 1500, 2000, 2500, 2999})
    for step in ("auto", "fixed"):
        for meth, kw in (("gd", {}), ("onestep", {"unstall": 0}), ("onestep", {})):
            rows = {}

            def cb(res, rows=rows):
                if res.n_iter in marks:
                    F, G = res.factors
                    X = F @ G.T
                    fit = np.diag(U.T @ X @ V) / sv
                    spur = np.linalg.norm(X - U @ (U.T @ X) - (X @ V) @ V.T
                                          + U @ (U.T @ X @ V) @ V.T)
                    rows[res.n_iter] = (fit, spur, np.linalg.norm(U[:, -1] @ F),
                                        np.linalg.norm(V[:, -1] @ G))

            init = {"init": "small"} if step == "fixed" else {}
            res = lc.solve(prob.operator, prob.y, 6, method=meth, truth=prob, seed=1,
                           max_iter=3000, step=step, callback=cb, **init, **kw)
            h = res.history
            print(f"\n{meth} {kw} step={step} cond={args.trace_cond:g}: final error "
                  f"{res.error:.2e}, rebalance {res.get('rebalance_iteration')} (beta "
                  f"{res.get('beta')}), unstall {res.get('unstall_iteration')} (gamma "
                  f"{res.get('gamma')})")
            print("| t | residual | step | imbalance | sigma_r+1 | error | fit u_i^T X v_i/s_i "
                  "| spurious | ‖u_r^T F‖ | ‖v_r^T G‖ |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            steps = np.asarray(h["step"])
            for t in marks:
                if t not in rows or t >= len(h["residual"]):
                    continue
                fit, spur, a, b = rows[t]
                eta = steps[t] if t < len(steps) else float("nan")
                print(f"| {t} | {h['residual'][t]:.2e} | {eta:.3g} | {h['imbalance'][t]:.2e} "
                      f"| {h['tail_sv'][t]:.1e} | {h['error'][t]:.2e} | "
                      f"{' '.join(f'{v:.3f}' for v in fit)} | {spur:.1e} | {a:.3f} | {b:.1e} |",
                      flush=True)


def case_overparam(args):
    op, y, M, source, _ = image_completion(args.size, 0.3, "sqrt_p", args.seed)
    for meth in ("precgd", "agn"):
        res = lc.solve(op, y, 50, method=meth, truth=M, record=False, seed=1,
                       max_iter=args.overparam_iter)
        _row(f"{source} {args.size}^2 r=30 k=50 p=0.3", "default", res, res.message[:60])


CASES = {"lambda": case_lambda, "scale": case_scale, "max_iter": case_max_iter,
         "gd": case_gd, "stall": case_stall, "onestep": case_onestep,
         "overparam": case_overparam, "onestep_trace": case_onestep_trace}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(c for c in CASES if c != "onestep_trace"))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overparam-iter", type=int, default=5000)
    p.add_argument("--trace-cond", type=float, default=100.0)
    args = p.parse_args(argv)
    print("| instance | run | method | status | error | iterations | time s | note |")
    print("|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for name in args.cases.split(","):
        CASES[name](args)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
