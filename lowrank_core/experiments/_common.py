r"""What every experiment shares: result types, the registration decorator, curve
fitting (log-log slopes, linear rates) and the problem helpers.

A paper's module (:mod:`.xiong`, :mod:`.soltanolkotabi`, :mod:`.precgd`) keeps a list
``EXPERIMENTS`` and adds each experiment function to it with :func:`register`; the package
``__init__`` joins the lists into the registry ``EXPERIMENTS`` (name -> :class:`Experiment`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..driver import solve
from ..operators import DenseOperator

#: The verdict status of a run at the quick sizes.
NOT_CHECKED = "not checked at --quick size"

__all__ = ["NOT_CHECKED", "Experiment", "ExperimentResult", "Table", "Verdict", "linear_rate",
           "loglog_slope", "register"]

# ------------------------------------------------------------------------------- types
@dataclass
class Verdict:
    """One measured number set against one claim of a paper.

    Attributes
    ----------
    quantity : str
        What was measured (e.g. "log-log slope of ||XX^T - M*||_F, k=5").
    measured : str
        The measured value(s), formatted.
    claim : str
        The paper's claim it is checked against.
    holds : bool
        Whether the measurement agrees with the claim (criterion in ``criterion``).
    criterion : str
        The numerical test applied.
    checked : bool
        False for a run at the quick sizes: the claims are about the papers' sizes, so the
        verdict is not stated (``holds`` is still the criterion's outcome).
    """

    quantity: str
    measured: str
    claim: str
    holds: bool
    criterion: str = ""
    checked: bool = True

    def line(self) -> str:
        """``quantity: measured (claim: ...): HOLDS`` (or DOES NOT HOLD, or "not checked at
        --quick size" when the run was at the quick sizes, where a verdict means nothing)."""
        if not self.checked:
            status = NOT_CHECKED
        else:
            status = "HOLDS" if self.holds else "DOES NOT HOLD"
        return f"{self.quantity}: {self.measured} (claim: {self.claim}): {status}"


@dataclass
class Table:
    """A numeric CSV table: ``columns`` header and rows of floats (NaN for missing)."""

    name: str
    columns: list
    rows: list

    def write(self, path) -> None:
        """Write the table as CSV (NaN written as ``nan``)."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(self.columns)
            for row in self.rows:
                w.writerow([_fmt_cell(v) for v in row])


def _fmt_cell(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


@dataclass
class ExperimentResult:
    """Outcome of one experiment: tables, verdicts and a figure-drawing function."""

    name: str
    title: str
    setting: str
    tables: list
    verdicts: list
    draw: Callable
    seconds: float = 0.0
    notes: list = field(default_factory=list)


@dataclass
class Experiment:
    """A registered experiment.

    Attributes
    ----------
    name : str
        Command-line name (``lowrank-core reproduce NAME``).
    paper : str
        Seed and paper.
    summary : str
        One line: what is run and what is claimed.
    run : callable
        ``run(quick, seed, n_threads, log) -> ExperimentResult``.
    """

    name: str
    paper: str
    summary: str
    run: Callable


EXPERIMENTS: dict[str, Experiment] = {}


def register(registry: list, name: str, paper: str, summary: str):
    """Decorator: append ``Experiment(name, paper, summary, fn)`` to ``registry``."""
    def deco(fn):
        registry.append(Experiment(name, paper, summary, fn))
        return fn
    return deco


# ----------------------------------------------------------------------------- fitting
def loglog_slope(t, e, t_min, t_max) -> float:
    """Least-squares slope of log e against log t over t_min <= t <= t_max (e > 0, t > 0)."""
    t = np.asarray(t, float)
    e = np.asarray(e, float)
    s = (t >= max(t_min, 1)) & (t <= t_max) & (e > 0) & np.isfinite(e)
    if s.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(t[s]), np.log(e[s]), 1)[0])


def linear_rate(t, e, *, floor=1e-11, tail=0.5) -> float:
    """Linear convergence rate: -slope of log e against t on the last ``tail`` fraction.

    Points at or below ``floor`` (the rounding plateau) are dropped first, so a run that
    converged early is fitted on its linear phase, not on the plateau. Returns
    rho such that e_t ~ exp(-rho t); NaN if fewer than 3 points remain.
    """
    t = np.asarray(t, float)
    e = np.asarray(e, float)
    keep = (e > floor) & np.isfinite(e)
    t, e = t[keep], e[keep]
    if t.size < 3:
        return float("nan")
    start = t[0] + (1 - tail) * (t[-1] - t[0])
    s = t >= start
    if s.sum() < 3:
        s = np.ones_like(t, dtype=bool)
    return float(-np.polyfit(t[s], np.log(e[s]), 1)[0])


def _first_below(t, e, level) -> float:
    idx = np.nonzero(np.asarray(e) <= level)[0]
    return float(np.asarray(t)[idx[0]]) if idx.size else float("nan")


def _curve_table(name, curves, value="error") -> Table:
    """Wide table: iteration, then one column per labelled curve (NaN past its end)."""
    n = max(int(np.max(c[1])) for c in curves) + 1 if curves else 0
    cols = ["iteration"] + [f"{c[0]} {value}" for c in curves]
    grid = np.full((n, len(curves)), np.nan)
    for j, c in enumerate(curves):
        it = np.asarray(c[1], int)
        grid[it, j] = np.asarray(c[2], float)
    rows = [[i, *grid[i]] for i in range(n)]
    return Table(name, [c.replace(",", ";") for c in cols], rows)


def _fmt(x, digits=3) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.{digits}g}"


def _sci(x) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.2e}"


# ---------------------------------------------------------------------------- problems
def _psd_problem(n, svals, m, rng, n_threads):
    """A PSD truth M* = L L^T (Haar eigenvectors) measured by a GENERAL dense Gaussian
    operator (A_i ~ N(0, 1/m), not symmetrized), so both the symmetric X X^T and the
    asymmetric F G^T parameterizations observe everything they fit."""
    r = len(svals)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    L = U * np.sqrt(np.asarray(svals, float))
    op = DenseOperator.gaussian(m, n, n, seed=rng, n_threads=n_threads)
    y = op.forward_factored(L, L)
    return op, y, L


def _run(op, y, k, L, R=None, **kw):
    """solve() with the truth and the error recorded; returns (result, iterations, error)."""
    R = L if R is None else R
    record = kw.pop("record", ("error",))
    # The papers' experiments run their fixed steps from a small random start, not the
    # solver's defaults (line search, each method's own init).
    if kw.get("step") is None:
        kw["step"] = "fixed"
    kw.setdefault("init", "small")
    res = solve(op, y, k, truth=(L, R), record=record, **kw)
    h = res.history
    return res, h["iteration"].astype(float), h["error"]
