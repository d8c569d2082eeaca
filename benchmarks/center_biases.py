"""Cost of center="biases" against center=False / True in MatrixCompletion.

Data M = L + 3 + b_i + c_j (L rank 5, biases N(0, 4)), 10 % observed, plus noise 0.1;
each method fitted at rank 5 with every centering; prints iterations, CPU and wall
seconds, the RMSE on the missing entries, and the bias CG iterations per solve.
ALS with center="biases" runs twice: its fast path (row kernel on the augmented factors
[F, 1], [G, 1], ``als``) and, as the baseline in the same run, ``solve`` on the projected
operator (``als-proj``, the path before the fast one, with its CG half-steps). ALS with
center=True likewise: its fast path (row kernel at width k, mu as a third block) and
``als-proj`` with center=True, ``solve`` on the centered operator C A (CG half-steps).

    OMP_NUM_THREADS=1 python benchmarks/center_biases.py [n1 n2]
"""

import os
import sys
import time

import numpy as np

import lowrank_core as lc
from lowrank_core import estimator


def main(n1=2000, n2=1500, r=5, p=0.1, methods=("scaledgd", "agn", "als")):
    rng = np.random.default_rng(0)
    L = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    M = L + 3.0 + 2.0 * rng.standard_normal(n1)[:, None] + 2.0 * rng.standard_normal(n2)
    mask = rng.random(M.shape) < p
    X = np.where(mask, M + 0.1 * rng.standard_normal(M.shape), np.nan)
    rows, cols = np.nonzero(~mask)
    print(f"# {n1} x {n2}, rank {r}, {mask.sum()} observed; load {os.getloadavg()}")
    print(f"{'method':9} {'center':7} {'iters':>5} {'cpu s':>7} {'wall s':>7} "
          f"{'RMSE missing':>12} {'CG its/solve':>12}")
    runs = [(mt, ct) for mt in methods for ct in (False, True, "biases")]
    if "als" in methods:
        runs += [("als-proj", True), ("als-proj", "biases")]
    for method, center in runs:
        est = lc.MatrixCompletion(rank=r, method=method.split("-")[0], center=center,
                                  reg=1.0, max_iter=200, tol=1e-7, random_state=0)
        estimator._FAST_BIASES_ALS = estimator._FAST_CENTER_ALS = method != "als-proj"
        c0, w0 = time.process_time(), time.perf_counter()
        est.fit(X)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        estimator._FAST_BIASES_ALS = estimator._FAST_CENTER_ALS = True
        rmse = est.rmse(rows, cols, M[rows, cols])
        cg = ""
        its, solves = getattr(est, "bias_cg_", (0, 0))
        if solves:
            cg = f"{its / solves:.1f}"
        print(f"{method:9} {str(center):7} {est.n_iter_:5d} {cpu:7.2f} {wall:7.2f} "
              f"{rmse:12.4f} {cg:>12}", flush=True)
    print(f"# load after {os.getloadavg()}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
