r"""Exact line search along a factored direction (``step="auto"``, ALGORITHMS.md §8.1).

For the least-squares losses the loss along a search direction is a quartic polynomial in
the step. Asymmetric, F(eta) = F - eta D_F, G(eta) = G - eta D_G:

    F(eta) G(eta)^T = F G^T - eta (D_F G^T + F D_G^T) + eta^2 D_F D_G^T,

so with z = A(F G^T) - y (the iteration's residual, already computed by the residual
gradient), u = A(D_F G^T + F D_G^T) and v = A(D_F D_G^T),

    f(eta) = 1/2 ||z - eta u + eta^2 v||^2
           = 1/2 z.z - eta z.u + eta^2 (u.u + 2 z.v) / 2 - eta^3 u.v + eta^4 v.v / 2,
    f'(eta) = -z.u + eta (u.u + 2 z.v) - 3 eta^2 u.v + 2 eta^3 v.v.

Symmetric X - eta D: the same with u = A(D X^T + X D^T), v = A(D D^T) (the 1/4
normalization of the symmetric loss scales f, not its minimizer). One factor only
(AGN's half-steps): v = 0 and f is a quadratic, minimized at eta = z.u / u.u.

Ridge (``solve(reg=lam)``, :class:`~lowrank_core.methods.SolverState`): the loss gains
lam/2 (||F - eta D_F||^2 + ||G - eta D_G||^2), a quadratic in eta, so the quartic keeps its
form with z.u + lam (<F, D_F> + <G, D_G>) in place of z.u and u.u + lam (||D_F||^2 +
||D_G||^2) in place of u.u (symmetric, in the normalization 1/2 ||.||^2 of the data term:
2 lam <X, D> and 2 lam ||D||^2; one factor: lam <F, D_F> and lam ||D_F||^2). lam = 0 adds
nothing (the same floats as without the ridge).

The step is the minimizer of f over [0, eta_max] (the real roots of the cubic f' inside
the interval and the end point eta_max, compared by f), with the **cap**

    eta_max = CAP * ||(F, G)||_F / ||(D_F, D_G)||_F,

i.e. one step moves the factors by at most ``CAP`` (= 1) times their own norm. Why a cap:
f is a quartic along a line, so its global minimizer always exists and never increases the
loss, but when the direction is nearly invisible to the operator (u and v close to 0, e.g.
few observations of the rows it moves) the minimizer can lie arbitrarily far out, where
the factors blow up while the loss barely changes; from a small random start it would also
jump straight to the scale of M* in one step, discarding the small-initialization regime
the gradient methods' analyses rely on (with the cap the factors at most double per
iteration: ~10 iterations from 1e-3 to 1). The cap is relative, so the step (and with it
every preconditioned method) stays invariant to rescaling the operator.

Cost per search: the operator's ``_line_search_products`` (every registered kind): ONE
compiled pass over the measurements that forms u_i and v_i per measurement and folds them
into the five products in float64, never storing u or v (completion and sparse 6 k flops
per observed entry / nonzero, rank-one two GEMMs of width 2k over a and b, dense one
streaming pass over A; see ``MeasurementOperator.line_search_products``). Operators
without it (duck-typed ones, or ``fused=False``) take the fallback: u by one factored
forward pass of width 2k ([D_F, F] against [G, D_G], concatenated into preallocated
buffers), v by one of width k, and five dot products of length m. Then O(1) scalar work
for the cubic (closed form in Python floats). Nothing is allocated per call.
"""

from __future__ import annotations

import math

import numpy as np

from ..operators._base import stack_cross_factors

__all__ = ["CAP", "LineSearch", "SearchStalled", "quadratic_step", "quartic_step"]

#: eta_max = CAP * ||(F, G)|| / ||(D_F, D_G)||: a step moves the factors by at most CAP
#: times their norm.
CAP = 1.0


class SearchStalled(RuntimeError):
    """The line search found no decrease along the method's direction (eta = 0)."""


def _quartic_gain(eta, zu, a2, uv, vv):
    """f(eta) - f(0) = -eta z.u + eta^2 a2 / 2 - eta^3 u.v + eta^4 v.v / 2, a2 = u.u + 2 z.v."""
    e2 = eta * eta
    return eta * (-zu + 0.5 * a2 * eta) + e2 * eta * (0.5 * vv * eta - uv)


def quartic_step(zu: float, uu: float, zv: float, uv: float, vv: float,
                 eta_max: float) -> float:
    r"""Minimizer over [0, eta_max] of f(eta) = 1/2 ||z - eta u + eta^2 v||^2.

    Parameters
    ----------
    zu, uu, zv, uv, vv : float
        The inner products z.u, u.u, z.v, u.v, v.v.
    eta_max : float
        The cap (> 0; ``inf`` for an uncapped search).

    Returns
    -------
    float
        The step; 0.0 when no eta in (0, eta_max] decreases f (not a descent direction,
        or the decrease is below rounding).

    Notes
    -----
    The candidates are the real roots of f'(eta) = -z.u + eta (u.u + 2 z.v)
    - 3 eta^2 u.v + 2 eta^3 v.v inside (0, eta_max) and eta_max itself (if finite); the
    one with the smallest f wins. The cubic is solved in the variable t = eta / s,
    s = z.u / u.u (the Gauss-Newton step of the linearization), which keeps its
    coefficients of order one near convergence where v.v is tiny; every root gets three
    Newton polishing steps (candidates are compared by f, so an imprecise root only costs
    optimality, never descent). Closed form, no arrays: cost O(1), a few microseconds.
    """
    if not (zu > 0 and uu > 0 and eta_max > 0) or not math.isfinite(zu + uu + zv + uv + vv):
        return 0.0
    a2 = uu + 2.0 * zv
    s = zu / uu
    # p(t) = f'(s t) / zu = -1 + c1 t + c2 t^2 + c3 t^3
    c1 = a2 * s / zu
    c2 = -3.0 * uv * s * s / zu
    c3 = 2.0 * vv * s * s * s / zu
    candidates = []
    if math.isfinite(eta_max):
        candidates.append(eta_max)
    for t in _cubic_real_roots(c3, c2, c1):
        for _ in range(3):  # Newton polish of p(t)
            dp = c1 + t * (2.0 * c2 + 3.0 * c3 * t)
            if dp == 0:
                break
            t -= (-1.0 + t * (c1 + t * (c2 + c3 * t))) / dp
        eta = s * t
        if 0 < eta < eta_max:
            candidates.append(eta)
    best, best_gain = 0.0, 0.0
    for eta in candidates:
        gain = _quartic_gain(eta, zu, a2, uv, vv)
        if gain < best_gain:
            best, best_gain = eta, gain
    return best


def _cubic_real_roots(c3: float, c2: float, c1: float) -> list:
    """Real roots of c3 t^3 + c2 t^2 + c1 t - 1 (Cardano / trigonometric form), plus the
    roots of the quadratic part c2 t^2 + c1 t - 1 as starting points when c3 is small
    (the Newton polish then moves them onto the cubic's roots)."""
    roots = []
    # quadratic part (exact when c3 = 0), stable form of the roots
    if c2 != 0:
        disc = c1 * c1 + 4.0 * c2
        if disc >= 0:
            q = -0.5 * (c1 + math.copysign(math.sqrt(disc), c1))
            if q != 0:
                roots += [q / c2, -1.0 / q]
    elif c1 != 0:
        roots.append(1.0 / c1)
    if c3 == 0 or not math.isfinite(c3):
        return roots
    a, b, c = c2 / c3, c1 / c3, -1.0 / c3
    if not math.isfinite(a * a * a + a * b + c):
        return roots
    p = b - a * a / 3.0
    q = 2.0 * a * a * a / 27.0 - a * b / 3.0 + c
    shift = -a / 3.0
    half_q = 0.5 * q
    delta = half_q * half_q + p * p * p / 27.0
    if delta > 0:  # one real root
        w = -half_q - math.copysign(math.sqrt(delta), half_q)
        u = math.copysign(abs(w) ** (1.0 / 3.0), w)
        roots.append(shift + (u - p / (3.0 * u) if u != 0 else 0.0))
    elif p < 0:  # three real roots
        r = 2.0 * math.sqrt(-p / 3.0)
        arg = max(-1.0, min(1.0, 3.0 * q / (p * r)))
        phi = math.acos(arg) / 3.0
        roots += [shift + r * math.cos(phi - 2.0 * math.pi * j / 3.0) for j in range(3)]
    else:  # p = q = 0: a triple root
        roots.append(shift)
    return roots


def quadratic_step(zu: float, uu: float, eta_max: float) -> float:
    """Minimizer over [0, eta_max] of 1/2 ||z - eta u||^2: min(z.u / u.u, eta_max), or 0."""
    if not (zu > 0 and uu > 0 and eta_max > 0) or not math.isfinite(zu + uu):
        return 0.0
    return min(zu / uu, eta_max)


def check_operator(op) -> None:
    """TypeError unless ``op`` has the forward_factored(F, G) = A(F G^T) the search needs."""
    if not (hasattr(op, "_forward_factored_into")
            or callable(getattr(op, "forward_factored", None))):
        raise TypeError(f"step='auto' (the exact line search) needs the operator's "
                        f"forward_factored(F, G) = A(F G^T); {type(op).__name__} has none: "
                        f"add it, or pass step='fixed' or a number")


class LineSearch:
    """Buffers and operator passes of the exact line search of one solve (allocated once).

    Parameters
    ----------
    state : SolverState
        The solve's state (operator, residual z, current iterate).
    cap : float
        The relative cap ``CAP`` (see the module docstring).
    fused : bool
        Use the operator's fused ``_line_search_products`` when it has one (default);
        False forces the fallback of two factored forwards and five dots (the
        reference path of the tests and of ``benchmarks/linesearch_overhead.py``).
    """

    def __init__(self, state, cap: float = CAP, fused: bool = True):
        self.state = state
        self.cap = float(cap)
        op, k, dt = state.operator, state.k, state.dtype
        n1, n2 = state.n1, state.n2
        check_operator(op)
        #: the operator's fused products (None: the fallback below)
        self._products = getattr(op, "_line_search_products", None) if fused else None
        if self._products is None and state.z is not None:
            self.FD = np.empty((n1, 2 * k), dt)   # [D_F, F]
            self.GD = np.empty((n2, 2 * k), dt)   # [G, D_G]
            self.u = np.empty(op.m, dt)
            self.v = np.empty(op.m, dt)
        fwd = getattr(op, "_forward_factored_into", None)
        if fwd is None:  # duck-typed operator with only the public method
            def fwd(F, G, out, _op=op):
                out[...] = _op.forward_factored(F, G)
        self._fwd = fwd
        self.n_searches = 0

    def _eta_max(self, factor_sq: float, direction_sq: float) -> float:
        if not direction_sq > 0:
            return 0.0
        return self.cap * math.sqrt(factor_sq / direction_sq)

    def search(self, F, G, D_F, D_G) -> float:
        """Exact step along F - eta D_F, G - eta D_G from the state's residual z.

        In a symmetric run pass G = F and D_G = D_F (then u = A(D X^T + X D^T),
        v = A(D D^T)). Cost: the operator's fused pass (fallback: forward passes of
        widths 2k and k, five dots of length m).
        """
        z = self.state.z
        if z is None:  # residual-free run: z recomputed from F, G and y in the pass
            zu, uu, zv, uv, vv = self.state.operator._line_search_products_y(
                F, G, D_F, D_G, self.state.y)
        elif self._products is not None:
            zu, uu, zv, uv, vv = self._products(F, G, D_F, D_G, z)
        else:
            u, v = self.u, self.v
            FD, GD = self.FD, self.GD
            stack_cross_factors(F, G, D_F, D_G, FD, GD)
            self._fwd(FD, GD, u)
            self._fwd(D_F, D_G, v)
            zu, uu, zv, uv, vv = (np.dot(z, u), np.dot(u, u), np.dot(z, v), np.dot(u, v),
                                  np.dot(v, v))
        self.n_searches += 1
        if self.state.symmetric:
            factor_sq, direction_sq = _sq(F), _sq(D_F)
        else:
            factor_sq, direction_sq = _sq(F) + _sq(G), _sq(D_F) + _sq(D_G)
        zu, uu = float(zu), float(uu)
        lam = self.state.reg
        if lam:  # the ridge's quadratic in eta (module docstring)
            if self.state.symmetric:
                zu += 2.0 * lam * _dot(F, D_F)
                uu += 2.0 * lam * direction_sq
            else:
                zu += lam * (_dot(F, D_F) + _dot(G, D_G))
                uu += lam * direction_sq
        return quartic_step(zu, uu, float(zv), float(uv), float(vv),
                            self._eta_max(factor_sq, direction_sq))

    def search_first(self, F, G, D_F) -> float:
        """Exact step along F - eta D_F with G fixed: u = A(D_F G^T), f quadratic.

        Cost: the operator's fused pass of width k (fallback: one forward pass of width
        k, two dots of length m).
        """
        zu, uu = self._quadratic_products(F, G, D_F, None)
        self.n_searches += 1
        zu, uu = self._ridge_terms(zu, uu, F, D_F)
        return quadratic_step(zu, uu, self._eta_max(_sq(F), _sq(D_F)))

    def search_second(self, F, G, D_G) -> float:
        """Exact step along G - eta D_G with F fixed: u = A(F D_G^T), f quadratic."""
        zu, uu = self._quadratic_products(F, G, None, D_G)
        self.n_searches += 1
        zu, uu = self._ridge_terms(zu, uu, G, D_G)
        return quadratic_step(zu, uu, self._eta_max(_sq(G), _sq(D_G)))

    def _ridge_terms(self, zu, uu, X, D):
        """One factor X - eta D under the ridge: z.u + lam <X, D>, u.u + lam ||D||^2."""
        lam = self.state.reg
        if lam:
            zu += lam * _dot(X, D)
            uu += lam * _sq(D)
        return zu, uu

    def _quadratic_products(self, F, G, D_F, D_G) -> tuple:
        """(z.u, u.u) for u = A(D_F G^T) (D_G None) or u = A(F D_G^T) (D_F None)."""
        z = self.state.z
        if z is None:
            raise RuntimeError("a one-factor line search needs the residual z; this run "
                               "is residual-free (the method must set needs_residual)")
        if self._products is not None:
            zu, uu = self._products(F, G, D_F, D_G, z)[:2]
            return float(zu), float(uu)
        u = self.u
        if D_G is None:
            self._fwd(D_F, G, u)
        else:
            self._fwd(F, D_G, u)
        return float(np.dot(z, u)), float(np.dot(u, u))


def _dot(A, B) -> float:
    """<A, B> (BLAS dot on the flat views; both C-contiguous)."""
    return float(np.dot(A.reshape(-1), B.reshape(-1)))


def _sq(A) -> float:
    """||A||_F^2 (BLAS dot on the flat view; A is C-contiguous)."""
    flat = A.reshape(-1)
    return float(np.dot(flat, flat))
