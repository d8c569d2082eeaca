"""Solver state shared by every step rule, and the step-rule base class.

A step rule is the only thing that differs between methods: given the current iterate
and its residual gradient (computed once per iteration by the driver through the
operator's fused ``residual_gradient``), it writes the next iterate into preallocated
buffers. The per-iteration k x k algebra runs in the compiled module
``lowrank_core._steps`` (the one-step rebalance, once per solve, uses numpy).
"""

from __future__ import annotations

import numpy as np

from .. import _steps
from .linesearch import LineSearch, SearchStalled
from .linesearch import check_operator as check_line_search_operator


class StepFailure(RuntimeError):
    """A step could not be computed (LAPACK failure on non-finite data)."""


class SolverState:
    r"""Iterate, residual gradient and workspace of one solve; allocated once.

    The iterate is double-buffered: ``F``/``G`` are the current factors and
    ``F_next``/``G_next`` the buffers a step writes into; :meth:`advance` swaps them with
    a single integer store, so an interrupt at any point leaves a complete iterate and
    the previous iterate stays available (divergence keeps the last finite one).
    In a symmetric run G is F (one buffer pair) and the estimate is X X^T.

    After :meth:`evaluate`:

    * ``half_sq`` = 1/2 ||z||^2 with z = A(F G^T) - y;
    * ``grad_F``, ``grad_G``: the loss gradient. Asymmetric f = 1/2 ||z||^2:
      (S G, S^T F) with S = A^T(z). Symmetric f = 1/4 ||A(X X^T) - y||^2:
      grad_F = grad_G = (S X + S^T X) / 2;
    * ``gram_F`` = F^T F and ``gram_G`` = G^T G when ``want_grams``.

    With the ridge ``reg`` = lam > 0 the objective gains lam/2 (||F||_F^2 + ||G||_F^2)
    (asymmetric) or lam/2 ||X||_F^2 (symmetric, i.e. half the asymmetric term at
    F = G = X, as the data term 1/4 ||z||^2 is half of 1/2 ||z||^2), stored in
    ``penalty``; :meth:`evaluate` adds lam F, lam G (lam X) to the gradients, so ``SG``
    and ``StF`` then hold S G + lam F and S^T F + lam G. :meth:`residual_gradient` stays
    the bare data term. lam = 0 leaves every operation as without the ridge.

    ``residual_free`` (the driver sets it when the method reads no z and the operator
    has the kernels, ``operator._residual_free(k)``): ``z`` is None (no length-m
    buffer); :meth:`residual_gradient` runs the operator's ``_loss_gradient_into``,
    which returns the same loss and gradients without storing z, and the line search
    recomputes z from F, G and y.
    """

    def __init__(self, operator, y, F0, G0, symmetric: bool, reg: float = 0.0,
                 residual_free: bool = False):
        self.operator = operator
        self.y = y
        self.symmetric = bool(symmetric)
        self.dtype = F0.dtype
        self.k = F0.shape[1]
        self.n1, self.n2 = operator.shape
        # measurements kept on a sharded operator's workers know their norm
        remote = getattr(y, "_lowrank_remote_measurements", False)
        self.y_norm = float(y.norm() if remote else np.linalg.norm(y)) or 1.0
        F0 = np.ascontiguousarray(F0)
        self._F = [F0, np.empty(F0.shape, F0.dtype)]
        if symmetric:
            self._G = self._F
        else:
            G0 = np.ascontiguousarray(G0)
            self._G = [G0, np.empty(G0.shape, G0.dtype)]
        #: index t of the current iterate; its parity selects the buffer, so moving to
        #: the next iterate is ONE store (interrupt-safe).
        self.iteration = 0
        k, dt = self.k, self.dtype
        self.residual_free = bool(residual_free)
        #: the residual A(F G^T) - y of the last evaluation (None: residual-free run)
        self.z = None if self.residual_free else np.empty(operator.m, dt)
        self.SG = np.empty((self.n1, k), dt)
        self.StF = np.empty((self.n2, k), dt)
        self.grad_sym = np.empty((self.n1, k), dt) if symmetric else None
        self.gram_F = np.empty((k, k), dt)
        self.gram_G = self.gram_F if symmetric else np.empty((k, k), dt)
        self.want_grams = False
        self.half_sq = np.nan
        self.reg = float(reg)
        self.penalty = 0.0
        # scratch of the ridge's lam F / lam G (no allocation per iteration)
        self._ridge = np.empty((max(self.n1, self.n2), k), dt) if self.reg else None
        self.n_evaluations = 0
        rg = getattr(operator, "_residual_gradient_into", None)
        if rg is None:  # duck-typed operator with only the public method
            def rg(F, G, y, z, SG, StF, _op=operator):
                return _op.residual_gradient(F, G, y, out=(z, SG, StF))[0]
        self._rg = rg
        #: one-sided evaluation (set by the driver for rules whose ``evaluates_grad_G``
        #: is False): :meth:`evaluate` fills z, the loss and S G (+ lam F) only, through
        #: the operator's ``_residual_gradient_left_into`` when it has one; StF is then
        #: not the gradient of the iterate (``grad_G_current`` False)
        self.one_sided = False
        self.grad_G_current = False
        self._rg_left = getattr(operator, "_residual_gradient_left_into", None)
        if self.residual_free:
            lg = operator._loss_gradient_into
            self._rg = lambda F, G, y, z, SG, StF: lg(F, G, y, SG, StF)

    # ------------------------------------------------------------ iterate views
    @property
    def cur(self) -> int:
        return self.iteration & 1

    @property
    def F(self) -> np.ndarray:
        return self._F[self.cur]

    @property
    def G(self) -> np.ndarray:
        return self._G[self.cur]

    @property
    def F_next(self) -> np.ndarray:
        return self._F[1 - self.cur]

    @property
    def G_next(self) -> np.ndarray:
        return self._G[1 - self.cur]

    @property
    def F_prev(self) -> np.ndarray:
        """The previous iterate (valid after :meth:`advance`)."""
        return self._F[1 - self.cur]

    @property
    def G_prev(self) -> np.ndarray:
        return self._G[1 - self.cur]

    def advance(self) -> None:
        """Make the ``*_next`` buffers the current iterate (one store)."""
        self.iteration += 1

    def step_back(self) -> None:
        """Return to the previous iterate (divergence handling)."""
        self.iteration -= 1

    @property
    def grad_F(self) -> np.ndarray:
        return self.grad_sym if self.symmetric else self.SG

    @property
    def grad_G(self) -> np.ndarray:
        return self.grad_sym if self.symmetric else self.StF

    # --------------------------------------------------------------- evaluation
    def residual_gradient(self, F, G) -> float:
        """Fill z, SG = A^T(z) G, StF = A^T(z)^T F for z = A(F G^T) - y; return 1/2||z||^2
        (residual-free: the same without z)."""
        self.n_evaluations += 1
        return float(self._rg(F, G, self.y, self.z, self.SG, self.StF))

    def evaluate(self) -> float:
        """Residual gradient, loss gradient and (if wanted) Gram matrices of the iterate.

        With ``one_sided`` (asymmetric runs, an operator with
        ``_residual_gradient_left_into``) only z, the loss and ``SG`` (= S G + lam F)
        are computed, one O(m k) pass without the S^T F scatter; ``StF`` is left as it
        was (``grad_G_current`` False)."""
        F, G = self.F, self.G
        left = self.one_sided and not self.symmetric and self._rg_left is not None
        if left:
            self.n_evaluations += 1
            self.half_sq = float(self._rg_left(F, G, self.y, self.z, self.SG))
        else:
            self.half_sq = self.residual_gradient(F, G)
        self.grad_G_current = not left
        if self.symmetric:
            _steps.average(self.SG, self.StF, self.grad_sym)
        if self.reg:
            self.add_ridge(F, G, grad_G=not left)
        if self.want_grams:
            _steps.gram(F, self.gram_F)
            if not self.symmetric:
                _steps.gram(G, self.gram_G)
        return self.half_sq

    def add_ridge(self, F, G, grad_G: bool = True) -> None:
        """Add the ridge's gradient and set ``penalty`` (lam > 0 only), O((n1 + n2) k).

        Asymmetric: SG += lam F, StF += lam G (not with ``grad_G=False``, the one-sided
        evaluation), penalty = lam/2 (||F||^2 + ||G||^2).
        Symmetric: grad_sym += lam X, penalty = lam/2 ||X||^2.
        """
        lam = self.reg
        if self.symmetric:
            self._add_scaled(self.grad_sym, F)
            self.penalty = 0.5 * lam * _steps.norm(F) ** 2
        else:
            self._add_scaled(self.SG, F)
            if grad_G:
                self._add_scaled(self.StF, G)
            self.penalty = 0.5 * lam * (_steps.norm(F) ** 2 + _steps.norm(G) ** 2)

    def _add_scaled(self, out, X) -> None:
        """out += lam X through the preallocated scratch."""
        tmp = self._ridge[: X.shape[0]]
        np.multiply(X, self.reg, out=tmp)
        np.add(out, tmp, out=out)

    @property
    def loss(self) -> float:
        """The method's objective: 1/4 ||z||^2 (symmetric) or 1/2 ||z||^2 (asymmetric),
        plus the ridge ``penalty`` when reg > 0."""
        data = 0.5 * self.half_sq if self.symmetric else self.half_sq
        return data + self.penalty if self.reg else data

    @property
    def residual(self) -> float:
        """||z|| / ||y||."""
        return float(np.sqrt(2.0 * self.half_sq)) / self.y_norm if self.half_sq >= 0 \
            else float("nan")

    @property
    def residual_norm(self) -> float:
        """||z|| = ||A(F G^T) - y||."""
        return float(np.sqrt(2.0 * self.half_sq))

    def grad_norm(self) -> float:
        """||grad f||_F (over both factors in an asymmetric run)."""
        if self.symmetric:
            return _steps.norm(self.grad_sym)
        if not self.grad_G_current:
            raise RuntimeError("grad_norm() after a one-sided evaluation (S^T F not "
                               "computed); the driver evaluates both sides when "
                               "grad_norm is recorded")
        a, b = _steps.norm(self.SG), _steps.norm(self.StF)
        return float(np.hypot(a, b))


class Preconditioner:
    """Scratch for X <- X - eta D (P + lam I)^{-1}; allocated once per solve.

    Wraps :func:`lowrank_core._steps.preconditioned_step`: Cholesky of the k x k matrix,
    or an eigendecomposition pseudo-inverse (eigenvalues below ``rcond * max`` dropped)
    when it is singular or when ``pinv`` is requested.
    """

    def __init__(self, state: SolverState, rcond: float):
        k, dt = state.k, state.dtype
        self.rcond = float(rcond)
        self.C = np.empty((k, k), dt)
        self.w = np.empty(k, dt)
        self.work = np.empty(_steps.eigen_workspace_size(k, dt), dt)
        T = np.empty((max(state.n1, state.n2), k), dt)
        self._T = {state.n1: T[: state.n1], state.n2: T[: state.n2]}
        S = np.empty_like(T)
        self._S = {state.n1: S[: state.n1], state.n2: S[: state.n2]}
        Z = np.zeros_like(T)
        self._zero = {state.n1: Z[: state.n1], state.n2: Z[: state.n2]}
        self.pseudo_inverse_steps = 0

    def step(self, X, D, P, lam, eta, out, pinv=False) -> None:
        """out <- X - eta D (P + lam I)^{-1} (or the pseudo-inverse)."""
        status = _steps.preconditioned_step(X, D, P, lam, eta, out, self.C, self.w,
                                            self.work, self._T[X.shape[0]], self.rcond, pinv)
        if status == _steps.LAPACK_FAILED:
            raise StepFailure("the k x k preconditioner has non-finite entries")
        if status == _steps.PSEUDO_INVERSE and not pinv:
            self.pseudo_inverse_steps += 1

    def direction(self, D, P, lam, out, pinv=False) -> None:
        """out <- D (P + lam I)^{-1} (or the pseudo-inverse): the search direction.

        The same compiled solve as :meth:`step` (computed as 0 - (-1) D (P + lam I)^{-1},
        which is exact), so ``step(X, D, P, lam, eta, out)`` and
        ``X - eta * direction(D, P, lam)`` use the same k x k factorization.
        """
        self.step(self._zero[D.shape[0]], D, P, lam, -1.0, out, pinv)

    def local_norm(self, D, P) -> float:
        """||D P^{-1/2}||_F = sqrt(<D, D P^{-1}>) (pseudo-inverse if singular)."""
        value, status = _steps.preconditioned_norm(D, P, self.C, self.w, self.work,
                                                   self._T[D.shape[0]], self._S[D.shape[0]],
                                                   self.rcond)
        if status == _steps.LAPACK_FAILED:
            raise StepFailure("the k x k preconditioner has non-finite entries")
        return value


class StepRule:
    """One method's update. Subclasses set the class attributes and implement :meth:`step`.

    Attributes
    ----------
    name : str
    forms : tuple of str
        Supported parameterizations, ``"symmetric"`` (X X^T) and/or ``"asymmetric"``.
    default_step : float or None
        The method's fixed step (``step="fixed"``; the papers' value); None means
        "derived from the data" (see :meth:`resolve_step`).
    default_init : str
        The initialization ``solve(init=None)`` uses: ``"spectral"`` or ``"small"``, as
        the method's paper starts.
    default_init_scale : float, None or dict
        alpha (or a dict {"symmetric": ..., "asymmetric": ...} by form) of that start
        when it is ``"small"`` and ``init_scale`` is not given (None:
        :data:`lowrank_core.initialization.DEFAULT_INIT_SCALE`). An explicit
        ``init="small"`` keeps the global default, so the papers' experiments do not move.
    default_max_iter : int
        ``solve(max_iter=None)``'s cap: the iterations the method needs on slow but
        converging instances (the stalled-progress stop ends runs that stop improving).
    option_defaults : dict
        Method options accepted through ``solve(**method_options)`` and their defaults.
    needs_grams : bool
        Whether the driver must compute F^T F and G^T G every iteration.
    evaluates_grad_G : bool
        Whether :meth:`step` reads the evaluation's S^T F (``grad_G``). False lets the
        driver evaluate one-sidedly (z and S G only, :attr:`SolverState.one_sided`)
        unless a recorded metric needs the full gradient.
    needs_residual : bool
        Whether the step reads the residual z (or searches one factor at a time, which
        needs it). False lets the driver run the residual-free path on operators that
        have it (no length-m buffer, :class:`SolverState`).
    """

    name = "base"
    summary = ""
    forms: tuple[str, ...] = ("symmetric", "asymmetric")
    default_step: float | None = 0.5
    default_init = "small"
    default_init_scale: float | None = None
    default_max_iter = 1000
    option_defaults: dict = {}
    needs_grams = False
    evaluates_grad_G = True
    needs_residual = True

    def __init__(self, state: SolverState, step, options: dict, context):
        self.state = state
        #: True: exact line search along the method's direction (``step="auto"``);
        #: False: the fixed step ``step_size`` (today's behaviour, bit for bit).
        self.auto = isinstance(step, str) and step == "auto"
        self.step_size = float("nan") if self.auto else float(step)
        self.options = options
        self.context = context
        self._line_search = None  # created on first use (methods that search)
        if self.auto:
            check_line_search_operator(state.operator)
        #: the step taken at each iteration t (from iterate t to t + 1), per name
        #: ("step"; AGN also "step_G" for its second half-step).
        self.step_log: dict[str, list] = {"step": []}

    @property
    def line_search(self) -> LineSearch:
        """The exact line search's buffers and passes (created on first use)."""
        if self._line_search is None:
            self._line_search = LineSearch(self.state)
        return self._line_search

    def record_steps(self, *etas: float) -> None:
        """Append this iteration's step(s) to :attr:`step_log`."""
        names = list(self.step_log)
        for name, eta in zip(names, etas):
            self.step_log[name].append(float(eta))

    def searched(self, eta: float, what: str = "direction") -> float:
        """Return a line-search step; a zero step (no decrease possible) stops the run."""
        if not eta > 0:
            s = self.state
            raise SearchStalled(
                f"the exact line search found no decrease along the {self.name} {what} at "
                f"iteration {s.iteration} (relative residual {s.residual:.3g}): the iterate is "
                f"stationary for this method, or the residual is at rounding level")
        return eta

    @classmethod
    def check_options(cls, options: dict) -> dict:
        """Validate ``options`` (unknown names are a TypeError) and fill in defaults."""
        unknown = sorted(set(options) - set(cls.option_defaults))
        if unknown:
            valid = ", ".join(sorted(cls.option_defaults)) or "none"
            raise TypeError(f"method {cls.name!r} got unexpected option(s) "
                            f"{', '.join(unknown)}; its options are: {valid}")
        out = dict(cls.option_defaults)
        out.update(options)
        return out

    @classmethod
    def check_reg(cls, reg: float, options: dict) -> dict:
        """Reconcile ``solve(reg=lam)`` (lam > 0) with the method's raw options.

        Gradient-based methods need nothing (the ridge enters through the gradient and
        the line search); ALS and GNMR override this.
        """
        return options

    @classmethod
    def resolve_step(cls, context) -> float:
        """Default step size when ``step=None``."""
        return float(cls.default_step)

    def step(self) -> None:  # pragma: no cover - abstract
        """Write the next iterate into ``state.F_next``/``G_next``, record the step, advance."""
        raise NotImplementedError

    def info(self) -> dict:
        """Method-specific facts added to the result (e.g. when a rebalance fired)."""
        return {}
