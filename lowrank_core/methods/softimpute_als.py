r"""softImpute-ALS: alternating ridge regressions on the filled-in matrix.

From Hastie, Mazumder, Lee and Zadeh, "Matrix completion and low-rank SVD via fast
alternating least squares", JMLR 16 (2015), section 3 (Algorithm 3.1 without its
SVD re-orthogonalization). It minimizes the same regularized objective as
``method="als"`` with ``reg=lam``,

    f(F, G) = 1/2 ||A(F G^T) - y||^2 + lam/2 (||F||_F^2 + ||G||_F^2),

but each half-step, instead of solving the exact row-wise least squares (one k x k
system per row, built from that row's observations: O(m k^2)), solves the ridge
regression on the full matrix with the missing entries filled in by the current
estimate. For completion, A(M)_e = s M[r_e, c_e] (s = ``scale``), with M0 = F G^T and
S = A^T(A(M0) - y) (zero off the observed entries; the driver's residual gradient
S G, S^T F), the filled-in matrix is

    X* = M0 - S / L,   L = s^2 (times the largest multiplicity of an entry),

i.e. the observed entries of the data and the current estimate elsewhere (L = 1: the
paper's P_Omega(X) + P_Omega^perp(F G^T)). The F half-step is the ridge regression of
X* on G,

    F <- X* G (G^T G + lam/L I)^{-1} = F - (S G + lam F) (L G^T G + lam I)^{-1},

a preconditioned step along the objective's gradient S G + lam F, and the G half-step
the same with the roles swapped, S recomputed at the new F:

    G <- G - (S^T F + lam G) (L F^T F + lam I)^{-1}.

X* is never formed: the direction D of a half-step (the paper's full step is X - D) is
the regularized gradient times the inverse k x k matrix
(lowrank_core._steps.preconditioned_step: Cholesky, a pseudo-inverse if singular).

Step length. ``step="fixed"`` takes the paper's step X - D. ``step="auto"`` (solve's
default) takes X - eta D with eta the exact minimizer of f along D: with the other
factor fixed f is a quadratic in eta, so eta = <grad, D> / (||A(D G^T)||^2 +
lam ||D||^2) (F half-step; A(F D^T) for G), which is never worse than eta = 1. On
completion with 70 % of the entries missing eta is about 2.5-3: the fill-in step is
short by about the missing share, the observed entries' pull is not. ``history["step"]``
and ``history["step_G"]`` hold the two lengths.

Cost per iteration: the driver's one-sided evaluation at (F, G) (z and S G only,
``evaluates_grad_G = False``: the evaluation's S^T F is never read), then per half-step
one factored forward pass A(D G^T) (the residual is updated in place,
z <- z - eta A(D G^T)) and, for the G half-step, the one adjoint product S^T F at the
new F: 4 passes over the observations, each O(m k) in the operator's compiled kernels
(EntryOperator: 4 m k, 2 m k, 2 m k and 2 m k flops; the two-sided residual gradient
and adjoint pair they replace cost 6 m k and 4 m k), plus O((n1 + n2) k^2 + k^3) of
k x k algebra; an exact ALS iteration costs O(m k^2 + (n1 + n2) k^3). Operators
without the one-sided products (the estimator's centred / bias-projected wrappers,
other operators) run the two-sided ones and discard the extra product.

Why it decreases f (the paper's majorization argument, section 4): L I bounds A^T A,
so at the current iterate, as a function of F with G fixed,

    f(F, G) <= L/2 ||F G^T - X*||_F^2 + lam/2 ||F||^2 + const,

with equality at the current F; the paper's half-step minimizes the right-hand side
exactly, hence f does not increase (and the line search, which includes eta = 1,
decreases it at least as much); the fixed points (both half-steps idle) are exactly the
stationary points of f (S G + lam F = 0 and S^T F + lam G = 0). At a rank k at least
the rank of the nuclear-norm solution, the minimizers of f are those of
1/2 ||A(M) - y||^2 + lam ||M||_* (the paper's Theorem 1 / our reg's equivalence).
The ``gram_bound`` option is L; the default is derived for
:class:`~lowrank_core.EntryOperator` (and the estimator's centred / bias-projected
wrappers of one, whose projections do not increase ||A^T A||). For every other
operator (no fill-in there, but the same majorized half-steps) it is estimated by 30
power iterations on A^T A, times 1.1 (:func:`estimated_gram_bound`); pass
``gram_bound`` >= ||A^T A||_2 for a guaranteed majorization.

Each iteration moves less than an exact ALS iteration (X* still holds the previous
estimate where nothing is observed), so it needs more iterations; each is about
k / 4 times cheaper. Default init: spectral (as ALS).

Options: ``gram_bound`` (L, above) and ``rcond`` (the pseudo-inverse threshold of the
k x k solves, default 10 k eps). Through :class:`lowrank_core.MatrixCompletion`
(``method="softimpute_als"``) ``reg``, ``center`` (True and "biases": the projected
operators, whose L is the entries'), ``validation_fraction`` / early stopping,
``max_iter``, ``tol``, ``verbose``, ``dtype`` and ``init`` work as for every method.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _steps
from ._base import Preconditioner, StepFailure, StepRule
from .gnmr import adjoint_products_into, forward_factored_into


def _entry_base(op):
    """The EntryOperator under ``op`` (itself or the estimator's wrapper's ``base``)."""
    from .. import EntryOperator
    seen = 0
    while not isinstance(op, EntryOperator) and hasattr(op, "base") and seen < 4:
        op, seen = op.base, seen + 1
    return op if isinstance(op, EntryOperator) else None


def entry_gram_bound(op) -> float:
    """||A^T A||_2 of an EntryOperator: scale^2 times the largest multiplicity of an
    observed entry (1 without duplicates). O(m) when the entries are in strictly
    increasing row-major order (e.g. from a dense array or CSR), O(m log m) otherwise."""
    n2 = op.shape[1]
    lin = np.asarray(op.rows).astype(np.int64) * n2 + np.asarray(op.cols)
    if lin.size < 2 or bool(np.all(lin[1:] > lin[:-1])):
        mult = 1
    else:
        mult = int(np.unique(lin, return_counts=True)[1].max())
    return op.scale * op.scale * mult


#: power iterations and safety factor of the estimated ||A^T A||_2 (general operators)
POWER_ITERATIONS = 30
POWER_SAFETY = 1.1


def estimated_gram_bound(op, context=None) -> float:
    """POWER_SAFETY times the power-iteration estimate of ||A^T A||_2 (POWER_ITERATIONS
    forward + adjoint passes from a seeded random start): for operators other than
    completion, whose ||A^T A|| is not known in closed form. An estimate from below
    inflated by 10 %, not a proof: pass ``gram_bound`` for a guaranteed majorization."""
    rng = np.random.default_rng(0)   # its own stream: the solve's seed is not consumed
    n1, n2 = op.shape
    v = rng.standard_normal((n1, n2))
    v /= np.linalg.norm(v)
    est = 0.0
    for _ in range(POWER_ITERATIONS):
        w = np.asarray(op.adjoint(op.forward(v.astype(op.dtype))), np.float64)
        est = float(np.linalg.norm(w))
        if not est > 0:
            break
        v = w / est
    if not (np.isfinite(est) and est > 0):
        raise ValueError("softimpute_als could not estimate ||A^T A||_2 of this operator "
                         "(zero or non-finite); pass gram_bound=L with L >= ||A^T A||_2")
    return POWER_SAFETY * est


def adjoint_transposed_into(op, w, F, G, out, scratch) -> None:
    """out <- A^T(w)^T F alone: the operator's one-sided ``_adjoint_product_into``
    (EntryOperator: one scatter pass) when it has one, else both adjoint products with
    A^T(w) G into ``scratch`` (n1 x k, discarded; the estimator's wrappers, other
    operators)."""
    into = getattr(op, "_adjoint_product_into", None)
    if into is not None:
        into(w, F, out, True)
    else:
        adjoint_products_into(op, w, F, G, scratch, out)


class SoftImputeALS(StepRule):
    """softImpute-ALS (Hastie et al. 2015); see the module docstring for the math."""

    name = "softimpute_als"
    summary = ("softImpute-ALS: ridge half-steps on the filled-in matrix (O(m k) each, "
               "completion)")
    forms = ("asymmetric",)
    default_step = 1.0
    default_init = "spectral"
    default_max_iter = 1000
    needs_grams = True
    # the G half-step recomputes S^T F at the new F: the evaluation's is never read
    evaluates_grad_G = False
    option_defaults = {"gram_bound": None, "rcond": None}

    @classmethod
    def check_options(cls, options):
        opts = super().check_options(options)
        L = opts["gram_bound"]
        if L is not None and (isinstance(L, (bool, np.bool_)) or not isinstance(L, numbers.Real)
                              or not np.isfinite(L) or L <= 0):
            raise ValueError(f"softimpute_als option gram_bound (L >= ||A^T A||_2) must be "
                             f"None (derived for completion) or a positive number, got {L!r}")
        r = opts["rcond"]
        if r is not None and (isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Real)
                              or not 0 < r < 1):
            raise ValueError(f"softimpute_als option rcond must be None (default) or a "
                             f"number in (0, 1), got {r!r}")
        return opts

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        s = state
        L = self.options["gram_bound"]
        if L is None:
            base = _entry_base(s.operator)
            L = entry_gram_bound(base) if base is not None \
                else estimated_gram_bound(s.operator, context)
        self.L = float(L)
        self.options["gram_bound"] = self.L      # resolved, for the record
        if self.options["rcond"] is None:
            self.options["rcond"] = 10.0 * s.k * float(np.finfo(s.dtype).eps)
        self.pre = Preconditioner(s, self.options["rcond"])
        self.P = np.empty((s.k, s.k), s.dtype)
        self.gram = np.empty((s.k, s.k), s.dtype)
        self._D = np.empty((max(s.n1, s.n2), s.k), s.dtype)
        self._w = np.empty(s.operator.m, s.dtype)
        self.step_log = {"step": [], "step_G": []}

    def _direction(self, grad, gram, out):
        """out <- grad (L gram + lam I)^{-1}: the paper's half-step is X - out."""
        P = self.P
        np.multiply(gram, self.L, out=P)
        self.pre.direction(grad, P, self.state.reg, out)

    def _step_length(self, grad, D, w) -> float:
        """The exact minimizer over eta of f(X - eta D) (a quadratic in eta: the other
        factor is fixed): <grad, D> / (||w||^2 + lam ||D||^2), w = A(D G^T) (or
        A(F D^T)); 1, the paper's step, with ``step="fixed"``."""
        if not self.auto:
            return self.step_size
        num = float(np.vdot(grad, D))
        den = float(np.vdot(w, w)) + self.state.reg * float(np.vdot(D, D))
        return num / den if den > 0 and num > 0 else 0.0

    def step(self) -> None:
        s = self.state
        op, lam = s.operator, s.reg
        F, G, F_next, G_next = s.F, s.G, s.F_next, s.G_next
        z, w = s.z, self._w
        # F half-step: the evaluation holds S G (+ lam F) at (F, G) and G^T G
        DF = self._D[: s.n1]
        self._direction(s.SG, s.gram_G, DF)
        forward_factored_into(op, DF, G, w)                  # A(D_F G^T), O(m k)
        eta = self._step_length(s.SG, DF, w)
        np.multiply(DF, -eta, out=F_next)
        F_next += F
        z -= eta * w                                         # residual at (F_next, G)
        # G half-step: S^T F_next + lam G with S = A^T(z) at (F_next, G), O(m k); only
        # this side (S G at F_next is not used: the next evaluation recomputes it)
        adjoint_transposed_into(op, z, F_next, G, s.StF, s.SG)
        gG = s.StF
        if lam:
            gG += lam * G
        _steps.gram(F_next, self.gram)
        DG = self._D[: s.n2]
        self._direction(gG, self.gram, DG)
        forward_factored_into(op, F_next, DG, w)             # A(F_next D_G^T)
        eta_G = self._step_length(gG, DG, w)
        np.multiply(DG, -eta_G, out=G_next)
        G_next += G
        self.record_steps(eta, eta_G)
        if not (np.isfinite(F_next).all() and np.isfinite(G_next).all()):
            raise StepFailure("a softImpute-ALS half-step produced non-finite values")
        s.advance()

    def info(self) -> dict:
        return {"pseudo_inverse_steps": self.pre.pseudo_inverse_steps}
