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
from scipy.sparse.linalg import LinearOperator, eigsh, svds

from ._validation import as_float_array

__all__ = ["INITS", "DEFAULT_INIT_SCALE", "initial_factors", "spectral_linear_operator",
           "top_singular_value"]

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


def top_singular_value(lin: LinearOperator, rng: np.random.Generator) -> float:
    """||lin||_2: dense SVD for small operators, ARPACK (seeded start) otherwise."""
    if _dense_is_small(lin.shape) or min(lin.shape) < 2:
        return float(np.linalg.norm(_dense(lin), 2))
    v0 = rng.standard_normal(min(lin.shape))
    return float(svds(lin, k=1, v0=v0, return_singular_vectors=False)[0])


def _top_k_symmetric(lin, k, rng):
    n = lin.shape[0]
    if _dense_is_small(lin.shape) or k >= n - 1:
        S = _dense(lin)
        w, V = np.linalg.eigh(0.5 * (S + S.T))
        return w[::-1][:k], V[:, ::-1][:, :k]
    w, V = eigsh(_symmetrized(lin), k=k, which="LA", v0=rng.standard_normal(n))
    order = np.argsort(w)[::-1]
    return w[order], V[:, order]


def _top_k_svd(lin, k, rng):
    n1, n2 = lin.shape
    if _dense_is_small(lin.shape) or k >= min(n1, n2) - 1:
        U, s, Vt = np.linalg.svd(_dense(lin), full_matrices=False)
        return U[:, :k], s[:k], Vt[:k].T
    U, s, Vt = svds(lin, k=k, v0=rng.standard_normal(min(n1, n2)))
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
