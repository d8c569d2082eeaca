"""Every step rule against an independent plain-numpy implementation of its update, the
loss gradients against finite differences, and the compiled k x k kernels against numpy.

The references below form the A_i densely and follow the papers' formulas directly
(ALGORITHMS.md §1-§4); they share no code with lowrank_core's solvers.
"""

import numpy as np
import pytest
import scipy.linalg

import lowrank_core as lc
from lowrank_core import _steps
from lowrank_core.methods import SolverState

N_STEPS = 4
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


# ------------------------------------------------------------------ numpy references
def ref_residual(A, y, F, G):
    """z = A(F G^T) - y and S = A^T(z), from the dense (m, n1, n2) A_i."""
    z = np.einsum("ijk,jk->i", A, F @ G.T) - y
    return z, np.einsum("i,ijk->jk", z, A)


def ref_inv(P, lam=0.0):
    return np.linalg.inv(P + lam * np.eye(len(P)))


def ref_inv_sqrt(P):
    w, Q = np.linalg.eigh(P)
    return (Q / np.sqrt(w)) @ Q.T


def ref_step(method, A, y, F, G, eta, symmetric, opts):
    """One iteration of ``method`` in plain numpy; returns the new (F, G)."""
    z, S = ref_residual(A, y, F, G)
    if symmetric:
        X = F
        grad = 0.5 * (S + S.T) @ X                        # grad of 1/4 ||A(XX^T) - y||^2
        if method == "gd":
            X = X - eta * grad
        else:
            if method == "scaledgd":
                lam = 0.0
            elif method == "scaledgd-lambda":
                lam = opts["damping"]
            elif opts.get("damping", "residual") == "residual":
                lam = np.linalg.norm(z)                    # sqrt(f) with f = ||A(XX^T)-y||^2
            else:                                          # JMLR: ||grad (X^T X)^{-1/2}||_F
                lam = np.linalg.norm(grad @ ref_inv_sqrt(X.T @ X))
            X = X - eta * grad @ ref_inv(X.T @ X, lam)
        return X, X
    gF, gG = S @ G, S.T @ F                                # grads of 1/2 ||A(FG^T) - y||^2
    if method == "gd":
        return F - eta * gF, G - eta * gG
    if method == "agn":
        # Jia et al. (33)-(34): least squares as in the authors' code, Gauss-Seidel order.
        F1 = F - eta * np.linalg.lstsq(G, S.T, rcond=None)[0].T
        _, S1 = ref_residual(A, y, F1, G)
        G1 = G - eta * np.linalg.lstsq(F1, S1, rcond=None)[0].T
        return F1, G1
    if method == "scaledgd":
        lam = 0.0
    elif method == "scaledgd-lambda":
        lam = opts["damping"]
    elif opts.get("damping", "residual") == "residual":
        lam = np.linalg.norm(z)
    else:
        lam = np.hypot(np.linalg.norm(gF @ ref_inv_sqrt(G.T @ G)),
                       np.linalg.norm(gG @ ref_inv_sqrt(F.T @ F)))
    return F - eta * gF @ ref_inv(G.T @ G, lam), G - eta * gG @ ref_inv(F.T @ F, lam)


def ref_rebalance(F, G):
    """Xiong et al. §5 reconstruction: F beta (F^T F)^{-1/2}, G (F^T F)^{1/2} / beta."""
    root = scipy.linalg.sqrtm(F.T @ F).real
    beta = np.sqrt(np.linalg.norm(F @ G.T, 2))
    return beta * F @ np.linalg.inv(root), G @ root / beta


@pytest.fixture(scope="module")
def sensing():
    """A general dense operator (asymmetric runs) and a symmetric one (XX^T runs)."""
    rng = np.random.default_rng(0)
    n, r, k, m = 12, 2, 3, 300
    L = np.linalg.qr(rng.standard_normal((n, r)))[0]
    R = np.linalg.qr(rng.standard_normal((n, r)))[0]
    gen = lc.DenseOperator.gaussian(m, n, n, seed=1)
    sym = lc.SymmetricDenseOperator.gaussian(m, n, seed=2)
    return dict(
        n=n, k=k, gen=gen, sym=sym,
        y_gen=gen.forward_factored(L, R), y_sym=sym.forward_factored(L, L),
        F0=0.3 * rng.standard_normal((n, k)), G0=0.3 * rng.standard_normal((n, k)),
    )


CASES = [
    ("gd", True, {}), ("gd", False, {}),
    ("scaledgd", True, {}), ("scaledgd", False, {}),
    ("scaledgd-lambda", True, {"damping": 0.05}), ("scaledgd-lambda", False, {"damping": 0.05}),
    ("precgd", True, {}), ("precgd", False, {}),
    ("precgd", True, {"damping": "gradient"}), ("precgd", False, {"damping": "gradient"}),
    ("agn", False, {}),
]


@pytest.mark.parametrize("method,symmetric,opts", CASES)
def test_step_rule_matches_numpy(sensing, method, symmetric, opts):
    op = sensing["sym"] if symmetric else sensing["gen"]
    y = sensing["y_sym"] if symmetric else sensing["y_gen"]
    A = op.matrices
    eta = 0.3 if method == "gd" else 0.5
    F, G = sensing["F0"], (sensing["F0"] if symmetric else sensing["G0"])
    init = F if symmetric else (F, G)
    res = lc.solve(op, y, sensing["k"], method=method, symmetric=symmetric, init=init,
                   step=eta, max_iter=N_STEPS, tol=1e-30, **opts)
    assert res.status == "max_iter" and res.n_iter == N_STEPS
    losses = []
    for _ in range(N_STEPS + 1):
        z, _ = ref_residual(A, y, F, G)
        losses.append((0.25 if symmetric else 0.5) * z @ z)
        if len(losses) <= N_STEPS:
            F, G = ref_step(method, A, y, F, G, eta, symmetric, opts)
    got_F, got_G = res.factors
    assert np.linalg.norm(got_F - F) <= 1e-12 * np.linalg.norm(F)
    assert np.linalg.norm(got_G - G) <= 1e-12 * np.linalg.norm(G)
    np.testing.assert_allclose(res.history.loss, losses, rtol=1e-11)
    np.testing.assert_allclose(res.history.residual,
                               np.sqrt(np.array(losses) / (0.25 if symmetric else 0.5))
                               / np.linalg.norm(y), rtol=1e-11)
    assert res.n_evaluations == (2 * N_STEPS + 1 if method == "agn" else N_STEPS + 1)


def test_onestep_matches_numpy(sensing):
    """GD until the relative residual first drops below trigger, then the rebalance."""
    op, y, A = sensing["gen"], sensing["y_gen"], sensing["gen"].matrices
    F, G = sensing["F0"], sensing["G0"]
    eta, trigger, n_steps = 0.3, 0.5, 25
    res = lc.solve(op, y, sensing["k"], method="onestep", init=(F, G), step=eta,
                   max_iter=n_steps, tol=1e-30, trigger=trigger)
    fired = None
    for t in range(n_steps):
        z, _ = ref_residual(A, y, F, G)
        if fired is None and np.linalg.norm(z) / np.linalg.norm(y) <= trigger:
            F, G = ref_rebalance(F, G)
            fired = t
        F, G = ref_step("gd", A, y, F, G, eta, False, {})
    assert fired is not None and res.rebalance_iteration == fired
    got_F, got_G = res.factors
    assert np.linalg.norm(got_F - F) <= 1e-10 * np.linalg.norm(F)
    assert np.linalg.norm(got_G - G) <= 1e-10 * np.linalg.norm(G)


def test_rebalance_keeps_product_and_whitens(sensing):
    from lowrank_core.methods import METHODS
    op, y = sensing["gen"], sensing["y_gen"]
    rng = np.random.default_rng(3)
    F = rng.standard_normal((sensing["n"], 3)) * [1.0, 0.1, 0.01]
    G = rng.standard_normal((sensing["n"], 3))
    state = SolverState(op, y, F.copy(), G.copy(), symmetric=False)
    state.evaluate()
    rule = METHODS["onestep"](state, 0.1, METHODS["onestep"].check_options({}), None)
    SG, StF = state.SG.copy(), state.StF.copy()
    rule.rebalance()
    Fn, Gn = state.F, state.G
    beta2 = np.linalg.norm(F @ G.T, 2)
    np.testing.assert_allclose(Fn @ Gn.T, F @ G.T, atol=1e-12 * np.linalg.norm(F @ G.T))
    np.testing.assert_allclose(Fn.T @ Fn, beta2 * np.eye(3), atol=1e-10 * beta2)
    # the transformed gradients are those of the new factors: S G_new and S^T F_new
    S = ref_residual(op.matrices, y, F, G)[1]
    np.testing.assert_allclose(state.SG, S @ Gn, atol=1e-10 * np.linalg.norm(SG))
    np.testing.assert_allclose(state.StF, S.T @ Fn, atol=1e-10 * np.linalg.norm(StF))


# --------------------------------------------------------------- gradients vs FD
def _objective(op, y, F, G, symmetric):
    z = op.forward_factored(F, G) - y
    return (0.25 if symmetric else 0.5) * z @ z


@pytest.mark.parametrize("symmetric,kind", [(True, "sym"), (True, "gen"), (False, "gen"),
                                            (False, "sym")])
def test_gradient_matches_finite_differences(sensing, symmetric, kind):
    op = sensing[kind]
    y = sensing["y_" + kind]
    rng = np.random.default_rng(7)
    F = rng.standard_normal((sensing["n"], 3))
    G = F if symmetric else rng.standard_normal((sensing["n"], 3))
    state = SolverState(op, y, F.copy(), G.copy(), symmetric)
    state.evaluate()
    np.testing.assert_allclose(state.loss, _objective(op, y, F, G, symmetric), rtol=1e-13)
    h = 1e-6
    for which, grad in (("F", state.grad_F), ("G", state.grad_G)):
        if symmetric and which == "G":
            continue
        for _ in range(6):
            i, j = rng.integers(sensing["n"]), rng.integers(3)
            Fp, Fm, Gp, Gm = F.copy(), F.copy(), G.copy(), G.copy()
            if which == "F":
                Fp[i, j] += h
                Fm[i, j] -= h
                if symmetric:
                    Gp, Gm = Fp, Fm
            else:
                Gp[i, j] += h
                Gm[i, j] -= h
            fd = (_objective(op, y, Fp, Gp, symmetric)
                  - _objective(op, y, Fm, Gm, symmetric)) / (2 * h)
            assert abs(fd - grad[i, j]) <= 1e-7 * max(1.0, abs(fd)), (which, i, j)


# -------------------------------------------------------------- compiled kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("singular", [False, True])
def test_preconditioned_step_kernel(dtype, singular):
    rng = np.random.default_rng(11)
    n, k = 20, 5
    X = rng.standard_normal((n, k)).astype(dtype)
    D = rng.standard_normal((n, k)).astype(dtype)
    B = rng.standard_normal((n, k))
    if singular:
        B[:, -2:] = 0.0  # rank-3 Gram matrix: Cholesky fails, pseudo-inverse path
    P = (B.T @ B).astype(dtype)
    C = np.empty((k, k), dtype)
    w = np.empty(k, dtype)
    work = np.empty(_steps.eigen_workspace_size(k, dtype), dtype)
    T = np.empty((n, k), dtype)
    out = np.empty((n, k), dtype)
    lam, eta = 0.0, 0.7
    status = _steps.preconditioned_step(X, D, P, lam, eta, out, C, w, work, T,
                                        10 * k * np.finfo(dtype).eps, False)
    P64 = P.astype(np.float64)
    if singular:
        assert status == _steps.PSEUDO_INVERSE
        expect = X - eta * D.astype(np.float64) @ np.linalg.pinv(P64, rcond=1e-4,
                                                                 hermitian=True)
    else:
        assert status == _steps.CHOLESKY
        expect = X - eta * D.astype(np.float64) @ np.linalg.inv(P64)
    assert out.dtype == dtype
    tol = RTOL[dtype] * (1e3 if dtype == np.float32 else 1e2)
    assert np.linalg.norm(out - expect) <= tol * np.linalg.norm(expect)
    # damped: Cholesky always; and the local norm ||D P^{-1/2}||_F
    status = _steps.preconditioned_step(X, D, P, 0.3, eta, out, C, w, work, T, 1e-6, False)
    assert status == _steps.CHOLESKY
    expect = X - eta * D.astype(np.float64) @ np.linalg.inv(P64 + 0.3 * np.eye(k))
    assert np.linalg.norm(out - expect) <= tol * np.linalg.norm(expect)
    if not singular:
        value, status = _steps.preconditioned_norm(D, P, C, w, work, T, out, 1e-6)
        ref = np.linalg.norm(D.astype(np.float64) @ ref_inv_sqrt(P64))
        assert abs(value - ref) <= tol * ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_and_gd_kernels(dtype):
    rng = np.random.default_rng(12)
    A = rng.standard_normal((30, 4)).astype(dtype)
    D = rng.standard_normal((30, 4)).astype(dtype)
    out = np.empty((4, 4), dtype)
    _steps.gram(A, out)
    np.testing.assert_allclose(out, A.T.astype(np.float64) @ A, rtol=RTOL[dtype] * 10,
                               atol=RTOL[dtype] * 10 * np.abs(A).max() ** 2)
    np.testing.assert_array_equal(out, out.T)
    X = np.empty_like(A)
    _steps.gd_step(A, D, 0.25, X)
    np.testing.assert_allclose(X, A - dtype(0.25) * D, rtol=RTOL[dtype])
    avg = np.empty_like(A)
    _steps.average(A, D, avg)
    np.testing.assert_allclose(avg, 0.5 * (A + D), rtol=RTOL[dtype])
    assert abs(_steps.norm(A) - np.linalg.norm(A.astype(np.float64))) <= \
        RTOL[dtype] * np.linalg.norm(A)
    assert abs(_steps.difference_norm(A, D) - np.linalg.norm(A.astype(np.float64) - D)) \
        <= RTOL[dtype] * np.linalg.norm(A - D)
