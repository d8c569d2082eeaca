r"""One-run comparison of lowrank_core against what a user would otherwise write.

Same data, same process, alternating runs, medians. Two measurements:

* **per-iteration product** of every operator kind: ``residual_gradient`` (z = A(F G^T) - y,
  loss = 1/2 ||z||^2, A^T(z) G, A^T(z)^T F) against the same computation in plain numpy,
  in scipy.sparse (sparse and entrywise operators) and in PyTorch on the CPU (when
  installed). For the dense operators also the bytes of A streamed per second next to a
  plain streaming read of the same array (the memory-bandwidth floor).
* **time to accuracy** of every method of :func:`lowrank_core.solve` (when the solvers are
  available): wall time from the same initial factors, with the same step and options,
  until the relative residual ||A(F G^T) - y|| / ||y|| reaches ``tol``; the references run
  the same update rule in a numpy loop on top of each baseline's product.

Every reference result is checked against lowrank_core's before anything is timed (a
benchmark of a wrong answer is worthless): products to a relative tolerance, solves by
their iteration counts and the distance between the recovered matrices.

Entry points: :func:`run_comparison` (returns a :class:`Comparison` with ``rows``,
``method_rows`` and :meth:`Comparison.to_markdown`), :func:`main` (command line, used by
``benchmarks/compare.py`` and ``lowrank-core bench``).

    python benchmarks/compare.py            # the issue sizes, float64 and float32
    python benchmarks/compare.py --quick    # small sizes, well under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy
import scipy.sparse as sp

from . import _dense, metrics
from ._threads import resolve_n_threads
from .problems import make_problem

__all__ = ["Comparison", "run_comparison", "main", "KINDS", "METHODS", "PRODUCT_SIZES",
           "SOLVE_SIZES"]

#: operator kinds, in table order
KINDS = ("dense", "symmetric", "sparse", "entries", "rank-one")
#: methods of lowrank_core.solve, in table order
METHODS = ("gd", "onestep", "scaledgd", "scaledgd-lambda", "precgd", "agn")
#: methods that have a symmetric (X X^T) form. The others (asymmetric only) are not run on
#: the symmetric kind: symmetric A_i do not observe the antisymmetric part of F G^T.
SYMMETRIC_METHODS = ("gd", "scaledgd", "scaledgd-lambda", "precgd")

KIND_LABELS = {
    "dense": "dense Gaussian",
    "symmetric": "symmetric packed (PSD)",
    "sparse": "sparse A_i",
    "entries": "entrywise (completion)",
    "rank-one": "rank-one a_i b_i^T",
}

#: per-iteration product sizes: the issues' sizes ("default") and a quick variant.
#: sparse: ``nnz`` nonzeros per A_i. Factor width k is given separately.
PRODUCT_SIZES = {
    "default": {
        "dense": dict(n1=100, n2=100, m=2500),
        "symmetric": dict(n1=100, n2=100, m=2500),
        "sparse": dict(n1=2000, n2=2000, m=50_000, nnz=20),
        "entries": dict(n1=20_000, n2=15_000, m=2_000_000),
        "rank-one": dict(n1=300, n2=300, m=20_000),
    },
    "quick": {
        "dense": dict(n1=40, n2=40, m=800),
        "symmetric": dict(n1=40, n2=40, m=800),
        "sparse": dict(n1=300, n2=300, m=5000, nnz=20),
        "entries": dict(n1=2000, n2=1500, m=100_000),
        "rank-one": dict(n1=100, n2=100, m=3000),
    },
}

#: time-to-accuracy problem sizes (rank-3 truth, k = 3, cond 2). Smaller than the product
#: sizes so that every method converges against every baseline within minutes.
SOLVE_SIZES = {
    "default": {
        "dense": dict(n1=50, n2=50, m=1500),
        "symmetric": dict(n1=50, n2=50, m=1500),
        "sparse": dict(n1=300, n2=300, m=9000, nnz=10),
        "entries": dict(n1=2000, n2=1500, m=150_000),
        "rank-one": dict(n1=100, n2=100, m=4000),
    },
    "quick": {
        "dense": dict(n1=20, n2=20, m=400),
        "symmetric": dict(n1=20, n2=20, m=400),
        "sparse": dict(n1=100, n2=100, m=2000, nnz=10),
        "entries": dict(n1=300, n2=200, m=12_000),
        "rank-one": dict(n1=30, n2=30, m=600),
    },
}

#: relative tolerance of a reference product against lowrank_core's (norm-wise)
PRODUCT_RTOL = {np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-8}


class Unavailable(Exception):
    """An operator kind or a method this build of lowrank_core does not have."""


# ----------------------------------------------------------------------------- problems
def build_problem(kind: str, size: dict, *, rank: int, dtype, seed: int = 0, cond: float = 1.0,
                  n_threads=None):
    """A fixed-seed :class:`~lowrank_core.Problem` of the given operator kind and size."""
    size = dict(size)
    n1, n2, m = size.pop("n1"), size.pop("n2"), size.pop("m")
    common = dict(rank=rank, m=m, dtype=dtype, seed=seed, cond=cond, n_threads=n_threads)
    if kind == "dense":
        return make_problem(n1, n2, **common)
    if kind == "symmetric":
        return make_problem(n1, psd=True, **common)
    from .problems import OPERATOR_BUILDERS
    name = {"sparse": "sparse", "entries": "entries", "rank-one": "rank-one"}[kind]
    if name not in OPERATOR_BUILDERS:
        raise Unavailable(f"make_problem(operator={name!r}) is not in this build")
    if kind == "sparse":
        return make_problem(n1, n2, operator=name, s=size.pop("nnz"),
                            **common)
    return make_problem(n1, n2, operator=name, **common)


# ---------------------------------------------------------------------------- baselines
ProductFn = Callable[[np.ndarray, np.ndarray, np.ndarray],
                     "tuple[float, np.ndarray, np.ndarray, np.ndarray]"]


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _rowdot(A, B):
    return np.einsum("ij,ij->i", A, B)


def _bincount_rows(index, W, n):
    """out[r] = sum over e with index[e] == r of W[e] (k columns, one bincount each)."""
    out = np.empty((n, W.shape[1]), W.dtype)
    for j in range(W.shape[1]):
        out[:, j] = np.bincount(index, weights=W[:, j], minlength=n)
    return out


def _dense_baselines(op, torch):
    """numpy (and torch) on the full (m, n1*n2) matrix of vec(A_i), operator's dtype."""
    n1, n2 = op.shape
    A2 = op.matrices.reshape(op.m, n1 * n2)
    if not A2.flags.c_contiguous:
        A2 = np.ascontiguousarray(A2)

    def numpy_rg(F, G, y):
        P = F @ G.T
        z = A2 @ P.ravel() - y
        S = (z @ A2).reshape(n1, n2)
        return 0.5 * float(z @ z), z, S @ G, S.T @ F

    out = {"numpy": numpy_rg}
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
    torch = _torch() if use_torch else None
    if kind in ("dense", "symmetric"):
        return _dense_baselines(op, torch)[0]
    if kind == "sparse":
        return _sparse_baselines(op, torch)
    if kind == "entries":
        return _entries_baselines(op, torch)
    if kind == "rank-one":
        return _rankone_baselines(op, torch)
    raise ValueError(f"unknown operator kind {kind!r}")


def _rel(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def product_discrepancy(ours, ref) -> float:
    """Largest norm-relative difference over (loss, z, SG, StF)."""
    return max(_rel(ours[0], ref[0]), *(_rel(o, r) for o, r in zip(ours[1:], ref[1:])))


# ------------------------------------------------------------------------------- timing
def alternate(fns, repeats: int, warmup: bool = True) -> list[float]:
    """Median seconds of each callable, run in alternation after one warm-up each
    (``warmup=False`` when the caller has just run each once, e.g. to verify it)."""
    for fn in fns if warmup else ():
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


@contextlib.contextmanager
def pinned_threads(n: int):
    """Run BLAS (through threadpoolctl, when installed) and torch with ``n`` threads."""
    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits
        stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
    except ImportError:
        pass
    torch = _torch()
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with stack:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


# ----------------------------------------------------------------------- product rows
def product_row(kind: str, size: dict, dtype, *, k: int, repeats: int, n_threads: int,
                use_torch: bool = True, seed: int = 0) -> dict:
    """Verify and time one operator's residual gradient against every baseline."""
    dtype = np.dtype(dtype)
    prob = build_problem(kind, size, rank=min(5, k), dtype=dtype, seed=seed,
                         n_threads=n_threads)
    op = prob.operator
    op.n_threads = n_threads
    n1, n2 = op.shape
    rng = np.random.default_rng(seed + 1)
    F = (rng.standard_normal((n1, k)) / np.sqrt(n1)).astype(dtype)
    G = F if kind == "symmetric" else (rng.standard_normal((n2, k))
                                       / np.sqrt(n2)).astype(dtype)
    y = prob.y
    out = (np.empty(op.m, dtype), np.empty((n1, k), dtype), np.empty((n2, k), dtype))
    refs = reference_products(kind, op, use_torch=use_torch)

    ours = op.residual_gradient(F, G, y)
    ours = (ours[0], *(np.array(x) for x in ours[1:]))
    discrepancy = {}
    for name, fn in refs.items():
        d = product_discrepancy(ours, fn(F, G, y))
        discrepancy[name] = d
        if not d <= PRODUCT_RTOL[dtype]:
            raise AssertionError(f"{kind} {dtype}: the {name} reference disagrees with "
                                 f"lowrank_core by {d:.3g} (tolerance "
                                 f"{PRODUCT_RTOL[dtype]:g}); refusing to time a wrong answer")

    fns = [lambda: op.residual_gradient(F, G, y, out=out)]
    fns += [lambda fn=fn: fn(F, G, y) for fn in refs.values()]
    bandwidth = kind in ("dense", "symmetric")
    if bandwidth:
        stored = op._rows  # what the kernel streams (packed rows for the symmetric kind)
        fns += [lambda: _dense.stream_sum(stored, n_threads), lambda: stored.sum()]
    times = alternate(fns, repeats)
    row = dict(kind=kind, label=KIND_LABELS[kind], dtype=dtype.name, n1=n1, n2=n2, m=op.m,
               k=k, n_threads=n_threads, ours_s=times[0],
               baselines={name: t for name, t in zip(refs, times[1:1 + len(refs)])},
               discrepancy=discrepancy)
    if kind == "sparse":
        row["nnz"] = op.nnz
    if bandwidth:
        t_stream, t_sum = times[-2:]
        nb = stored.nbytes
        full = op.m * n1 * n2 * dtype.itemsize
        row.update(a_bytes=nb, ours_gbs=nb / times[0] / 1e9,
                   stream_gbs=nb / t_stream / 1e9, npsum_gbs=nb / t_sum / 1e9,
                   numpy_gbs=2 * full / row["baselines"]["numpy"] / 1e9)
    return row


# ------------------------------------------------------------------- method references
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
                    options: dict, *, symmetric: bool, tol: float, max_iter: int):
    """The update rules of :func:`lowrank_core.solve`, as a plain numpy loop on ``rg``.

    ``options`` are the resolved settings of a lowrank_core run (``result.options``:
    step, damping, trigger, beta, rcond), so both runs follow the same rule from the same
    start. Returns (F, G, n_iter, status); G is F for symmetric runs.
    """
    eta = float(options["step"])
    rcond = float(options.get("rcond") or 10 * F0.shape[1] * np.finfo(F0.dtype).eps)
    F = F0.copy()
    G = F if symmetric else np.array(G0, copy=True)
    ynorm = float(np.linalg.norm(y.astype(np.float64)))
    rebalanced = False
    t = 0
    reference = None
    while True:
        loss, z, SG, StF = rg(F, G, y)
        res = float(np.sqrt(2.0 * loss)) / ynorm
        if not np.isfinite(res):
            return F, G, t, "diverged"
        if reference is None:
            reference = max(1.0, res)
        if res <= tol:
            return F, G, t, "converged"
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


def _solver():
    try:
        from . import solve
    except ImportError:
        return None
    return solve


def method_row(kind: str, method: str, size: dict, *, repeats: int, n_threads: int,
               tol: float, max_iter: int, use_torch: bool = True, seed: int = 0) -> dict:
    """Verify and time one method's solve to ``tol`` against every baseline's loop."""
    solve = _solver()
    if solve is None:
        raise Unavailable("lowrank_core.solve is not in this build")
    if kind == "symmetric" and method not in SYMMETRIC_METHODS:
        raise Unavailable("asymmetric only; symmetric A_i do not observe the antisymmetric "
                          "part of F G^T")
    rank = 3
    prob = build_problem(kind, size, rank=rank, dtype=np.float64, seed=seed, cond=2.0,
                         n_threads=n_threads)
    op, y = prob.operator, prob.y
    op.n_threads = n_threads
    symmetric = kind == "symmetric" and method in SYMMETRIC_METHODS
    start = solve(op, y, rank, method=method, symmetric=symmetric, init="spectral",
                  max_iter=0, record=False, seed=seed)
    init = start.X if symmetric else (start.F, start.G)
    F0, G0 = (init, None) if symmetric else init
    probe = solve(op, y, rank, method=method, symmetric=symmetric, init=init, max_iter=0,
                  step="fixed", record=False)
    options = dict(probe.options)
    fixed = {"step": options["step"]}
    if method == "scaledgd-lambda":
        fixed["damping"] = options["damping"]

    def ours():
        return solve(op, y, rank, method=method, symmetric=symmetric, init=init, tol=tol,
                     max_iter=max_iter, record=False, **fixed)

    res = ours()
    F_ours = res.X if symmetric else res.F
    G_ours = F_ours if symmetric else res.G
    refs = reference_products(kind, op, use_torch=use_torch)

    def make_ref(rg):
        return lambda: reference_solve(rg, y, F0, G0, method, options, symmetric=symmetric,
                                       tol=tol, max_iter=max_iter)

    ref_fns = {name: make_ref(rg) for name, rg in refs.items()}
    agreement = {}
    iters = {}
    scale = metrics.factored_norm(F_ours, G_ours)
    for name, fn in ref_fns.items():
        F, G, n_iter, status = fn()
        d = metrics.factored_distance(F, G, F_ours, G_ours) / scale
        iters[name] = n_iter
        agreement[name] = d
        close_iters = abs(n_iter - res.n_iter) <= max(2, 0.1 * res.n_iter)
        if status != res.status or not close_iters or not d <= 1e-3:
            raise AssertionError(
                f"{method} on {kind}: the {name} reference loop ({status}, {n_iter} "
                f"iterations) disagrees with lowrank_core ({res.status}, {res.n_iter} "
                f"iterations; relative distance of the estimates {d:.3g}); refusing to time")
    times = alternate([ours, *ref_fns.values()], repeats, warmup=False)
    n1, n2 = op.shape
    return dict(kind=kind, label=KIND_LABELS[kind], method=method, symmetric=symmetric,
                n1=n1, n2=n2, m=op.m, rank=rank, status=res.status, n_iter=res.n_iter,
                error=float(prob.relative_error(F_ours, G_ours)), ours_s=times[0],
                baselines=dict(zip(ref_fns, times[1:])), ref_iters=iters,
                agreement=agreement, n_threads=n_threads, tol=tol)


# ------------------------------------------------------------------------------ report
def machine_description(n_threads: int) -> str:
    """CPU model, cores, memory, library versions and BLAS of this process."""
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            mem = f", {int(fh.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    from . import __version__
    parts = [f"{cpu}, {os.cpu_count()} logical cores{mem}, {platform.system()} "
             f"{platform.release()}",
             f"Python {platform.python_version()}, lowrank_core {__version__} (OpenMP "
             f"threads used: {n_threads}), numpy {np.__version__}, scipy {scipy.__version__}"]
    torch = _torch()
    parts.append(f"torch {torch.__version__}" if torch is not None else "torch not installed")
    try:
        from threadpoolctl import threadpool_info
        blas = {(i.get("internal_api"), i.get("version")) for i in threadpool_info()
                if i.get("user_api") == "blas"}
        if blas:
            parts.append("BLAS " + ", ".join(f"{a} {v}" for a, v in sorted(blas, key=str)))
    except ImportError:
        pass
    waits = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT",
                                             "KMP_BLOCKTIME", "OMP_WAIT_POLICY")
             if v in os.environ]
    if waits:
        parts.append("idle-thread policy " + " ".join(waits))
    return "; ".join(parts)


def _ms(t: float) -> str:
    ms = 1e3 * t
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _ratio(base: float | None, ours: float) -> str:
    return "—" if base is None else f"{_ms(base)} ({base / ours:.1f}×)"


def _best(baselines: dict, lib: str):
    """Fastest time among a library's variants ("scipy.sparse", "scipy.sparse dense-S")."""
    times = [t for name, t in baselines.items() if name == lib or name.startswith(lib + " ")]
    return min(times) if times else None


def _shape(r) -> str:
    s = f"{r['n1']}×{r['n2']}, m={r['m']:,}"
    if "nnz" in r:
        s += f", nnz={r['nnz']:,}"
    return s


@dataclass
class Comparison:
    """Result of :func:`run_comparison`: rows, the conditions, and the markdown."""

    rows: list = field(default_factory=list)
    method_rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    machine: str = ""
    conditions: str = ""
    command: str = ""

    def to_markdown(self) -> str:
        out = [f"Machine: {self.machine}", "", f"Conditions: {self.conditions}", "",
               f"Command: `{self.command}`", ""]
        libs = ["numpy", "scipy.sparse", "torch"]
        if self.rows:
            out += ["**Per-iteration product** `residual_gradient` (z = A(FGᵀ) − y, Aᵀ(z)G, "
                    "Aᵀ(z)ᵀF), median ms; in brackets the baseline's time over "
                    "lowrank_core's (>1× = lowrank_core faster). Every baseline was checked "
                    "against lowrank_core before timing (max relative difference in the last "
                    "column). scipy.sparse for sparse A_i: the faster of gather + precomputed CSR "
                    "selectors (the issue's reference) and CSR (m, n1·n2) times vec(FGᵀ), "
                    "which forms n1 × n2 (both listed below the table); for entries: CSR "
                    "structure of Aᵀ(z) built once, data rewritten per call.", "",
                    "| operator | size | k | dtype | lowrank_core ms | numpy ms | "
                    "scipy.sparse ms | torch ms | max rel. diff |",
                    "|---|---|---|---|---|---|---|---|---|"]
            for r in self.rows:
                cells = [_ratio(_best(r["baselines"], lib), r["ours_s"]) for lib in libs]
                out.append(f"| {r['label']} | {_shape(r)} | {r['k']} | {r['dtype']} | "
                           f"{_ms(r['ours_s'])} | {' | '.join(cells)} | "
                           f"{max(r['discrepancy'].values()):.1e} |")
            variants = [r for r in self.rows if "scipy.sparse dense-S" in r["baselines"]]
            if variants:
                out.append("")
            for r in variants:
                b = r["baselines"]
                out.append(f"scipy.sparse variants for {r['label']} {r['dtype']}: gather + "
                           f"precomputed CSR selectors {_ratio(b['scipy.sparse'], r['ours_s'])}"
                           f"; CSR times vec(FGᵀ), dense S "
                           f"{_ratio(b['scipy.sparse dense-S'], r['ours_s'])}.  ")
            bw = [r for r in self.rows if "a_bytes" in r]
            if bw:
                out += ["", "**Dense operators: bytes of A streamed per second** "
                        "(lowrank_core reads its stored A once per iteration, packed for the "
                        "symmetric kind; numpy reads the full A twice) next to a plain "
                        "streaming read of the stored A (the bandwidth floor: lowrank_core's "
                        "`stream_sum` with the same threads / `numpy.sum`).", "",
                        "| operator | dtype | stored A | lowrank_core GB/s | numpy GB/s | "
                        "streaming read GB/s (ours / numpy sum) | lowrank_core / streaming "
                        "read |",
                        "|---|---|---|---|---|---|---|"]
                for r in bw:
                    out.append(f"| {r['label']} | {r['dtype']} | {r['a_bytes'] / 1e6:.0f} MB "
                               f"| {r['ours_gbs']:.1f} | {r['numpy_gbs']:.1f} | "
                               f"{r['stream_gbs']:.1f} / {r['npsum_gbs']:.1f} | "
                               f"{r['ours_gbs'] / r['stream_gbs']:.0%} |")
        if self.method_rows:
            out += ["", "**Time to accuracy** (float64, rank-3 truth with cond 2, k = 3, "
                    "spectral initialization computed once and shared, same step and "
                    "options): median ms of the whole solve until the relative residual "
                    f"≤ {self.method_rows[0]['tol']:g}; the baselines run the same update "
                    "rule as a numpy loop on their own product. In brackets: baseline time "
                    "over lowrank_core's.", "",
                    "| method | operator | size | iterations | final error | lowrank_core "
                    "ms | numpy ms | scipy.sparse ms | torch ms |",
                    "|---|---|---|---|---|---|---|---|---|"]
            for r in self.method_rows:
                cells = [_ratio(_best(r["baselines"], lib), r["ours_s"]) for lib in libs]
                form = "XXᵀ" if r["symmetric"] else "FGᵀ"
                out.append(f"| {r['method']} ({form}) | {r['label']} | {_shape(r)} | "
                           f"{r['n_iter']} ({r['status']}) | {r['error']:.1e} | "
                           f"{_ms(r['ours_s'])} | {' | '.join(cells)} |")
        if self.skipped:
            out += ["", "Not measured: " + "; ".join(self.skipped) + "."]
        return "\n".join(out)


def run_comparison(*, quick: bool = False, kinds=KINDS, dtypes=("float64", "float32"),
                   methods=METHODS, k: int = 10, repeats: int | None = None,
                   solve_repeats: int | None = None, n_threads: int | None = None,
                   tol: float = 1e-6, max_iter: int | None = None, use_torch: bool = True,
                   products: bool = True, solves: bool = True, command: str = "",
                   log=None) -> Comparison:
    """Run the comparison and return a :class:`Comparison`.

    Parameters
    ----------
    quick : bool
        Small sizes (:data:`PRODUCT_SIZES` / :data:`SOLVE_SIZES` "quick") and few repeats.
    kinds, dtypes, methods : sequences
        What to measure. Methods are timed in float64 only.
    k : int
        Factor width of the product measurement (the issues use 10).
    repeats, solve_repeats : int, optional
        Timed runs per implementation (defaults 15 / 3, quick 5 / 1); every
        implementation has run once before (verification, warm-up).
    n_threads : int, optional
        Threads for every library (OpenMP kernels, BLAS via threadpoolctl, torch);
        default: the OpenMP default (``OMP_NUM_THREADS`` or all cores).
    log : callable, optional
        Called with a progress line per measurement (e.g. ``print``).
    """
    profile = "quick" if quick else "default"
    repeats = repeats if repeats is not None else (5 if quick else 15)
    solve_repeats = solve_repeats if solve_repeats is not None else (1 if quick else 3)
    max_iter = max_iter if max_iter is not None else (1000 if quick else 2000)
    if not command:
        command = _equivalent_command(quick, kinds, dtypes, methods, k, repeats,
                                      solve_repeats, n_threads, tol, use_torch, products,
                                      solves)
    n_threads = resolve_n_threads(n_threads)
    use_torch = use_torch and _torch() is not None
    result = Comparison(command=command)
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    with pinned_threads(n_threads):
        if products:
            for kind in kinds:
                for dtype in dtypes:
                    try:
                        row = product_row(kind, PRODUCT_SIZES[profile][kind], dtype, k=k,
                                          repeats=repeats, n_threads=n_threads,
                                          use_torch=use_torch)
                    except Unavailable as exc:
                        result.skipped.append(f"{kind} product ({exc})")
                        break
                    result.rows.append(row)
                    if log:
                        log(f"product {kind} {dtype}: {_ms(row['ours_s'])} ms")
        if solves:
            for method in methods:
                for kind in kinds:
                    try:
                        row = method_row(kind, method, SOLVE_SIZES[profile][kind],
                                         repeats=solve_repeats, n_threads=n_threads, tol=tol,
                                         max_iter=max_iter, use_torch=use_torch)
                    except Unavailable as exc:
                        result.skipped.append(f"{method} on {kind} ({exc})")
                        if _solver() is None:
                            break
                        continue
                    result.method_rows.append(row)
                    if log:
                        log(f"solve {method} {kind}: {row['n_iter']} iterations, "
                            f"{_ms(row['ours_s'])} ms")
                if _solver() is None:
                    break
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    result.machine = machine_description(n_threads)
    blas = "threadpoolctl" if _has_threadpoolctl() else "not pinned (threadpoolctl missing)"
    result.conditions = (
        f"{n_threads} thread(s) for every library (lowrank_core OpenMP, BLAS via {blas}, "
        f"torch.set_num_threads); {'quick' if quick else 'default'} sizes; median of "
        f"{repeats} alternating runs per product, {solve_repeats} per solve, after one "
        f"warm-up each; same arrays for all libraries, in the operator's dtype"
        + (f"; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end"
           if load0 else ""))
    return result


def _equivalent_command(quick, kinds, dtypes, methods, k, repeats, solve_repeats, n_threads,
                        tol, use_torch, products, solves) -> str:
    """The benchmarks/compare.py command line that reproduces these settings."""
    parts = ["python benchmarks/compare.py"] + (["--quick"] if quick else [])
    if list(kinds) != list(KINDS):
        parts += ["--kinds", *kinds]
    if list(dtypes) != ["float64", "float32"]:
        parts += ["--dtypes", *dtypes]
    if list(methods) != list(METHODS):
        parts += ["--methods", *methods]
    if k != 10:
        parts += ["--k", str(k)]
    parts += ["--repeats", str(repeats), "--solve-repeats", str(solve_repeats),
              "--threads", str(n_threads)]
    if tol != 1e-6:
        parts += ["--tol", f"{tol:g}"]
    parts += (["--no-torch"] if not use_torch else []) + (
        ["--no-products"] if not products else []) + (["--no-solves"] if not solves else [])
    return " ".join(parts)


def _has_threadpoolctl() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=(
        "One-run comparison of lowrank_core against plain numpy, scipy.sparse and PyTorch "
        "(same data, same process, alternating runs, medians); prints a markdown table."))
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and few repeats (well under a minute)")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--dtypes", nargs="+", choices=("float64", "float32"),
                    default=["float64", "float32"])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--k", type=int, default=10, help="factor width of the products")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs per product (default 15, quick 5)")
    ap.add_argument("--solve-repeats", type=int, default=None,
                    help="timed runs per solve (default 3, quick 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every library (default: the OpenMP default)")
    ap.add_argument("--tol", type=float, default=1e-6,
                    help="relative residual of the time-to-accuracy runs")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--no-products", action="store_true", help="skip the product table")
    ap.add_argument("--no-solves", action="store_true", help="skip time to accuracy")
    ap.add_argument("--output", help="also write the markdown to this file")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    """Command line: parse ``argv``, run, print the markdown (and write ``--output``)."""
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    shown = list(sys.argv[1:] if argv is None else argv)
    command = " ".join([prog or "python benchmarks/compare.py", *map(shlex.quote, shown)])
    result = run_comparison(
        quick=args.quick, kinds=args.kinds, dtypes=args.dtypes, methods=args.methods,
        k=args.k, repeats=args.repeats, solve_repeats=args.solve_repeats,
        n_threads=args.threads, tol=args.tol, use_torch=not args.no_torch,
        products=not args.no_products, solves=not args.no_solves, command=command,
        log=lambda s: print(s, file=sys.stderr, flush=True))
    text = result.to_markdown()
    print(text)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    return 0
