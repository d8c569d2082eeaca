r"""The source papers' experiments, reproduced with :func:`lowrank_core.solve`.

Each experiment of :data:`EXPERIMENTS` runs a small sweep, fits the quantity the paper makes
a claim about (a log-log slope, a linear rate, an exponent) and returns an
:class:`ExperimentResult`: CSV tables, a figure and one :class:`Verdict` per claim, each
saying whether the measured number agrees with the claim. ``lowrank-core reproduce NAME``
is the command line; :func:`run_demo` is ``lowrank-core demo``.

One module per paper (see ALGORITHMS.md of the project for what is confirmed about each):

* :mod:`.xiong` — seed 000, Xiong, Ding, Du, "How over-parameterization slows down
  gradient descent in matrix sensing: the curses of symmetry and initialization",
  ICLR 2024;
* :mod:`.soltanolkotabi` — seed 001, Soltanolkotabi, Stöger, Xie, "Implicit balancing and
  regularization: generalization and convergence guarantees for overparameterized
  asymmetric matrix sensing", COLT 2023 / IEEE TIT 2025;
* :mod:`.precgd` — seed 002, Zhang, Fattahi, Zhang, "Preconditioned gradient descent for
  over-parameterized nonconvex matrix factorization", NeurIPS 2021 / JMLR 24 (2023);

plus :mod:`.realdata` (camera inpainting against softImpute, digits with validation
early stopping: data shipped by scikit-image and scikit-learn), :mod:`.demo` and the
shared types and fits in :mod:`._common`. A new experiment is a function with
``@register(EXPERIMENTS, name, paper, summary)`` in its paper's module; a new paper is
a module with its own ``EXPERIMENTS`` list and one entry in :data:`_PAPERS`.

Where the papers leave a constant unstated (m, eta, T, the alpha grid) the values here are
ours and are listed in each experiment's ``setting``. Every run is seeded: the same command
gives the same numbers for a fixed thread count.
"""

from __future__ import annotations

import os
import time

from . import precgd, realdata, soltanolkotabi, xiong
from ._common import (
    Experiment,
    ExperimentResult,
    Table,
    Verdict,
    linear_rate,
    loglog_slope,
)
from .demo import DEMO_METHODS, DemoResult, run_demo

__all__ = [
    "DEMO_METHODS",
    "EXPERIMENTS",
    "DemoResult",
    "Experiment",
    "ExperimentResult",
    "Table",
    "Verdict",
    "linear_rate",
    "loglog_slope",
    "run_demo",
    "run_experiment",
    "write_outputs",
]

#: The paper modules, in the order ``reproduce --list`` shows them.
_PAPERS = (xiong, soltanolkotabi, precgd, realdata)

#: name -> :class:`Experiment`, every experiment of every paper.
EXPERIMENTS: dict[str, Experiment] = {
    exp.name: exp for paper in _PAPERS for exp in paper.EXPERIMENTS
}


def run_experiment(name: str, *, quick: bool = False, seed: int = 0, n_threads=None,
                   log=None) -> ExperimentResult:
    """Run one experiment of :data:`EXPERIMENTS` by name.

    Parameters
    ----------
    name : str
    quick : bool
        Small sizes (seconds), for tests; the verdicts then say "not checked at --quick
        size" (the claims are about the papers' sizes).
    seed : int
        Seed of the problem and the initializations.
    n_threads : int, optional
        OpenMP threads of the operator kernels.
    log : callable, optional
        Receives one progress line per run.

    Returns
    -------
    ExperimentResult
    """
    if name not in EXPERIMENTS:
        raise KeyError(name)
    t0 = time.perf_counter()
    res = EXPERIMENTS[name].run(quick=quick, seed=seed, n_threads=n_threads, log=log)
    res.seconds = time.perf_counter() - t0
    if quick:
        for verdict in res.verdicts:
            verdict.checked = False
    return res


def write_outputs(result: ExperimentResult, out_dir, *, plot: bool = True) -> list:
    """Write ``NAME[_table].csv`` for every table and ``NAME.png``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for tab in result.tables:
        path = os.path.join(out_dir, f"{result.name}_{tab.name}.csv")
        tab.write(path)
        paths.append(path)
    if plot:
        from ..plotting import save_figure
        fig = result.draw()
        path = os.path.join(out_dir, f"{result.name}.png")
        save_figure(fig, path)
        paths.append(path)
    return paths
