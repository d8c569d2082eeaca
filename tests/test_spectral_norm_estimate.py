"""The bounded ||A^T(y)||_2 estimate behind step="fixed" and the fixed damping (issue 15
follow-up): against numpy's dense 2-norm, a bounded product count, the capped status."""

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import lowrank_core as lc
from lowrank_core.initialization import (
    NORM_MAX_PRODUCTS,
    NORM_RTOL,
    lanczos_bound_eps,
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
    assert sigma == info["ritz"] + info["residual_bound"]      # the bracket's upper end
    assert info["ritz"] <= reference and abs(sigma - reference) <= 1e-3 * reference


def test_capped_estimate_is_finite_and_upper_biased():
    # a cap below what rtol needs: no exception, exactly the cap's products (even),
    # status "capped"; theta <= sigma_1 (a Ritz value); the value is theta (1 - eps)^-1/2
    # once the probabilistic bound exists (j >= 2 steps here: >= sigma_1 with probability
    # 1 - delta), else theta + r; either way >= theta
    op, y, S = _noise_completion(1100, 1000, 40000, seed=3)
    s_all = np.linalg.svd(S, compute_uv=False)
    reference = s_all[0]
    lin = op.adjoint_operator(y)
    for cap in (2, 3, 6, 10, 41):
        sigma, info = spectral_norm_estimate(lin, np.random.default_rng(2), rtol=1e-6,
                                             max_products=cap)
        assert info["status"] == "capped"
        assert info["products"] == cap - cap % 2 and info["steps"] == cap // 2
        assert np.isfinite(sigma) and sigma >= info["ritz"]
        assert info["ritz"] <= reference * (1 + 1e-12)
        # the residual bracket holds: a singular value within r of theta
        assert np.min(np.abs(s_all - info["ritz"])) <= info["residual_bound"] * (1 + 1e-9)
        if info["steps"] >= 2:
            eps = lanczos_bound_eps(info["steps"], 1000)
            assert info["eps"] == eps
            if eps < 1:
                assert sigma == info["ritz"] / np.sqrt(1 - eps) >= reference
        else:
            assert sigma == info["ritz"] + info["residual_bound"]


def test_probabilistic_bound_brackets_sigma_1_on_many_starts():
    # the "bound" stop's statement: sigma in [sigma_1, (1 + rtol) sigma_1] (failure
    # probability <= delta per start; the Kuczynski-Wozniakowski bound is conservative).
    # A gap-free spectrum (sigma_i^2 log-spaced over 6 decades) where the residual stop
    # is slow, delta = 0.1 so the bound stops some runs first; every stop checked
    rng = np.random.default_rng(0)
    n1, n2 = 1300, 1100
    U, _ = np.linalg.qr(rng.standard_normal((n1, n2)))
    V, _ = np.linalg.qr(rng.standard_normal((n2, n2)))
    A = (U * np.sqrt(np.logspace(0, -6, n2))) @ V.T
    reference = np.linalg.norm(A, 2)
    lin = aslinearoperator(A)
    statuses = []
    for seed in range(30):
        sigma, info = spectral_norm_estimate(lin, np.random.default_rng(seed), delta=0.1)
        statuses.append(info["status"])
        if info["status"] == "bound":
            assert info["steps"] == min(j for j in range(2, 200) if lanczos_bound_eps(
                j, n2, 0.1) <= 1 - (1 + NORM_RTOL) ** -2)
            assert reference <= sigma <= (1 + NORM_RTOL) * reference
        else:
            assert info["status"] == "converged"
            assert info["residual_bound"] <= NORM_RTOL * info["ritz"]
            assert sigma == info["ritz"] + info["residual_bound"]
            assert abs(sigma - reference) <= NORM_RTOL * reference
    assert "bound" in statuses and "converged" in statuses


def test_product_count_is_bounded_and_counted_exactly():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((600, 2000))
    lin, count = _counted(A)
    sigma, info = spectral_norm_estimate(lin, np.random.default_rng(0), rtol=0.0,
                                         max_products=30)
    assert count[0] == info["products"] == 30 and info["steps"] == 15
    assert info["status"] == "capped"


def test_invariant_krylov_space_is_exact():
    # rank one: K(A^T A, v_1) = span(v_1, b) is invariant after two steps (alpha_2 = 0 up
    # to rounding): the residual bound is at rounding level, theta exact
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal(1500), rng.standard_normal(1200)
    A = np.outer(a, b)
    sigma, info = spectral_norm_estimate(aslinearoperator(A), np.random.default_rng(0))
    assert info["status"] == "converged" and info["products"] == 4
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


def test_spectral_init_cap_warns_and_falls_back_to_randomized_svd(monkeypatch):
    # ARPACK capped at one restart on pure noise (no convergence at tol=0): a
    # SpectralInitWarning, and the randomized fallback's pairs: orthonormal, singular
    # values below the true ones (Q^T A is a compression: interlacing) and close to them
    from lowrank_core import initialization as ini
    monkeypatch.setattr(ini, "INIT_MAX_RESTARTS", 1)
    op, y, S = _noise_completion(1100, 1000, 40000, seed=6)
    k = 4
    with pytest.warns(ini.SpectralInitWarning, match="did not converge"):
        U, s, V = ini._top_k_svd(op.adjoint_operator(y), k, np.random.default_rng(0))
    true = np.linalg.svd(S, compute_uv=False)[:k]
    np.testing.assert_allclose(U.T @ U, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-12)
    # Rayleigh-Ritz in range(Q): U^T A = s V^T exactly (U = Q U_B, Q^T A = U_B s V^T)
    np.testing.assert_allclose(U.T @ S, s[:, None] * V.T, atol=1e-10 * true[0])
    assert np.all(s <= true * (1 + 1e-12)) and np.all(s >= 0.9 * true)
    # through solve: the warning reaches the caller, the run goes on from finite factors
    with pytest.warns(ini.SpectralInitWarning):
        res = lc.solve(op, y, k, method="gd", init="spectral", max_iter=2, seed=0)
    assert np.all(np.isfinite(res.F)) and np.all(np.isfinite(res.G)) and res.n_iter == 2


def test_symmetric_spectral_init_cap_falls_back_with_ritz_values_below_eigenvalues(
        monkeypatch):
    from lowrank_core import initialization as ini
    monkeypatch.setattr(ini, "INIT_MAX_RESTARTS", 1)
    rng = np.random.default_rng(10)
    n, k = 1100, 3
    W = rng.standard_normal((n, n))
    Ssym = (W + W.T) / np.sqrt(2 * n)
    with pytest.warns(ini.SpectralInitWarning, match="eigsh"):
        w, V = ini._top_k_symmetric(aslinearoperator(Ssym), k, np.random.default_rng(0))
    true = np.linalg.eigvalsh(Ssym)[::-1][:k]
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(np.diag(V.T @ Ssym @ V), w, atol=1e-12)  # Ritz pairs
    assert np.all(w <= true + 1e-12) and np.all(w >= 0.9 * true)


def test_spectral_init_uncapped_is_unchanged_when_arpack_converges():
    # a planted rank-3 problem (separated top-3): ARPACK converges far within the cap, and
    # the capped call returns exactly what scipy's uncapped svds returns (same start)
    from scipy.sparse.linalg import svds

    from lowrank_core import initialization as ini
    prob = lc.make_problem(1100, 1000, rank=3, m=60000, operator="entries", seed=3)
    lin = ini.spectral_linear_operator(prob.operator, prob.y)
    U, s, V = ini._top_k_svd(lin, 3, np.random.default_rng(0))
    Ur, sr, Vtr = svds(lin, k=3, v0=np.random.default_rng(0).standard_normal(1000))
    order = np.argsort(sr)[::-1]
    np.testing.assert_array_equal(s, sr[order])
    np.testing.assert_array_equal(U, Ur[:, order])
    np.testing.assert_array_equal(V, Vtr[order].T)


@pytest.mark.parametrize("spectrum", ["log", "cubic", "root", "uniform", "gap"])
def test_converged_value_within_rtol_of_sigma_1_on_gap_free_spectra(spectrum):
    # the residual stop brackets *a* singular value: on a gap-free spectrum theta alone
    # can stop more than rtol below sigma_1; its upper end theta + r stays within rtol
    rng = np.random.default_rng(1)
    n1, n2 = 1300, 1100
    U, _ = np.linalg.qr(rng.standard_normal((n1, n2)))
    V, _ = np.linalg.qr(rng.standard_normal((n2, n2)))
    t = np.linspace(1, 0, n2)
    lam = {"log": np.logspace(0, -6, n2), "cubic": t ** 3, "root": t ** 0.3, "uniform": t,
           "gap": np.r_[1.0, 0.5 * t[1:]]}[spectrum]            # sigma_i^2
    A = (U * np.sqrt(lam)) @ V.T
    reference = np.linalg.norm(A, 2)
    for seed in range(10):
        sigma, info = spectral_norm_estimate(aslinearoperator(A), np.random.default_rng(seed))
        assert info["status"] in ("converged", "bound")
        assert abs(sigma - reference) <= NORM_RTOL * reference, (seed, info)


def test_nonfinite_operator_gives_nan_and_solve_falls_back():
    A = np.full((1100, 1000), np.nan)
    sigma, info = spectral_norm_estimate(aslinearoperator(A), np.random.default_rng(0))
    assert np.isnan(sigma) and info["status"] == "nonfinite" and info["products"] == 1
