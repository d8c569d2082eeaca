r"""The one driver loop shared by every method: :func:`solve`.

The driver validates, initializes, and then per iteration t:

1. evaluates the iterate once through the operator's fused residual gradient
   (z = A(F G^T) - y, S G, S^T F) plus, if needed, the k x k Gram matrices;
2. records the metrics of iterate t (history);
3. stops if converged / diverged / out of iterations or time;
4. calls the callback with the intermediate result;
5. asks the method's step rule for iterate t + 1 (compiled k x k algebra).

So iterate t's evaluation serves both its metrics and its step, and a solve allocates
nothing per iteration in the loop besides the history entries.
"""

from __future__ import annotations

import numbers
import sys
import time as _time
import warnings

import numpy as np

from . import _steps, metrics
from ._validation import (
    as_float_array,
    check_positive_float,
    check_positive_int,
    check_random_state,
)
from .initialization import initial_factors, top_singular_value
from .methods import METHODS, SolverState, StepFailure
from .methods.linesearch import SearchStalled
from .results import STATUSES, History, SolveResult

__all__ = ["solve", "METRICS", "DIVERGENCE_FACTOR", "UnobservedAntisymmetryWarning"]


class UnobservedAntisymmetryWarning(UserWarning):
    """An asymmetric (F G^T) run on an operator whose A_i are all symmetric."""

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

#: A run is declared diverged when the relative residual exceeds this factor times
#: max(1, the initial relative residual), or any value is non-finite.
DIVERGENCE_FACTOR = 1e6


# ---------------------------------------------------------------------------- helpers
class _Context:
    """Lazily computed data-dependent quantities shared by defaults (one per solve)."""

    def __init__(self, operator, y, rng):
        self.operator, self.y, self.rng = operator, y, rng
        self._sigma = None

    def spectral_norm(self) -> float:
        """||A^T(y)||_2, about sigma_1(M*) for a near-isotropic operator (cached)."""
        if self._sigma is None:
            s = top_singular_value(self.operator.adjoint_operator(self.y), self.rng)
            self._sigma = s if np.isfinite(s) and s > 0 else 1.0
        return self._sigma


class _Truth:
    """The ground truth as factors (L, R) or dense, with O((n1+n2)k^2) metrics."""

    def __init__(self, truth, shape, k):
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
            self.dense = as_float_array(truth, "truth", shape=(n1, n2))
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

    def error_and_tail(self, F, G) -> tuple[float, float]:
        """(||F G^T - M*||_F / ||M*||_F, sigma_{r+1}(F G^T)) sharing one pair of QRs.

        With factors: thin QR of [F, -L] = Q_A R_A and [G, R] = Q_B R_B give the error as
        ||R_A R_B^T||_F (accurate to rounding) and, because the leading k x k blocks of
        R_A and R_B are the R factors of F and G, the singular values of F G^T as those
        of R_A[:k, :k] R_B[:k, :k]^T. Cost O((n1 + n2)(k + r)^2).
        """
        k, r = F.shape[1], self.rank
        if self.dense is not None:
            err = float(np.linalg.norm(F @ G.T - self.dense)) / self.norm
            tail = float(metrics.singular_values(F, G)[r]) if k > r else 0.0
            return err, tail
        A = np.hstack([F, -self.L.astype(F.dtype, copy=False)])
        B = np.hstack([G, self.R.astype(G.dtype, copy=False)])
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

    def error(self, F, G) -> float:
        """||F G^T - M*||_F / ||M*||_F."""
        if self.dense is not None:
            return float(np.linalg.norm(F @ G.T - self.dense)) / self.norm
        return metrics.factored_distance(F, G, self.L, self.R) / self.norm


def _parse_record(record, symmetric, have_truth):
    """(names, every) from ``record``."""
    available = [n for n in METRICS
                 if (have_truth or n not in ("error", "tail_sv"))
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
        if n in ("error", "tail_sv") and not have_truth:
            raise ValueError(f"record metric {n!r} needs truth=... (a Problem, (L, R) or "
                             "an array)")
    return tuple(n for n in METRICS if n in names and n in available), every


class _Progress:
    """tqdm bar when tqdm is installed, else a throttled one-line stderr display."""

    def __init__(self, enabled, total, method):
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

    def update(self, t, residual):
        if not self.enabled:
            return
        now = _time.perf_counter()
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

    def close(self, t, residual):
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


def _check_operator(operator):
    for attr in ("shape", "m", "dtype"):
        if not hasattr(operator, attr):
            raise TypeError(f"operator must be a lowrank_core measurement operator (with "
                            f".shape, .m, .dtype and residual_gradient), got "
                            f"{type(operator).__name__}")
    if not (hasattr(operator, "_residual_gradient_into")
            or callable(getattr(operator, "residual_gradient", None))):
        raise TypeError(f"operator {type(operator).__name__} has no residual_gradient")


def _check_step(step):
    """"auto" (None is the same), "fixed" or a positive number."""
    if step is None:
        return "auto"
    if isinstance(step, str):
        if step in ("auto", "fixed"):
            return step
        raise ValueError(f'step must be "auto", "fixed" or a positive number, got {step!r}')
    return check_positive_float(step, "step")


def _smaller_step_hint(step) -> str:
    return "" if isinstance(step, str) else f" (try a smaller step than {step:g})"


def _optional_positive(value, name):
    if value is None:
        return None
    return check_positive_float(value, name)


# ------------------------------------------------------------------------------ solve
def solve(operator, y, rank, method="gd", symmetric=False, init=None, init_scale=None,
          step="auto", max_iter=1000, tol=None, max_time=None, truth=None, record=None,
          callback=None, seed=None, n_threads=None, progress=False,
          **method_options) -> SolveResult:
    r"""Recover a low-rank matrix from y = A(M*) by a factored gradient method.

    Minimizes f(X) = 1/4 ||A(X X^T) - y||^2 over X (n, k) (``symmetric=True``, M* PSD)
    or f(F, G) = 1/2 ||A(F G^T) - y||^2 over F (n1, k), G (n2, k), with k = ``rank``
    (k = rank(M*) exact, k > rank(M*) over-parameterized).

    Parameters
    ----------
    operator : MeasurementOperator
        Any lowrank_core operator (dense, symmetric, sparse, entries, rank-one, sharded);
        every method works with every operator through its fused residual gradient.
    y : ndarray, shape (m,)
        Measurements, same dtype as the operator (float32 stays float32).
    rank : int
        k, the number of columns of the factors, 1 <= k <= min(n1, n2).
    method : str
        One of :data:`lowrank_core.methods.METHODS`:

        =============== ==================================================  ============  ========
        method          update (S = A^T(A(F G^T) - y))                      "fixed" step  init
        =============== ==================================================  ============  ========
        gd              F -= eta S G, G -= eta S^T F; sym X -= eta (S+S^T)X/2 0.3/||A^T y|| small
        onestep         gd + once F <- beta F (F^T F)^{-1/2},                0.3/||A^T y|| small
                        G <- G (F^T F)^{1/2}/beta when residual <= trigger
        scaledgd        F -= eta S G (G^T G)^{-1}, G -= eta S^T F (F^T F)^{-1} 0.5         spectral
        scaledgd-lambda same with (G^T G + lam I)^{-1}, fixed lam           0.5           spectral
        precgd          same with lam_t = ||A(F G^T) - y||                   0.5           small
        agn             F -= eta S G (G^T G)^+, then G with the new F         0.5           spectral
        =============== ==================================================  ============  ========

        onestep and agn are asymmetric only (use them on PSD targets with
        ``symmetric=False``).
    symmetric : bool
        Factor as X X^T (square operator only) instead of F G^T.
    init : None, {"small", "spectral", "nystrom"}, array, (F, G) or SolveResult
        See :func:`lowrank_core.initialization.initial_factors`. None (default) is the
        method's own start (table above: spectral where the method's paper starts
        spectrally, small random where it starts small).
    init_scale : float or (float, float), optional
        alpha of init="small" (entries N(0, alpha^2/n), default 1e-3; a pair gives
        (alpha_F, alpha_G)) or of init="nystrom" (default 1).
    step : "auto", "fixed" or float
        "auto" (default; None means the same): the exact line search along the method's
        own direction, the minimizer over [0, eta_max] of the loss along the line, a
        quartic in eta (:mod:`lowrank_core.methods.linesearch`; eta_max lets one step
        move the factors by at most their own norm); it costs forward passes of widths
        2k and k per iteration. "fixed": the method's fixed step (table above, the
        papers' values). A number: that fixed step, exactly as given. The steps taken
        are in ``history["step"]`` (AGN also ``history["step_G"]``).
    max_iter : int
        Maximum number of iterations (default 1000); 0 evaluates the initial point only.
    tol : float, optional
        Stop when ||A(F G^T) - y|| / ||y|| <= tol. Default 1e-10 (float64), 1e-5
        (float32).
    max_time : float, optional
        Wall-time budget in seconds for the iterations.
    truth : Problem, (L, R) or ndarray, optional
        Ground truth M* (= L R^T) for the "error" and "tail_sv" metrics. With factors
        the metrics cost O((n1 + n2) k^2) and never form an n1 x n2 matrix.
    record : None, "all", False, str, sequence, int or dict, optional
        Which metrics of :data:`METRICS` the history keeps and how often: None/"all"
        every available metric every iteration; False none (only the final values);
        names; an int ``e`` (every e-th iteration); or ``{"metrics": [...], "every": e}``.
        The final iterate is always recorded.
    callback : callable, optional
        ``callback(intermediate_result)`` after each iteration's metrics, with a
        :class:`SolveResult` of status "running" (copies of the factors, loss, residual,
        error, n_iter, time). Raise ``StopIteration`` to stop (status "callback").
    seed : None, int or numpy Generator
        Randomness of the initialization (and ARPACK start vectors).
    n_threads : int, optional
        OpenMP threads of the operator's kernels during this solve (restored after).
    progress : bool
        Show a progress bar with the current residual (tqdm if installed).
    **method_options
        Method-specific options: onestep ``trigger`` (0.1), ``beta`` (sqrt ||F G^T||_2);
        scaledgd-lambda ``damping`` (0.01 ||A^T y||_2); precgd ``damping``
        ("residual", "gradient" or a number) and ``damping_scale`` (1); all
        preconditioned methods ``rcond`` (10 k eps, pseudo-inverse cutoff).

    Returns
    -------
    SolveResult
        ``status`` is one of "converged", "max_iter", "max_time", "diverged",
        "stalled" (step="auto" found no decrease along the method's direction),
        "interrupted" (Ctrl-C: the partial result), "callback"; see
        :data:`lowrank_core.results.STATUSES`.

    Notes
    -----
    Cost per iteration: one residual gradient of the operator (two for agn) plus
    O((n1 + n2) k^2 + k^3) compiled k x k algebra, plus the recorded metrics (each
    O((n1 + n2) k^2) with truth factors). Divergence: a non-finite loss or a relative
    residual above DIVERGENCE_FACTOR x max(1, initial residual) stops the run; the last
    iterate with a finite loss is returned.
    """
    # ---------------------------------------------------------------- validation
    _check_operator(operator)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of "
                         f"{', '.join(repr(m) for m in METHODS)}")
    rule_cls = METHODS[method]
    n1, n2 = operator.shape
    rank = check_positive_int(rank, "rank")
    if rank > min(n1, n2):
        raise ValueError(f"rank must be between 1 and min(n1, n2) = {min(n1, n2)} for an "
                         f"operator of shape {operator.shape}, got {rank}")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    symmetric = bool(symmetric)
    if symmetric and n1 != n2:
        raise ValueError(f"symmetric=True needs a square operator, this one has shape "
                         f"{operator.shape}")
    form = "symmetric" if symmetric else "asymmetric"
    if form not in rule_cls.forms:
        raise ValueError(f"method {method!r} exists only in the asymmetric form (F G^T); "
                         f"pass symmetric=False (it works on symmetric operators and PSD "
                         f"targets)")
    y = as_float_array(y, "y", shape=(operator.m,), dtype=operator.dtype)
    if not symmetric and getattr(operator, "symmetric", False):
        warnings.warn(
            "all A_i of this operator are symmetric, so A(F G^T) only sees the symmetric "
            "part of F G^T: the antisymmetric part is not observed and need not vanish. "
            "For a PSD target use symmetric=True, or measure with a general operator "
            "(e.g. DenseOperator) to use the asymmetric parameterization; "
            "(F G^T + G F^T)/2 is the estimate the data determine.",
            UnobservedAntisymmetryWarning, stacklevel=2)
    step = _check_step(step)
    tol = _optional_positive(tol, "tol")
    if tol is None:
        tol = 1e-5 if operator.dtype == np.float32 else 1e-10
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    max_time = _optional_positive(max_time, "max_time")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    options = rule_cls.check_options(method_options)
    truth_obj = _Truth(truth, operator.shape, rank) if truth is not None else None
    names, every = _parse_record(record, symmetric, truth_obj is not None)
    rng = check_random_state(seed)

    saved_threads = getattr(operator, "_n_threads_request", None)
    if n_threads is not None:
        operator.n_threads = n_threads
    try:
        return _run(operator, y, rank, rule_cls, symmetric, init, init_scale, step,
                    max_iter, tol, max_time, truth_obj, names, every, callback, rng,
                    progress, options, seed)
    finally:
        if n_threads is not None:
            operator.n_threads = saved_threads


def _run(operator, y, k, rule_cls, symmetric, init, init_scale, step, max_iter, tol,
         max_time, truth, names, every, callback, rng, progress, options, seed):
    t_init = _time.perf_counter()
    context = _Context(operator, y, rng)
    if init is None:
        init = rule_cls.default_init
    F0, G0 = initial_factors(operator, y, k, symmetric, init, init_scale, rng)
    state = SolverState(operator, y, F0, G0, symmetric)
    if step == "fixed":
        step = rule_cls.resolve_step(context)
    rule = rule_cls(state, step, options, context)
    state.want_grams = rule.needs_grams or "imbalance" in names
    init_time = _time.perf_counter() - t_init

    hist = {name: [] for name in names}
    iterations: list[int] = []
    progress_bar = _Progress(bool(progress), max_iter, rule_cls.name)

    want_truth = truth is not None and ("error" in names or "tail_sv" in names)

    def record_metrics(t, elapsed):
        iterations.append(t)
        F, G = state.F, state.G
        if want_truth:
            err, tail = truth.error_and_tail(F, G)
        for name in names:
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
            hist[name].append(float(v))

    def drop_last_record():
        if iterations:
            iterations.pop()
            for lst in hist.values():
                lst.pop()

    status = None
    message = ""
    last_recorded = -1
    evaluated = -1          # iteration whose evaluation is in the state's buffers
    reference = None
    elapsed = 0.0
    start = _time.perf_counter()
    try:
        while True:
            t = state.iteration
            state.evaluate()
            evaluated = t
            elapsed = _time.perf_counter() - start
            residual = state.residual
            finite = bool(np.isfinite(state.half_sq))
            if reference is None:
                reference = max(1.0, residual) if finite else 1.0
            if not finite or residual > DIVERGENCE_FACTOR * reference:
                status = "diverged"
                if not finite and t > 0:
                    # Keep the last iterate with a finite loss (iterate t - 1).
                    state.step_back()
                    state.evaluate()
                    evaluated = state.iteration
                    message = (f"diverged: non-finite loss at iteration {t}; returning "
                               f"iterate {t - 1}, the last with a finite loss"
                               f"{_smaller_step_hint(step)}")
                elif not finite:
                    message = "diverged: the initial point has a non-finite loss"
                else:
                    message = (f"diverged: relative residual {residual:.3g} at iteration {t} "
                               f"exceeds {DIVERGENCE_FACTOR:g} x max(1, initial residual)"
                               f"{_smaller_step_hint(step)}")
                break
            if names and t % every == 0:
                record_metrics(t, elapsed)
                last_recorded = t
            progress_bar.update(t, residual)
            if residual <= tol:
                status = "converged"
                message = f"converged: relative residual {residual:.3g} <= tol = {tol:g}"
                break
            if t >= max_iter:
                status = "max_iter"
                message = (f"max_iter = {max_iter} iterations done (relative residual "
                           f"{residual:.3g} > tol = {tol:g})")
                break
            if max_time is not None and elapsed >= max_time:
                status = "max_time"
                message = f"max_time = {max_time:g} s elapsed after {t} iterations"
                break
            if callback is not None:
                intermediate = _result(state, rule, "running", "", elapsed, init_time,
                                       None, truth)
                try:
                    callback(intermediate)
                except StopIteration:
                    status = "callback"
                    message = f"stopped by the callback at iteration {t}"
                    break
            rule.step()
    except KeyboardInterrupt:
        status = "interrupted"
        message = (f"interrupted (KeyboardInterrupt) at iteration {state.iteration}; "
                   f"partial result")
    except SearchStalled as exc:
        status = "stalled"
        message = f"stalled: {exc}"
    except StepFailure as exc:
        status = "diverged"
        message = f"diverged: {exc} at iteration {state.iteration}"
    elapsed = _time.perf_counter() - start

    # The returned iterate is the state's current one; make sure its evaluation is the
    # one in the buffers (an interrupt or a failed step may have left another there).
    t = state.iteration
    if evaluated != t:
        state.evaluate()
    if last_recorded != t and np.isfinite(state.half_sq):
        if last_recorded > t:  # divergence stepped back past the last record
            drop_last_record()
        record_metrics(t, elapsed)
    progress_bar.close(t, state.residual)

    history = History(iteration=np.asarray(iterations, dtype=np.int64))
    for name in names:
        history[name] = np.asarray(hist[name], dtype=np.float64)
    for name, taken in rule.step_log.items():  # the step from iterate t to t + 1
        history[name] = np.array([taken[i] if i < len(taken) else np.nan
                                  for i in iterations], dtype=np.float64)
    used = {"method": rule_cls.name, "symmetric": symmetric, "rank": k,
            "init": init if isinstance(init, str) else "array",
            "init_scale": init_scale, "step": step if step == "auto" else float(step),
            "max_iter": max_iter, "tol": tol,
            "max_time": max_time, "seed": seed if not isinstance(seed, np.random.Generator)
            else "Generator", "record": {"metrics": list(names), "every": every},
            "n_threads": getattr(operator, "n_threads", None)}
    used.update(rule.options)
    return _result(state, rule, status, message, elapsed, init_time, history, truth,
                   options=used)


def _result(state, rule, status, message, elapsed, init_time, history, truth, *,
            options=None) -> SolveResult:
    """A SolveResult of the state's current iterate (factors copied)."""
    F, G = state.F, state.G
    res = SolveResult(method=rule.name, status=status, message=message,
                      n_iter=int(state.iteration))
    if state.symmetric:
        res["X"] = F.copy()
    else:
        res["F"] = F.copy()
        res["G"] = G.copy()
    res["loss"] = float(state.loss)
    res["residual"] = float(state.residual)
    if truth is not None:
        fac = res.factors
        res["error"] = float(truth.error(*fac)) if np.isfinite(state.half_sq) else np.nan
    res["time"] = float(elapsed)
    res["init_time"] = float(init_time)
    res["n_evaluations"] = int(state.n_evaluations)
    if options is not None:
        res["options"] = options
    if history is not None:
        res["history"] = history
    res.update(rule.info())
    return res


assert set(STATUSES) >= {"converged", "max_iter", "max_time", "diverged", "interrupted",
                         "callback"}
