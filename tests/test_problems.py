"""make_problem: truth construction, normalization, measurements, errors."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import metrics


@pytest.mark.parametrize("psd", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_truth_and_measurements(psd, dtype):
    p = lc.make_problem(12, rank=3, m=200, psd=psd, cond=4.0, dtype=dtype, seed=0)
    L, R = p.truth_factors
    M = p.truth
    assert M.shape == (12, 12) and L.dtype == dtype and p.y.dtype == dtype
    s = np.linalg.svd(M.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s[:3], [1.0, 0.625, 0.25], rtol=1e-5)
    assert s[3] < 1e-5
    if psd:
        np.testing.assert_allclose(M, M.T, atol=1e-6)
        assert np.linalg.eigvalsh(M.astype(np.float64)).min() > -1e-5
        assert isinstance(p.operator, lc.SymmetricDenseOperator)
    A = p.operator.matrices.astype(np.float64)
    np.testing.assert_allclose(p.y, np.einsum("ijk,jk->i", A, M.astype(np.float64)),
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-6)
    assert p.relative_error(L, R) < 1e-6


def test_rectangular_and_noise():
    p0 = lc.make_problem(8, 5, rank=2, m=300, seed=3)
    p1 = lc.make_problem(8, 5, rank=2, m=300, noise=0.1, seed=3)
    assert p0.operator.shape == (8, 5)
    diff = p1.y - p0.y
    assert 0.07 < diff.std() < 0.13


def test_seed_reproducible():
    a = lc.make_problem(6, rank=2, m=50, seed=7)
    b = lc.make_problem(6, rank=2, m=50, seed=7)
    np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n1=5, rank=0, m=10), ValueError, "rank must be >= 1"),
    (dict(n1=5, rank=6, m=10), ValueError, "between 1 and min"),
    (dict(n1=5, n2=4, rank=2, m=10, psd=True), ValueError, "square"),
    (dict(n1=5, rank=2, m=10, operator="nope"), ValueError, "unknown operator"),
    (dict(n1=5, rank=2, m=10, cond=0.5), ValueError, "cond"),
    (dict(n1=5, rank=2, m=10, noise=-1), ValueError, "noise"),
    (dict(n1=5, rank=2, m=10, dtype=np.int32), TypeError, "float32 or float64"),
    (dict(n1=5, rank=2.5, m=10), TypeError, "rank must be an integer"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        lc.make_problem(**kwargs)


def test_metrics_against_dense(rng):
    F = rng.standard_normal((9, 4))
    G = rng.standard_normal((7, 4))
    L = rng.standard_normal((9, 2))
    R = rng.standard_normal((7, 2))
    D = F @ G.T - L @ R.T
    distance = metrics.factored_distance(F, G, L, R)
    assert abs(distance - np.linalg.norm(D)) < 1e-12 * np.linalg.norm(D)
    np.testing.assert_allclose(metrics.singular_values(F, G),
                               np.linalg.svd(F @ G.T, compute_uv=False)[:4], rtol=1e-12)
    np.testing.assert_allclose(metrics.imbalance(F, G), np.linalg.norm(F.T @ F - G.T @ G),
                               rtol=1e-12)
    norm = np.linalg.norm(F @ G.T)
    assert abs(metrics.factored_norm(F, G) - norm) < 1e-12 * norm
    # accuracy near zero: distance of a product to itself re-factored is ~ rounding
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    assert metrics.factored_distance(F, G, F @ Q, G @ Q) < 1e-13 * np.linalg.norm(F @ G.T)


def test_psd_truth_with_general_gaussian_operator():
    p = lc.make_problem(10, rank=2, m=200, psd=True, symmetric_operator=False, seed=4)
    assert isinstance(p.operator, lc.DenseOperator) and not p.operator.symmetric
    L, R = p.truth_factors
    np.testing.assert_array_equal(L, R)
    A = p.operator.matrices
    assert np.abs(A - A.transpose(0, 2, 1)).max() > 0.1  # general, not symmetric, A_i
    np.testing.assert_allclose(p.y, np.einsum("ijk,jk->i", A, L @ R.T), rtol=1e-12)
    with pytest.raises(TypeError, match="unexpected keyword|symmetric_operator"):
        lc.make_problem(10, rank=2, m=200, symmetric_operator=False, bogus=1)
