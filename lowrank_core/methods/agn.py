r"""Alternating Gauss-Newton (AGN; Jia, Feng, Meng, Sun, NeurIPS 2024, eqs. (33)-(34)).

Asymmetric only, Gauss-Seidel order, pseudo-inverses, no damping:

    F_{t+1} = F_t - eta S_t G_t (G_t^T G_t)^+,          S_t = A^T(A(F_t G_t^T) - y)
    G_{t+1} = G_t - eta S'^T F_{t+1} (F_{t+1}^T F_{t+1})^+,  S' = A^T(A(F_{t+1} G_t^T) - y)

so each iteration evaluates the residual gradient twice (about 2x GD's cost).
The pseudo-inverse drops eigenvalues of the k x k Gram matrix below
``rcond * max eigenvalue`` (default 10 k eps); the authors' code solves the same least
squares problem with ``lstsq``. On a PSD target use it with ``symmetric=False``: the
symmetric version is not a descent method (paper, Fig. 3).

Step: ``step="auto"`` (default) gives each half-step its own exact line search (the loss
is a quadratic in the one factor that moves, minimized at eta = <z, u> / <u, u>,
u = A(D_F G^T) resp. A(F_{t+1} D_G^T), capped as in
:mod:`lowrank_core.methods.linesearch`): the Gauss-Seidel order makes the second direction
depend on F_{t+1}, so there is no joint direction to search, and the two quadratic
searches cost one forward pass of width k each (less than one quartic search of width
3k). History keeps both steps ("step" and "step_G"). ``step="fixed"`` is eta = 0.5 (their
code), used for both half-steps. Default init: spectral.
Ridge (``solve(reg=lam)``): the gradients carry lam F, lam G, the Gram matrices are
damped, (G^T G + lam I)^{-1} (the Gauss-Newton step of the regularized half-problem), and
the half-step searches include the ridge's quadratic; lam = 0 is the method above.
Cost per iteration beyond the two residual gradients: O((n1 + n2) k^2 + k^3), compiled.
"""

from __future__ import annotations

import numpy as np

from .. import _steps
from ._base import Preconditioner, StepRule
from .preconditioned import _check_rcond, _default_rcond


class AlternatingGaussNewton(StepRule):
    name = "agn"
    summary = "alternating Gauss-Newton (Jia et al. 2024)"
    forms = ("asymmetric",)
    default_step = 0.5
    default_init = "spectral"
    #: two residual gradients per iteration and a faster rate than the gradient methods
    default_max_iter = 3000
    needs_grams = True
    option_defaults = {"rcond": None}

    @classmethod
    def check_options(cls, options):
        opts = super().check_options(options)
        _check_rcond(opts)
        return opts

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        if self.options["rcond"] is None:
            self.options["rcond"] = _default_rcond(state)
        self.pre = Preconditioner(state, self.options["rcond"])
        self.step_log["step_G"] = []
        if self.auto:
            self._dir_F = np.empty((state.n1, state.k), state.dtype)
            self._dir_G = np.empty((state.n2, state.k), state.dtype)

    def step(self) -> None:
        if self.auto:
            self._searched_step()
            return
        s, eta, pre = self.state, self.step_size, self.pre
        F_next, lam = s.F_next, s.reg
        pre.step(s.F, s.SG, s.gram_G, lam, eta, F_next, pinv=True)
        # Second residual gradient at (F_{t+1}, G_t); overwrites z, SG, StF.
        s.residual_gradient(F_next, s.G)
        if lam:
            s.add_ridge(F_next, s.G)
        _steps.gram(F_next, s.gram_F)
        pre.step(s.G, s.StF, s.gram_F, lam, eta, s.G_next, pinv=True)
        self.record_steps(eta, eta)
        s.advance()

    def _searched_step(self) -> None:
        """Each half-step with its own exact step (the loss is quadratic in one factor):
        D_F = S G (G^T G)^+, eta_F = <z, u> / <u, u> with u = A(D_F G^T); then at
        (F_{t+1}, G_t) D_G = S'^T F_{t+1} (F_{t+1}^T F_{t+1})^+, u' = A(F_{t+1} D_G^T)."""
        s, pre, ls = self.state, self.pre, self.line_search
        F, G, F_next, lam = s.F, s.G, s.F_next, s.reg
        pre.direction(s.SG, s.gram_G, lam, self._dir_F, pinv=True)
        eta_F = self.searched(ls.search_first(F, G, self._dir_F), "F half-step")
        _steps.gd_step(F, self._dir_F, eta_F, F_next)
        s.residual_gradient(F_next, G)  # z, SG, StF at (F_{t+1}, G_t)
        if lam:
            s.add_ridge(F_next, G)
        _steps.gram(F_next, s.gram_F)
        pre.direction(s.StF, s.gram_F, lam, self._dir_G, pinv=True)
        eta_G = ls.search_second(F_next, G, self._dir_G)
        # A zero G step after a productive F step is not a stall: the F step moved.
        _steps.gd_step(G, self._dir_G, eta_G, s.G_next)
        self.record_steps(eta_F, eta_G)
        s.advance()
