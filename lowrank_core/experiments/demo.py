r"""The demo behind ``lowrank-core demo``: one over-parameterized PSD sensing problem
solved by five methods from the same small random initialization.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..driver import solve
from ._common import _psd_problem

__all__ = ["DEMO_METHODS", "DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """The demo's runs: setting text and (label, SolveResult) pairs."""

    setting: str
    runs: list
    seconds: float
    title: str = ""


#: (label, method, symmetric) of the demo, in table order.
DEMO_METHODS = (("GD (symmetric X X^T)", "gd", True),
                ("GD (asymmetric F G^T)", "gd", False),
                ("onestep (asymmetric)", "onestep", False),
                ("PrecGD (symmetric)", "precgd", True),
                ("AGN (asymmetric)", "agn", False))


def run_demo(*, quick=False, seed=0, n_threads=None, max_iter=None, log=None) -> DemoResult:
    """The main job: an over-parameterized PSD sensing problem, five methods.

    n = 50, rank r = 3 PSD truth (eigenvalues 1 .. 0.5), m = 1500 dense Gaussian
    measurements, search rank k = 5 > r, the same small random initialization scale
    alpha = 0.1 for every method, at most 1000 iterations (quick: n = 20, r = 2, k = 4,
    m = 300, 150 iterations).

    Returns
    -------
    DemoResult
    """
    if quick:
        n, r, k, m, T = 20, 2, 4, 300, 150
    else:
        n, r, k, m, T = 50, 3, 5, 1500, 1000
    if max_iter is not None:
        T = max_iter
    rng = np.random.default_rng(seed)
    op, y, L = _psd_problem(n, np.linspace(1.0, 0.5, r), m, rng, n_threads)
    alpha = 0.1
    setting = (f"PSD sensing, n={n}, rank r={r}, k={k} > r, m={m} Gaussian measurements, "
               f"init scale {alpha}")
    runs = []
    t0 = time.perf_counter()
    for label, meth, sym in DEMO_METHODS:
        res = solve(op, y, k, method=meth, symmetric=sym, init="small", init_scale=alpha,
                    step="fixed", max_iter=T, truth=(L, L), record=("error", "residual", "time"),
                    seed=seed + 1)
        runs.append((label, res))
        if log:
            log(f"  {label}: {res.status} after {res.n_iter} iterations")
    title = (f"lowrank-core demo: PSD sensing, n={n}, r={r}, k={k} > r\n"
             f"m={m} Gaussian measurements, same random init (scale {alpha})")
    return DemoResult(setting, runs, time.perf_counter() - t0, title)
