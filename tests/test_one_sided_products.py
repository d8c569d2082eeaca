"""One-sided products of EntryOperator (the residual with S G only; one adjoint product)
against plain numpy and against the two-sided kernels, and softImpute-ALS's use of them:
the one-sided evaluation gives the iterates of the two-sided one (to rounding)."""

import numpy as np
import pytest

import lowrank_core as lc


def _case(seed=0, n1=37, n2=29, p=0.4, shuffle=False, dtype=np.float64, scale=1.0,
          layout="auto", n_threads=1):
    rng = np.random.default_rng(seed)
    mask = rng.random((n1, n2)) < p
    rows, cols = np.nonzero(mask)
    if shuffle:   # measurement order not row-grouped: the kernels go through pos
        perm = rng.permutation(rows.size)
        rows, cols = rows[perm], cols[perm]
    op = lc.EntryOperator(rows, cols, (n1, n2), dtype=dtype, scale=scale, layout=layout,
                          n_threads=n_threads)
    y = rng.standard_normal(rows.size).astype(dtype)
    return op, y, rows, cols, rng


def _numpy_products(F, G, y, rows, cols, scale):
    """z = scale (F G^T)[r, c] - y, S = scale sum_e z_e e_r e_c^T, S G, S^T F (float64)."""
    F, G, y = (np.asarray(a, np.float64) for a in (F, G, y))
    z = scale * np.einsum("ij,ij->i", F[rows], G[cols]) - y
    S = np.zeros((F.shape[0], G.shape[0]))
    np.add.at(S, (rows, cols), scale * z)
    return z, 0.5 * float(z @ z), S @ G, S.T @ F, S


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4,
                                                                          atol=2e-4)


# k = 3: a literal-width specialization; 20: the run-time width (<= KMAX = 32);
def _assert_matches_numpy(z, SG, loss, z_ref, SG_ref, loss_ref, dtype):
    """z, S G and the loss of the one-sided kernel against the numpy products."""
    tol = _tol(dtype)
    np.testing.assert_allclose(z, z_ref, **tol)
    np.testing.assert_allclose(SG, SG_ref, rtol=tol["rtol"],
                               atol=tol["atol"] * np.abs(SG_ref).max())
    assert loss == pytest.approx(loss_ref, rel=1e-12 if dtype == np.float64 else 1e-5)


# 40: the pointer variant (> KMAX)
@pytest.mark.parametrize("k", [3, 20, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shuffle,scale", [(False, 1.0), (True, 1.7)])
def test_residual_gradient_left_matches_numpy_and_the_two_sided_kernel(k, dtype, shuffle,
                                                                       scale):
    op, y, rows, cols, rng = _case(shuffle=shuffle, dtype=dtype, scale=scale)
    F = rng.standard_normal((op.shape[0], k)).astype(dtype)
    G = rng.standard_normal((op.shape[1], k)).astype(dtype)
    z_ref, loss_ref, SG_ref, _, _ = _numpy_products(F, G, y, rows, cols, scale)
    z, SG = np.empty(op.m, dtype), np.full((op.shape[0], k), np.nan, dtype)
    loss = op._residual_gradient_left_into(F, G, y, z, SG)
    _assert_matches_numpy(z, SG, loss, z_ref, SG_ref, loss_ref, dtype)
    # the two-sided kernel's z, loss and S G (separately compiled loops: to rounding)
    z2, SG2, StF2 = np.empty_like(z), np.empty_like(SG), np.empty((op.shape[1], k), dtype)
    loss2 = op._residual_gradient_into(F, G, y, z2, SG2, StF2)
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(z, z2, rtol=0, atol=50 * eps * np.abs(z2).max())
    np.testing.assert_allclose(SG, SG2, rtol=0, atol=50 * k * eps * np.abs(SG2).max())
    assert loss == pytest.approx(loss2, rel=50 * eps)


def test_residual_gradient_left_is_bitwise_independent_of_the_thread_count():
    """Each thread owns whole rows (z, S G, per-row losses summed in row order)."""
    outs = []
    for nt in (1, 2):
        op, y, _, _, rng = _case(seed=2, n1=90, n2=50, shuffle=True, n_threads=nt)
        F, G = rng.standard_normal((90, 6)), rng.standard_normal((50, 6))
        z, SG = np.empty(op.m), np.empty((90, 6))
        outs.append((op._residual_gradient_left_into(F, G, y, z, SG), z, SG))
    for loss, z, SG in outs[1:]:
        assert loss == outs[0][0]
        np.testing.assert_array_equal(z, outs[0][1])
        np.testing.assert_array_equal(SG, outs[0][2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_residual_gradient_left_on_the_blocked_layout(dtype):
    """layout="blocked" has no one-sided kernel: the two-sided one runs (S^T F into
    scratch); the result is still z, the loss and S G."""
    op, y, rows, cols, rng = _case(seed=3, n1=70, n2=300, shuffle=True, dtype=dtype,
                                   layout="blocked")
    assert op.block_shape(4) is not None
    F = rng.standard_normal((70, 4)).astype(dtype)
    G = rng.standard_normal((300, 4)).astype(dtype)
    z_ref, loss_ref, SG_ref, _, _ = _numpy_products(F, G, y, rows, cols, 1.0)
    z, SG = np.empty(op.m, dtype), np.empty((70, 4), dtype)
    loss = op._residual_gradient_left_into(F, G, y, z, SG)
    _assert_matches_numpy(z, SG, loss, z_ref, SG_ref, loss_ref, dtype)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shuffle", [False, True])
def test_single_adjoint_product_matches_numpy_and_the_pair(n_threads, shuffle):
    op, w, rows, cols, rng = _case(seed=4, shuffle=shuffle, scale=0.8, n_threads=n_threads)
    k = 5
    F, G = rng.standard_normal((op.shape[0], k)), rng.standard_normal((op.shape[1], k))
    S = np.zeros(op.shape)
    np.add.at(S, (rows, cols), 0.8 * w)
    SG, StF = np.empty((op.shape[0], k)), np.empty((op.shape[1], k))
    op._adjoint_product_into(w, G, SG, False)
    op._adjoint_product_into(w, F, StF, True)
    np.testing.assert_allclose(SG, S @ G, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(StF, S.T @ F, rtol=1e-12, atol=1e-12)
    # the same kernel calls as the pair: bitwise
    SG2, StF2 = np.empty_like(SG), np.empty_like(StF)
    op._adjoint_products_into(w, F, G, SG2, StF2)
    np.testing.assert_array_equal(SG, SG2)
    np.testing.assert_array_equal(StF, StF2)


def _completion(seed=0, n1=40, n2=30, r=3, p=0.5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    mask = rng.random((n1, n2)) < p
    rows, cols = np.nonzero(mask)
    op = lc.EntryOperator(rows, cols, (n1, n2), dtype=dtype)
    y = (M[rows, cols] + 0.05 * rng.standard_normal(rows.size)).astype(dtype)
    return op, y, rows, cols


@pytest.mark.parametrize("lam", [0.0, 0.4])
@pytest.mark.parametrize("step", ["auto", "fixed"])
def test_softimpute_als_one_sided_evaluation_gives_the_two_sided_iterates(lam, step):
    """Recording grad_norm makes the driver evaluate both sides (S^T F too); without it
    the evaluation is one-sided. softImpute-ALS never reads the evaluation's S^T F, so
    the iterates agree to rounding, and the recorded gradient norm is the numpy one."""
    op, y, rows, cols = _completion()
    kw = dict(method="softimpute_als", init="small", seed=1, max_iter=25, tol=1e-30,
              reg=lam, step=step)
    one = lc.solve(op, y, 4, record=["loss"], **kw)
    two = lc.solve(op, y, 4, record=["loss", "grad_norm"], **kw)
    assert one.n_iter == two.n_iter == 25
    assert one.n_evaluations == two.n_evaluations
    scale = np.abs(two.F).max() * np.abs(two.G).max()
    np.testing.assert_allclose(one.F @ one.G.T, two.F @ two.G.T, rtol=0,
                               atol=1e-10 * scale)
    np.testing.assert_allclose(one.history["loss"], two.history["loss"], rtol=1e-10)
    # the two-sided run's last grad_norm: numpy's gradient of the ridge objective
    _, _, SG, StF, _ = _numpy_products(two.F, two.G, y, rows, cols, 1.0)
    gF, gG = SG + lam * two.F, StF + lam * two.G
    ref = np.sqrt(np.sum(gF * gF) + np.sum(gG * gG))
    assert two.history["grad_norm"][-1] == pytest.approx(ref, rel=1e-10)


def test_one_sided_state_refuses_grad_norm():
    """After a one-sided evaluation S^T F is stale: grad_norm() raises, not a wrong value."""
    from lowrank_core.methods._base import SolverState
    op, y, _, _ = _completion(seed=2)
    rng = np.random.default_rng(0)
    F0, G0 = rng.standard_normal((40, 3)), rng.standard_normal((30, 3))
    state = SolverState(op, y, F0, G0, symmetric=False, reg=0.1)
    state.one_sided = True
    state.evaluate()
    assert not state.grad_G_current
    with pytest.raises(RuntimeError, match="one-sided"):
        state.grad_norm()
    state.one_sided = False
    state.evaluate()
    assert state.grad_G_current
    assert state.grad_norm() > 0
