r"""Initial factors for the solvers: small random, spectral, Nyström, or given arrays.

All initializations work through the operator's interface only: the spectral and Nyström
ones use the LinearOperator of A^T(y) (``operator.spectral_operator(y)`` when the operator
provides one, e.g. debiased for symmetric rank-one measurements, else
``operator.adjoint_operator(y)``), so they never need an n1 x n2 matrix when the
operator is structured and the problem is large.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, svds

from ._validation import as_float_array

__all__ = ["INITS", "DEFAULT_INIT_SCALE", "INIT_MAX_RESTARTS", "NORM_FAILURE_PROB",
           "NORM_MAX_PRODUCTS", "NORM_RTOL", "SpectralInitWarning", "initial_factors",
           "lanczos_bound_eps", "spectral_linear_operator", "spectral_norm_estimate",
           "top_singular_value", "top_singular_value_info"]

#: String initializations accepted by :func:`lowrank_core.solve`.
INITS = ("small", "spectral", "nystrom")

#: Default alpha of init="small" (entries N(0, alpha^2 / n)) and of init="nystrom".
DEFAULT_INIT_SCALE = {"small": 1e-3, "nystrom": 1.0}

# The top-k SVD is taken densely (LAPACK) when the operator is small in absolute terms:
# min(n1, n2) <= _DENSE_SVD_MAX and n1 * n2 <= _DENSE_SVD_MAX_ENTRIES (2**20 entries, 8 MiB
# in float64); otherwise with ARPACK on the LinearOperator, which never forms n1 x n2.
# (A bound on min(n1, n2) alone let a 10**6 x 300 completion problem form a 2.4 GB dense
# matrix for its default step.)
_DENSE_SVD_MAX = 500
_DENSE_SVD_MAX_ENTRIES = 2**20


def _dense_is_small(shape) -> bool:
    n1, n2 = shape
    return min(n1, n2) <= _DENSE_SVD_MAX and n1 * n2 <= _DENSE_SVD_MAX_ENTRIES


def spectral_linear_operator(operator, y) -> LinearOperator:
    """The LinearOperator whose top singular pairs give the spectral initialization."""
    make = getattr(operator, "spectral_operator", None)
    if callable(make):
        return make(y)
    return operator.adjoint_operator(y)


def _symmetrized(lin: LinearOperator) -> LinearOperator:
    return LinearOperator(lin.shape, matvec=lambda v: 0.5 * (lin.matvec(v) + lin.rmatvec(v)),
                          rmatvec=lambda v: 0.5 * (lin.matvec(v) + lin.rmatvec(v)),
                          dtype=lin.dtype)


def _dense(lin: LinearOperator) -> np.ndarray:
    """The operator as a dense float64 array, by products with the smaller identity."""
    n1, n2 = lin.shape
    if n1 < n2:
        return np.asarray(lin.rmatmat(np.eye(n1, dtype=np.float64)), dtype=np.float64).T
    return np.asarray(lin.matmat(np.eye(n2, dtype=np.float64)), dtype=np.float64)


#: Relative tolerance of the iterative ||A^T(y)||_2 estimate (the step="fixed" step and
#: the fixed damping). The estimate only sets a step size 0.3 / sigma (a relative error
#: e in sigma is a relative error e in the step; 0.3 is well inside GD's stable range:
#: docs/solvers.rst), so a percent suffices.
NORM_RTOL = 1e-2
#: Failure probability of the estimate's probabilistic upper bound (see
#: :func:`spectral_norm_estimate`).
NORM_FAILURE_PROB = 1e-3
#: Cap on the operator products (matvec or rmatvec, one pass over the operator each) of
#: the iterative estimate: 2 per Lanczos step. 140 lets the probabilistic bound meet
#: rtol = 1e-2 (delta = 1e-3) for min(n1, n2) up to 10**9 (41 steps at n = 10**3, 53 at
#: 10**6, 65 at 10**9), so "capped" only happens with a smaller cap or rtol.
NORM_MAX_PRODUCTS = 140


def lanczos_bound_eps(steps: int, n: int, delta: float = NORM_FAILURE_PROB) -> float:
    r"""epsilon with P[theta_j^2 < (1 - epsilon) sigma_1^2] <= delta after j Lanczos steps
    on A^T A (n x n) from a uniformly random start, whatever the spectrum (no gap needed).

    Kuczynski and Wozniakowski (1992, SIAM J. Matrix Anal. Appl. 13(4)): after k
    matrix-vector products the Lanczos estimate fails (relative error >= epsilon) with
    probability at most 1.648 sqrt(n) exp(-sqrt(epsilon) (2 k - 1)). Counted
    conservatively, k = j - 1 (the products with A^T A that span the Ritz space K_j from
    v_1): epsilon = (ln(1.648 sqrt(n) / delta) / (2 j - 3))^2; inf for j < 2 (>= 1: no
    bound yet)."""
    if steps < 2:
        return float("inf")
    return float((np.log(1.648 * np.sqrt(n) / delta) / (2 * steps - 3)) ** 2)


def spectral_norm_estimate(lin: LinearOperator, rng: np.random.Generator, *,
                           rtol: float = NORM_RTOL,
                           max_products: int = NORM_MAX_PRODUCTS,
                           delta: float = NORM_FAILURE_PROB) -> tuple[float, dict]:
    r"""||lin||_2 by Golub-Kahan-Lanczos bidiagonalization, with a bounded product count.

    Works on the smaller side: A = lin (n1 >= n2) or lin^T, n = min(n1, n2). From a
    random unit v_1 in R^n (``rng``), step j computes
    alpha_j u_j = A v_j - beta_{j-1} u_{j-1} and beta_j v_{j+1} = A^T u_j - alpha_j v_j
    (one matvec and one rmatvec), so that A V_j = U_j B_j and
    A^T U_j = V_j B_j^T + beta_j v_{j+1} e_j^T with B_j the j x j upper bidiagonal matrix
    (alpha on the diagonal, beta above it). Its largest singular value theta (left vector
    p) is a Ritz value, theta <= sigma_1 (interlacing), with two error bounds:

    * residual: A (V_j q) = theta U_j p exactly and
      ||A^T (U_j p) - theta V_j q|| = r = beta_j |p_j|, so a singular value of A lies in
      [theta - r, theta + r] (Golub and Van Loan, Matrix Computations, sec. 10.4);
      sharp when sigma_1 is separated, useless for a cluster at the top (pure noise);
    * probabilistic (:func:`lanczos_bound_eps`): theta^2 >= (1 - eps_j) sigma_1^2 with
      probability >= 1 - delta, whatever the spectrum, eps_j ~ (ln(sqrt(n)/delta)/2j)^2.

    Stops, in this order of checks after each step:

    * "converged": r <= rtol theta, or an invariant Krylov space (beta_j or
      alpha_{j+1} = 0: r = 0); returns theta + r, the bracket's upper end. The bracket
      holds a singular value, not necessarily sigma_1: on gap-free spectra theta
      itself stopped up to 1.3% below sigma_1, theta + r within [-0.4%, +1.0%] of it
      (five spectra and a pure-noise completion, 30 starts each, n = 1100; checked in
      tests/test_spectral_norm_estimate.py);
    * "bound": (1 - eps_j)^{-1/2} <= 1 + rtol; returns theta (1 - eps_j)^{-1/2}, in
      [sigma_1, (1 + rtol) sigma_1] with probability >= 1 - delta;
    * "capped": the next step would exceed ``max_products``; no exception; returns the
      upper end theta (1 - eps_j)^{-1/2} (eps_j < 1), else theta + r (a cap of a few
      steps: no bound on sigma_1, the residual bracket's upper end).

    Every stop returns an upper end because for a step size GD_STEP / sigma (or a
    damping 0.01 sigma) an overestimate errs on the stable side (a step shorter by at
    most the factor), an underestimate on the unstable one. No reorthogonalization:
    only the top Ritz value is read, which converges first and is not disturbed by the
    loss of orthogonality (that duplicates converged values instead; Paige 1976).

    Parameters
    ----------
    lin : LinearOperator, shape (n1, n2)
    rng : numpy Generator
        Draws v_1 (n standard normals).
    rtol : float
        Relative tolerance (of the residual bound and of the probabilistic bound).
    max_products : int
        Most products (matvec + rmatvec) used, >= 2.
    delta : float
        Failure probability of the probabilistic bound.

    Returns
    -------
    sigma : float
    info : dict
        ``method`` "lanczos", ``status`` ("converged", "bound", "capped"; "nonfinite"
        with value NaN when a product is not finite),
        ``products`` (used), ``steps``, ``ritz`` (theta), ``residual_bound`` (r),
        ``eps`` (eps_j, the probabilistic bound on 1 - theta^2 / sigma_1^2), ``rtol``,
        ``max_products``, ``delta``, ``value`` (sigma).

    Cost: ``products`` operator products (O(|Omega|) each for an EntryOperator), O(n1 +
    n2) per step for the recurrence, and an SVD of the j x j B_j per step
    (O(j^3), j <= max_products / 2); memory four vectors (two of n1, two of n2).
    """
    n1, n2 = lin.shape
    if n1 >= n2:
        forward, backward, n, m = lin.matvec, lin.rmatvec, n2, n1
    else:
        forward, backward, n, m = lin.rmatvec, lin.matvec, n1, n2
    max_products = max(2, int(max_products))
    v = rng.standard_normal(n)
    v /= np.linalg.norm(v)
    u_prev = np.zeros(m)
    alphas, betas = [], []
    beta = 0.0
    theta = r = 0.0
    eps = np.inf
    products = 0
    status = "capped"
    while products + 2 <= max_products:
        u = np.asarray(forward(v), dtype=np.float64).ravel() - beta * u_prev
        products += 1
        alpha = float(np.linalg.norm(u))
        alphas.append(alpha)
        if not np.isfinite(alpha):      # a non-finite operator: no estimate
            theta = r = float("nan")
            status = "nonfinite"
            break
        if not alpha > 0:
            # invariant Krylov space (or a zero operator): theta exact
            theta, r = float(np.linalg.norm(_bidiagonal(alphas, betas), 2)), 0.0
            status = "converged"
            break
        u /= alpha
        w = np.asarray(backward(u), dtype=np.float64).ravel() - alpha * v
        products += 1
        beta = float(np.linalg.norm(w))
        P, sv, _ = np.linalg.svd(_bidiagonal(alphas, betas))
        theta = float(sv[0])
        r = beta * abs(float(P[-1, 0]))
        eps = lanczos_bound_eps(len(alphas), n, delta)
        if not beta > 0 or r <= rtol * theta:
            status = "converged"
            break
        if eps < 1 and 1.0 / np.sqrt(1.0 - eps) <= 1.0 + rtol:
            status = "bound"
            break
        betas.append(beta)
        v, u_prev = w / beta, u
    if status in ("converged", "nonfinite"):
        sigma = theta + r
    elif eps < 1:
        sigma = theta / np.sqrt(1.0 - eps)
    else:
        sigma = theta + r
    return float(sigma), {"method": "lanczos", "status": status, "products": products,
                          "steps": len(alphas), "ritz": theta, "residual_bound": r,
                          "eps": float(eps), "rtol": float(rtol),
                          "max_products": max_products, "delta": float(delta),
                          "value": float(sigma)}


def _bidiagonal(alphas, betas) -> np.ndarray:
    """The j x j upper bidiagonal matrix with ``alphas`` on the diagonal and the first
    j - 1 ``betas`` above it."""
    j = len(alphas)
    B = np.diag(np.asarray(alphas, dtype=np.float64))
    if j > 1:
        B[np.arange(j - 1), np.arange(1, j)] = betas[:j - 1]
    return B


def top_singular_value_info(lin: LinearOperator, rng: np.random.Generator,
                            **kwargs) -> tuple[float, dict]:
    """||lin||_2 and how it was obtained: the dense SVD for small operators (``method``
    "dense", exact; ``rng`` unused), else :func:`spectral_norm_estimate` (``kwargs``:
    ``rtol``, ``max_products``)."""
    if _dense_is_small(lin.shape) or min(lin.shape) < 2:
        s = float(np.linalg.norm(_dense(lin), 2))
        return s, {"method": "dense", "status": "exact", "products": int(min(lin.shape)),
                   "value": s}
    return spectral_norm_estimate(lin, rng, **kwargs)


def top_singular_value(lin: LinearOperator, rng: np.random.Generator) -> float:
    """||lin||_2: dense SVD for small operators, the bounded Lanczos estimate
    (:func:`spectral_norm_estimate`, relative tolerance NORM_RTOL, at most
    NORM_MAX_PRODUCTS products) otherwise."""
    return top_singular_value_info(lin, rng)[0]


class SpectralInitWarning(RuntimeWarning):
    """ARPACK did not converge within INIT_MAX_RESTARTS restarts for init="spectral":
    the factors come from the bounded randomized fallback (less accurate)."""


#: Cap on ARPACK's implicit restarts (``maxiter``) of the spectral initialization's
#: top-k SVD / eigendecomposition (scipy's default is 10 n: unbounded in practice at
#: n = 10**6). Each restart costs about ncv - k <= max(k + 1, 20 - k) products with
#: A^T A (two operator products each; ncv = max(2k + 1, 20)). The init keeps ARPACK's
#: tol = 0 (machine precision: its vectors, not only its values, seed the iterations);
#: a problem with a separated top-k converges in a few restarts (planted completion with
#: noise 1e-2: 79 products at n = 1100, k = 3; 160 at n = 3000, k = 10, i.e. about 2
#: and 7 restarts), a pure-noise one may never: after 100 restarts (about 2200 products
#: at k = 10) a SpectralInitWarning and the randomized fallback instead of a hang.
INIT_MAX_RESTARTS = 100
#: Power iterations q and oversampling p of that fallback (Halko, Martinsson and Tropp
#: 2011, alg. 4.4 with a QR between products): 2 q + 3 block products of k + p columns
#: (twice that for the symmetric eigenproblem: a second pass on the shifted operator).
INIT_FALLBACK_POWER = 4
INIT_FALLBACK_OVERSAMPLE = 10


def _randomized_range(apply, apply_t, n_in, width, q, rng):
    """Orthonormal Q (n_out, width) for the range of (A A^T)^q A Omega (QR after each
    product: subspace iteration)."""
    Q, _ = np.linalg.qr(np.asarray(apply(rng.standard_normal((n_in, width))), np.float64))
    for _ in range(q):
        W, _ = np.linalg.qr(np.asarray(apply_t(Q), np.float64))
        Q, _ = np.linalg.qr(np.asarray(apply(W), np.float64))
    return Q


def _warn_fallback(exc, k, what):
    import warnings
    got = 0 if exc.eigenvalues is None else len(exc.eigenvalues)
    warnings.warn(f'init="spectral": ARPACK {what} did not converge within '
                  f"INIT_MAX_RESTARTS = {INIT_MAX_RESTARTS} restarts ({got} of {k} pairs "
                  f"converged); using the randomized fallback ({INIT_FALLBACK_POWER} power "
                  f"iterations, {INIT_FALLBACK_OVERSAMPLE} oversampling), a less accurate "
                  'start. init="small" needs no SVD.', SpectralInitWarning, stacklevel=4)


def _top_k_symmetric(lin, k, rng):
    n = lin.shape[0]
    if _dense_is_small(lin.shape) or k >= n - 1:
        S = _dense(lin)
        w, V = np.linalg.eigh(0.5 * (S + S.T))
        return w[::-1][:k], V[:, ::-1][:, :k]
    sym = _symmetrized(lin)
    try:
        w, V = eigsh(sym, k=k, which="LA", v0=rng.standard_normal(n),
                     maxiter=INIT_MAX_RESTARTS)
    except ArpackNoConvergence as exc:
        _warn_fallback(exc, k, "eigsh")

        def block(V):  # the symmetric part on a block (one matmat and one rmatmat)
            return 0.5 * (np.asarray(lin.matmat(V), np.float64)
                          + np.asarray(lin.rmatmat(V), np.float64))

        width = min(n, k + INIT_FALLBACK_OVERSAMPLE)
        # "LA" targets the largest algebraic eigenvalues, subspace iteration the largest
        # magnitudes: a first pass estimates c ~ ||S||_2 (its largest |Ritz value|), the
        # second iterates on S + c I, whose largest magnitudes are S's largest values
        Q = _randomized_range(block, block, n, width, INIT_FALLBACK_POWER, rng)
        c = float(np.max(np.abs(np.linalg.eigvalsh(Q.T @ block(Q)))))

        def shifted(V):
            return block(V) + c * V

        Q = _randomized_range(shifted, shifted, n, width, INIT_FALLBACK_POWER, rng)
        T = Q.T @ block(Q)
        w, Vt = np.linalg.eigh(0.5 * (T + T.T))
        w, V = w[::-1][:k], Q @ Vt[:, ::-1][:, :k]
    order = np.argsort(w)[::-1]
    return w[order], V[:, order]


def _top_k_svd(lin, k, rng):
    n1, n2 = lin.shape
    if _dense_is_small(lin.shape) or k >= min(n1, n2) - 1:
        U, s, Vt = np.linalg.svd(_dense(lin), full_matrices=False)
        return U[:, :k], s[:k], Vt[:k].T
    try:
        U, s, Vt = svds(lin, k=k, v0=rng.standard_normal(min(n1, n2)),
                        maxiter=INIT_MAX_RESTARTS)
    except ArpackNoConvergence as exc:
        _warn_fallback(exc, k, "svds")
        Q = _randomized_range(lin.matmat, lin.rmatmat, n2,
                              min(n1, n2, k + INIT_FALLBACK_OVERSAMPLE),
                              INIT_FALLBACK_POWER, rng)
        B = np.asarray(lin.rmatmat(Q), np.float64).T      # Q^T A, (width, n2)
        Ub, s, Vt = np.linalg.svd(B, full_matrices=False)
        U, s, Vt = Q @ Ub[:, :k], s[:k], Vt[:k]
    order = np.argsort(s)[::-1]
    return U[:, order], s[order], Vt[order].T


def _scale_pair(init_scale, symmetric, default):
    """(alpha_F, alpha_G) from None, a number or a pair; validates positivity."""
    def check(v, name):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) \
                or not 0 < float(v) < np.inf:
            raise ValueError(f"{name} must be a positive number, got {v!r}")
        return float(v)

    if init_scale is None:
        return default, default
    if isinstance(init_scale, (tuple, list, np.ndarray)):
        if symmetric:
            raise ValueError("init_scale must be a single number for a symmetric run "
                             f"(one factor X), got {init_scale!r}")
        if len(init_scale) != 2:
            raise ValueError(f"init_scale must be a number or a pair (alpha_F, alpha_G), "
                             f"got {init_scale!r}")
        return check(init_scale[0], "init_scale[0]"), check(init_scale[1], "init_scale[1]")
    a = check(init_scale, "init_scale")
    return a, a


def initial_factors(operator, y, k: int, symmetric: bool, init, init_scale,
                    rng: np.random.Generator):
    r"""Initial (F, G) of the operator's dtype (G is F for a symmetric run).

    Parameters
    ----------
    operator : MeasurementOperator
    y : ndarray, shape (m,)
    k : int
        Number of columns of the factors (the search rank).
    symmetric : bool
    init : {"small", "spectral", "nystrom"}, ndarray, tuple (F, G) or SolveResult
        * "small": F_ij ~ N(0, alpha_F^2 / n1), G_ij ~ N(0, alpha_G^2 / n2)
          (X_ij ~ N(0, alpha^2 / n) symmetric); alpha default 1e-3.
        * "spectral": top-k SVD U S V^T of A^T(y): F = U S^{1/2}, G = V S^{1/2}
          (Tong, Ma, Chi 2021, eq. (14)); symmetric: top-k eigenpairs of the symmetric
          part, X = U max(Lambda, 0)^{1/2}. Dense LAPACK when min(n1, n2) <= 500 and
          n1 n2 <= 2**20, ARPACK otherwise (never n1 x n2).
        * "nystrom": X = A^T(y) Omega, Omega (n, k) with N(0, alpha^2 / k) entries;
          asymmetric F = A^T(y) Omega, G = 0 (Li, Zhang, Mokhtari, He 2025, with A^T(y)
          in place of the target matrix); alpha default 1.
        * arrays (or a previous SolveResult: warm start) are validated and copied.
    init_scale : None, float or (float, float)
    rng : numpy Generator

    Cost: "small" O((n1 + n2) k); "spectral" one A^T(y) plus an SVD; "nystrom" one
    A^T(y) and k of its matvecs.
    """
    n1, n2 = operator.shape
    dtype = operator.dtype
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, INITS))} or arrays, "
                             f"got {init!r}")
        if init == "spectral" and init_scale is not None:
            raise ValueError("init_scale applies to init='small' or 'nystrom', "
                             "not to init='spectral'")
        if init == "small":
            aF, aG = _scale_pair(init_scale, symmetric, DEFAULT_INIT_SCALE["small"])
            F = rng.standard_normal((n1, k), dtype=dtype)
            F *= dtype.type(aF / np.sqrt(n1))
            if symmetric:
                return F, F
            G = rng.standard_normal((n2, k), dtype=dtype)
            G *= dtype.type(aG / np.sqrt(n2))
            return F, G
        lin = spectral_linear_operator(operator, y)
        if init == "spectral":
            if symmetric:
                w, V = _top_k_symmetric(lin, k, rng)
                X = (V * np.sqrt(np.maximum(w, 0.0))).astype(dtype)
                return X, X
            U, s, V = _top_k_svd(lin, k, rng)
            root = np.sqrt(s)
            return (U * root).astype(dtype), (V * root).astype(dtype)
        # nystrom
        if isinstance(init_scale, (tuple, list, np.ndarray)):
            raise ValueError("init_scale for init='nystrom' is one number (the scale of "
                             f"Omega), got {init_scale!r}")
        a, _ = _scale_pair(init_scale, True, DEFAULT_INIT_SCALE["nystrom"])
        Omega = rng.standard_normal((n2, k)) * (a / np.sqrt(k))
        if symmetric:
            X = np.asarray(_symmetrized(lin).matmat(Omega)).astype(dtype)
            return X, X
        F = np.asarray(lin.matmat(Omega)).astype(dtype)
        return F, np.zeros((n2, k), dtype)

    if init_scale is not None:
        raise ValueError("init_scale applies to init='small' or 'nystrom', not to arrays")
    if hasattr(init, "factors") and callable(getattr(init, "matrix", None)):
        init = init["X"] if symmetric and "X" in init else init.factors
        if symmetric and isinstance(init, tuple):
            raise ValueError("init is an asymmetric SolveResult; a symmetric run needs X")
    if symmetric:
        if isinstance(init, (tuple, list)):
            raise ValueError("init for a symmetric run is one array X of shape "
                             f"({n1}, {k}), got a {type(init).__name__}")
        X = as_float_array(init, "init", shape=(n1, k), dtype=dtype, copy=True)
        return X, X
    if not isinstance(init, (tuple, list)) or len(init) != 2:
        raise ValueError(f"init for an asymmetric run is a pair (F, G) of shapes ({n1}, {k}) "
                         f"and ({n2}, {k}), or one of {INITS}")
    F = as_float_array(init[0], "init[0] (F)", shape=(n1, k), dtype=dtype, copy=True)
    G = as_float_array(init[1], "init[1] (G)", shape=(n2, k), dtype=dtype, copy=True)
    return F, G
