"""MatrixCompletion's training operator without centering: ``EntryOperator.from_entries``
(the observations sorted once into the kernels' layout) gives the fits of the
constructor path (y in the user's order) to rounding, for every input format, method and
dtype; centering keeps the constructor's operator."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import estimator


def _observations(n1=50, n2=40, r=3, frac=0.5, seed=0, dtype=np.float64):
    """A rank-r matrix with noise, a random subset of its entries in random order."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    flat = rng.permutation(n1 * n2)[: int(frac * n1 * n2)]
    rows, cols = flat // n2, flat % n2
    values = (M[rows, cols] + 0.01 * rng.standard_normal(flat.size)).astype(dtype)
    return M, (rows, cols, values, (n1, n2))


def _fit(monkeypatch, from_entries, X, **kw):
    monkeypatch.setattr(estimator, "_FIT_FROM_ENTRIES", from_entries)
    return lc.MatrixCompletion(random_state=0, **kw).fit(X)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["als", "gd", "scaledgd", "softimpute_als"])
def test_from_entries_fit_equals_the_constructor_path(monkeypatch, method, dtype):
    M, X = _observations(dtype=dtype)
    kw = dict(rank=3, method=method, max_iter=40, tol=1e-12,
              reg=0.1 if method in ("als", "softimpute_als") else 0.0)
    a = _fit(monkeypatch, True, X, **kw)
    b = _fit(monkeypatch, False, X, **kw)
    assert a.n_iter_ == b.n_iter_
    pa, pb = a.row_factors_ @ a.components_, b.row_factors_ @ b.components_
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    assert np.max(np.abs(pa - pb)) <= rtol * np.max(np.abs(pb))
    # both fit the data: the training residual against plain numpy on the observations
    rows, cols, values, _ = X
    for est in (a, b):
        z = (est.row_factors_ @ est.components_)[rows, cols] - values
        assert float(np.linalg.norm(z)) < 0.5 * float(np.linalg.norm(values))
    assert a.row_factors_.dtype == b.row_factors_.dtype == dtype


def test_dense_and_sparse_input_and_validation_on_the_from_entries_path(monkeypatch):
    """Dense NaN input, scipy.sparse input and a validation split: same predictions as
    the constructor path; the fit recovers the matrix (relative error against numpy)."""
    import scipy.sparse as sp

    M, (rows, cols, values, shape) = _observations(frac=0.6, seed=1)
    dense = np.full(shape, np.nan)
    dense[rows, cols] = values
    for X in (dense, sp.coo_matrix((values, (rows, cols)), shape=shape)):
        for vf in (None, 0.1):
            kw = dict(rank=3, max_iter=60, tol=1e-10, validation_fraction=vf, reg=1e-3)
            a = _fit(monkeypatch, True, X, **kw)
            b = _fit(monkeypatch, False, X, **kw)
            pa = a.row_factors_ @ a.components_
            pb = b.row_factors_ @ b.components_
            assert np.max(np.abs(pa - pb)) <= 1e-9 * np.max(np.abs(pb))
            assert np.linalg.norm(pa - M) / np.linalg.norm(M) < 2e-2
            if vf is not None:
                assert a.validation_rmse_ == pytest.approx(b.validation_rmse_, rel=1e-9)


@pytest.mark.parametrize("center", [False, True, "biases"])
def test_which_operator_the_fit_builds(monkeypatch, center):
    """center=False: one from_entries call (no constructor for training); centering: the
    constructor (its wrappers project y in the user's order)."""
    calls = {"from_entries": 0}
    real = lc.EntryOperator.from_entries.__func__

    def counting(cls, *a, **kw):
        calls["from_entries"] += 1
        return real(cls, *a, **kw)

    monkeypatch.setattr(lc.EntryOperator, "from_entries", classmethod(counting))
    _, X = _observations(seed=2)
    lc.MatrixCompletion(rank=3, max_iter=5, center=center, random_state=0).fit(X)
    assert calls["from_entries"] == (1 if center is False else 0)
