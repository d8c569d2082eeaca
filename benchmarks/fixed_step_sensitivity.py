"""How an error in the ||A^T(y)||_2 estimate behind step="fixed" moves gradient descent.

step="fixed" is eta = 0.3 / sigma with sigma the estimate, so a relative error e in
sigma is a relative error -e / (1 + e) in eta. This runs gd with eta = 0.3 / (sigma (1 +
e)), sigma the exact dense 2-norm, for e in --errors, on completion problems (entries,
rank 3, k = 3, oversampled 4x; planted M* with sigma_1 = 1, and the same M* scaled by
10 so that the fixed step is data dependent), and prints the iterations to the residual
tolerance 1e-8 and the final relative error (max_iter 20000): what a percent of estimate
error costs.

    python benchmarks/fixed_step_sensitivity.py [--n 300] [--errors -0.03 -0.01 0 0.01 0.03]
"""

from __future__ import annotations

import argparse

import numpy as np

import lowrank_core as lc
from lowrank_core.initialization import _dense
from lowrank_core.methods.gd import GD_STEP


def run(n: int, errors, seed: int) -> list[dict]:
    rows = []
    for scale in (1.0, 10.0):
        prob = lc.make_problem(n, n, rank=3, m=4 * 3 * 2 * n, operator="entries", cond=3,
                               seed=seed)
        y = prob.y * scale
        L, R = prob.truth_factors
        Mstar = L @ R.T
        sigma = float(np.linalg.norm(_dense(prob.operator.adjoint_operator(y)), 2))
        for e in errors:
            eta = GD_STEP / (sigma * (1.0 + e))
            res = lc.solve(prob.operator, y, 3, method="gd", step=eta, tol=1e-8,
                           max_iter=20000, seed=seed, record=False)
            M = res.matrix()
            err = np.linalg.norm(M / scale - Mstar) / np.linalg.norm(Mstar)
            rows.append({"scale": scale, "e": e, "eta": eta, "n_iter": res.n_iter,
                         "status": res.status, "error": err})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--errors", type=float, nargs="+",
                    default=[-0.05, -0.01, 0.0, 0.01, 0.05])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = run(args.n, args.errors, args.seed)
    print(f"gd, completion n1 = n2 = {args.n}, rank 3, k = 3, tol 1e-8; eta = 0.3 / "
          "(sigma (1 + e)), sigma = ||A^T(y)||_2 exact\n")
    print("| M* scale | e (estimate error) | step | iterations | status | rel. error |")
    print("|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['scale']:g} | {r['e']:+.2f} | {r['eta']:.4g} | {r['n_iter']} | "
              f"{r['status']} | {r['error']:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
