"""Write fixed_step_reference.npz: iterates of every method at its (pre-line-search) default
fixed step, produced by main at d614505 (before step="auto" existed).

Run with the environment of that commit (`/work/venv-main/bin/python
tests/data/make_fixed_step_reference.py`); tests/test_linesearch.py replays the same solves
with the saved numeric step and requires identical bits.
"""

import os

import numpy as np

import lowrank_core as lc

CASES = []
for kind in ("gaussian", "sparse", "entries", "rank-one"):
    for psd in (False, True):
        if kind == "entries" and psd:
            continue
        methods = ("gd", "scaledgd", "scaledgd-lambda", "precgd") if psd else \
            ("gd", "onestep", "scaledgd", "scaledgd-lambda", "precgd", "agn")
        CASES += [(kind, psd, m) for m in methods]


def problem(kind, psd):
    m = 60 if kind == "entries" else 90
    return lc.make_problem(12, 12 if psd else 10, rank=2, m=m, operator=kind, psd=psd,
                           cond=3.0, seed=5)


def main():
    out = {}
    for kind, psd, method in CASES:
        prob = problem(kind, psd)
        res = lc.solve(prob.operator, prob.y, 3, method=method, symmetric=psd, init="small",
                       max_iter=6, tol=1e-30, record=False, seed=11, n_threads=1,
                       **({"trigger": 0.9} if method == "onestep" else {}))
        key = f"{kind}|{int(psd)}|{method}"
        out[key + "|y"] = prob.y
        out[key + "|step"] = np.float64(res.options["step"])
        for name, arr in zip("FG", res.factors):
            out[key + "|" + name] = arr
        out[key + "|n_iter"] = np.int64(res.n_iter)
    path = os.path.join(os.path.dirname(__file__), "fixed_step_reference.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main()
