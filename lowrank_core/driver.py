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

What is recorded along the way (history rows, truth metrics, the progress bar) lives in
:mod:`lowrank_core.recording`; this module is only the validation and the loop.
"""

from __future__ import annotations

import difflib
import inspect
import time as _time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._threads import thread_limit
from ._validation import (
    as_float_array,
    check_positive_float,
    check_positive_int,
    check_random_state,
)
from .distributed.errors import ShardError
from .initialization import DEFAULT_INIT_SCALE, initial_factors, top_singular_value_info
from .methods import METHODS, SolverState, StepFailure, StepRule
from .methods.linesearch import SearchStalled
from .operators import MeasurementOperator
from .problems import Problem
from .recording import METRICS, Progress, Recorder, Truth, parse_record
from .results import STATUSES, SolveResult

#: What ``init=`` accepts: None, a name, X, (F, G) or a previous result (warm start).
InitSpec = str | np.ndarray | tuple[ArrayLike, ArrayLike] | SolveResult | None
#: What ``truth=`` accepts: a Problem, factors (L, R) with M* = L R^T, or M* itself.
TruthSpec = Problem | tuple[ArrayLike, ArrayLike] | np.ndarray | None
#: What ``record=`` accepts (see :func:`solve`).
RecordSpec = bool | str | Sequence[str] | int | dict[str, Any] | None

__all__ = ["DIVERGENCE_FACTOR", "METRICS", "STALL_TOL", "STALL_WINDOW",
           "UnobservedAntisymmetryWarning", "solve"]


class UnobservedAntisymmetryWarning(UserWarning):
    """An asymmetric (F G^T) run on an operator whose A_i are all symmetric."""


#: A run is declared diverged when the relative residual exceeds this factor times
#: max(1, the initial relative residual), or any value is non-finite.
DIVERGENCE_FACTOR = 1e6

#: Default stalled-progress stop (``step="auto"``): stop with status "stalled" at
#: iteration t >= STALL_WINDOW when f_{t - W} - f_t <= STALL_TOL * f_{t - W}, i.e. the loss
#: fell by less than a relative 1e-6 over the last W = 100 iterations (noisy data: the
#: loss has reached its floor; tol on the residual can never be met there).
STALL_TOL = 1e-6
STALL_WINDOW = 100


# ---------------------------------------------------------------------------- helpers
class _Context:
    """Lazily computed data-dependent quantities shared by defaults (one per solve).

    ``y`` is the validated measurement vector.
    """

    def __init__(self, operator, y, rng):
        self.operator, self.y, self.rng = operator, y, rng
        self._sigma = None
        #: how spectral_norm() was obtained (None: not needed by this solve); the result's
        #: ``options["spectral_norm"]``
        self.spectral_norm_info = None

    def spectral_norm(self) -> float:
        """||A^T(y)||_2, about sigma_1(M*) for a near-isotropic operator (cached).

        Dense SVD for small operators, else the bounded Lanczos estimate
        (:func:`~lowrank_core.initialization.spectral_norm_estimate`: relative tolerance
        1e-2, at most 140 products, upper-biased where not converged); how it was
        obtained goes to ``spectral_norm_info``."""
        if self._sigma is None:
            s, info = top_singular_value_info(self.operator.adjoint_operator(self.y),
                                              self.rng)
            self._sigma = s if np.isfinite(s) and s > 0 else 1.0
            info["value"] = float(self._sigma)
            self.spectral_norm_info = info
        return self._sigma


@dataclass(frozen=True)
class _Settings:
    """The validated arguments of one solve (everything but the operator, y and rng)."""

    rank: int
    rule: type[StepRule]
    symmetric: bool
    init: Any
    init_scale: Any
    step: float | str
    max_iter: int
    tol: float
    stall_tol: float
    stall_window: int
    max_time: float | None
    truth: Truth | None
    names: tuple[str, ...]
    every: int
    callback: Callable | None
    progress: bool
    options: dict = field(default_factory=dict)
    seed: Any = None
    n_threads: int | None = None
    reg: float = 0.0


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


def _method_key(name: str) -> str:
    """Case-, "-"/"_"- and space-insensitive spelling of a method name."""
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _method_name(method) -> str:
    """The key of :data:`METHODS` that ``method`` names: case-insensitive, "-" and "_"
    interchangeable ("ScaledGD_lambda" is "scaledgd-lambda"); an unknown name is a
    ValueError with the nearest method names (difflib)."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, one of {', '.join(map(repr, METHODS))}; "
                        f"got {method!r}")
    by_key = {_method_key(name): name for name in METHODS}
    key = _method_key(method)
    if key in by_key:
        return by_key[key]
    near = [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=2, cutoff=0.6)]
    hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
    raise ValueError(f"unknown method {method!r}{hint} (methods: "
                     f"{', '.join(map(repr, METHODS))})")


def _solve_keywords() -> tuple[str, ...]:
    """Keyword arguments of solve itself (what a misspelled option may have meant), read
    from its signature so that a new keyword is suggested without a second list."""
    return tuple(name for name, par in inspect.signature(solve).parameters.items()
                 if par.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                 or par.kind is inspect.Parameter.KEYWORD_ONLY)


#: Other libraries' names of solve's keywords (SciPy's minimize, scikit-learn).
_KEYWORD_ALIASES = {"maxiter": "max_iter", "n_iter": "max_iter", "iterations": "max_iter",
                    "gtol": "tol", "ftol": "tol", "xtol": "tol", "x0": "init",
                    "random_state": "seed", "verbose": "progress", "disp": "progress",
                    "n_jobs": "n_threads", "num_threads": "n_threads", "k": "rank",
                    "lr": "step", "learning_rate": "step", "step_size": "step",
                    "maxtime": "max_time", "timeout": "max_time"}


def _check_option_names(options: dict, rule_cls) -> None:
    """TypeError for keyword arguments that neither solve nor the method takes, naming
    the nearest keyword of solve and of the method's options (difflib)."""
    valid_options = list(rule_cls.option_defaults)
    unknown = [name for name in options if name not in valid_options]
    if not unknown:
        return
    keywords = _solve_keywords()
    hints = []
    for name in unknown:
        near_solve = difflib.get_close_matches(name, keywords, n=1, cutoff=0.6)
        if name in _KEYWORD_ALIASES:
            near_solve = [_KEYWORD_ALIASES[name]]
        near_option = difflib.get_close_matches(name, valid_options, n=1, cutoff=0.6)
        near = ([f"solve's {near_solve[0]}="] if near_solve else []) + \
               ([f"{rule_cls.name}'s option {near_option[0]}="] if near_option else [])
        if near:
            hints.append(f"{name}: did you mean {' or '.join(near)}?")
    valid = ", ".join(sorted(valid_options)) or "none"
    raise TypeError(f"solve() got unexpected option(s) {', '.join(unknown)} for method "
                    f"{rule_cls.name!r}" + (f" ({'; '.join(hints)})" if hints else "")
                    + f"; the options of {rule_cls.name!r} are: {valid}; solve's own "
                    f"keywords: {', '.join(keywords[2:])}")


def _resolved_init_scale(init, init_scale):
    """The alpha the initialization used (its default filled in), as recorded in the
    result's ``options``; None where no scale applies (spectral start, given factors)."""
    if not isinstance(init, str) or init not in DEFAULT_INIT_SCALE:
        return None
    if init_scale is None:
        return DEFAULT_INIT_SCALE[init]
    if isinstance(init_scale, (tuple, list, np.ndarray)):
        return tuple(float(a) for a in init_scale)
    return float(init_scale)


def _optional_positive(value, name):
    if value is None:
        return None
    return check_positive_float(value, name)


# ------------------------------------------------------------------------------ solve
def solve(operator: MeasurementOperator, y: ArrayLike, rank: int, method: str = "gd",
          symmetric: bool = False, init: InitSpec = None,
          init_scale: float | tuple[float, float] | None = None,
          step: Literal["auto", "fixed"] | float | None = "auto", max_iter: int | None = None,
          tol: float | None = None, max_time: float | None = None, truth: TruthSpec = None,
          record: RecordSpec = None, callback: Callable[[SolveResult], Any] | None = None,
          seed: int | np.random.Generator | None = None, n_threads: int | None = None,
          progress: bool = False, reg: float = 0.0, stall_tol: float | None = None,
          stall_window: int = STALL_WINDOW, **method_options: Any) -> SolveResult:
    r"""Recover a low-rank matrix from y = A(M*) by a factored gradient method.

    Minimizes f(X) = 1/4 ||A(X X^T) - y||^2 over X (n, k) (``symmetric=True``, M* PSD)
    or f(F, G) = 1/2 ||A(F G^T) - y||^2 over F (n1, k), G (n2, k), with k = ``rank``
    (k = rank(M*) exact, k > rank(M*) over-parameterized), plus with ``reg`` = lam > 0
    the ridge lam/2 (||F||_F^2 + ||G||_F^2), resp. lam/2 ||X||_F^2 (symmetric).

    Parameters
    ----------
    operator : MeasurementOperator
        Any lowrank_core operator (dense, symmetric, sparse, entries, rank-one, sharded);
        every method works with every operator through its fused residual gradient.
    y : ndarray, shape (m,), or RemoteMeasurements
        Measurements, same dtype as the operator (float32 stays float32). For a
        :class:`~lowrank_core.distributed.ShardedOperator` built with its measurements
        (``completion``), ``operator.remote_measurements()`` names them without a copy
        on the client (checked finite on no side; methods that read y on the client,
        gnmr and als, need the array of ``operator.measurements()``).
    rank : int
        k, the number of columns of the factors, 1 <= k <= min(n1, n2).
    method : str
        One of :data:`lowrank_core.methods.METHODS` (S = A^T(A(F G^T) - y); the fixed
        step of ``step="fixed"`` and the default init in brackets):

        - ``"gd"``: F -= eta S G, G -= eta S^T F; symmetric X -= eta (S + S^T) X / 2
          (0.3 / ||A^T y||; init small).
        - ``"onestep"``: gd, plus once, when the residual first drops below ``trigger``,
          F <- beta F (F^T F)^{-1/2}, G <- G (F^T F)^{1/2} / beta (0.3 / ||A^T y||;
          init small).
        - ``"scaledgd"``: F -= eta S G (G^T G)^{-1}, G -= eta S^T F (F^T F)^{-1} (0.5;
          init spectral).
        - ``"scaledgd-lambda"``: the same with (G^T G + lam I)^{-1}, lam fixed (0.5;
          init spectral).
        - ``"precgd"``: the same with lam_t = ||A(F G^T) - y|| (0.5; init small).
        - ``"agn"``: F -= eta S G (G^T G)^+, then G with the new F (0.5; init spectral).
        - ``"gnmr"``: Gauss-Newton (Zilber & Nadler 2022): the minimal-norm LSQR solution of
          the linearized least squares in (dF, dG), then the "setting" update (1; spectral).
        - ``"als"``: alternating least squares, exact ridge half-steps in F then G
          (asymmetric; spectral).
        - ``"softimpute_als"``: softImpute-ALS (Hastie et al. 2015), the ridge
          half-steps on the filled-in matrix, F -= eta (S G + lam F)(L G^T G + lam I)^-1,
          then G (1, the exact line search with "auto"; asymmetric; spectral).

        onestep and agn are asymmetric only (use them on PSD targets with
        ``symmetric=False``).
    symmetric : bool
        Factor as X X^T (square operator only) instead of F G^T.
    init : None, {"small", "spectral", "nystrom"}, array, (F, G) or SolveResult
        See :func:`lowrank_core.initialization.initial_factors`. None (default) is the
        method's own start (list above: spectral where the method's paper starts
        spectrally, small random where it starts small).
    init_scale : float or (float, float), optional
        alpha of init="small" (entries N(0, alpha^2/n), default 1e-3; a pair gives
        (alpha_F, alpha_G)) or of init="nystrom" (default 1).
    step : "auto", "fixed" or float
        "auto" (default; None means the same): the exact line search along the method's
        own direction, the minimizer over [0, eta_max] of the loss along the line, a
        quartic in eta (:mod:`lowrank_core.methods.linesearch`; eta_max lets one step
        move the factors by at most their own norm); it costs forward passes of widths
        2k and k per iteration. "fixed": the method's fixed step (list above, the
        papers' values); gd's 0.3 / ||A^T(y)||_2 takes the norm densely for small
        operators, else from a bounded Lanczos estimate (relative tolerance 1e-2, at
        most 140 operator products, an upper end of its bound; how it was obtained is
        in ``options["spectral_norm"]``). A number: that fixed step, exactly as
        given. The steps taken are in ``history["step"]`` (AGN also
        ``history["step_G"]``).
    max_iter : int, optional
        Maximum number of iterations; 0 evaluates the initial point only. Default: the
        method's ``StepRule.default_max_iter`` (gd, onestep 10000; scaledgd,
        scaledgd-lambda, precgd 5000; agn 3000; gnmr, als 1000), large enough for the
        slow but converging runs since the stalled-progress stop ends the ones that no
        longer progress.
    tol : float, optional
        Stop when ||A(F G^T) - y|| / ||y|| <= tol. Default 1e-10 (float64), 1e-5
        (float32).
    stall_tol : float, optional
        Stalled-progress stop: at iteration t >= ``stall_window`` the run stops with
        status "stalled" when f_{t-W} - f_t <= stall_tol * f_{t-W} (f the loss, W =
        ``stall_window``): the loss fell by less than the relative ``stall_tol`` over the
        last W iterations, as on noisy data where the residual tolerance cannot be met.
        Default 1e-6 with ``step="auto"`` and 0 (off) with a fixed step, whose runs
        reproduce the papers' experiments iteration for iteration.
    stall_window : int
        W of the stalled-progress stop (default 100).
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
        error, n_iter, time). Raise ``StopIteration`` to stop (status "callback"). Any
        other exception propagates out of ``solve`` unchanged, carrying the partial result
        (iterate t, status "callback", the history so far) as ``exc.partial_result``.
    seed : None, int or numpy Generator
        Randomness of the initialization (and ARPACK start vectors).
    n_threads : int, optional
        OpenMP threads of the operator's kernels during this solve (None: the
        operator's own setting). The operator itself is not modified.
    progress : bool
        Show a progress bar with the current residual (tqdm if installed).
    reg : float
        lam >= 0 (default 0), the ridge (Tikhonov) weight for noisy data: every method
        minimizes f + lam/2 (||F||_F^2 + ||G||_F^2) (asymmetric) or
        1/4 ||A(X X^T) - y||^2 + lam/2 ||X||_F^2 (symmetric, half the asymmetric ridge at
        F = G = X, like the data term). The gradients, the exact line search (its quartic
        gains lam (<F, D_F> + <G, D_G>) in the linear and lam (||D_F||^2 + ||D_G||^2) in
        the quadratic coefficient) and therefore every preconditioned direction include
        it; AGN's half-steps use (G^T G + lam I)^{-1}, ALS's half-steps are the exact
        ridge solves (its ``damping`` is lam; passing both with different values is an
        error), GNMR solves the regularized linearized least squares (LSQR ``damp``;
        variant "setting" without warm start only). ``loss`` and the history include the
        ridge; ``residual`` and ``tol`` stay the data residual (with lam > 0 it need not
        reach tol). lam = 0 gives bit for bit the unregularized iterates.
    **method_options
        Method-specific options: onestep ``trigger`` (0.1), ``beta`` (sqrt ||F G^T||_2);
        scaledgd-lambda ``damping`` (``step="auto"``: "schedule", lam_t =
        min(0.01 ||A^T y||_2 / g^2, ||A(F G^T) - y|| / g); fixed step: 0.01 ||A^T y||_2);
        precgd ``damping``
        ("residual", "gradient" or a number) and ``damping_scale`` (1); all
        preconditioned methods ``rcond`` (10 k eps, pseudo-inverse cutoff).

    Returns
    -------
    SolveResult
        ``status`` is one of "converged", "max_iter", "max_time", "diverged",
        "stalled" (step="auto" found no decrease along the method's direction, or
        the stalled-progress stop of ``stall_tol``),
        "interrupted" (Ctrl-C: the partial result), "callback", "operator_failed" (a
        :class:`~lowrank_core.distributed.ShardedOperator` shard lost beyond recovery or
        past its timeout during the iterations: the last evaluated iterate, the history so
        far, and the error's message naming the shard and the fix); see
        :data:`lowrank_core.results.STATUSES`.

    Raises
    ------
    KeyboardInterrupt
        Only for a Ctrl-C while the initial factors are computed (no iterate exists yet).
        A Ctrl-C later (default step / damping computation, iterations, metrics) returns
        status "interrupted" with the current iterate (the initial point with n_iter 0
        before the first step); each history row is appended atomically, and a second
        Ctrl-C during the final re-evaluation still returns the iterate (loss, residual
        and error then NaN).

    Notes
    -----
    Thread safety: ``solve`` may run concurrently in several Python threads on the same
    operator and y (each solve owns its iterate, history and random generator; the
    operators are safe to share, see :class:`~lowrank_core.operators.MeasurementOperator`),
    and gives the same result as when run alone. ``n_threads`` applies to the calling
    thread only (a context variable, not the operator's setting); the callback runs in
    the solve's thread. A :class:`~lowrank_core.distributed.ShardedOperator` is the
    exception: use it from one thread at a time.

    Cost per iteration: one residual gradient of the operator (two for agn) plus
    O((n1 + n2) k^2 + k^3) compiled k x k algebra, plus the recorded metrics (each
    O((n1 + n2) k^2) with truth factors). Divergence: a non-finite loss or a relative
    residual above DIVERGENCE_FACTOR x max(1, initial residual) stops the run; the last
    iterate with a finite loss is returned.
    """
    # ---------------------------------------------------------------- validation
    _check_operator(operator)
    method = _method_name(method)
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
    if getattr(y, "_lowrank_remote_measurements", False):
        # measurements that stay on a sharded operator's workers (nothing m-sized here)
        y = operator._check_y(y, "y")
    else:
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
    max_iter = rule_cls.default_max_iter if max_iter is None else \
        check_positive_int(max_iter, "max_iter", minimum=0)
    if stall_tol is None:
        stall_tol = STALL_TOL if step == "auto" else 0.0
    elif isinstance(stall_tol, (bool, np.bool_)) or not isinstance(stall_tol, (int, float,
                                                                              np.floating,
                                                                              np.integer)) \
            or not 0 <= float(stall_tol) < 1:
        raise ValueError(f"stall_tol must be a relative decrease in [0, 1) (0 turns the "
                         f"stalled-progress stop off), got {stall_tol!r}")
    stall_tol = float(stall_tol)
    stall_window = check_positive_int(stall_window, "stall_window")
    max_time = _optional_positive(max_time, "max_time")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    _check_option_names(method_options, rule_cls)
    reg = check_positive_float(reg, "reg (the ridge weight lambda)", allow_zero=True)
    if reg:
        method_options = rule_cls.check_reg(reg, dict(method_options))
    options = rule_cls.check_options(method_options)
    truth_obj = Truth(truth, operator.shape) if truth is not None else None
    names, every = parse_record(record, symmetric, truth_obj is not None)
    rng = check_random_state(seed)
    settings = _Settings(rank=rank, rule=rule_cls, symmetric=symmetric, init=init,
                         init_scale=init_scale, step=step, max_iter=max_iter, tol=tol,
                         stall_tol=stall_tol, stall_window=stall_window,
                         max_time=max_time, truth=truth_obj, names=names, every=every,
                         callback=callback, progress=bool(progress), options=options,
                         seed=seed, n_threads=n_threads, reg=reg)
    # The operator is not modified: its kernels resolve their thread count through
    # lowrank_core._threads, which honours this block.
    with thread_limit(n_threads):
        return _run(operator, y, settings, rng)


def _run(operator, y, s: _Settings, rng) -> SolveResult:
    """The loop of :func:`solve` on validated arguments (``y`` already checked)."""
    rule_cls, truth = s.rule, s.truth
    t_init = _time.perf_counter()
    context = _Context(operator, y, rng)
    init = rule_cls.default_init if s.init is None else s.init
    init_scale = s.init_scale
    if s.init is None and init_scale is None and init == "small":
        init_scale = rule_cls.default_init_scale  # the method's own start (None: global)
        if isinstance(init_scale, dict):
            init_scale = init_scale["symmetric" if s.symmetric else "asymmetric"]
    try:
        F0, G0 = initial_factors(operator, y, s.rank, s.symmetric, init, init_scale, rng)
    except KeyboardInterrupt:
        # no iterate exists yet: nothing to return, so the interrupt goes on (with a message)
        raise KeyboardInterrupt(f"solve interrupted while computing the initial factors "
                                f"(init={init if isinstance(init, str) else 'array'!r}); "
                                "no iterate exists yet") from None
    try:
        state = SolverState(operator, y, F0, G0, s.symmetric, s.reg,
                            residual_free=_residual_free(operator, rule_cls, s.rank))
        step = rule_cls.resolve_step(context) if s.step == "fixed" else s.step
        rule = rule_cls(state, step, s.options, context)
    except KeyboardInterrupt:
        # the initial point exists: return it (status "interrupted", n_iter 0)
        return _interrupted_during_setup(operator, y, F0, G0, s, t_init)
    state.want_grams = rule.needs_grams or "imbalance" in s.names
    state.one_sided = not rule.evaluates_grad_G and "grad_norm" not in s.names
    init_time = _time.perf_counter() - t_init

    recorder = Recorder(s.names, truth)
    progress_bar = Progress(s.progress, s.max_iter, rule_cls.name)
    max_iter, tol, max_time, callback = s.max_iter, s.tol, s.max_time, s.callback
    stall = _StallCheck(s.stall_tol, s.stall_window)

    status = None
    message = ""
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
            if s.names and t % s.every == 0:
                recorder.record(state, t, elapsed)
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
            if stall.update(state.loss):
                status = "stalled"
                message = (f"stalled: the loss fell by {stall.decrease:.2g} (relative) over the "
                           f"last {stall.window} iterations, <= stall_tol = {stall.tol:g}, at "
                           f"iteration {t} (relative residual {residual:.3g} > tol = {tol:g}): "
                           f"no more progress, e.g. the noise level of the data")
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
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    # the exception propagates; its partial_result is iterate t
                    intermediate["status"] = "callback"
                    intermediate["message"] = (f"the callback raised {type(exc).__name__} at "
                                               f"iteration {t}")
                    intermediate["history"] = recorder.history()
                    _attach_partial_result(exc, intermediate)
                    raise
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
    except ShardError as exc:
        # a shard lost for good or not answering: the last evaluated iterate is the result
        # (the current one, when the failure came before the step advanced, else its
        # predecessor); the operator is not called again
        status = "operator_failed"
        if evaluated != state.iteration and evaluated >= 0:
            state.step_back()
        message = (f"operator_failed at iteration {state.iteration} "
                   f"({type(exc).__name__}): {exc}")
    elapsed = _time.perf_counter() - start

    # The returned iterate is the state's current one; make sure its evaluation is the
    # one in the buffers (an interrupt or a failed step may have left another there).
    # A second Ctrl-C here must not lose the result: the iterate is returned without its
    # final evaluation (loss and residual NaN, status "interrupted").
    t = state.iteration
    evaluated_ok = True
    try:
        # after operator_failed nothing calls the operator again (it would fail or hang)
        failed = status == "operator_failed"
        if evaluated != t and not failed:
            evaluated = -1
            state.evaluate()
            evaluated = t
        if recorder.last != t and np.isfinite(state.half_sq) and not failed:
            if recorder.last > t:  # divergence stepped back past the last record
                recorder.drop_last()
            recorder.record(state, t, elapsed)
        progress_bar.close(t, state.residual)
    except KeyboardInterrupt:
        evaluated_ok = evaluated == t
        status = "interrupted"
        message = (f"interrupted (KeyboardInterrupt) at iteration {t}; partial result"
                   + ("" if evaluated_ok else " (a second interrupt stopped its final "
                      "evaluation: loss and residual are NaN)"))

    seed = s.seed
    used = {"method": rule_cls.name, "symmetric": s.symmetric, "rank": s.rank,
            "init": init if isinstance(init, str) else "array",
            "init_scale": _resolved_init_scale(init, init_scale),
            "step": step if step == "auto" else float(step),
            "max_iter": max_iter, "tol": tol, "stall_tol": s.stall_tol,
            "stall_window": s.stall_window,
            "max_time": max_time, "seed": seed if not isinstance(seed, np.random.Generator)
            else "Generator", "record": {"metrics": list(s.names), "every": s.every},
            "n_threads": getattr(operator, "n_threads", None)}
    if s.reg:
        used["reg"] = s.reg
    used.update(rule.options)
    if context.spectral_norm_info is not None:  # step="fixed" / a fixed damping
        used["spectral_norm"] = dict(context.spectral_norm_info)
    history = recorder.history()
    for name, taken in rule.step_log.items():  # the step from iterate t to t + 1
        history[name] = np.array([taken[i] if i < len(taken) else np.nan
                                  for i in recorder.iterations], dtype=np.float64)
    return _result(state, rule, status, message, elapsed, init_time, history, truth,
                   options=used, evaluated=evaluated_ok, own=True)


def _residual_free(operator, rule_cls, k: int) -> bool:
    """Run without the length-m residual z: the method reads none (``needs_residual``
    False: gd, onestep, precgd, scaledgd, scaledgd-lambda) and the operator has the
    kernels (``_residual_free(k)``, the from_entries blocked EntryOperator). Nothing
    recorded reads z."""
    check = getattr(operator, "_residual_free", None)
    return (not rule_cls.needs_residual and check is not None
            and hasattr(operator, "_loss_gradient_into") and bool(check(k)))


class _StallCheck:
    """The stalled-progress rule of :func:`solve` on the sequence of losses f_0, f_1, ...

    :meth:`update` takes f_t (in iteration order) and returns True when t >= W and
    f_{t-W} - f_t <= tol * f_{t-W}; ``tol = 0`` never fires. Keeps the last W + 1 losses.
    """

    def __init__(self, tol: float, window: int):
        self.tol, self.window = float(tol), int(window)
        self._losses: deque = deque(maxlen=self.window + 1)
        self.decrease = np.nan

    def update(self, loss: float) -> bool:
        if not self.tol > 0:
            return False
        self._losses.append(float(loss))
        if len(self._losses) <= self.window:
            return False
        old = self._losses[0]
        drop = old - self._losses[-1]
        self.decrease = drop / old if old > 0 else 0.0
        return drop <= self.tol * old


def _attach_partial_result(exc: BaseException, result: SolveResult) -> None:
    """Store ``result`` as ``exc.partial_result`` (and say so in the traceback)."""
    try:
        exc.partial_result = result
        exc.add_note(f"lowrank_core.solve: the partial result (iterate {result.n_iter}) is "
                     "attached to this exception as .partial_result")
    except (AttributeError, TypeError):  # an exception type without a __dict__
        pass


class _SetupRule:
    """Stand-in for the step rule when Ctrl-C stopped its construction."""

    def __init__(self, name: str):
        self.name = name

    @staticmethod
    def info() -> dict:
        return {}


def _interrupted_during_setup(operator, y, F0, G0, s: _Settings, t_init) -> SolveResult:
    """Status "interrupted" at the initial point (n_iter 0): Ctrl-C came after the initial
    factors but during the default step (or damping) computation."""
    state = SolverState(operator, y, F0, G0, s.symmetric, s.reg)
    evaluated = False
    try:
        state.evaluate()
        evaluated = True
    except KeyboardInterrupt:
        pass
    message = ("interrupted (KeyboardInterrupt) during the initialization (default step "
               "size / damping); returning the initial point"
               + ("" if evaluated else ", not evaluated (loss and residual are NaN)"))
    return _result(state, _SetupRule(s.rule.name), "interrupted", message, 0.0,
                   _time.perf_counter() - t_init, Recorder(s.names, s.truth).history(),
                   s.truth, evaluated=evaluated, own=True)


def _result(state, rule, status, message, elapsed, init_time, history, truth, *,
            options=None, evaluated=True, own=False) -> SolveResult:
    """A SolveResult of the state's current iterate; ``evaluated=False`` (the final
    evaluation was interrupted) reports NaN loss, residual and error.

    The factors are copied (a callback's intermediate result must not change as the run
    goes on) unless ``own``: the final result takes the state's buffers (the solve's own
    arrays: the initial factors are copies of the caller's), saving a second copy of F
    and G (n x k each) at the end."""
    F, G = state.F, state.G
    res = SolveResult(method=rule.name, status=status, message=message,
                      n_iter=int(state.iteration))
    take = (lambda A: A) if own else np.copy
    if state.symmetric:
        res["X"] = take(F)
    else:
        res["F"] = take(F)
        res["G"] = take(G)
    res["loss"] = float(state.loss) if evaluated else np.nan
    res["residual"] = float(state.residual) if evaluated else np.nan
    if truth is not None:
        fac = res.factors
        ok = evaluated and np.isfinite(state.half_sq)
        try:
            res["error"] = float(truth.error(*fac)) if ok else np.nan
        except KeyboardInterrupt:
            res["error"] = np.nan
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
