"""The bounded ||A^T(y)||_2 estimate behind step="fixed" and the fixed damping (issue 15
follow-up): against numpy's dense 2-norm, a bounded product count, the capped status."""

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import lowrank_core as lc
from lowrank_core.initialization import (
    NORM_MAX_PRODUCTS,
    NORM_RTOL,
    spectral_norm_estimate,
    top_singular_value_info,
)
from lowrank_core.methods.gd import GD_STEP


def _counted(A):
    """A LinearOperator of the dense A that counts its products (matvec, rmatvec)."""
    count = [0]

    def mv(v):
        count[0] += 1
        return A @ v

    def rmv(u):
        count[0] += 1
        return A.T @ u

    return LinearOperator(A.shape, matvec=mv, rmatvec=rmv, dtype=np.float64), count


def _noise_completion(n1, n2, m, seed):
    """A pure-noise completion problem (the at-scale benchmark's kind) and its dense
    A^T(y)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n1, m, dtype=np.int32)
    cols = rng.integers(0, n2, m, dtype=np.int32)
    y = rng.standard_normal(m)
    op = lc.EntryOperator(rows, cols, (n1, n2))
    S = np.zeros((n1, n2))
    np.add.at(S, (rows, cols), y)
    return op, y, S


@pytest.mark.parametrize("shape", [(1200, 900), (700, 1500)])
def test_estimate_within_tolerance_of_dense_norm_on_noise_completion(shape):
    # medium pure-noise completion (clustered top singular values, the hard case): the
    # iterative path (n1 n2 > 2**20), against numpy's dense 2-norm
    n1, n2 = shape
    op, y, S = _noise_completion(n1, n2, 20 * (n1 + n2), seed=n1)
    reference = np.linalg.norm(S, 2)
    sigma, info = top_singular_value_info(op.adjoint_operator(y), np.random.default_rng(0))
    assert info["method"] == "lanczos" and info["status"] in ("converged", "capped")
    assert info["products"] <= NORM_MAX_PRODUCTS
    assert abs(sigma - reference) <= NORM_RTOL * reference
    # the bound the info states holds: a singular value within the residual bound of theta
    s_all = np.linalg.svd(S, compute_uv=False)
    assert np.min(np.abs(s_all - info["ritz"])) <= info["residual_bound"] * (1 + 1e-9)
    assert info["ritz"] <= reference * (1 + 1e-12)     # a Ritz value: below sigma_1


def test_estimate_converges_on_separated_spectrum_with_few_products():
    # a planted low-rank matrix plus small noise: sigma_1 well separated, so the residual
    # bound meets rtol quickly and the Ritz value is much closer than rtol
    rng = np.random.default_rng(5)
    n1, n2 = 900, 1300
    L, R = rng.standard_normal((n1, 3)), rng.standard_normal((n2, 3))
    A = L @ np.diag([3.0, 1.5, 1.0]) @ R.T / np.sqrt(n1 * n2) \
        + 1e-3 * rng.standard_normal((n1, n2)) / np.sqrt(n1)
    lin, count = _counted(A)
    reference = np.linalg.norm(A, 2)
    sigma, info = spectral_norm_estimate(lin, np.random.default_rng(1), rtol=1e-3)
    assert info["status"] == "converged"
    assert info["products"] == count[0] < 40
    assert info["residual_bound"] <= 1e-3 * info["ritz"]
    assert sigma <= reference and reference - sigma <= 1e-3 * reference


def test_capped_estimate_is_finite_upper_biased_and_bounded():
    # a cap far below what rtol needs: no exception, exactly the cap's products, status
    # "capped", value theta + r, which is >= sigma_1 here (the bracket holds for sigma_1)
    op, y, S = _noise_completion(1100, 1000, 40000, seed=3)
    reference = np.linalg.norm(S, 2)
    lin = op.adjoint_operator(y)
    for cap in (2, 3, 6, 10):
        sigma, info = spectral_norm_estimate(lin, np.random.default_rng(2), rtol=1e-12,
                                             max_products=cap)
        assert info["status"] == "capped"
        assert info["products"] == cap - cap % 2 <= cap
        assert np.isfinite(sigma) and sigma == info["ritz"] + info["residual_bound"]
        assert info["ritz"] <= reference * (1 + 1e-12) <= sigma * (1 + 1e-12)


def test_product_count_is_bounded_and_counted_exactly():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((600, 2000))
    lin, count = _counted(A)
    sigma, info = spectral_norm_estimate(lin, np.random.default_rng(0), rtol=0.0,
                                         max_products=30)
    assert count[0] == info["products"] == 30 and info["steps"] == 15
    assert info["status"] == "capped"


def test_invariant_krylov_space_is_exact():
    # rank one: the Krylov space is invariant after one step (beta = 0): exact, r = 0
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal(1500), rng.standard_normal(1200)
    A = np.outer(a, b)
    sigma, info = spectral_norm_estimate(aslinearoperator(A), np.random.default_rng(0))
    assert info["status"] == "converged" and info["products"] == 2
    np.testing.assert_allclose(sigma, np.linalg.norm(a) * np.linalg.norm(b), rtol=1e-12)
    zero = aslinearoperator(np.zeros((1500, 1200)))
    sigma, info = spectral_norm_estimate(zero, np.random.default_rng(0))
    assert sigma == 0.0 and info["status"] == "converged" and info["products"] == 1


def test_solve_fixed_step_records_the_estimate_and_uses_it():
    # solve(step="fixed") on the iterative path: step = 0.3 / sigma with sigma within
    # rtol of numpy's norm, and how sigma was obtained is in the result's options
    op, y, S = _noise_completion(1100, 1000, 40000, seed=4)
    reference = np.linalg.norm(S, 2)
    res = lc.solve(op, y, 3, method="gd", step="fixed", max_iter=2, seed=0)
    info = res.options["spectral_norm"]
    assert info["method"] == "lanczos" and info["products"] <= NORM_MAX_PRODUCTS
    np.testing.assert_allclose(res.options["step"], GD_STEP / info["value"], rtol=1e-15)
    assert abs(GD_STEP / res.options["step"] - reference) <= NORM_RTOL * reference
    # the exact line search needs no norm: nothing recorded
    assert "spectral_norm" not in lc.solve(op, y, 3, method="gd", max_iter=1,
                                           seed=0).options


def test_small_problem_keeps_the_dense_exact_norm():
    rng = np.random.default_rng(9)
    n1, n2, m = 60, 50, 2000
    rows, cols = rng.integers(0, n1, m), rng.integers(0, n2, m)
    y = rng.standard_normal(m)
    op = lc.EntryOperator(rows, cols, (n1, n2))
    S = np.zeros((n1, n2))
    np.add.at(S, (rows, cols), y)
    res = lc.solve(op, y, 2, method="gd", step="fixed", max_iter=1, seed=0)
    info = res.options["spectral_norm"]
    assert info["method"] == "dense" and info["status"] == "exact"
    np.testing.assert_allclose(res.options["step"], GD_STEP / np.linalg.norm(S, 2),
                               rtol=1e-13)
