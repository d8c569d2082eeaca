r"""Plain factored gradient descent and the one-step rebalance.

* ``"gd"`` — symmetric: X <- X - eta grad f(X) with f(X) = 1/4 ||A(X X^T) - y||^2,
  grad f(X) = (S + S^T) X / 2, S = A^T(A(X X^T) - y) (Xiong, Ding, Du 2024, ICLR).
  Asymmetric: F <- F - eta S G, G <- G - eta S^T F with f = 1/2 ||A(F G^T) - y||^2
  (Xiong et al. 2024; Soltanolkotabi, Stoger, Xie 2023).
* ``"onestep"`` — asymmetric GD plus, once the relative residual first falls below
  ``trigger``, the single rebalancing step (our reconstruction of Xiong et al.'s
  Sec. 5 eq. (5.1), ALGORITHMS.md §1.4):
  F <- F beta (F^T F)^{-1/2}, G <- G (F^T F)^{1/2} / beta, beta^2 = ||F G^T||_2.
  F G^T is unchanged; afterwards F^T F = beta^2 I, which makes the imbalance
  F^T F - G^T G large and the convergence rate independent of the initialization scale.
  ``trigger="auto"`` (an option, not the default: see :meth:`OneStepGD.ready` and the
  measurements in docs/solvers.rst) fires instead once the spectrum of F G^T shows every
  component of M* fitted. ``unstall`` (ours, issue 18; default 100 iterations, 0 = the
  paper's single step): if the relative residual then falls by less than 10 % over that
  many iterations, one second rebalance sets the imbalance to F^T F - G^T G = gamma I,
  gamma = rho ||F G^T||_F (:meth:`OneStepGD.unstall`), so that a component of M* that
  was not fitted when the first step fired can grow again.

Step: ``step="auto"`` (default) is the exact line search along the negative gradient
(:mod:`lowrank_core.methods.linesearch`); ``step="fixed"`` is 0.3 / ||A^T(y)||_2 (0.3 is
stable when sigma_1(M*) = 1); a number is used as given. Default init: small random
(the papers' start), alpha = 0.7 asymmetric, 1e-3 symmetric (``default_init_scale``).

Cost per iteration beyond the residual gradient: O((n1 + n2) k) (one AXPY per factor),
plus with ``step="auto"`` the line search's forward passes of widths 2k and k;
the rebalance costs O((n1 + n2) k^2 + k^3) once, the second one (if it fires) the same
plus one residual evaluation.
"""

from __future__ import annotations

import collections
import numbers

import numpy as np

from .. import _steps
from ._base import StepRule

#: GD step for sigma_1(M*) = 1; step=None divides it by ||A^T(y)||_2 ~ sigma_1.
GD_STEP = 0.3


class GradientDescent(StepRule):
    name = "gd"
    summary = "factored gradient descent"
    forms = ("symmetric", "asymmetric")
    default_step = None
    #: GD is the slowest family (sublinear when over-parameterized symmetric, an
    #: alpha-dependent linear rate asymmetric): 10000 iterations, cut short by the
    #: stalled-progress stop.
    default_max_iter = 10000
    #: init=None: asymmetric GD's linear rate grows with the imbalance, i.e. with alpha^2
    #: (Xiong et al. 2024): alpha = 0.7 (the peer's N(0, 1)/10 start at n = 50) reached
    #: 2.8e-6 where 1e-3 reached 2.5e-4 after 5000 iterations (n=50, r=3, k=6, kappa=10,
    #: benchmarks/defaults_cases.py gd). Symmetric over-parameterized GD keeps 1e-3: its
    #: sublinear error starts at the scale of the spurious components (1.4e-3 at alpha=0.7
    #: vs 7.5e-5 at 1e-3 after 500 iterations).
    default_init_scale = {"asymmetric": 0.7, "symmetric": None}
    option_defaults: dict = {}
    #: the step reads only the gradients and the full line search: the residual-free
    #: path applies (issue 15; the one-step rebalance too)
    needs_residual = False

    @classmethod
    def resolve_step(cls, context) -> float:
        """0.3 / ||A^T(y)||_2: 0.3 is stable when sigma_1(M*) = 1 and A^T A ~ identity."""
        return GD_STEP / context.spectral_norm()

    def step(self) -> None:
        s, eta = self.state, self.step_size
        if self.auto:  # exact line search along the negative gradient
            eta = self.searched(self.line_search.search(s.F, s.G, s.grad_F, s.grad_G),
                                "negative gradient")
        _steps.gd_step(s.F, s.grad_F, eta, s.F_next)
        if not s.symmetric:
            _steps.gd_step(s.G, s.grad_G, eta, s.G_next)
        self.record_steps(eta)
        s.advance()


#: trigger="auto" (an option; the default stays the paper's 0.1, which the measurements of
#: issue 18 keep: "auto" is better at kappa = 10 and 100 but slower at kappa = 1,
#: docs/solvers.rst): the relative residual must be at most AUTO_CAP (the paper's "close to
#: the optimum", Xiong et al. 2024 §5, as the fixed trigger 0.1), and the spectrum of
#: F G^T, compared over AUTO_WINDOW iterations (checked every AUTO_EVERY), must show every
#: component of the truth fitted: see :meth:`OneStepGD.ready`.
AUTO_CAP = 0.1
AUTO_WINDOW = 100
AUTO_EVERY = 10
#: relative change over the window below which a singular value counts as settled
AUTO_SETTLED = 0.01
#: a component of F G^T counts as fitted when s_i > AUTO_GAP * rho
AUTO_GAP = 10.0
#: the components of F G^T below the residual must carry at least this fraction of it
AUTO_EXPLAINED = 1.0 / 3.0
#: ``unstall`` (ours, issue 18): the second rebalance fires when, ``unstall`` iterations
#: (default UNSTALL_WINDOW) or more after the first, the relative residual is above
#: UNSTALL_RATIO times its value ``unstall`` iterations earlier (less than 10 % progress).
UNSTALL_WINDOW = 100
UNSTALL_RATIO = 0.9


def relative_spectrum(F, G) -> np.ndarray:
    """Singular values of F G^T divided by ||F G^T||_F, descending, shape (k,).

    Computed from the k x k product R_F R_G^T of the two QR factors (F = Q_F R_F,
    G = Q_G R_G); cost O((n1 + n2) k^2 + k^3), never n1 x n2.
    """
    rf = np.linalg.qr(F, mode="r")
    rg = np.linalg.qr(G, mode="r")
    s = np.linalg.svd(rf @ rg.T, compute_uv=False)
    norm = float(np.linalg.norm(s))
    return s / norm if norm > 0 else s


class OneStepGD(GradientDescent):
    name = "onestep"
    summary = "asymmetric GD with the one-step rebalance"
    forms = ("asymmetric",)
    option_defaults = {"trigger": 0.1, "beta": None, "unstall": UNSTALL_WINDOW}

    @classmethod
    def check_options(cls, options: dict) -> dict:
        opts = super().check_options(options)
        u = opts["unstall"]
        if isinstance(u, (bool, np.bool_)) or not isinstance(u, numbers.Integral) or u < 0:
            raise ValueError(f"unstall must be a number of iterations >= 0 (0: the paper's "
                             f"single rebalance), got {u!r}")
        opts["unstall"] = int(u)
        t = opts["trigger"]
        if isinstance(t, str) and t == "auto":
            return cls._check_beta(opts)
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real) \
                or not 0 < t < np.inf:
            raise ValueError(f"trigger must be 'auto' or a positive relative residual, "
                             f"got {t!r}")
        opts["trigger"] = float(t)  # numpy scalars (np.float32(0.1)) accepted
        return cls._check_beta(opts)

    @staticmethod
    def _check_beta(opts: dict) -> dict:
        b = opts["beta"]
        if b is not None and (isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Real)
                              or not 0 < b < np.inf):
            raise ValueError(f"beta must be None or a positive number, got {b!r}")
        if b is not None:
            opts["beta"] = float(b)
        return opts

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        self._steps_done = 0
        self.rebalance_iteration = None
        self.beta_used = None
        self.unstall_iteration = None
        self.gamma_used = None
        #: relative residuals since the first rebalance (the last ``unstall`` + 1)
        self._after: collections.deque = collections.deque(maxlen=self.options["unstall"] + 1)
        self._spectra: collections.deque = collections.deque(
            maxlen=AUTO_WINDOW // AUTO_EVERY + 1)

    def ready(self) -> bool:
        """Whether the rebalance fires now (once; before this iteration's GD step).

        A number ``trigger``: the relative residual rho = ||z|| / ||y|| is at most it
        (the paper's rule, Xiong et al. 2024 §5, as reconstructed in ALGORITHMS.md §1.4).

        ``trigger="auto"`` (ours, issue 18): the rebalance makes F^T F = beta^2 I, and from
        then on a component of M* that F G^T has not fitted grows only at the rate
        eta sigma_j^2 / beta^2 instead of eta sigma_j (the large F damps G's new component),
        so it must fire once every component of M* is fitted, which rho alone does not
        show at high condition numbers (rho = 0.1 while sigma_r / sigma_1 = 0.01 is not
        fitted). With s = sigma(F G^T) / ||F G^T||_F (:func:`relative_spectrum`, every
        AUTO_EVERY iterations) it fires when

        * rho <= AUTO_CAP (0.1),
        * the fitted components (s_i > AUTO_GAP rho, 10 rho) are settled: each changed by
          at most AUTO_SETTLED (1 %) over the last AUTO_WINDOW (100) iterations (a
          component still being fitted grows),
        * the residual is explained by the other components: ||s_{s_i <= 10 rho}|| >=
          AUTO_EXPLAINED rho (1/3), and that tail has not grown by more than 1 % over the
          window. A residual with nothing of F G^T below it is a component of M* that F G^T
          has not started to fit (the plateau of incremental learning); the tail is the
          spurious part of the over-parameterized iterate, which the rebalance removes.

        Limit (measured, docs/solvers.rst): from a large start (alpha = 0.7) the spurious
        part of F G^T hides an unfitted sigma_r / sigma_1 = 0.01 and the rule fires too
        early too.
        """
        s = self.state
        trigger = self.options["trigger"]
        if trigger != "auto":
            return s.residual <= trigger
        if self._steps_done % AUTO_EVERY:
            return False
        spec = relative_spectrum(s.F, s.G)
        self._spectra.append(spec)
        rho = s.residual
        if not rho <= AUTO_CAP or len(self._spectra) < self._spectra.maxlen:
            return False
        old = self._spectra[0]
        fitted = spec > AUTO_GAP * rho
        if np.any(np.abs(spec[fitted] - old[fitted]) > AUTO_SETTLED * spec[fitted]):
            return False
        tail = float(np.linalg.norm(spec[~fitted]))
        tail_old = float(np.linalg.norm(old[~fitted]))
        return tail >= AUTO_EXPLAINED * rho and tail <= (1 + AUTO_SETTLED) * tail_old

    def rebalance(self) -> None:
        """Replace (F, G) in place by (beta F (F^T F)^{-1/2}, G (F^T F)^{1/2} / beta).

        The gradients (S G, S^T F) of the current iterate are transformed with it
        (S is unchanged because F G^T is), so no extra residual evaluation is needed.
        Computed with numpy (eigh of the k x k F^T F, then (n, k) x (k, k) products), once
        per solve; not in the compiled ``_steps`` module.
        """
        s = self.state
        F, G = s.F, s.G
        w, Q = np.linalg.eigh(F.T @ F)
        w = np.maximum(w, 0.0)
        cutoff = w[-1] * s.k * np.finfo(s.dtype).eps
        root_w = np.sqrt(w)
        inv_w = np.where(w > cutoff, 1.0 / np.where(root_w > 0, root_w, 1.0), 0.0)
        root = (Q * root_w) @ Q.T
        inv_root = (Q * inv_w) @ Q.T
        B = root @ (G.T @ G) @ root  # same nonzero spectrum as (F G^T)^T (F G^T)
        sigma1 = float(np.sqrt(max(np.linalg.eigvalsh(B)[-1], 0.0)))
        beta = float(self.options["beta"]) if self.options["beta"] is not None \
            else float(np.sqrt(sigma1))
        if not beta > 0:
            return
        dt = s.dtype
        Pf = (beta * inv_root).astype(dt)
        Pg = (root / beta).astype(dt)
        F[...] = F @ Pf
        G[...] = G @ Pg
        s.SG[...] = s.SG @ Pg      # S G_new
        s.StF[...] = s.StF @ Pf    # S^T F_new
        if s.reg:  # the ridge's gradient and penalty change with F and G: re-evaluate
            s.evaluate()
        self.rebalance_iteration = self._steps_done
        self.beta_used = beta

    def stalled(self) -> bool:
        """Whether the second rebalance (:meth:`unstall`) fires now.

        After the first rebalance at T1, with W = ``unstall`` (> 0) and rho_t the relative
        residual: fires once, at the first t >= T1 + W with rho_t > 0.9 rho_{t-W}
        (UNSTALL_RATIO). Records rho_t for t >= T1; O(1) per iteration.
        """
        if self.unstall_iteration is not None or not self.options["unstall"]:
            return False
        after = self._after
        after.append(self.state.residual)
        return len(after) == after.maxlen and after[-1] > UNSTALL_RATIO * after[0]

    def unstall(self) -> None:
        r"""Second rebalance: keep F G^T, set F^T F - G^T G = gamma I, gamma = rho ||F G^T||_F.

        Why (issue 18, the trace of docs/solvers.rst): after the first step
        F^T F = beta^2 I, beta^2 = sigma_1. A component sigma_j u_j v_j^T of M* that
        F G^T had not fitted then has a = u_j^T F of size ~beta and b = v_j^T G damped at
        the rate eta beta^2 to b ~ sigma_j a / beta^2; it sits at the fraction
        ||a||^2/beta^2 of sigma_j and grows only at the rate eta sigma_j^2 / beta^2
        (kappa = 100, sigma_3 = 0.01: 1e-4 eta per iteration), and the residual stalls at
        ~sigma_j. With the imbalance gamma I instead, a ~ sqrt(gamma), and it grows at
        eta sigma_j^2 / gamma; gamma = rho ||F G^T||_F ~ ||F G^T - M*||_F is the size
        of the unfitted part (~sigma_j), which gives it GD's rate eta sigma_j, while the
        spurious (over-parameterized) directions still decay at eta gamma.

        With F = Q_F R_F, G = Q_G R_G and R_F R_G^T = W diag(s) Z^T (k x k):
        F <- Q_F W diag(a), G <- Q_G Z diag(b), a_i^2 = (gamma + sqrt(gamma^2 + 4 s_i^2))/2,
        b_i = s_i / a_i, so a_i b_i = s_i and a_i^2 - b_i^2 = gamma. Cost
        O((n1 + n2) k^2 + k^3) and one residual evaluation (the new gradients), once.
        """
        s = self.state
        F, G = s.F, s.G
        qf, rf = np.linalg.qr(F)
        qg, rg = np.linalg.qr(G)
        W, sv, Zt = np.linalg.svd(rf @ rg.T)
        gamma = s.residual * float(np.linalg.norm(sv))
        a = np.sqrt(0.5 * (gamma + np.sqrt(gamma * gamma + 4.0 * sv * sv)))
        b = np.divide(sv, a, out=np.zeros_like(sv), where=a > 0)
        F[...] = qf @ (W * a)
        G[...] = qg @ (Zt.T * b)
        s.evaluate()
        self.unstall_iteration = self._steps_done
        self.gamma_used = gamma

    def step(self) -> None:
        if self.rebalance_iteration is None:
            if self.ready():
                self.rebalance()
        elif self.stalled():
            self.unstall()
        self._steps_done += 1
        super().step()

    def info(self) -> dict:
        return {"rebalance_iteration": self.rebalance_iteration, "beta": self.beta_used,
                "unstall_iteration": self.unstall_iteration, "gamma": self.gamma_used}
