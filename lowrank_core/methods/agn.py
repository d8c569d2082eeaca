r"""Alternating Gauss-Newton (AGN; Jia, Feng, Meng, Sun, NeurIPS 2024, eqs. (33)-(34)).

Asymmetric only, Gauss-Seidel order, pseudo-inverses, no damping:

    F_{t+1} = F_t - eta S_t G_t (G_t^T G_t)^+,          S_t = A^T(A(F_t G_t^T) - y)
    G_{t+1} = G_t - eta S'^T F_{t+1} (F_{t+1}^T F_{t+1})^+,  S' = A^T(A(F_{t+1} G_t^T) - y)

so each iteration evaluates the residual gradient twice (about 2x GD's cost).
The pseudo-inverse drops eigenvalues of the k x k Gram matrix below
``rcond * max eigenvalue`` (default 10 k eps); the authors' code solves the same least
squares problem with ``lstsq``. On a PSD target use it with ``symmetric=False``: the
symmetric version is not a descent method (paper, Fig. 3). Default eta = 0.5 (their code).
Cost per iteration beyond the two residual gradients: O((n1 + n2) k^2 + k^3), compiled.
"""

from __future__ import annotations

from .. import _steps
from ._base import Preconditioner, StepRule
from .preconditioned import _check_rcond, _default_rcond


class AlternatingGaussNewton(StepRule):
    name = "agn"
    summary = "alternating Gauss-Newton (Jia et al. 2024)"
    forms = ("asymmetric",)
    default_step = 0.5
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

    def step(self) -> None:
        s, eta, pre = self.state, self.step_size, self.pre
        F_next = s.F_next
        pre.step(s.F, s.SG, s.gram_G, 0.0, eta, F_next, pinv=True)
        # Second residual gradient at (F_{t+1}, G_t); overwrites z, SG, StF.
        s.residual_gradient(F_next, s.G)
        _steps.gram(F_next, s.gram_F)
        pre.step(s.G, s.StF, s.gram_F, 0.0, eta, s.G_next, pinv=True)
        s.advance()
