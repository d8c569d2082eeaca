"""Alternating least squares against plain numpy: per-row numpy.linalg.lstsq for completion
(including rows with fewer than k observations and a ridge), and the dense Kronecker least
squares of each half-step for the conjugate-gradient path of the other operators."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import _kernels


def completion_half_step(keys, others, y, other_factor, n, scale, damping):
    """Row j of the new factor: min-norm lstsq of scale * other[others] f ~ y over the
    entries with key j (ridge: stack sqrt(damping) I under the system)."""
    k = other_factor.shape[1]
    out = np.zeros((n, k))
    for j in range(n):
        sel = keys == j
        A = scale * other_factor[others[sel]].astype(np.float64)
        b = y[sel].astype(np.float64)
        if damping:
            A = np.vstack([A, np.sqrt(damping) * np.eye(k)])
            b = np.concatenate([b, np.zeros(k)])
        if A.shape[0]:
            out[j] = np.linalg.lstsq(A, b, rcond=None)[0]
    return out


def _entry_problem(dtype, shuffle, seed=0):
    n1, n2, k = 14, 11, 3
    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(rng.random((n1, n2)) < 0.45)
    # row 0 with 2 < k observations and an empty column: singular systems
    keep = ~((rows == 0) & (cols > 1)) & (cols != n2 - 1)
    rows, cols = rows[keep], cols[keep]
    if shuffle:
        perm = rng.permutation(rows.size)
        rows, cols = rows[perm], cols[perm]
    scale = 1.7
    op = lc.EntryOperator(rows, cols, (n1, n2), dtype=dtype, scale=scale)
    y = (scale * (rng.standard_normal((n1, k)) @ rng.standard_normal((n2, k)).T)[rows, cols]
         + 0.1 * rng.standard_normal(rows.size)).astype(dtype)
    F0 = rng.standard_normal((n1, k)).astype(dtype)
    G0 = rng.standard_normal((n2, k)).astype(dtype)
    return op, y, rows, cols, scale, F0, G0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_row_solves_match_lstsq(dtype, shuffle, damping):
    op, y, rows, cols, scale, F0, G0 = _entry_problem(dtype, shuffle)
    n1, n2 = op.shape
    res = lc.solve(op, y, 3, method="als", init=(F0, G0), max_iter=1, record=False,
                   damping=damping)
    assert res.F.dtype == dtype
    F1 = completion_half_step(rows, cols, y, G0, n1, scale, damping)
    G1 = completion_half_step(cols, rows, y, res.F, n2, scale, damping)
    rtol = 2e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(res.F, F1, rtol=rtol, atol=rtol * np.abs(F1).max())
    np.testing.assert_allclose(res.G, G1, rtol=rtol, atol=rtol * np.abs(G1).max())
    # rows/columns with fewer than k observations (row 0 has 2, the last column none) are
    # the singular systems without the ridge
    short = (np.sum(np.bincount(rows, minlength=n1) < 3)
             + np.sum(np.bincount(cols, minlength=n2) < 3))
    assert short >= 2
    assert res.singular_rows[0] == (short if damping == 0 else 0)
    assert np.all(res.G[n2 - 1] == 0)


def test_row_kernel_bitwise_independent_of_thread_count():
    op, y, *_ , F0, G0 = _entry_problem(np.float64, True, seed=2)
    runs = [lc.solve(op, y, 3, method="als", init=(F0, G0), max_iter=3, record=False,
                     n_threads=nt) for nt in (1, 2)]
    np.testing.assert_array_equal(runs[0].F, runs[1].F)
    np.testing.assert_array_equal(runs[0].G, runs[1].G)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocked", [True, False])
def test_long_rows_span_several_blocks_and_match_lstsq(dtype, blocked):
    """Rows longer than the kernel's gather block (block_entries(k) entries) accumulate
    their Gram matrix over several BLAS calls; both kernel variants against lstsq, with
    a row of fewer than k entries (singular: minimal-norm solution) and an empty row."""
    als = _kernels.load("_als")
    from lowrank_core import _steps
    k, n_other = 8, 3500
    B = als.block_entries(k)
    lengths = [2 * B + 37, B, B + 1, 5, 0, 3 * B]
    assert max(lengths) <= n_other
    rng = np.random.default_rng(11)
    idx = np.concatenate([rng.choice(n_other, size=n, replace=False) for n in lengths])
    keys = np.repeat(np.arange(len(lengths)), lengths)
    ptr = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=ptr[1:])
    G = rng.standard_normal((n_other, k)).astype(dtype)
    y = rng.standard_normal(idx.size).astype(dtype)
    lwork = int(_steps.eigen_workspace_size(k, dtype))
    eps = float(np.finfo(dtype).eps)
    for damping in (0.0, 2.5):
        F = np.full((len(lengths), k), np.nan, dtype)
        work = np.empty((2, als.scratch_size(k, lwork)), dtype)
        bounds = np.array([0, 3, len(lengths)], np.intp)
        n_sing = als.solve_rows(ptr, idx.astype(np.int32), np.zeros(1, np.int32), False, y,
                                G, F, 1.3, damping, 10 * k * eps, work, bounds, lwork,
                                blocked)
        ref = completion_half_step(keys, idx, y, G, len(lengths), 1.3, damping)
        rtol = 5e-4 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(F, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
        # row 3 (5 < k entries) and row 4 (empty) are singular without the ridge
        assert n_sing == (2 if damping == 0 else 0)
        assert np.all(F[4] == 0)


def test_kernel_rejects_bad_shapes():
    als = _kernels.load("_als")
    ptr = np.array([0, 1], np.int32)
    idx = np.zeros(1, np.int32)
    with pytest.raises(ValueError, match="rows"):
        als.solve_rows(ptr, idx, idx, False, np.ones(1), np.ones((1, 2)), np.ones((3, 2)),
                       1.0, 0.0, 1e-12, np.ones((1, 64)), np.array([0, 1], np.intp), 8)


def kron_half_step(A, y, fixed, left, damping):
    """Dense least squares of one ALS half-step; A is the (m, n1, n2) stack of the A_i."""
    m, n1, n2 = A.shape
    k = fixed.shape[1]
    if left:   # A(D G^T)_i = sum_jl (A_i G)_jl D_jl
        design = np.einsum("ijl,lk->ijk", A, fixed).reshape(m, n1 * k)
        n = n1
    else:      # A(F D^T)_i = sum_lj (A_i^T F)_lj D_lj
        design = np.einsum("ijl,jk->ilk", A, fixed).reshape(m, n2 * k)
        n = n2
    if damping:
        design = np.vstack([design, np.sqrt(damping) * np.eye(n * k)])
        y = np.concatenate([y, np.zeros(n * k)])
    return np.linalg.lstsq(design, y, rcond=None)[0].reshape(n, k)


@pytest.mark.parametrize("kind", ["gaussian", "sparse", "rank-one"])
@pytest.mark.parametrize("damping", [0.0, 0.05])
def test_cg_half_steps_match_dense_least_squares(kind, damping):
    n1, n2, k = 8, 7, 2
    prob = lc.make_problem(n1, n2, rank=k, m=90, operator=kind, seed=4)
    op, y = prob.operator, prob.y
    E = np.zeros((n1, n2))
    A = np.empty((op.m, n1, n2))
    for j in range(n1):
        for l in range(n2):
            E[j, l] = 1
            A[:, j, l] = op.forward(E)
            E[j, l] = 0
    rng = np.random.default_rng(6)
    F0, G0 = rng.standard_normal((n1, k)), rng.standard_normal((n2, k))
    res = lc.solve(op, y, k, method="als", init=(F0, G0), max_iter=2, record=False,
                   damping=damping, cg_tol=1e-13, cg_max_iter=500)
    F, G = F0, G0
    for _ in range(2):
        F = kron_half_step(A, y, G, True, damping)
        G = kron_half_step(A, y, F, False, damping)
    np.testing.assert_allclose(res.F, F, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(res.G, G, rtol=1e-7, atol=1e-8)
    assert res.cg_iterations.shape == (2,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recovers_completion(dtype):
    prob = lc.make_problem(60, 50, rank=3, m=1800, operator="entries", cond=5, dtype=dtype,
                           seed=8)
    res = lc.solve(prob.operator, prob.y, 3, method="als", init="spectral", truth=prob,
                   max_iter=500, record=False)
    assert res.status == "converged"
    assert res.F.dtype == dtype
    assert res.error <= (1e-4 if dtype == np.float32 else 1e-9)


def test_bad_options_raise_clear_errors():
    prob = lc.make_problem(10, 9, rank=2, m=60, operator="entries", seed=1)
    op, y = prob.operator, prob.y
    with pytest.raises(ValueError, match="damping"):
        lc.solve(op, y, 2, method="als", damping=-1.0)
    with pytest.raises(ValueError, match="rcond"):
        lc.solve(op, y, 2, method="als", rcond=5.0)
    with pytest.raises(ValueError, match="cg_max_iter"):
        lc.solve(op, y, 2, method="als", cg_max_iter=0)
    with pytest.raises(ValueError, match="symmetric=False"):
        sq = lc.make_problem(8, rank=2, m=50, psd=True, seed=2)
        lc.solve(sq.operator, sq.y, 2, method="als", symmetric=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auto_ridge_row_solves_match_lstsq(dtype):
    """damping='auto': lam = c rho^2 s^2 p ||fixed||^2 / k, then per-row lstsq as above."""
    op, y, rows, cols, scale, F0, G0 = _entry_problem(dtype, True, seed=3)
    n1, n2 = op.shape
    k = 3
    c = 0.7
    res = lc.solve(op, y, k, method="als", init=(F0, G0), max_iter=1, record=False,
                   damping_scale=c)
    y64 = y.astype(np.float64)
    fit = scale * np.einsum("ij,ij->i", F0[rows].astype(np.float64),
                            G0[cols].astype(np.float64))
    rho = np.linalg.norm(fit - y64) / np.linalg.norm(y64)
    gram_scale = scale ** 2 * rows.size / (n1 * n2)
    lam_F = c * rho ** 2 * gram_scale * np.sum(G0.astype(np.float64) ** 2) / k
    F1 = completion_half_step(rows, cols, y, G0, n1, scale, lam_F)
    lam_G = c * rho ** 2 * gram_scale * np.sum(res.F.astype(np.float64) ** 2) / k
    G1 = completion_half_step(cols, rows, y, res.F, n2, scale, lam_G)
    rtol = 2e-4 if dtype == np.float32 else 1e-9
    assert res.ridge[0] == pytest.approx(lam_F, rel=rtol)
    assert res.ridge[0] > 0
    np.testing.assert_allclose(res.F, F1, rtol=rtol, atol=rtol * np.abs(F1).max())
    np.testing.assert_allclose(res.G, G1, rtol=rtol, atol=rtol * np.abs(G1).max())
    assert res.singular_rows[0] == 0          # the ridge makes every system definite


def test_auto_ridge_recovers_where_plain_als_runs_away():
    """Completion 300 x 350, r = 5, cond 10, OS 2.5 (the issue-13 cell), seed 0: plain ALS
    (damping=0) sends one column of G to infinity (error > 1 after 300 iterations); the
    vanishing ridge recovers to 1e-9 and its ridge goes to 0 with the residual."""
    n1, n2, r = 300, 350, 5
    prob = lc.make_problem(n1, n2, rank=r, m=round(2.5 * r * (n1 + n2 - r)),
                           operator="entries", cond=10, seed=0)
    op, y = prob.operator, prob.y
    plain = lc.solve(op, y, r, method="als", damping=0.0, truth=prob, max_iter=300,
                     tol=1e-10, record=False)
    assert plain.error > 1.0
    assert np.linalg.norm(plain.G, 2) > 10 * np.linalg.norm(plain.F, 2)
    auto = lc.solve(op, y, r, method="als", truth=prob, max_iter=300, tol=1e-10,
                    record=False)
    assert auto.status == "converged"
    assert auto.error < 1e-9
    assert auto.ridge[-1] < 1e-15 * auto.ridge[0]
