"""GNMR (Zilber & Nadler 2022) against a plain numpy implementation of the paper's update.

The reference forms the A_i densely (one forward of every basis matrix E_jl), builds the
Jacobian J = [vec(A_i V), vec(A_i^T U)] of (U~, V~) -> A(U V~^T + U~ V^T) and takes the
minimal-norm least-squares solution with numpy.linalg.lstsq (SVD), then
U <- (1 - alpha)/2 U + U~ (ALGORITHMS.md 8.2). It shares no code with lowrank_core's LSQR
path (warm-started, with the closed-form null-space projection).
"""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods.gnmr import VARIANTS, imbalance_rotation

#: the authors' LSQR tolerances: inner solves to machine precision, as the exact references
PAPER = {"lsqr_tol": 1e-15, "tighten_below": 1e-5}

#: Oversampling of the small recovery tests. At 60 x 70, r = 3 the mean number of entries
#: per column is about 2 OS r, so at OS 1.5 plain uniform sampling leaves some row or column
#: with fewer than r observations on half the seeds (that line is then not determined by
#: the data: no method recovers it). On the papers' protocol (make_problem(...,
#: min_per_line=r): every line has >= r entries), measured over seeds 0-9 at cond 10,
#: max_iter 60: the default schedule recovers 8/10 at OS 1.5 (seed 4 reaches error 5e-12
#: but not the residual tol in 60 iterations; seed 7 fails), the authors' schedule 3/10 at
#: OS 1.5 (not investigated; at OS 2 on plain sampling both schedules recover 9/10, the
#: failure, seed 4, being a seed with a short line).
OS_SMALL = 2.0
OS_LOW = 1.5


def dense_matrices(op):
    """The (m, n1, n2) stack of the A_i: column (j, l) is A(E_jl)."""
    n1, n2 = op.shape
    A = np.empty((op.m, n1, n2))
    E = np.zeros((n1, n2), op.dtype)
    for j in range(n1):
        for l in range(n2):
            E[j, l] = 1
            A[:, j, l] = op.forward(E)
            E[j, l] = 0
    return A


def reference_gnmr(A, y, U, V, alpha, n_steps):
    """n_steps of the paper's GNMR with exact minimal-norm solves (asymmetric)."""
    m, n1, n2 = A.shape
    k = U.shape[1]
    for _ in range(n_steps):
        J = np.hstack([np.einsum("ijl,lk->ijk", A, V).reshape(m, n1 * k),
                       np.einsum("ijl,jk->ilk", A, U).reshape(m, n2 * k)])
        b = y + alpha * np.einsum("ijl,jl->i", A, U @ V.T)
        x = np.linalg.lstsq(J, b, rcond=None)[0]
        keep = 0.5 * (1 - alpha)
        U, V = keep * U + x[: n1 * k].reshape(n1, k), keep * V + x[n1 * k:].reshape(n2, k)
    return U, V


def reference_gnmr_symmetric(A, y, X, alpha, n_steps):
    """Symmetric form: J(X~) = A(X X~^T + X~ X^T), X <- (1 - alpha)/2 X + X~."""
    m, n, _ = A.shape
    k = X.shape[1]
    As = A + A.transpose(0, 2, 1)
    for _ in range(n_steps):
        J = np.einsum("ijl,lk->ijk", As, X).reshape(m, n * k)
        b = y + alpha * np.einsum("ijl,jl->i", A, X @ X.T)
        x = np.linalg.lstsq(J, b, rcond=None)[0]
        X = 0.5 * (1 - alpha) * X + x.reshape(n, k)
    return X


def _noisy(problem, level, seed):
    rng = np.random.default_rng(seed)
    y = problem.y.astype(np.float64)
    return (y + level * np.linalg.norm(y) / np.sqrt(y.size)
            * rng.standard_normal(y.size)).astype(problem.y.dtype)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize("kind", ["entries", "gaussian"])
def test_iterates_match_dense_minimal_norm_reference(variant, warm_start, kind):
    """Same iterates as exact minimal-norm GN steps, on noisy data (inconsistent systems)."""
    n1, n2, r = 9, 8, 2
    m = 60 if kind == "entries" else 70
    prob = lc.make_problem(n1, n2, rank=r, m=m, operator=kind, seed=3)
    y = _noisy(prob, 0.05, 4)
    A = dense_matrices(prob.operator)
    rng = np.random.default_rng(5)
    U0 = prob.truth_factors[0] + 0.3 * rng.standard_normal((n1, r))
    V0 = prob.truth_factors[1] + 0.3 * rng.standard_normal((n2, r))
    steps = 3
    res = lc.solve(prob.operator, y, r, method="gnmr", init=(U0, V0), max_iter=steps,
                   tol=1e-14, record=False, variant=variant, warm_start=warm_start,
                   estimate="factors", **PAPER)
    assert res.n_iter == steps and len(res.lsqr_iterations) == steps
    U, V = reference_gnmr(A, y, U0, V0, VARIANTS[variant], steps)
    scale = np.linalg.norm(U) + np.linalg.norm(V)
    assert np.linalg.norm(res.F - U) / scale < 1e-8
    assert np.linalg.norm(res.G - V) / scale < 1e-8


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("warm_start", [True, False])
def test_symmetric_iterates_match_reference(variant, warm_start):
    n, r = 8, 2
    prob = lc.make_problem(n, rank=r, m=60, psd=True, seed=7)
    y = _noisy(prob, 0.05, 8)
    A = dense_matrices(prob.operator)
    rng = np.random.default_rng(9)
    X0 = prob.truth_factors[0] + 0.3 * rng.standard_normal((n, r))
    res = lc.solve(prob.operator, y, r, method="gnmr", symmetric=True, init=X0, max_iter=3,
                   tol=1e-14, record=False, variant=variant, estimate="factors",
                   warm_start=warm_start, **PAPER)
    X = reference_gnmr_symmetric(A, y, X0, VARIANTS[variant], 3)
    assert np.linalg.norm(res.X - X) / np.linalg.norm(X) < 1e-8


@pytest.mark.parametrize("symmetric", [False, True])
def test_linearized_estimate_is_the_truncated_linearization(symmetric):
    """estimate="linearized": F G^T is the best rank-k approximation of
    X_2r = U V'^T + U' V^T - U V^T of the paper's factor sequence (U, V) -> (U', V')."""
    n1, n2, r = 9, 8, 2
    if symmetric:
        prob = lc.make_problem(n1, rank=r, m=60, psd=True, seed=7)
        n2 = n1
    else:
        prob = lc.make_problem(n1, n2, rank=r, m=60, operator="entries", seed=3)
    y = _noisy(prob, 0.05, 4)
    A = dense_matrices(prob.operator)
    rng = np.random.default_rng(5)
    U0 = prob.truth_factors[0] + 0.3 * rng.standard_normal((n1, r))
    V0 = U0 if symmetric else prob.truth_factors[1] + 0.3 * rng.standard_normal((n2, r))
    steps = 3
    init = U0 if symmetric else (U0, V0)
    res = lc.solve(prob.operator, y, r, method="gnmr", symmetric=symmetric, init=init,
                   max_iter=steps, tol=1e-14, record=False, **PAPER)
    if symmetric:
        U = reference_gnmr_symmetric(A, y, U0, 1.0, steps - 1)
        U1 = reference_gnmr_symmetric(A, y, U, 1.0, 1)
        V, V1 = U, U1
    else:
        U, V = reference_gnmr(A, y, U0, V0, 1.0, steps - 1)
        U1, V1 = reference_gnmr(A, y, U, V, 1.0, 1)
    X2 = U @ V1.T + U1 @ V.T - U @ V.T
    W, sv, Zt = np.linalg.svd(X2)
    best = (W[:, :r] * sv[:r]) @ Zt[:r]
    F, G = res.factors
    assert np.linalg.norm(F @ G.T - best) / np.linalg.norm(best) < 1e-8


def test_imbalance_rotation_is_the_null_space_projection(rng):
    """(U R, -V R^T) minimizes ||(U, V) - (U W, -V W^T)|| over W: compare with lstsq."""
    n1, n2, k = 7, 6, 3
    U, V = rng.standard_normal((n1, k)), 2 * rng.standard_normal((n2, k))
    R = imbalance_rotation(U.T @ U, V.T @ V, 1e-14)
    # the map vec(W) -> (vec(U W), vec(-V W^T)) as a matrix, then least squares
    basis = np.eye(k * k).reshape(k * k, k, k)
    M = np.stack([np.concatenate([(U @ W).ravel(), (-V @ W.T).ravel()]) for W in basis], 1)
    W = np.linalg.lstsq(M, np.concatenate([U.ravel(), V.ravel()]), rcond=None)[0]
    np.testing.assert_allclose(R, W.reshape(k, k), rtol=1e-10, atol=1e-12)
    # balanced factors have no component along the null space
    Q = np.linalg.qr(rng.standard_normal((n1, k)))[0]
    P = np.linalg.qr(rng.standard_normal((n2, k)))[0]
    S = np.diag([3.0, 2.0, 1.0])
    assert np.abs(imbalance_rotation(S @ S, S @ S, 1e-14)).max() == 0
    assert np.abs(imbalance_rotation((Q @ S).T @ (Q @ S), (P @ S).T @ (P @ S),
                                     1e-14)).max() < 1e-13


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_completion_at_os_1_5_on_the_papers_protocol(seed):
    """60 x 70, rank 3, cond 10, OS 1.5, Omega with >= r entries per line, defaults."""
    n1, n2, r = 60, 70, 3
    m = round(OS_LOW * r * (n1 + n2 - r))
    prob = lc.make_problem(n1, n2, rank=r, m=m, operator="entries", cond=10, seed=seed,
                           min_per_line=r)
    op = prob.operator
    assert np.bincount(op.rows, minlength=n1).min() >= r  # every line is determined
    assert np.bincount(op.cols, minlength=n2).min() >= r
    res = lc.solve(op, prob.y, r, method="gnmr", init="spectral", truth=prob,
                   max_iter=60, tol=1e-12, record=False)
    assert res.status == "converged"
    assert res.error <= 1e-8
    assert res.underdetermined_lines == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("schedule", ["default", "paper"])
def test_recovers_completion_at_low_oversampling(seed, schedule):
    """60 x 70, rank 3, cond 10, OS 2 (see OS_SMALL), the authors' defaults."""
    n1, n2, r = 60, 70, 3
    m = round(OS_SMALL * r * (n1 + n2 - r))
    prob = lc.make_problem(n1, n2, rank=r, m=m, operator="entries", cond=10, seed=seed)
    op = prob.operator
    assert np.bincount(op.rows, minlength=n1).min() >= r  # every line is determined
    assert np.bincount(op.cols, minlength=n2).min() >= r
    res = lc.solve(op, prob.y, r, method="gnmr", init="spectral", truth=prob,
                   max_iter=60, tol=1e-12, record=False,
                   **(PAPER if schedule == "paper" else {}))
    assert res.status == "converged"
    assert res.error <= 1e-8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_dtypes_and_inner_counts(dtype):
    prob = lc.make_problem(30, 25, rank=2, m=400, operator="entries", dtype=dtype, seed=11)
    res = lc.solve(prob.operator, prob.y, 2, method="gnmr", init="spectral", truth=prob,
                   max_iter=30, record=["residual"])
    assert res.F.dtype == dtype and res.G.dtype == dtype
    assert res.status == "converged"
    assert res.error <= (1e-4 if dtype == np.float32 else 1e-9)
    its = res.lsqr_iterations
    assert its.shape == (res.n_iter,) and (its >= 1).all()
    assert res.lsqr_stop.shape == (res.n_iter,)


def test_overparameterized_rank():
    """k > r: the minimal-norm solves handle the rank deficiency (paper's LSQR form)."""
    prob = lc.make_problem(25, 20, rank=2, m=300, operator="gaussian", seed=12)
    res = lc.solve(prob.operator, prob.y, 3, method="gnmr", init="spectral", truth=prob,
                   max_iter=40, tol=1e-10, record=False)
    assert res.error <= 1e-6, res.error


def test_bad_options_raise_clear_errors():
    prob = lc.make_problem(10, 9, rank=2, m=60, operator="entries", seed=1)
    op, y = prob.operator, prob.y
    with pytest.raises(ValueError, match="variant"):
        lc.solve(op, y, 2, method="gnmr", variant="set")
    with pytest.raises(ValueError, match="lsqr_tol"):
        lc.solve(op, y, 2, method="gnmr", lsqr_tol=2.0)
    with pytest.raises(ValueError, match="tighten_below"):
        lc.solve(op, y, 2, method="gnmr", tighten_below=0)
    with pytest.raises(ValueError, match="lsqr_tol"):
        lc.solve(op, y, 2, method="gnmr", lsqr_tol=1.0)
    with pytest.raises(ValueError, match="max_inner_iter"):
        lc.solve(op, y, 2, method="gnmr", max_inner_iter=0)
    with pytest.raises(ValueError, match="estimate"):
        lc.solve(op, y, 2, method="gnmr", estimate="best")
    with pytest.raises(TypeError, match="warm_start"):
        lc.solve(op, y, 2, method="gnmr", warm_start="yes")
    with pytest.raises(TypeError, match="unexpected option"):
        lc.solve(op, y, 2, method="gnmr", damping=1.0)
