"""The result of :func:`lowrank_core.solve`: a dict with attribute access and a readable repr.

Same contract as SciPy's optimize results (a mapping whose keys are also attributes,
an ordered repr, and SciPy's :class:`~scipy.optimize.OptimizeResult` names ``success``,
``nit`` and ``fun`` beside ours), plus the factored iterate's helpers
(:meth:`SolveResult.matrix`, :attr:`SolveResult.factors`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SolveResult", "History", "STATUSES"]

#: Every status :func:`lowrank_core.solve` can return, with its meaning.
STATUSES: dict[str, str] = {
    "converged": "relative residual ||A(F G^T) - y|| / ||y|| reached tol",
    "max_iter": "max_iter iterations done",
    "max_time": "max_time seconds elapsed",
    "diverged": "non-finite values or a residual blown up by orders of magnitude; "
                "the last finite iterate is returned",
    "interrupted": "KeyboardInterrupt (Ctrl-C); the partial result is returned",
    "callback": "the callback raised StopIteration",
    "stalled": "the exact line search (step=\"auto\") found no decrease along the "
               "method's direction: a stationary point of the method, or rounding level",
    "early_stopped": "MatrixCompletion: the validation RMSE did not improve for "
                     "n_iter_no_change iterations; the best validation iterate is returned",
    "operator_failed": "the operator failed for good (a shard of a ShardedOperator lost "
                       "and not rebuildable, or not answering within its timeout); the last "
                       "evaluated iterate and the history so far are returned",
    "running": "intermediate result handed to a callback (never a final status)",
}


class _AttrDict(dict):
    """dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.keys()))


def _format_value(value) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return np.array2string(value, precision=4, separator=", ")
        return f"<ndarray shape={value.shape} dtype={value.dtype}>"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, History):
        return value._summary()
    if isinstance(value, dict):
        inner = ", ".join(f"{k}={_format_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return repr(value)


class History(_AttrDict):
    """Per-iteration metrics: name -> 1-D float64 array, all of the same length.

    ``history["iteration"]`` holds the iteration index of each entry (entry 0 is the
    initial point), so thinned recordings (``record={"every": 10}``) stay unambiguous.
    """

    #: Entries every run keeps whatever ``record`` says (the steps taken).
    _ALWAYS = ("iteration", "step", "step_G")

    def _summary(self) -> str:
        n = len(self["iteration"]) if "iteration" in self else 0
        entries = "1 entry" if n == 1 else f"{n} entries"
        if n:
            first, last = int(self["iteration"][0]), int(self["iteration"][-1])
            entries += f" (iteration {first})" if n == 1 else f" (iterations {first}..{last})"
        names = [k for k in self if k != "iteration"]
        if not any(k not in self._ALWAYS for k in names):
            # record=False: only the final iterate's row (and the steps) are kept
            kept = f": {', '.join(names)}" if names else ""
            return f"<{entries}{kept}; no metrics recorded (record=False)>"
        return f"<{entries}: {', '.join(names)}>"

    def __repr__(self) -> str:
        return f"History{self._summary()}"


class SolveResult(_AttrDict):
    r"""Outcome of :func:`lowrank_core.solve`.

    Keys (also attributes), in repr order.

    Attributes
    ----------
    method : str
        The method that ran (a key of :data:`lowrank_core.methods.METHODS`).
    status : str
        One of :data:`STATUSES` (machine-readable).
    message : str
        Human-readable explanation of the status.
    n_iter : int
        Iterations done; the returned factors are iterate ``n_iter``.
    X : ndarray, shape (n, k)
        Symmetric runs only: the factor, the estimate is X X^T.
    F, G : ndarray, shapes (n1, k) and (n2, k)
        Asymmetric runs only: the estimate is F G^T.
    loss : float
        Objective at the returned iterate: 1/4 ||A(X X^T) - y||^2 (symmetric) or
        1/2 ||A(F G^T) - y||^2 (asymmetric).
    residual : float
        Relative residual ||A(F G^T) - y|| / ||y||.
    error : float
        Relative error ||F G^T - M*||_F / ||M*||_F (only when ``truth`` was given).
    time : float
        Wall time of the iterations in seconds (initialization excluded: ``init_time``).
    init_time : float
        Wall time of the initialization in seconds.
    n_evaluations : int
        Calls of the operator's residual_gradient (AGN makes two per iteration).
    options : dict
        Every setting the run used, defaults resolved (step, tol, init_scale, damping,
        rcond, ...); None only where a setting does not apply to the run (``init_scale``
        of a spectral or given start) or is decided later in the run (onestep's
        ``beta``, taken when the rebalance fires). ``options["spectral_norm"]`` (only
        when step="fixed" or a fixed damping needed ||A^T(y)||_2): how that norm was
        obtained (``method`` "dense" or "lanczos", ``status``, ``products``, ``value``;
        see :func:`lowrank_core.initialization.spectral_norm_estimate`).
    history : History
        Per-iteration arrays (see :func:`lowrank_core.solve`, ``record``).
    success : bool
        SciPy's name: ``status == "converged"`` (tol reached).
    nit : int
        SciPy's name for ``n_iter``.
    fun : float
        SciPy's name for ``loss``, the objective at the returned iterate.

    Notes
    -----
    ``success``, ``nit`` and ``fun`` are computed from ``status``, ``n_iter`` and ``loss``
    on access (``res.nit``, ``res["nit"]``), so they always agree with them; they are not
    separate keys (``res.keys()``, the repr and the command line's JSON summary list
    ours only). There is no ``x``: the estimate is factored (``X``, or ``F`` and ``G``;
    :meth:`matrix` forms it).
    """

    _ORDER = ("method", "status", "message", "n_iter", "X", "F", "G", "loss", "residual",
              "error", "time", "init_time", "n_evaluations", "options", "history")

    #: SciPy OptimizeResult name -> how it is computed from our keys
    _SCIPY_NAMES = {
        "success": lambda res: res["status"] == "converged",
        "nit": lambda res: res["n_iter"],
        "fun": lambda res: res["loss"],
    }

    def __missing__(self, key):
        # dict.__getitem__ calls this for absent keys: the SciPy names are derived, never
        # stored, so they cannot disagree with status / n_iter / loss
        derive = self._SCIPY_NAMES.get(key)
        if derive is None:
            raise KeyError(key)
        return derive(self)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._SCIPY_NAMES))

    @property
    def symmetric(self) -> bool:
        """True for a symmetric (X X^T) run."""
        return "X" in self

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(F, G) with estimate F G^T; (X, X) for a symmetric run."""
        if "X" in self:
            return self["X"], self["X"]
        return self["F"], self["G"]

    def matrix(self) -> np.ndarray:
        """The estimate as a dense n1 x n2 array: X X^T or F G^T (costs n1 n2 k)."""
        F, G = self.factors
        return F @ G.T

    def __repr__(self) -> str:
        keys = [k for k in self._ORDER if k in self] + \
               [k for k in self if k not in self._ORDER]
        width = max(len(k) for k in keys) if keys else 0
        lines = [f"{k.rjust(width)}: {_format_value(self[k])}" for k in keys]
        return f"{type(self).__name__}(\n" + "\n".join("  " + ln for ln in lines) + "\n)"
