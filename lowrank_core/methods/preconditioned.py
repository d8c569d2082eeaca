r"""Preconditioned factored gradient methods: ScaledGD, ScaledGD(lambda), PrecGD.

All three move each factor along its gradient right-multiplied by the inverse of a
damped Gram matrix of the other factor:

* symmetric, f(X) = 1/4 ||A(X X^T) - y||^2:
  X <- X - eta grad f(X) (X^T X + lam I)^{-1};
* asymmetric, f(F, G) = 1/2 ||A(F G^T) - y||^2:
  F <- F - eta S G (G^T G + lam I)^{-1},  G <- G - eta S^T F (F^T F + lam I)^{-1}
  (both from the same iterate).

They differ in lam:

* ``"scaledgd"`` — lam = 0 (Tong, Ma, Chi, JMLR 22 2021, eqs. (4), (15));
  designed for k = r with spectral initialization. When the Gram matrix is singular
  (k > r) a pseudo-inverse is used (counted in ``result.pseudo_inverse_steps``).
* ``"scaledgd-lambda"`` — lam = ``damping`` (Xu, Shen, Chi, Ma, ICML 2023). A number is
  a fixed lam; the default with ``step="fixed"`` is the fixed 0.01 ||A^T(y)||_2 (about
  0.01 sigma_1(M*)). The default with ``step="auto"`` is ``damping="schedule"``:
  lam_t = min(lam_0, ||A(F G^T) - y|| / g), lam_0 = 0.01 ||A^T(y)||_2 / g^2 and g the
  operator's gain (as PrecGD; both terms in the units of M, so the run is invariant to
  the operator's scale). The paper asks lam well below sigma_r(M*); a fixed
  0.01 sigma_1 is about sigma_r at kappa = 100, and from the spectral start the k - r
  spurious components then decay only sublinearly (at a rate ~ ||X_perp||^2 / lam),
  which stalled near 1e-5. The cap keeps the paper's fixed lam during the burn-in; once
  the error is below it lam_t follows the error, so it ends far below sigma_r (n=100,
  r=5, k=10, m=5000, kappa=100: 82 iterations to 1.5e-10 instead of 7e-6 after 3000;
  the AGN paper's Table 2 instances at kappa 10 and 50: 58 iterations each).
  ``result.damping_final`` is the last lam used.
* ``"precgd"`` — lam_t varies with the iterate (Zhang, Fattahi, Zhang, NeurIPS 2021 /
  JMLR 24 2023): ``damping="residual"`` (default) lam_t = ||A(F G^T) - y||, i.e. sqrt(f)
  in the paper's normalization f = ||A(X X^T) - b||^2, which under RIP is about
  ||X X^T - M*||_F; ``damping="gradient"`` is the JMLR rule
  lam_t = ||grad f(X) (X^T X)^{-1/2}||_F (for two factors the root-sum-square of both
  factors' local norms); a number gives a fixed lam (= scaledgd-lambda).
  ``damping_scale`` multiplies lam_t. With ``step="auto"`` the residual rule is expressed
  in the units of M: lam_t = ||A(F G^T) - y|| / g, g = ||A(F0 G0^T)|| / ||F0 G0^T||_F the
  operator's gain measured once on the initial iterate (g ~ 1 for the normalized
  ensembles, so nothing changes there; sqrt(p) for completion with unscaled entries,
  where ||z|| alone would be sqrt(p) ||F G^T - M*||_F), which together with the line
  search makes PrecGD invariant to a rescaling of the operator.

Step: ``step="auto"`` (default) is the exact line search along the preconditioned
direction (both factors' directions from the same iterate, one joint step;
:mod:`lowrank_core.methods.linesearch`), which makes ScaledGD invariant to a rescaling of
the operator; ``step="fixed"`` is eta = 0.5 (ScaledGD's experiments; PrecGD's
alpha <= 1). Default init: spectral for scaledgd and scaledgd-lambda (their papers'
start), small random for precgd.
Cost per iteration beyond the residual gradient: two SYRKs (n k^2 each), a k x k Cholesky
per factor and the triangular solves (2 n k^2), all compiled; O((n1 + n2) k^2 + k^3).
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _steps
from ._base import Preconditioner, StepRule

#: ScaledGD(lambda)'s fixed damping per unit of ||A^T(y)||_2 (``step="fixed"``) and the
#: cap lambda_0 of its schedule
FIXED_DAMPING = 0.01


def _default_rcond(state) -> float:
    return 10.0 * state.k * float(np.finfo(state.dtype).eps)


class _Preconditioned(StepRule):
    default_step = 0.5
    #: converging runs on real completion data take 1200-1500 iterations (issue 18)
    default_max_iter = 5000
    needs_grams = True
    #: the step reads S G, S^T F, the Gram matrices and the loss, never z, and the
    #: search (step="auto") is the full one along both directions: the driver runs the
    #: residual-free path where the operator has it (no length-m buffer)
    needs_residual = False
    option_defaults = {"rcond": None}

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        rcond = options.get("rcond")
        self.options["rcond"] = _default_rcond(state) if rcond is None else float(rcond)
        self.pre = Preconditioner(state, self.options["rcond"])
        if self.auto:  # the directions D (P + lam I)^{-1}, one buffer per factor
            self._dir_F = np.empty((state.n1, state.k), state.dtype)
            self._dir_G = self._dir_F if state.symmetric else \
                np.empty((state.n2, state.k), state.dtype)

    def damping(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> None:
        s, eta, pre = self.state, self.step_size, self.pre
        lam = self.damping()
        self.last_damping = lam
        if self.auto:
            self._searched_step(lam)
            return
        if s.symmetric:
            pre.step(s.F, s.grad_F, s.gram_F, lam, eta, s.F_next)
        else:
            pre.step(s.F, s.SG, s.gram_G, lam, eta, s.F_next)
            pre.step(s.G, s.StF, s.gram_F, lam, eta, s.G_next)
        self.record_steps(eta)
        s.advance()

    def _searched_step(self, lam: float) -> None:
        """Directions D_F = S G (G^T G + lam I)^{-1}, D_G = S^T F (F^T F + lam I)^{-1}
        (symmetric: grad f(X) (X^T X + lam I)^{-1}), then the exact step along both."""
        s, pre = self.state, self.pre
        dF, dG = self._dir_F, self._dir_G
        if s.symmetric:
            pre.direction(s.grad_F, s.gram_F, lam, dF)
        else:
            pre.direction(s.SG, s.gram_G, lam, dF)
            pre.direction(s.StF, s.gram_F, lam, dG)
        eta = self.searched(self.line_search.search(s.F, s.G, dF, dG))
        _steps.gd_step(s.F, dF, eta, s.F_next)
        if not s.symmetric:
            _steps.gd_step(s.G, dG, eta, s.G_next)
        self.record_steps(eta)
        s.advance()

    def info(self) -> dict:
        return {"pseudo_inverse_steps": self.pre.pseudo_inverse_steps}


def _operator_gain(state) -> float:
    """||A(F G^T)|| / ||F G^T||_F at the state's current iterate; 1 if undefined.

    The factor by which the operator rescales a low-rank matrix like the iterate: about 1
    for the normalized ensembles (E||A(M)||^2 = ||M||_F^2), sqrt(p) * scale for
    completion with entry scale ``scale`` and sampling rate p. One forward pass of width
    k, once per solve. On a residual-free run (no length-m buffer) ||A(F G^T)||^2 is the
    u.u product of the residual-free line search along D_F = F, D_G = 0 (u = A(F G^T)),
    one pass over the tiles and no length-m array.
    """
    F, G, op = state.F, state.G, state.operator
    if state.residual_free:
        zero = np.zeros_like(G)
        measured = float(np.sqrt(max(float(op._line_search_products_y(
            F, G, F, zero, state.y)[1]), 0.0)))
    elif hasattr(op, "_forward_factored_into"):
        values = np.empty(op.m, state.dtype)
        op._forward_factored_into(F, G, values)
        measured = float(np.linalg.norm(values))
    elif callable(getattr(op, "forward_factored", None)):
        measured = float(np.linalg.norm(op.forward_factored(F, G)))
    else:
        return 1.0
    size_sq = float(np.sum((F.T @ F) * (G.T @ G)))  # ||F G^T||_F^2 = <F^T F, G^T G>
    gain = measured / np.sqrt(size_sq) if size_sq > 0 else np.nan
    return gain if np.isfinite(gain) and gain > 0 else 1.0


def _check_rcond(opts):
    r = opts["rcond"]
    if r is not None and (isinstance(r, bool) or not isinstance(r, numbers.Real)
                          or not 0 <= r < 1):
        raise ValueError(f"rcond must be None or in [0, 1), got {r!r}")


class ScaledGD(_Preconditioned):
    name = "scaledgd"
    summary = "scaled gradient descent (Tong, Ma, Chi 2021)"
    default_init = "spectral"

    @classmethod
    def check_options(cls, options):
        opts = super().check_options(options)
        _check_rcond(opts)
        return opts

    def damping(self) -> float:
        return 0.0


class ScaledGDLambda(_Preconditioned):
    name = "scaledgd-lambda"
    summary = "ScaledGD with fixed damping (Xu, Shen, Chi, Ma 2023)"
    default_init = "spectral"
    option_defaults = {"damping": None, "rcond": None}

    @classmethod
    def check_options(cls, options):
        opts = super().check_options(options)
        _check_rcond(opts)
        d = opts["damping"]
        if isinstance(d, str):
            if d != "schedule":
                raise ValueError(f"damping must be None, 'schedule' or a positive number, "
                                 f"got {d!r}")
        elif d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Real)
                                or not 0 < d < np.inf):
            raise ValueError(f"damping must be None, 'schedule' or a positive number, "
                             f"got {d!r}")
        return opts

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        d = self.options["damping"]
        if d is None:
            d = "schedule" if self.auto else FIXED_DAMPING * context.spectral_norm()
            self.options["damping"] = d
        self._schedule = d == "schedule"
        #: the operator's gain g, which puts ||z|| (and ||A^T(y)||_2 / g^2) in the units
        #: of M (see PrecGD)
        self.gain = _operator_gain(state) if self._schedule else 1.0
        #: the fixed damping; for the schedule its cap lambda_0 = 0.01 ||A^T(y)||_2 / g^2
        #: (~ 0.01 sigma_1(M*) for any scale of the operator)
        self._lam0 = FIXED_DAMPING * context.spectral_norm() / self.gain ** 2 \
            if self._schedule else float(d)
        self.last_damping = self._lam0

    def damping(self) -> float:
        if self._schedule:
            return min(self._lam0, self.state.residual_norm / self.gain)
        return self._lam0

    def info(self) -> dict:
        out = super().info()
        out["damping_final"] = float(self.last_damping)
        return out


class PrecGD(_Preconditioned):
    name = "precgd"
    summary = "preconditioned GD with variable damping (Zhang, Fattahi, Zhang 2021)"
    option_defaults = {"damping": "residual", "damping_scale": 1.0, "rcond": None}

    @classmethod
    def check_options(cls, options):
        opts = super().check_options(options)
        _check_rcond(opts)
        d = opts["damping"]
        if isinstance(d, str):
            if d not in ("residual", "gradient"):
                raise ValueError(f"damping must be 'residual', 'gradient' or a positive "
                                 f"number, got {d!r}")
        elif isinstance(d, bool) or not isinstance(d, numbers.Real) or not 0 < d < np.inf:
            raise ValueError(f"damping must be 'residual', 'gradient' or a positive "
                             f"number, got {d!r}")
        c = opts["damping_scale"]
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 < c < np.inf:
            raise ValueError(f"damping_scale must be a positive number, got {c!r}")
        return opts

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        self._rule = self.options["damping"]
        self._scale = float(self.options["damping_scale"])
        #: the operator's gain g = ||A(F0 G0^T)|| / ||F0 G0^T||_F on the initial iterate
        #: (1 for a fixed step: today's rule, bit for bit)
        self.gain = _operator_gain(state) if self.auto else 1.0
        if self.auto and self._rule == "residual":
            self._scale = self._scale / self.gain

    def damping(self) -> float:
        s, rule = self.state, self._rule
        if rule == "residual":
            return self._scale * s.residual_norm
        if rule == "gradient":
            if s.symmetric:
                return self._scale * self.pre.local_norm(s.grad_F, s.gram_F)
            a = self.pre.local_norm(s.SG, s.gram_G)
            b = self.pre.local_norm(s.StF, s.gram_F)
            return self._scale * float(np.hypot(a, b))
        return self._scale * float(rule)
