r"""What a solve records besides its iterate: history rows, truth metrics, progress.

The driver (:mod:`lowrank_core.driver`) runs the loop; this module owns everything it
reports along the way:

* :data:`METRICS` and :func:`parse_record`: which metrics ``solve(record=...)`` keeps and
  how often;
* :class:`Truth`: the ground truth M* as factors (L, R) or a dense array, with the
  error and sigma_{r+1} metrics in O((n1 + n2)(k + r)^2) from factors;
* :class:`Recorder`: the history rows of one solve (one entry per recorded iteration);
* :class:`Progress`: a tqdm bar, or a throttled one-line stderr display without tqdm.
"""

from __future__ import annotations

import numbers
import sys
import time

import numpy as np

from . import _steps, metrics
from ._validation import as_float_array, check_positive_int
from .results import History

__all__ = ["METRICS", "Progress", "Recorder", "Truth", "parse_record"]

#: Metrics ``record`` may name, and what they are.
METRICS = {
    "loss": "objective: 1/4 ||A(X X^T) - y||^2 (symmetric) or 1/2 ||A(F G^T) - y||^2",
    "residual": "relative residual ||A(F G^T) - y|| / ||y||",
    "error": "relative error ||F G^T - M*||_F / ||M*||_F (needs truth)",
    "imbalance": "||F^T F - G^T G||_F (asymmetric runs)",
    "tail_sv": "sigma_{r+1}(F G^T), r = rank of the truth (needs truth)",
    "grad_norm": "Frobenius norm of the loss gradient (both factors)",
    "time": "seconds since the first iteration started",
}

_TRUTH_METRICS = ("error", "tail_sv")


class Truth:
    """The ground truth as factors (L, R) or dense, with O((n1+n2)k^2) metrics.

    Parameters
    ----------
    truth : Problem, (L, R) or ndarray of shape (n1, n2)
        A Problem (its ``truth_factors`` and ``rank``), factors with M* = L R^T
        (L (n1, r), R (n2, r)), or M* itself.
    shape : (int, int)
        (n1, n2) of the operator.
    """

    def __init__(self, truth, shape: tuple[int, int]):
        n1, n2 = shape
        self.dense = None
        if hasattr(truth, "truth_factors"):
            L, R = truth.truth_factors
            self.rank = int(getattr(truth, "rank", np.asarray(L).shape[1]))
        elif isinstance(truth, (tuple, list)):
            if len(truth) != 2:
                raise ValueError("truth must be a Problem, a pair (L, R) with M* = L R^T, "
                                 "or a dense (n1, n2) array")
            L, R = truth
            self.rank = None
        else:
            self.dense = as_float_array(truth, "truth", shape=(n1, n2)).astype(
                np.float64, copy=False)
            self.rank = int(np.linalg.matrix_rank(self.dense))
            self.norm = float(np.linalg.norm(self.dense))
        if self.dense is None:
            L = as_float_array(L, "truth[0] (L)", ndim=2)
            R = as_float_array(R, "truth[1] (R)", ndim=2)
            if L.shape[0] != n1 or R.shape[0] != n2 or L.shape[1] != R.shape[1]:
                raise ValueError(f"truth factors must have shapes ({n1}, r) and ({n2}, r), "
                                 f"got {L.shape} and {R.shape}")
            self.L, self.R = L, R
            if self.rank is None:
                self.rank = L.shape[1]
            self.norm = metrics.factored_norm(L, R)
        if not self.norm > 0:
            raise ValueError("truth must be nonzero (the error is relative to ||M*||_F)")

    def error_and_tail(self, F: np.ndarray, G: np.ndarray) -> tuple[float, float]:
        """(||F G^T - M*||_F / ||M*||_F, sigma_{r+1}(F G^T)) sharing one pair of QRs.

        With factors: thin QR of [F, -L] = Q_A R_A and [G, R] = Q_B R_B give the error as
        ||R_A R_B^T||_F (accurate to rounding) and, because the leading k x k blocks of
        R_A and R_B are the R factors of F and G, the singular values of F G^T as those
        of R_A[:k, :k] R_B[:k, :k]^T. Cost O((n1 + n2)(k + r)^2).
        """
        k, r = F.shape[1], self.rank
        # in float64 whatever the iterate's dtype: a diverged float32 run overflows
        F, G = F.astype(np.float64, copy=False), G.astype(np.float64, copy=False)
        if self.dense is not None:
            err = float(np.linalg.norm(F @ G.T - self.dense)) / self.norm
            tail = float(metrics.singular_values(F, G)[r]) if k > r else 0.0
            return err, tail
        A = np.hstack([F, -self.L.astype(np.float64, copy=False)])
        B = np.hstack([G, self.R.astype(np.float64, copy=False)])
        if A.shape[0] < A.shape[1] or B.shape[0] < B.shape[1]:  # tiny problems
            err = metrics.factored_distance(F, G, self.L, self.R) / self.norm
            tail = float(metrics.singular_values(F, G)[r]) if k > r else 0.0
            return err, tail
        RA = np.linalg.qr(A, mode="r")
        RB = np.linalg.qr(B, mode="r")
        err = float(np.linalg.norm(RA @ RB.T)) / self.norm
        tail = 0.0
        if k > r:
            tail = float(np.linalg.svd(RA[:k, :k] @ RB[:k, :k].T, compute_uv=False)[r])
        return err, tail

    def error(self, F: np.ndarray, G: np.ndarray) -> float:
        """||F G^T - M*||_F / ||M*||_F (computed in float64)."""
        if self.dense is not None:
            F, G = F.astype(np.float64, copy=False), G.astype(np.float64, copy=False)
            return float(np.linalg.norm(F @ G.T - self.dense)) / self.norm
        return metrics.factored_distance(F, G, self.L, self.R) / self.norm


def parse_record(record, symmetric: bool, have_truth: bool) -> tuple[tuple[str, ...], int]:
    """(metric names in :data:`METRICS` order, record every e-th iteration) from ``record``.

    See :func:`lowrank_core.solve` for the accepted forms. "imbalance" is dropped from a
    symmetric run; "error" and "tail_sv" need a truth.
    """
    available = [n for n in METRICS
                 if (have_truth or n not in _TRUTH_METRICS)
                 and not (symmetric and n == "imbalance")]
    every = 1
    names = None
    spec = record
    if isinstance(spec, dict):
        unknown = set(spec) - {"metrics", "every"}
        if unknown:
            raise ValueError(f"record dict takes keys 'metrics' and 'every', got {sorted(unknown)}")
        every = spec.get("every", 1)
        names = spec.get("metrics", None)
    elif spec is None or spec is True or spec == "all":
        names = None
    elif spec is False:
        names = ()
    elif isinstance(spec, numbers.Integral):
        every = spec
    elif isinstance(spec, str):
        names = (spec,)
    else:
        try:
            names = tuple(spec)
        except TypeError:
            raise TypeError("record must be None, 'all', False, a metric name, a sequence of "
                            "names, an int (record every that many iterations) or a dict "
                            f"{{'metrics': ..., 'every': ...}}; got {record!r}") from None
    every = check_positive_int(every, "record every")
    if names is None or names == "all":
        return tuple(available), every
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for n in names:
        if n not in METRICS:
            raise ValueError(f"unknown metric {n!r} in record; choose from "
                             f"{', '.join(METRICS)}")
        if n in _TRUTH_METRICS and not have_truth:
            raise ValueError(f"record metric {n!r} needs truth=... (a Problem, (L, R) or "
                             "an array)")
    return tuple(n for n in METRICS if n in names and n in available), every


class Recorder:
    """The history rows of one solve: one value per recorded iteration and metric.

    Parameters
    ----------
    names : tuple of str
        Metrics to record (from :func:`parse_record`).
    truth : Truth or None
        Needed for "error" and "tail_sv".

    Cost per row: O(1) for loss/residual/time, O((n1 + n2) k) for grad_norm, O(k^2) for
    imbalance (from the state's Gram matrices), O((n1 + n2)(k + r)^2) for the truth metrics.
    """

    def __init__(self, names: tuple[str, ...], truth: Truth | None):
        self.names = names
        self.truth = truth
        # one tuple (iteration, values...) per row, appended in ONE list.append: a
        # KeyboardInterrupt raised while a row's metrics are computed leaves no half row
        self._rows: list[tuple] = []
        self._want_truth = truth is not None and any(n in names for n in _TRUTH_METRICS)

    @property
    def iterations(self) -> list[int]:
        """Iteration of each row."""
        return [row[0] for row in self._rows]

    @property
    def last(self) -> int:
        """Iteration of the last row, -1 if none."""
        return self._rows[-1][0] if self._rows else -1

    def record(self, state, t: int, elapsed: float) -> None:
        """Append the metrics of the state's current iterate as iteration ``t``.

        Atomic: every value is computed first, then the row is appended in one step, so
        an interrupt (Ctrl-C) during the metrics leaves the history as it was.
        """
        F, G = state.F, state.G
        if self._want_truth:
            err, tail = self.truth.error_and_tail(F, G)
        values = []
        for name in self.names:
            if name == "loss":
                v = state.loss
            elif name == "residual":
                v = state.residual
            elif name == "time":
                v = elapsed
            elif name == "grad_norm":
                v = state.grad_norm()
            elif name == "imbalance":
                v = _steps.difference_norm(state.gram_F, state.gram_G)
            elif name == "error":
                v = err
            else:  # tail_sv
                v = tail
            values.append(float(v))
        self._rows.append((int(t), *values))

    def drop_last(self) -> None:
        """Remove the last row (divergence stepped back past it)."""
        if self._rows:
            self._rows.pop()

    def history(self) -> History:
        """The rows as a :class:`~lowrank_core.results.History` of arrays."""
        rows = list(self._rows)
        history = History(iteration=np.asarray([r[0] for r in rows], dtype=np.int64))
        for j, name in enumerate(self.names, start=1):
            history[name] = np.asarray([r[j] for r in rows], dtype=np.float64)
        return history


class Progress:
    """tqdm bar when tqdm is installed, else a throttled one-line stderr display."""

    def __init__(self, enabled: bool, total: int, method: str):
        self.bar = None
        self.enabled = enabled
        self._last = 0.0
        self.total = total
        self.method = method
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            self.bar = tqdm(total=total, desc=method, unit="it", leave=True)

    def update(self, t: int, residual: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.n = t
            if now - self._last > 0.1:
                self.bar.set_postfix_str(f"residual={residual:.3e}", refresh=False)
                self.bar.refresh()
                self._last = now
        elif now - self._last > 0.5:
            sys.stderr.write(f"\r{self.method}: iteration {t}/{self.total} "
                             f"residual={residual:.3e}")
            sys.stderr.flush()
            self._last = now

    def close(self, t: int, residual: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = t
            self.bar.set_postfix_str(f"residual={residual:.3e}", refresh=False)
            self.bar.close()
        else:
            sys.stderr.write(f"\r{self.method}: iteration {t}/{self.total} "
                             f"residual={residual:.3e}\n")
            sys.stderr.flush()
