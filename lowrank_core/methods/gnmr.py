r"""GNMR: Gauss-Newton matrix recovery (Zilber & Nadler, SIMODS 2022, arXiv 2106.12933).

Asymmetric form. At the iterate (U, V) (n1 x k, n2 x k) solve the linearized problem

    (U~, V~) = argmin ||A(U V~^T + U~ V^T) - b||,   b = y + alpha A(U V^T),

taking its minimal-norm solution, then set

    U <- (1 - alpha)/2 U + U~,   V <- (1 - alpha)/2 V + V~

with alpha = 1 ("setting", the authors' default), 0 ("averaging") or -1 ("updating", the
plain Gauss-Newton step). The Jacobian J(dU, dV) = A(U dV^T + dU V^T) is ONE factored
forward of width 2k, A([U, dU] [dV, V]^T), and J^T(w) = (A^T(w) V, A^T(w)^T U) are the
operator's adjoint products; nothing n1 x n2 is formed for the structured operators.

How the three variants relate (used for the warm start). J has the null space
N = {(U R, -V R^T) : R k x k} (U dV^T + dU V^T is unchanged by it), so the system is rank
deficient by k^2 at least. Writing (U~, V~) = c (U, V) + (dU, dV) with c = (1 + alpha)/2,
J(c(U, V)) = (1 + alpha) A(U V^T), so (dU, dV) solves J(dU, dV) = -z with the residual
z = A(U V^T) - y, the same right-hand side for every variant. The minimal-norm solution
is J^+ b = J^+(-z) + c P (U, V), P the orthogonal projector onto range(J^T) = null(J)^perp.
When null(J) = N (the generic case at k = r with enough measurements) P removes from
(U, V) its component (U R, -V R^T) along N, with R the solution of the k x k Sylvester
equation U^T U R + R V^T V = U^T U - V^T V (zero iff U^T U = V^T V, i.e. balanced
factors). The update is then

    U <- U - c U R + dU,   V <- V + c V R^T + dV,

so the variants differ only in how much of the factors' imbalance they remove: "setting"
all of it, "updating" none. ``warm_start=False`` (default) runs LSQR from zero on b itself,
exactly the paper's procedure. ``warm_start=True`` solves J(dU, dV) = -z from zero (i.e.
LSQR on b warm-started at c P(U, V)) and applies P in closed form (O((n1 + n2) k^2 + k^3)):
identical iterates when the inner solves converge and null(J) = N (tested), but NOT when
LSQR stops at ``max_inner_iter`` on an ill-conditioned J: LSQR from zero on b then returns
a Krylov (regularized) approximation that leaves J's near-null directions alone, while the
warm start keeps c P(U, V)'s component along them. Measured on completion 300 x 350, r = 5,
cond 10, OS 1.5, seed 0 (every early inner solve hits 2000 iterations): from zero, error
1.8e-10 in 32 iterations; warm-started, 6.9 after 40. Hence the default.

Symmetric form (X n x k, estimate X X^T): the linearization is
min ||A(X X~^T + X~ X^T) - b||, b = y + alpha A(X X^T), J(D) = A(X D^T + D X^T) (one
factored forward of width 2k, A([X, D] [D, X]^T)), J^T(w) = (A^T(w) + A^T(w)^T) X, and
X <- (1 - alpha)/2 X + X~. Its null space contains {X W : W = -W^T}, and X is orthogonal
to it (tr(X^T X W) = 0 for antisymmetric W), so all three variants give the same
iterate X + dX with dX the minimal-norm solution of J(dX) = -z: ``variant`` has no effect
in the symmetric form.

The estimate (``estimate="linearized"``, default; the authors' code): the iterate the
driver sees, F G^T, is the rank-k truncation of the linearization's solution
X_2r = U V'^T + U' V^T - U V^T = [U, U' - U] [V', V]^T (A(X_2r) is what the inner problem
fits; the authors track its residual and return its rank-r SVD truncation), computed from
two thin QRs and a 2k x 2k SVD (balanced factors); the paper's factor sequence (U, V)
evolves alongside, unchanged by the truncation (one extra factored forward per iteration for
its residual). The product U' V'^T itself can stall: with "setting" it differs from X_2r by
(U' - U)(V' - V)^T, which stays of the order of the factors' imbalance squared (measured:
completion 300 x 350, r = 5, cond 10, OS 1.5: X_2r reaches 4e-13, U V^T stalls at 2e-2).
``estimate="factors"`` makes U' V'^T the iterate (no truncation). Symmetric: X_2r =
X X^T + X D^T + D X^T, D = X' - X, truncated to its top-k PSD part.

LSQR tolerances: atol = btol = tol_t with, relres the previous inner solve's relative
residual ||b - J x|| / ||b|| (1 before the first),

    tol_t = lsqr_tol                     while relres >= tighten_below,
    tol_t = min(lsqr_tol, relres^2)      once relres < tighten_below,

floored at 1e-7 in float32 (the products carry float32 rounding; a tighter tolerance makes
LSQR run into its condition limit on rounding noise); at most ``max_inner_iter`` (2000)
inner iterations; scipy's default conlim (1e8). The default ``lsqr_tol=1e-3,
tighten_below=1`` is an inexact Gauss-Newton rule: min(1e-3, relres^2) from the first
iteration, so early solves are loose and the tolerance tightens quadratically with the
residual. The authors' code uses ``lsqr_tol=1e-15, tighten_below=1e-5`` (run to machine
precision, relres^2 below 1e-5); both recover the same cells (measured, completion
300 x 350, r = 5: cond 10 OS 1.5 every seed whose rows and columns all have >= r
observations, cond 1000 OS 2.5 10/10), the default with 2-5x fewer inner iterations at
cond 10 (benchmarks/gnmr_reference.py). With the default, on the papers' sampling
protocol (``make_problem(..., min_per_line=r)``), completion 300 x 300, r = 5: 20/20
seeds at cond 10, OS 1.5 (median 42 iterations) and 20/20 at cond 1000, OS 2.5 (26).
In the warm-started form the same absolute stopping rule ||r|| <= tol ||b|| + ... is kept
by passing btol = tol ||b|| / ||z||.

Ridge (``solve(reg=lam)``): the linearized problem gains the ridge of the new factors,
min 1/2 ||J(U~, V~) - b||^2 + lam/2 (||U~||^2 + ||V~||^2) (symmetric: 1/4 ||.||^2 +
lam/2 ||X~||^2), i.e. LSQR with ``damp`` = sqrt(lam) (symmetric sqrt(2 lam)); that is the
Gauss-Newton step of the regularized objective only where the unknowns ARE the new
factors: variant "setting" (alpha = 1) without ``warm_start``. Other variants and the
warm start raise a ValueError with lam > 0.

``step`` eta (default 1, the paper) damps the update: X <- X + eta (X_GN - X).
``result.lsqr_iterations`` and ``result.lsqr_stop`` hold each outer iteration's inner
iteration count and LSQR stop reason (``istop``). On completion, rows and columns with
fewer than k observed entries (not determined by the data) are counted in
``result.underdetermined_lines`` and reported by a RuntimeWarning at the start.

Cost per outer iteration: the driver's residual gradient, then per inner LSQR iteration
one factored forward of width 2k and one adjoint-products pass (entries: about 8 m k
flops) plus scipy's O(m + (n1 + n2) k) vector updates; O((n1 + n2) k^2 + k^3) for the
projection. LSQR's own vectors are scipy's float64; every operator product and the
iterate stay in the operator's dtype (float32 stays float32).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.sparse.linalg import LinearOperator, lsqr

from ._base import StepRule

#: variant name -> alpha of the paper's update.
VARIANTS = {"setting": 1.0, "averaging": 0.0, "updating": -1.0}


def check_line_coverage(operator, k: int, method: str, counts=None) -> int:
    """Warn (RuntimeWarning) when a completion problem has a row or column with fewer
    than k observed entries, and return how many lines do (0 for other operators).

    Such a line is not determined by the data: row i of a rank-k completion F G^T is
    F_i G^T, and |Omega_i| < k equations leave F_i underdetermined whatever the method.
    O(m + n1 + n2) once per solve. ``counts``: (entries per row, entries per column)
    when the caller has them (ALS's tile path; then the operator's rows and cols, which
    a from_entries blocked operator would build a row layout for, are not read).
    """
    from ..operators.entries import (
        EntryOperator,
        line_counts,
        short_lines_message,
        short_lines_message_counts,
    )
    if not isinstance(operator, EntryOperator):
        return 0
    if counts is None:
        rows, cols = operator.rows, operator.cols
        message = short_lines_message(rows, cols, operator.shape, k)
    else:
        message = short_lines_message_counts(*counts, operator.shape, k)
    if not message:
        return 0
    warnings.warn(f"{method}: {message}", RuntimeWarning, stacklevel=6)
    per_row, per_col = line_counts(rows, cols, operator.shape) if counts is None else counts
    return int(np.count_nonzero(per_row < k) + np.count_nonzero(per_col < k))


def adjoint_products_into(op, w, F, G, SG, StF) -> None:
    """SG <- A^T(w) G and StF <- A^T(w)^T F: the operator's compiled adjoint products.

    ``op._adjoint_products_into`` when the operator has it (no validation, no allocation),
    else its public ``adjoint_products`` (duck-typed operators).
    """
    into = getattr(op, "_adjoint_products_into", None)
    if into is not None:
        into(w, F, G, SG, StF)
        return
    a, b = op.adjoint_products(w, F, G)
    SG[...] = a
    StF[...] = b


def forward_factored_into(op, F, G, out) -> None:
    """out <- A(F G^T) with the operator's factored forward (no validation when possible)."""
    into = getattr(op, "_forward_factored_into", None)
    if into is not None:
        into(F, G, out)
    else:
        out[...] = op.forward_factored(F, G)


def imbalance_rotation(GF: np.ndarray, GG: np.ndarray, rcond: float) -> np.ndarray:
    r"""R solving GF R + R GG = GF - GG for symmetric PSD k x k GF = U^T U, GG = V^T V.

    (U R, -V R^T) is then the orthogonal projection of (U, V) onto
    N = {(U W, -V W^T)}: it minimizes ||U - U W||^2 + ||V + V W^T||^2 over W. Solved by
    the eigendecompositions GF = Q1 D1 Q1^T, GG = Q2 D2 Q2^T:
    R = Q1 [(Q1^T C Q2)_ij / (d1_i + d2_j)] Q2^T with C = GF - GG; pairs with
    d1_i + d2_j <= rcond * max(d1 + d2) are dropped (pseudo-inverse). O(k^3).
    """
    d1, Q1 = np.linalg.eigh(GF)
    d2, Q2 = np.linalg.eigh(GG)
    denom = np.maximum(d1, 0.0)[:, None] + np.maximum(d2, 0.0)[None, :]
    C = Q1.T @ (GF - GG) @ Q2
    cutoff = rcond * float(denom.max()) if denom.size else 0.0
    keep = denom > cutoff
    W = np.zeros_like(C)
    W[keep] = C[keep] / denom[keep]
    return Q1 @ W @ Q2.T


def factored_truncation(P: np.ndarray, Q: np.ndarray, k: int):
    r"""Balanced factors (F, G) of the best rank-k approximation of P Q^T (P n1 x w, Q n2 x w).

    Thin QRs P = Q_a R_a, Q = Q_b R_b and the SVD of the w x w matrix R_a R_b^T = W S Z^T
    give F = Q_a W_k S_k^{1/2}, G = Q_b Z_k S_k^{1/2}. O((n1 + n2) w^2 + w^3).
    """
    Qa, Ra = np.linalg.qr(P)
    Qb, Rb = np.linalg.qr(Q)
    W, sv, Zt = np.linalg.svd(Ra @ Rb.T)
    root = np.sqrt(sv[:k])
    return Qa @ (W[:, :k] * root), Qb @ (Zt[:k].T * root)


def symmetric_truncation(X: np.ndarray, D: np.ndarray, k: int) -> np.ndarray:
    r"""X' with X' X'^T the best PSD rank-k approximation of X X^T + X D^T + D X^T.

    With the thin QR [X, D] = Q R the matrix is Q R [[I, I], [I, 0]] R^T Q^T; the top-k
    eigenpairs (negative eigenvalues clipped to 0) of the 2k x 2k middle give X'.
    """
    k0 = X.shape[1]
    Qm, Rm = np.linalg.qr(np.hstack([X, D]))
    I = np.eye(k0)
    middle = Rm @ np.block([[I, I], [I, np.zeros((k0, k0))]]) @ Rm.T
    w, E = np.linalg.eigh(0.5 * (middle + middle.T))
    w, E = w[::-1][:k], E[:, ::-1][:, :k]
    return Qm @ (E * np.sqrt(np.maximum(w, 0.0)))


class _Jacobian:
    """J and J^T of the linearization at a fixed iterate, as a scipy LinearOperator.

    Workspace allocated once per solve; per product one compiled operator pass and
    O((n1 + n2) k) copies into the width-2k factor buffers.
    """

    def __init__(self, state):
        s = state
        self.op = s.operator
        self.symmetric = s.symmetric
        n1, n2, k, dt = s.n1, s.n2, s.k, s.dtype
        self.n1, self.n2, self.k = n1, n2, k
        self.nF = n1 * k
        n_unknowns = n1 * k if s.symmetric else (n1 + n2) * k
        self.Fw = np.empty((n1, 2 * k), dt)   # [F, dF]
        self.Gw = np.empty((n2, 2 * k), dt)   # [dG, G]
        self.fwd = np.empty(s.operator.m, dt)
        self.w = np.empty(s.operator.m, dt)
        self.adj = np.empty(n_unknowns, dt)
        self.SG = np.empty((n1, k), dt)
        self.StF = np.empty((n2, k), dt)
        self.F = self.G = None
        self.n_products = 0
        self.linear_operator = LinearOperator((s.operator.m, n_unknowns), matvec=self.matvec,
                                              rmatvec=self.rmatvec, dtype=dt)

    def set_point(self, F, G) -> None:
        k = self.k
        self.F, self.G = F, G
        self.Fw[:, :k] = F
        self.Gw[:, k:] = G

    def matvec(self, x):
        x = np.ravel(x)
        k, nF = self.k, self.nF
        dF = x[:nF].reshape(self.n1, k)
        self.Fw[:, k:] = dF
        self.Gw[:, :k] = dF if self.symmetric else x[nF:].reshape(self.n2, k)
        forward_factored_into(self.op, self.Fw, self.Gw, self.fwd)
        self.n_products += 1
        return self.fwd

    def rmatvec(self, u):
        self.w[...] = np.ravel(u)
        adjoint_products_into(self.op, self.w, self.F, self.G, self.SG, self.StF)
        nF = self.nF
        if self.symmetric:
            np.add(self.SG, self.StF, out=self.adj.reshape(self.n1, self.k))
        else:
            self.adj[:nF] = self.SG.ravel()
            self.adj[nF:] = self.StF.ravel()
        self.n_products += 1
        return self.adj


def _check_tolerance(value, name, upper_included=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or not 0 < value <= 1 \
            or (value == 1 and not upper_included):
        interval = "(0, 1]" if upper_included else "(0, 1)"
        raise ValueError(f"GNMR option {name} must be a number in {interval}, got {value!r}")
    return float(value)


class GNMR(StepRule):
    """Gauss-Newton matrix recovery; see the module docstring for the math and options."""

    name = "gnmr"
    summary = "Gauss-Newton matrix recovery (Zilber & Nadler 2022), LSQR inner solves"
    forms = ("symmetric", "asymmetric")
    default_step = 1.0
    default_init = "spectral"
    option_defaults = {"variant": "setting", "lsqr_tol": 1e-3, "tighten_below": 1.0,
                       "max_inner_iter": 2000, "warm_start": False, "estimate": "linearized"}

    @classmethod
    def check_options(cls, options):
        opts = super().check_options(options)
        variant = opts["variant"]
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise ValueError(f"GNMR option variant must be one of "
                             f"{', '.join(repr(v) for v in VARIANTS)} (alpha = 1, 0, -1 of "
                             f"the paper), got {variant!r}")
        opts["lsqr_tol"] = _check_tolerance(opts["lsqr_tol"], "lsqr_tol")
        opts["tighten_below"] = _check_tolerance(opts["tighten_below"], "tighten_below",
                                                 upper_included=True)
        mi = opts["max_inner_iter"]
        if isinstance(mi, (bool, np.bool_)) or not isinstance(mi, numbers.Integral) or mi < 1:
            raise ValueError(f"GNMR option max_inner_iter must be a positive integer, "
                             f"got {mi!r}")
        opts["max_inner_iter"] = int(mi)
        if not isinstance(opts["warm_start"], (bool, np.bool_)):
            raise TypeError(f"GNMR option warm_start must be True or False, got "
                            f"{opts['warm_start']!r}")
        opts["warm_start"] = bool(opts["warm_start"])
        if opts["estimate"] not in ("linearized", "factors"):
            raise ValueError(f"GNMR option estimate must be 'linearized' (the authors' "
                             f"estimate U V'^T + U' V^T - U V^T, truncated to rank k) or "
                             f"'factors' (U' V'^T), got {opts['estimate']!r}")
        return opts

    @classmethod
    def check_reg(cls, reg, options):
        """The ridge needs the unknowns to be the new factors: "setting", no warm start."""
        if options.get("variant", "setting") != "setting" or options.get("warm_start"):
            raise ValueError("GNMR with reg > 0 supports only variant='setting' with "
                             "warm_start=False (the regularized linearized least squares in "
                             "the new factors, LSQR damp = sqrt(reg)); drop variant/warm_start "
                             "or use another method")
        return options

    def __init__(self, state, step, options, context):
        super().__init__(state, step, options, context)
        self.alpha = VARIANTS[self.options["variant"]]
        self.tol_floor = 0.0 if state.dtype == np.float64 else 1e-7
        self.jac = _Jacobian(state)
        self.short_lines = check_line_coverage(state.operator, state.k, "gnmr")
        self.relres = 1.0   # previous inner solve's ||b - J x|| / ||b|| (authors: 1 at start)
        self.rcond = 10.0 * state.k * float(np.finfo(state.dtype).eps)
        self.lsqr_iterations: list[int] = []
        self.lsqr_stop: list[int] = []
        self.b = np.empty(state.operator.m, np.float64)
        self.linearized = self.options["estimate"] == "linearized"
        if self.linearized:
            # the paper's factor sequence, kept apart from the driver's iterate (the
            # estimate); starts at the initial factors
            self.U = state.F.copy()
            self.V = self.U if state.symmetric else state.G.copy()
            self.fit = np.empty(state.operator.m, state.dtype)
            self.z = np.empty(state.operator.m, state.dtype)

    def inner_tolerance(self) -> float:
        """lsqr_tol, then min(lsqr_tol, relres^2) below tighten_below (module docstring)."""
        tol = self.options["lsqr_tol"]
        if self.relres < self.options["tighten_below"]:
            tol = min(tol, self.relres ** 2)
        return max(tol, self.tol_floor)

    def _paper_step(self, F, G, z, z_norm):
        """One step of the paper from the factors (F, G) with residual z = A(F G^T) - y.

        Returns the next factors (F', G') (G' None when symmetric), in float64."""
        s, jac, alpha = self.state, self.jac, self.alpha
        k, nF = s.k, s.n1 * s.k
        jac.set_point(F, G)
        tol = self.inner_tolerance()
        c = 0.5 * (1.0 + alpha)
        # b = y + alpha A(F G^T) = (1 + alpha) y + alpha z (float64: LSQR's precision)
        b = self.b
        np.multiply(s.y, 1.0 + alpha, out=b)
        b += alpha * z
        b_norm = float(np.linalg.norm(b))
        maxit = self.options["max_inner_iter"]
        if self.options["warm_start"]:
            if z_norm == 0.0:
                sol, istop, itn, r1 = np.zeros(jac.adj.shape[0]), 0, 0, 0.0
            else:
                btol = min(tol * b_norm / z_norm, 0.5)
                sol, istop, itn, r1 = lsqr(jac.linear_operator, -z.astype(np.float64),
                                           atol=tol, btol=btol, iter_lim=maxit)[:4]
            dF = sol[:nF].reshape(s.n1, k)
            if s.symmetric:
                F_gn, G_gn = F + dF, None
            else:
                dG = sol[nF:].reshape(s.n2, k)
                if c != 0.0:
                    R = imbalance_rotation(F.T @ F, G.T @ G, self.rcond)
                    F_gn = F - c * (F @ R) + dF
                    G_gn = G + c * (G @ R.T) + dG
                else:
                    F_gn, G_gn = F + dF, G + dG
        else:
            damp = float(np.sqrt((2.0 if s.symmetric else 1.0) * s.reg))
            sol, istop, itn, r1 = lsqr(jac.linear_operator, b, damp=damp, atol=tol, btol=tol,
                                       iter_lim=maxit)[:4]
            keep = 0.5 * (1.0 - alpha)
            F_gn = keep * F + sol[:nF].reshape(s.n1, k)
            G_gn = None if s.symmetric else keep * G + sol[nF:].reshape(s.n2, k)
        self.relres = float(r1) / b_norm if b_norm > 0 else 0.0
        self.lsqr_iterations.append(int(itn))
        self.lsqr_stop.append(int(istop))
        # The Gauss-Newton step solves the linearized problem exactly: step="auto" takes it
        # whole (eta = 1); a number damps it.
        eta = 1.0 if self.auto else self.step_size
        if eta != 1.0:
            F_gn = F + eta * (F_gn - F)
            G_gn = None if s.symmetric else G + eta * (G_gn - G)
        return F_gn, G_gn

    def step(self) -> None:
        s = self.state
        if not self.linearized:
            F_new, G_new = self._paper_step(s.F, s.G, s.z, s.residual_norm)
            s.F_next[...] = F_new
            if not s.symmetric:
                s.G_next[...] = G_new
            s.advance()
            return
        U, V = self.U, self.V
        forward_factored_into(s.operator, U, V, self.fit)
        np.subtract(self.fit, s.y, out=self.z)
        U_new, V_new = self._paper_step(U, V, self.z, float(np.linalg.norm(self.z)))
        if s.symmetric:
            X_est = symmetric_truncation(U, U_new - U, s.k)
            s.F_next[...] = X_est
            self.U[...] = U_new
        else:
            # X_2r = U V'^T + U' V^T - U V^T = [U, U' - U] [V', V]^T, truncated to rank k
            F_est, G_est = factored_truncation(np.hstack([U, U_new - U]),
                                               np.hstack([V_new, V]), s.k)
            s.F_next[...] = F_est
            s.G_next[...] = G_est
            self.U[...] = U_new
            self.V[...] = V_new
        s.advance()

    def info(self) -> dict:
        return {"lsqr_iterations": np.asarray(self.lsqr_iterations, dtype=np.int64),
                "lsqr_stop": np.asarray(self.lsqr_stop, dtype=np.int64),
                "underdetermined_lines": self.short_lines}
