"""What a user would otherwise write: the references every benchmark checks and times.

* **Products.** :func:`reference_products` returns, per operator kind, implementations of
  ``op.residual_gradient(F, G, y)`` = (1/2 ||z||^2, z, A^T(z) G, A^T(z)^T F) with
  z = A(F G^T) - y in plain numpy, in scipy.sparse (sparse and entrywise kinds) and in
  PyTorch on the CPU (when installed).
* **Methods.** :func:`reference_solve` is the ONE plain numpy loop of every method of
  :func:`lowrank_core.solve` (gd, onestep, scaledgd, scaledgd-lambda, precgd, agn), written
  from the update rules of ALGORITHMS.md on top of any of those products. The test suite
  keeps its own independent copy (tests/test_solvers_reference.py); a new method adds its
  rule here.

Every reference is checked against lowrank_core before a benchmark times it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from .timing import torch_or_none

__all__ = ["PRODUCT_RTOL", "REFERENCE_METHODS", "ProductFn", "Unavailable",
           "dense_numpy_product", "product_discrepancy",
           "reference_products", "reference_solve", "sparse_per_iteration_csr"]

#: relative tolerance of a reference product against lowrank_core's (norm-wise)
PRODUCT_RTOL = {np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-8}


#: the methods :func:`reference_solve` implements
REFERENCE_METHODS = ("gd", "onestep", "scaledgd", "scaledgd-lambda", "precgd", "agn", "gnmr",
                     "als", "softimpute_als")


class Unavailable(Exception):
    """A setting the reference loop does not implement (e.g. a custom damping rule)."""


# ---------------------------------------------------------------------------- products
ProductFn = Callable[[np.ndarray, np.ndarray, np.ndarray],
                     "tuple[float, np.ndarray, np.ndarray, np.ndarray]"]


def _rowdot(A, B):
    return np.einsum("ij,ij->i", A, B)


def _bincount_rows(index, W, n):
    """out[r] = sum over e with index[e] == r of W[e] (k columns, one bincount each)."""
    out = np.empty((n, W.shape[1]), W.dtype)
    for j in range(W.shape[1]):
        out[:, j] = np.bincount(index, weights=W[:, j], minlength=n)
    return out


def dense_numpy_product(A2: np.ndarray, shape: tuple[int, int]) -> ProductFn:
    """What a user writes in numpy for dense A_i: A2 is the (m, n1*n2) matrix of vec(A_i);
    z = A2 vec(F G^T) - y, S = reshape(z^T A2), then S G and S^T F (A2 read twice)."""
    n1, n2 = shape

    def numpy_rg(F, G, y):
        P = F @ G.T
        z = A2 @ P.ravel() - y
        S = (z @ A2).reshape(n1, n2)
        return 0.5 * float(z @ z), z, S @ G, S.T @ F

    return numpy_rg


def _dense_baselines(op, torch):
    """numpy (and torch) on the full (m, n1*n2) matrix of vec(A_i), operator's dtype."""
    n1, n2 = op.shape
    A2 = op.matrices.reshape(op.m, n1 * n2)
    if not A2.flags.c_contiguous:
        A2 = np.ascontiguousarray(A2)

    out = {"numpy": dense_numpy_product(A2, op.shape)}
    if torch is not None:
        with warnings.catch_warnings():  # A2 may be a read-only view; torch only reads it
            warnings.simplefilter("ignore", UserWarning)
            At = torch.from_numpy(A2)

        def torch_rg(F, G, y):
            Ft, Gt, yt = torch.from_numpy(F), torch.from_numpy(G), torch.from_numpy(y)
            z = torch.mv(At, (Ft @ Gt.T).reshape(-1)) - yt
            S = torch.mv(At.T, z).reshape(n1, n2)
            return (0.5 * float(torch.dot(z, z)), z.numpy(), (S @ Gt).numpy(),
                    (S.T @ Ft).numpy())

        out["torch"] = torch_rg
    return out, A2


def _sparse_baselines(op, torch):
    """scipy.sparse: gather + precomputed CSR selector products (the issue's reference,
    "scipy.sparse") and CSR (m, n1*n2) times vec(F G^T) ("scipy.sparse dense-S": forms
    n1 x n2, cheap at n = 2000); the table shows the faster of the two and lists both
    below it. numpy: COO triplets, gather + bincount."""
    n1, n2 = op.shape
    A = op.to_scipy().tocsr()
    A.sort_indices()
    AT = A.T.tocsr()
    coo = A.tocoo()
    meas = coo.row.astype(np.intp)
    r, c = np.divmod(coo.col.astype(np.intp), n2)
    v = coo.data

    def scipy_dense_s_rg(F, G, y):
        z = A @ (F @ G.T).ravel() - y
        S = (AT @ z).reshape(n1, n2)
        return 0.5 * float(z @ z), z, S @ G, S.T @ F

    def numpy_rg(F, G, y):
        z = np.bincount(meas, weights=v * _rowdot(F[r], G[c]), minlength=op.m).astype(
            F.dtype, copy=False) - y
        w = v * z[meas]
        SG = _bincount_rows(r, w[:, None] * G[c], n1)
        StF = _bincount_rows(c, w[:, None] * F[r], n2)
        return 0.5 * float(z @ z), z, SG, StF

    # selectors built once: R[r_e, e] = 1, C[c_e, e] = 1, so S G = R (w G[c]), S^T F = C (w F[r])
    e = np.arange(v.shape[0])
    ones = np.ones(v.shape[0], v.dtype)
    R = sp.csr_matrix((ones, (r, e)), shape=(n1, v.shape[0]))
    C = sp.csr_matrix((ones, (c, e)), shape=(n2, v.shape[0]))

    def scipy_selectors_rg(F, G, y):
        z = np.bincount(meas, weights=v * _rowdot(F[r], G[c]), minlength=op.m).astype(
            F.dtype, copy=False) - y
        w = (v * z[meas])[:, None]
        return 0.5 * float(z @ z), z, R @ (w * G[c]), C @ (w * F[r])

    out = {"numpy": numpy_rg, "scipy.sparse": scipy_selectors_rg,
           "scipy.sparse dense-S": scipy_dense_s_rg}
    if torch is not None:
        def csr(M):
            with warnings.catch_warnings():  # "beta" and "invariant checks" notices
                warnings.simplefilter("ignore", UserWarning)
                return torch.sparse_csr_tensor(torch.from_numpy(M.indptr.astype(np.int64)),
                                               torch.from_numpy(M.indices.astype(np.int64)),
                                               torch.from_numpy(M.data), size=M.shape)
        At, ATt = csr(A), csr(AT)

        def torch_rg(F, G, y):
            Ft, Gt, yt = torch.from_numpy(F), torch.from_numpy(G), torch.from_numpy(y)
            z = (At @ (Ft @ Gt.T).reshape(-1, 1)).reshape(-1) - yt
            S = (ATt @ z.reshape(-1, 1)).reshape(n1, n2)
            return (0.5 * float(torch.dot(z, z)), z.numpy(), (S @ Gt).numpy(),
                    (S.T @ Ft).numpy())

        out["torch"] = torch_rg
    return out


def _entries_baselines(op, torch):
    """numpy: gather + bincount; scipy.sparse: gather + CSR/CSC products with S."""
    n1, n2 = op.shape
    rows = np.asarray(op.rows, dtype=np.intp)
    cols = np.asarray(op.cols, dtype=np.intp)
    s = op.dtype.type(op.scale)

    def numpy_rg(F, G, y):
        z = s * _rowdot(F[rows], G[cols]) - y
        w = s * z
        SG = _bincount_rows(rows, w[:, None] * G[cols], n1)
        StF = _bincount_rows(cols, w[:, None] * F[rows], n2)
        return 0.5 * float(z @ z), z, SG.astype(F.dtype, copy=False), \
            StF.astype(F.dtype, copy=False)

    # CSR structure of S built once; per iteration only its data is written (through the
    # permutation from measurement order to CSR order), then S @ G and S.T @ F.
    S = sp.csr_matrix((np.arange(1, op.m + 1, dtype=np.float64), (rows, cols)),
                      shape=(n1, n2))
    perm = S.data.astype(np.intp) - 1 if S.nnz == op.m else None  # None: repeated entries
    S = sp.csr_matrix((np.zeros(S.nnz, op.dtype), S.indices, S.indptr), shape=(n1, n2))

    def scipy_rg(F, G, y):
        z = s * _rowdot(F[rows], G[cols]) - y
        if perm is None:
            Sz = sp.csr_matrix((s * z, (rows, cols)), shape=(n1, n2))
        else:
            np.multiply(s, z[perm], out=S.data)
            Sz = S
        return 0.5 * float(z @ z), z, Sz @ G, Sz.T @ F

    out = {"numpy": numpy_rg, "scipy.sparse": scipy_rg}
    if torch is not None:
        rt, ct = torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(cols.astype(np.int64))

        def torch_rg(F, G, y):
            Ft, Gt, yt = torch.from_numpy(F), torch.from_numpy(G), torch.from_numpy(y)
            Fr, Gc = Ft.index_select(0, rt), Gt.index_select(0, ct)
            z = s * (Fr * Gc).sum(1) - yt
            w = (s * z).unsqueeze(1)
            SG = torch.zeros_like(Ft).index_add_(0, rt, w * Gc)
            StF = torch.zeros_like(Gt).index_add_(0, ct, w * Fr)
            return 0.5 * float(torch.dot(z, z)), z.numpy(), SG.numpy(), StF.numpy()

        out["torch"] = torch_rg
    return out


def _rankone_baselines(op, torch):
    """numpy (and torch): four GEMMs, a and b read twice each."""
    a = np.ascontiguousarray(op.a)
    b = a if op.symmetric else np.ascontiguousarray(op.b)

    def numpy_rg(F, G, y):
        U, V = a @ F, b @ G
        z = _rowdot(U, V) - y
        return 0.5 * float(z @ z), z, a.T @ (z[:, None] * V), b.T @ (z[:, None] * U)

    out = {"numpy": numpy_rg}
    if torch is not None:
        at, bt = torch.from_numpy(a), torch.from_numpy(b)

        def torch_rg(F, G, y):
            Ft, Gt, yt = torch.from_numpy(F), torch.from_numpy(G), torch.from_numpy(y)
            U, V = at @ Ft, bt @ Gt
            z = (U * V).sum(1) - yt
            zc = z.unsqueeze(1)
            return (0.5 * float(torch.dot(z, z)), z.numpy(), (at.T @ (zc * V)).numpy(),
                    (bt.T @ (zc * U)).numpy())

        out["torch"] = torch_rg
    return out


def reference_products(kind: str, op, *, use_torch: bool = True) -> dict[str, ProductFn]:
    """Baseline implementations of ``op.residual_gradient`` keyed by library name.

    Each takes (F, G, y) as numpy arrays of the operator's dtype and returns
    (loss, z, A^T(z) G, A^T(z)^T F) as numpy arrays (torch results are zero-copy views).
    """
    torch = torch_or_none() if use_torch else None
    if kind in ("dense", "symmetric"):
        return _dense_baselines(op, torch)[0]
    if kind == "sparse":
        return _sparse_baselines(op, torch)
    if kind == "entries":
        return _entries_baselines(op, torch)
    if kind == "rank-one":
        return _rankone_baselines(op, torch)
    raise Unavailable(f"no reference product for operator kind {kind!r}: add one to "
                      f"benchmarks/harness/references.py (reference_products)")


def _rel(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def product_discrepancy(ours, ref) -> float:
    """Largest norm-relative difference over (loss, z, SG, StF)."""
    return max(_rel(ours[0], ref[0]), *(_rel(o, r) for o, r in zip(ours[1:], ref[1:])))

def sparse_per_iteration_csr(op) -> ProductFn:
    """scipy.sparse for sparse A_i, building the CSR matrix of S = A^T(z) every call:
    p = rowdot(F[r], G[c]) over the nonzeros, z = bincount(meas, v p) - y,
    S = csr((v z[meas], (r, c))), then S @ G and S.T @ F."""
    n1, n2 = op.shape
    A = op.to_scipy().tocsr()
    meas = np.repeat(np.arange(op.m), np.diff(A.indptr))
    r, c = np.divmod(A.indices.astype(np.intp), n2)
    v = A.data

    def rg(F, G, y):
        p = _rowdot(F[r], G[c])
        z = np.bincount(meas, weights=v * p, minlength=op.m).astype(F.dtype, copy=False) - y
        S = sp.csr_matrix((v * z[meas], (r, c)), shape=(n1, n2))
        return 0.5 * float(z @ z), z, S @ G, S.T @ F

    return rg


# ----------------------------------------------------------------------------- methods
def _right_solve(X, gram, lam, rcond, pinv):
    """X (gram + lam I)^{-1}, or X gram^+ (pseudo-inverse dropping eigenvalues below
    rcond * max) when ``pinv`` or lam == 0."""
    k = gram.shape[0]
    if pinv or lam == 0:
        w, Q = np.linalg.eigh(gram.astype(np.float64))
        cut = rcond * max(float(w[-1]), 0.0)
        inv = np.where(w > cut, 1.0 / np.where(w > cut, w, 1.0), 0.0)
        return (X @ ((Q * inv) @ Q.T)).astype(X.dtype, copy=False)
    M = gram.astype(np.float64) + lam * np.eye(k)
    return np.linalg.solve(M, X.T.astype(np.float64)).T.astype(X.dtype, copy=False)


def reference_solve(rg: ProductFn, y: np.ndarray, F0: np.ndarray, G0, method: str,
                    options: dict, *, symmetric: bool, tol: float, max_iter: int,
                    stop: Callable[[np.ndarray, np.ndarray], bool] | None = None):
    """The update rules of :func:`lowrank_core.solve`, as a plain numpy loop on ``rg``.

    ``options`` are the resolved settings of a lowrank_core run (``result.options``:
    step, damping, trigger, beta, rcond), so both runs follow the same rule from the same
    start. Per iteration t: z, A^T(z) G, A^T(z)^T F at the iterate, then the stopping
    tests (non-finite residual: "diverged"; ||z|| / ||y|| <= tol: "converged"; ``stop(F,
    G)`` true: "stopped", e.g. an error target; t = max_iter: "max_iter"), then the step:

    * gd: F -= eta S G, G -= eta S^T F (symmetric: X -= eta (S + S^T) X / 2);
    * onestep: gd, plus once F <- beta F (F^T F)^{-1/2}, G <- G (F^T F)^{1/2} / beta when
      the relative residual first reaches ``trigger``;
    * scaledgd / scaledgd-lambda / precgd: F -= eta S G (G^T G + lam I)^{-1}, G likewise
      with F^T F (both from the same iterate), lam = 0 / ``damping`` / ||z||;
    * agn: F -= eta S G (G^T G)^+, then G -= eta S'^T F' (F'^T F')^+ with S' at the new F'.
    * softimpute_als: D = (S G + lam F)(L G^T G + lam I)^{-1}, F' = F - eta D, then G with
      S' at F' (L = ``gram_bound``); eta = the step, or for step "auto" the exact
      minimizer <grad, D> / (||A(D G^T)||^2 + lam ||D||^2) per half-step.
    * gnmr: the paper's procedure (Zilber & Nadler 2022): LSQR from zero on
      min ||J x - b||, b = y + alpha A(F G^T), J(U~, V~) = A(F V~^T + U~ G^T), then
      F <- (1 - alpha)/2 F + U~ (G likewise); symmetric J(X~) = A(X X~^T + X~ X^T),
      X <- (1 - alpha)/2 X + X~. J and J^T from ``rg`` alone: A(P Q^T) = z of rg(P, Q, 0) and
      (A^T(w) G, A^T(w)^T F) = the products of rg(F, G, A(F G^T) - w).
    * als: each half-step by CG on its normal equations, H(D) = A^T(A(D G^T)) G + lam D =
      the S G of rg(D, G, 0) + lam D, to a relative residual of 1e-12; lam = ``damping``,
      or for damping="auto" lam = damping_scale * ridge_gram_scale * rho^2 ||fixed||^2 / k
      with rho the relative residual at the iterate.

    Returns (F, G, n_iter, status); G is F for symmetric runs.
    """
    if method in ("gnmr", "als"):
        return _second_order_solve(rg, y, F0, G0, method, options, symmetric=symmetric,
                                   tol=tol, max_iter=max_iter, stop=stop)
    if method not in REFERENCE_METHODS:
        raise Unavailable(f"no numpy reference loop for method {method!r}: add its update "
                          f"rule to benchmarks/harness/references.py (reference_solve)")
    eta = float("nan") if method == "softimpute_als" else float(options["step"])
    rcond = float(options.get("rcond") or 10 * F0.shape[1] * np.finfo(F0.dtype).eps)
    F = F0.copy()
    G = F if symmetric else np.array(G0, copy=True)
    ynorm = float(np.linalg.norm(y.astype(np.float64)))
    rebalanced = False
    t = 0
    reference = None
    while True:
        loss, _z, SG, StF = rg(F, G, y)
        res = float(np.sqrt(2.0 * loss)) / ynorm
        if not np.isfinite(res):
            return F, G, t, "diverged"
        if reference is None:
            reference = max(1.0, res)
        if res <= tol:
            return F, G, t, "converged"
        if stop is not None and stop(F, G):
            return F, G, t, "stopped"
        if t >= max_iter:
            return F, G, t, "max_iter"
        if symmetric:
            grad = 0.5 * (SG + StF)
            if method == "gd":
                F = F - F.dtype.type(eta) * grad
            else:
                lam = _damping(method, options, loss)
                F = F - F.dtype.type(eta) * _right_solve(grad, F.T @ F, lam, rcond, False)
            G = F
        elif method in ("gd", "onestep"):
            if method == "onestep" and not rebalanced and res <= float(options["trigger"]):
                F, G, SG, StF = _rebalance(F, G, SG, StF, options.get("beta"))
                rebalanced = True
            e = F.dtype.type(eta)
            F, G = F - e * SG, G - e * StF
        elif method == "softimpute_als":
            F, G = _softimpute_als_step(rg, y, F, G, SG, options, rcond)
        elif method == "agn":
            e = F.dtype.type(eta)
            F_next = F - e * _right_solve(SG, G.T @ G, 0.0, rcond, True)
            _, _, _, StF = rg(F_next, G, y)
            G = G - e * _right_solve(StF, F_next.T @ F_next, 0.0, rcond, True)
            F = F_next
        else:
            lam = _damping(method, options, loss)
            e = F.dtype.type(eta)
            F, G = (F - e * _right_solve(SG, G.T @ G, lam, rcond, False),
                    G - e * _right_solve(StF, F.T @ F, lam, rcond, False))
        t += 1


def _softimpute_als_step(rg, y, F, G, SG, options, rcond):
    """One softimpute_als iteration (see :func:`reference_solve`) from rg alone."""
    L = float(options["gram_bound"])
    lam = float(options.get("reg") or 0.0)
    step = options["step"]
    zeros = np.zeros_like(y)

    def half(X, grad, gram, forward):
        D = _right_solve(grad, L * gram, lam, rcond, False)
        if isinstance(step, str):
            w = np.asarray(forward(D), np.float64)
            num = float(np.vdot(grad.astype(np.float64), D.astype(np.float64)))
            den = float(w @ w) + lam * float(np.vdot(D, D))
            e = num / den if den > 0 and num > 0 else 0.0
        else:
            e = float(step)
        return X - X.dtype.type(e) * D

    F1 = half(F, SG + F.dtype.type(lam) * F, G.T @ G, lambda D: rg(D, G, zeros)[1])
    StF = rg(F1, G, y)[3]
    G1 = half(G, StF + G.dtype.type(lam) * G, F1.T @ F1, lambda D: rg(F1, D, zeros)[1])
    return F1, G1


def _second_order_solve(rg, y, F0, G0, method, options, *, symmetric, tol, max_iter, stop):
    """gnmr and als reference loops (see :func:`reference_solve`)."""
    from scipy.sparse.linalg import LinearOperator, lsqr

    F = F0.copy()
    G = F if symmetric else np.array(G0, copy=True)
    zeros = np.zeros_like(y)
    ynorm = float(np.linalg.norm(y.astype(np.float64)))
    n1, k = F.shape
    relres = 1.0
    linearized = method == "gnmr" and options.get("estimate", "linearized") == "linearized"
    PU, PV = F, G   # the paper's factor sequence; (F, G) is the estimate
    t = 0

    def fwd(P, Q):
        return np.array(rg(P, Q, zeros)[1], dtype=np.float64)

    while True:
        loss, _z, SG, StF = rg(F, G, y)
        res = float(np.sqrt(2.0 * loss)) / ynorm
        if not np.isfinite(res):
            return F, G, t, "diverged"
        if res <= tol:
            return F, G, t, "converged"
        if stop is not None and stop(F, G):
            return F, G, t, "stopped"
        if t >= max_iter:
            return F, G, t, "max_iter"
        if method == "als":
            damping = options.get("damping", 0.0)
            if damping == "auto":   # lam = c rho^2 g(fixed), rho at the iterate (als.py)
                c = float(options["damping_scale"]) * float(options["ridge_gram_scale"])

                def ridge(fixed, c=c, res=res):
                    return c * res * res * float(np.vdot(fixed, fixed)) / k
            else:
                def ridge(fixed, lam=float(damping)):
                    return lam
            F = _cg_half(lambda D, G=G: rg(D, G, zeros)[2], np.array(SG), F, ridge(G))
            StF = rg(F, G, y)[3]
            G = _cg_half(lambda D, F=F: rg(F, D, zeros)[3], np.array(StF), G, ridge(F))
            t += 1
            continue
        alpha = {"setting": 1.0, "averaging": 0.0, "updating": -1.0}[options["variant"]]
        if linearized:
            F, G = PU, PV
        fit = fwd(F, G)
        n2 = G.shape[0]
        n_x = n1 * k if symmetric else (n1 + n2) * k

        def matvec(x, F=F, G=G, n2=n2):
            dF = x[: n1 * k].reshape(n1, k).astype(F.dtype)
            dG = dF if symmetric else x[n1 * k:].reshape(n2, k).astype(F.dtype)
            return fwd(np.hstack([F, dF]), np.hstack([dG, G]))

        def rmatvec(w, F=F, G=G, fit=fit):
            _, _, a, b = rg(F, G, (fit - w).astype(F.dtype))
            return (a + b).ravel() if symmetric else np.concatenate([a.ravel(), b.ravel()])

        J = LinearOperator((y.shape[0], n_x), matvec=matvec, rmatvec=rmatvec,
                           dtype=np.float64)
        lsqr_tol = float(options["lsqr_tol"])
        if relres < float(options["tighten_below"]):
            lsqr_tol = min(lsqr_tol, relres ** 2)
        b = y + alpha * fit
        x, _, _, r1 = lsqr(J, b, atol=lsqr_tol, btol=lsqr_tol,
                           iter_lim=int(options["max_inner_iter"]))[:4]
        relres = float(r1) / float(np.linalg.norm(b))
        eta = float(options["step"])
        keep = 0.5 * (1.0 - alpha)
        F_gn = keep * F + x[: n1 * k].reshape(n1, k)
        G_gn = None if symmetric else keep * G + x[n1 * k:].reshape(n2, k)
        F_new = (F + eta * (F_gn - F)).astype(F.dtype)
        G_new = F_new if symmetric else (G + eta * (G_gn - G)).astype(F.dtype)
        if linearized:   # rank-k truncation of X_2r = F G_new^T + F_new G^T - F G^T
            PU, PV = F_new, G_new
            F, G = _truncate_linearization(F, G, F_new, G_new, k, symmetric)
        else:
            F, G = F_new, G_new
        t += 1


def _truncate_linearization(F, G, F_new, G_new, k, symmetric):
    """Best rank-k (symmetric: PSD rank-k) factors of F G_new^T + F_new G^T - F G^T."""
    Qa, Ra = np.linalg.qr(np.hstack([F, F_new - F]))
    if symmetric:
        I, O = np.eye(k), np.zeros((k, k))
        mid = Ra @ np.block([[I, I], [I, O]]) @ Ra.T
        w, E = np.linalg.eigh(0.5 * (mid + mid.T))
        X = Qa @ (E[:, -k:] * np.sqrt(np.maximum(w[-k:], 0.0)))
        return X.astype(F.dtype), X.astype(F.dtype)
    Qb, Rb = np.linalg.qr(np.hstack([G_new, G]))
    W, sv, Zt = np.linalg.svd(Ra @ Rb.T)
    root = np.sqrt(sv[:k])
    return (Qa @ (W[:, :k] * root)).astype(F.dtype), (Qb @ (Zt[:k].T * root)).astype(F.dtype)


def _cg_half(normal, gradient, X, lam, rtol=1e-12, max_iter=500):
    """argmin over D of the half-step, by CG on H(D) = normal(D) + lam D, from X."""
    D = X.astype(np.float64)
    R = -(gradient + lam * X).astype(np.float64)
    P = R.copy()
    rr = float(np.vdot(R, R))
    stop = rtol ** 2 * rr
    for _ in range(max_iter):
        if not rr > stop:
            break
        HP = np.asarray(normal(P.astype(X.dtype)), np.float64) + lam * P
        a = rr / float(np.vdot(P, HP))
        D += a * P
        R -= a * HP
        rr_new = float(np.vdot(R, R))
        P = R + (rr_new / rr) * P
        rr = rr_new
    return D.astype(X.dtype)


def _damping(method, options, loss) -> float:
    if method == "scaledgd":
        return 0.0
    if method == "scaledgd-lambda":
        return float(options["damping"])
    if method == "precgd":
        rule = options.get("damping", "residual")
        scale = float(options.get("damping_scale", 1.0))
        if rule == "residual":
            return scale * float(np.sqrt(2.0 * loss))
        if isinstance(rule, (int, float)):
            return scale * float(rule)
        raise Unavailable(f"the reference loop has no precgd damping rule {rule!r}")
    raise ValueError(method)


def _rebalance(F, G, SG, StF, beta):
    """The one-step rebalance: F <- beta F (F^T F)^{-1/2}, G <- G (F^T F)^{1/2} / beta."""
    w, Q = np.linalg.eigh((F.T @ F).astype(np.float64))
    w = np.maximum(w, 0.0)
    cut = w[-1] * F.shape[1] * np.finfo(F.dtype).eps
    root_w = np.sqrt(w)
    inv_w = np.where(w > cut, 1.0 / np.where(root_w > 0, root_w, 1.0), 0.0)
    root, inv_root = (Q * root_w) @ Q.T, (Q * inv_w) @ Q.T
    sigma1 = float(np.sqrt(max(np.linalg.eigvalsh(root @ (G.T @ G) @ root)[-1], 0.0)))
    beta = float(beta) if beta is not None else float(np.sqrt(sigma1))
    if not beta > 0:
        return F, G, SG, StF
    Pf = (beta * inv_root).astype(F.dtype)
    Pg = (root / beta).astype(F.dtype)
    return F @ Pf, G @ Pg, SG @ Pg, StF @ Pf
