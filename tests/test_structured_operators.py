"""Structured operators (sparse A_i, entries, rank-one) against numpy / scipy.sparse.

Every reference below is built independently from the same raw data (plain numpy and
scipy.sparse products, dense n1 x n2 matrices at these small sizes), never from the
operator's own kernels.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

import lowrank_core as lc
from lowrank_core.operators import _indexing, sample_entries

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
N1, N2, K = 23, 17, 4


def assert_close(x, ref, dtype):
    """Agreement up to RTOL relative to the reference's scale (x must keep dtype)."""
    assert x.dtype == np.dtype(dtype), f"dtype changed: {x.dtype} != {np.dtype(dtype)}"
    ref = np.asarray(ref, dtype=np.float64)
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(x.astype(np.float64), ref, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * scale)


def assert_sparse_matches_scipy(op, A, F, G, y):
    """op's residual gradient and adjoint LinearOperator against scipy: A is the
    (m, n1 n2) CSR matrix of vec(A_i); float64 tolerances."""
    n1, n2 = op.shape
    zref = A @ (F @ G.T).ravel() - y
    S = (A.T @ zref).reshape(n1, n2)
    _, z, SG, StF = op.residual_gradient(F, G, y)
    assert_close(z, zref, np.float64)
    assert_close(SG, S @ G, np.float64)
    assert_close(StF, S.T @ F, np.float64)
    L = op.adjoint_operator(zref)
    assert_close(L.matmat(G), S @ G, np.float64)
    assert_close(L.rmatmat(F), S.T @ F, np.float64)


def factors(rng, n1, n2, k, dtype):
    return (rng.standard_normal((n1, k)).astype(dtype),
            rng.standard_normal((n2, k)).astype(dtype))


# ----------------------------------------------------------------- operator cases
# (operator, dense reference matrix Aref of shape (m, n1*n2)); the products common to
# every kind are checked on all kinds in test_operator_contract.py.

def sparse_case(rng, dtype, *, use_scipy=False, n_threads=None):
    m, s = 60, 5
    meas = np.repeat(np.arange(m), s)
    keep = meas != 7  # measurement 7 has no nonzeros
    meas = meas[keep]
    rr = rng.integers(0, N1 - 2, meas.size)  # matrix rows N1-2, N1-1 never touched
    cc = rng.integers(0, N2, meas.size)
    rr[:3], cc[:3] = rr[0], cc[0]  # repeated position inside measurement 0
    vals = rng.standard_normal(meas.size).astype(dtype)
    perm = rng.permutation(meas.size)  # unsorted triplets
    meas, rr, cc, vals = meas[perm], rr[perm], cc[perm], vals[perm]
    Aref = np.zeros((m, N1 * N2))
    np.add.at(Aref, (meas, rr * N2 + cc), vals.astype(np.float64))
    if use_scipy:
        A = sp.coo_matrix((vals, (meas, rr * N2 + cc)), shape=(m, N1 * N2)).tocsr()
        op = lc.SparseOperator(A, (N1, N2), n_threads=n_threads)
    else:
        op = lc.SparseOperator((meas, rr, cc, vals), (N1, N2), m=m, n_threads=n_threads)
    return op, Aref


# ----------------------------------------------------------------- entries specifics
def test_entries_repeated_and_empty_rows_columns():
    rng = np.random.default_rng(10)
    rows = np.array([0, 0, 0, 2, 2, 4])
    cols = np.array([1, 1, 1, 0, 3, 3])  # (0, 1) observed three times; row 1/3, col 2 empty
    op = lc.EntryOperator(rows, cols, (5, 4))
    F, G = factors(rng, 5, 4, 2, np.float64)
    y = rng.standard_normal(6)
    z_ref = np.sum(F[rows] * G[cols], axis=1) - y
    S = np.zeros((5, 4))
    np.add.at(S, (rows, cols), z_ref)
    _, z, SG, StF = op.residual_gradient(F, G, y)
    assert_close(z, z_ref, np.float64)
    assert_close(SG, S @ G, np.float64)
    assert_close(StF, S.T @ F, np.float64)
    assert np.all(SG[[1, 3]] == 0) and np.all(StF[2] == 0)
    assert op.adjoint(z)[0, 1] == pytest.approx(z_ref[:3].sum(), rel=1e-14)


def test_entries_row_col_roundtrip_and_index_dtype():
    rng = np.random.default_rng(11)
    rows = rng.integers(0, 9, 40)
    cols = rng.integers(0, 7, 40)
    op = lc.EntryOperator(rows, cols, (9, 7))
    np.testing.assert_array_equal(op.rows, rows)
    np.testing.assert_array_equal(op.cols, cols)
    assert op._cols_r.dtype == np.int32 and op.nbytes > 0
    assert op.symmetric is False


def test_entries_int64_index_path(monkeypatch):
    """Force the int64 kernels (used when an index or count exceeds int32)."""
    rng = np.random.default_rng(12)
    rows = rng.integers(0, N1, 80)
    cols = rng.integers(0, N2, 80)
    F, G = factors(rng, N1, N2, K, np.float64)
    y = rng.standard_normal(80)
    ref = lc.EntryOperator(rows, cols, (N1, N2)).residual_gradient(F, G, y)
    monkeypatch.setattr(_indexing, "index_dtype", lambda *s: np.dtype(np.int64))
    op = lc.EntryOperator(rows, cols, (N1, N2))
    assert op._cols_r.dtype == np.int64
    got = op.residual_gradient(F, G, y)
    assert got[0] == ref[0]
    for a, b in zip(got[1:], ref[1:]):
        np.testing.assert_array_equal(a, b)
    sop = lc.SparseOperator((np.arange(80) % 10, rows, cols, y), (N1, N2))
    assert sop._r_m.dtype == np.int64
    A = sp.csr_matrix((y, (np.arange(80) % 10, rows * N2 + cols)), shape=(10, N1 * N2))
    # the row and column groupings of the gather passes are int64 too
    for arr in (sop._ptr_r, sop._meas_r, sop._col_r, sop._ptr_c, sop._meas_c, sop._row_c):
        assert arr.dtype == np.int64
    assert_sparse_matches_scipy(sop, A, F, G, y[:10])


def test_entries_from_sparse_and_dense_with_nan():
    rng = np.random.default_rng(13)
    X = rng.standard_normal((6, 5))
    X[rng.random((6, 5)) < 0.4] = np.nan
    op, y = lc.EntryOperator.from_dense_with_nan(X)
    r, c = np.nonzero(~np.isnan(X))
    np.testing.assert_array_equal(op.rows, r)
    np.testing.assert_array_equal(op.cols, c)
    np.testing.assert_array_equal(y, X[r, c])
    Xf = np.nan_to_num(X).astype(np.float32)
    op32, y32 = lc.EntryOperator.from_dense_with_nan(np.where(np.isnan(X), np.nan, Xf))
    assert op32.dtype == np.float32 and y32.dtype == np.float32
    # the measured values of the full matrix reproduce y
    np.testing.assert_array_equal(op.forward(np.nan_to_num(X)), y)

    C = sp.coo_matrix((np.array([1.0, 2.0, 0.0, 4.0]), (np.array([0, 2, 1, 0]),
                                                        np.array([1, 1, 0, 1]))),
                      shape=(3, 2))
    op2, y2 = lc.EntryOperator.from_sparse(C)  # explicit zero and a duplicate kept
    assert op2.m == 4 and op2.shape == (3, 2)
    np.testing.assert_array_equal(y2, [1.0, 2.0, 0.0, 4.0])
    np.testing.assert_array_equal(op2.rows, [0, 2, 1, 0])
    S = op2.adjoint(y2)
    np.testing.assert_array_equal(S, [[0, 5], [0, 0], [0, 2]])
    op3, y3 = lc.EntryOperator.from_sparse(sp.csr_matrix(np.nan_to_num(X)))
    np.testing.assert_array_equal(op3.forward(np.nan_to_num(X)), y3)


def test_entries_spectral_operator_is_adjoint_over_p():
    rng = np.random.default_rng(14)
    rows, cols = sample_entries(30, 20, 240, rng)
    op = lc.EntryOperator(rows, cols, (30, 20))
    y = rng.standard_normal(op.m)
    p = 240 / 600
    Y = np.zeros((30, 20))
    Y[rows, cols] = y
    L = op.spectral_operator(y)
    X = rng.standard_normal((20, 2))
    assert_close(L.matmat(X), (Y / p) @ X, np.float64)
    # svds on the LinearOperator = top singular values of the dense Y / p
    s = np.sort(svds(L, k=3, return_singular_vectors=False, random_state=0))[::-1]
    np.testing.assert_allclose(s, np.linalg.svd(Y / p, compute_uv=False)[:3], rtol=1e-8)


def test_sample_entries_distinct_sorted_uniform():
    rng = np.random.default_rng(15)
    rows, cols = sample_entries(50, 40, 1500, rng)
    flat = rows.astype(np.int64) * 40 + cols
    assert rows.dtype == np.int32 and flat.size == 1500
    assert np.all(np.diff(flat) > 0)  # distinct and row-major sorted
    assert rows.min() >= 0 and rows.max() < 50 and cols.max() < 40
    full_rows, _ = sample_entries(3, 4, 12, rng)
    np.testing.assert_array_equal(np.bincount(full_rows), [4, 4, 4])
    with pytest.raises(ValueError, match="cannot observe 13 distinct entries"):
        sample_entries(3, 4, 13, rng)


# ----------------------------------------------------------------- sparse specifics
def test_sparse_symmetric_flag_and_to_scipy():
    rng = np.random.default_rng(16)
    op, Aref = sparse_case(rng, np.float64)
    np.testing.assert_allclose(op.to_scipy().toarray(), Aref, rtol=1e-15)
    assert op.nnz == 295 and not op.symmetric
    # symmetrized A_i: (i, r, c, v/2) and (i, c, r, v/2)
    meas = np.array([0, 0, 1, 1, 1])
    r = np.array([0, 1, 2, 2, 0])
    c = np.array([1, 0, 0, 2, 2])
    v = np.array([0.5, 0.5, 1.0, 3.0, 1.0])
    assert lc.SparseOperator((meas, r, c, v), (3, 3)).symmetric
    v2 = v.copy()
    v2[0] = 0.6
    assert not lc.SparseOperator((meas, r, c, v2), (3, 3)).symmetric


# ----------------------------------------------------------------- rank-one specifics
def test_rank_one_symmetric_spectral_is_debiased():
    """E[y a a^T] = s^2 (2M + tr(M) I): the spectral operator removes the tr(M) I term."""
    rng = np.random.default_rng(17)
    n, m = 12, 60000
    U = np.linalg.qr(rng.standard_normal((n, 2)))[0]
    Mtrue = U @ np.diag([1.0, 0.6]) @ U.T
    op = lc.RankOneOperator.gaussian(m, n, symmetric=True, seed=rng)
    y = op.forward(Mtrue)
    Mhat = op.spectral_operator(y).matmat(np.eye(n))
    assert np.linalg.norm(Mhat - Mtrue) < 0.1 * np.linalg.norm(Mtrue)
    # the raw adjoint is biased by tr(M) I (here by about 0.8 I): far from M
    raw = op.adjoint_operator(y).matmat(np.eye(n))
    assert np.linalg.norm(raw - Mtrue) > 2 * np.linalg.norm(Mhat - Mtrue)
    # exact algebra of the estimator on the same data
    a = op.a
    s2 = np.mean(np.sum(a * a, axis=1)) / n
    want = (a.T @ (y[:, None] * a) / m - np.mean(y) * s2 * np.eye(n)) / (2 * s2 ** 2)
    np.testing.assert_allclose(Mhat, want, rtol=1e-10, atol=1e-12)


def test_rank_one_asymmetric_spectral_scale():
    rng = np.random.default_rng(18)
    n1, n2, m = 10, 8, 40000
    M = np.outer(rng.standard_normal(n1), rng.standard_normal(n2))
    M /= np.linalg.norm(M)
    op = lc.RankOneOperator.gaussian(m, n1, n2, seed=rng)
    y = op.forward(M)
    Mhat = op.spectral_operator(y).matmat(np.eye(n2))
    assert np.linalg.norm(Mhat - M) < 0.1
    assert np.mean(y ** 2) * m == pytest.approx(1.0, rel=0.05)  # E||A(M)||^2 = ||M||_F^2


def test_base_spectral_operator_default_is_adjoint():
    rng = np.random.default_rng(19)
    op, _ = sparse_case(rng, np.float64)
    y = rng.standard_normal(op.m)
    X = rng.standard_normal((N2, 2))
    np.testing.assert_array_equal(op.spectral_operator(y).matmat(X),
                                  op.adjoint_operator(y).matmat(X))
    dense = lc.DenseOperator(rng.standard_normal((30, 4, 3)))
    z = rng.standard_normal(30)
    np.testing.assert_allclose(dense.spectral_operator(z).matvec(np.ones(3)),
                               dense.adjoint(z) @ np.ones(3), rtol=1e-14)


# ----------------------------------------------------------------- make_problem
@pytest.mark.parametrize("kind", ["sparse", "entries", "rank-one"])
@pytest.mark.parametrize("psd", [False, True])
def test_make_problem_structured(kind, psd):
    pr = lc.make_problem(20, 20 if psd else 15, rank=2, m=200, operator=kind, psd=psd,
                         seed=3)
    op = pr.operator
    L, R = pr.truth_factors
    M = L @ R.T
    np.testing.assert_allclose(pr.y, op.forward(M), rtol=1e-10, atol=1e-12)
    assert op.m == 200 and op.symmetric == (psd and kind != "entries")
    if kind == "entries":
        assert op.scale == pytest.approx(np.sqrt(20 * (20 if psd else 15) / 200))


@pytest.mark.parametrize("kind", ["sparse", "entries", "rank-one"])
def test_make_problem_near_isotropic(kind):
    """E||A(M)||^2 = ||M||_F^2, checked by averaging over independent operators."""
    ratios = []
    for seed in range(6):
        pr = lc.make_problem(16, 12, rank=2, m=150, operator=kind, seed=seed)
        ratios.append(float(pr.y @ pr.y) / float(np.sum(pr.truth ** 2)))
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.15)


def test_make_problem_entries_fraction_and_float32():
    pr = lc.make_problem(30, 20, rank=2, m=None, operator="entries", p=0.25, seed=0,
                         dtype=np.float32)
    assert pr.operator.dtype == np.float32 and pr.y.dtype == np.float32
    assert 90 < pr.operator.m < 210
    pr2 = lc.make_problem(30, 20, rank=2, m=120, operator="sparse", s=3, seed=0,
                          dtype=np.float32)
    assert pr2.operator.nnz == 360 and pr2.y.dtype == np.float32


# ----------------------------------------------------------------- bad input
def test_bad_input_entries():
    r = np.array([0, 1, 2])
    c = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="rows contains negative index -1"):
        lc.EntryOperator([0, -1, 2], c, (3, 2))
    with pytest.raises(ValueError, match=r"cols contains index 2 out of range.*\[0, 2\)"):
        lc.EntryOperator(r, [0, 1, 2], (3, 2))
    with pytest.raises(ValueError, match="rows contains index 3 out of range"):
        lc.EntryOperator([0, 3, 1], c, (3, 2))
    with pytest.raises(TypeError, match=r"rows must be an array of integer indices.*astype"):
        lc.EntryOperator(np.array([0.0, 1.0, 2.0]), c, (3, 2))
    with pytest.raises(TypeError, match="cols must be an array of integer"):
        lc.EntryOperator(r, np.array([True, False, True]), (3, 2))
    with pytest.raises(ValueError, match="rows and cols must have the same length"):
        lc.EntryOperator(r, c[:2], (3, 2))
    with pytest.raises(ValueError, match="rows must not be empty"):
        lc.EntryOperator([], [], (3, 2))
    with pytest.raises(ValueError, match="rows must be 1-D"):
        lc.EntryOperator(r.reshape(3, 1), c, (3, 2))
    with pytest.raises(ValueError, match="shape must be a pair"):
        lc.EntryOperator(r, c, 3)
    with pytest.raises(ValueError, match=r"shape\[1\] must be >= 1"):
        lc.EntryOperator(r, c, (3, 0))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        lc.EntryOperator(r, c, (3, 2), dtype=np.int32)
    with pytest.raises(ValueError, match="scale must be a finite non-zero"):
        lc.EntryOperator(r, c, (3, 2), scale=0.0)
    with pytest.raises(ValueError, match="X contains infinite values"):
        lc.EntryOperator.from_dense_with_nan(np.array([[1.0, np.inf], [np.nan, 2.0]]))
    with pytest.raises(ValueError, match="X has no observed"):
        lc.EntryOperator.from_dense_with_nan(np.full((2, 2), np.nan))
    with pytest.raises(TypeError, match="X must be a scipy.sparse matrix"):
        lc.EntryOperator.from_sparse(np.ones((2, 2)))
    with pytest.raises(ValueError, match="X has no stored entries"):
        lc.EntryOperator.from_sparse(sp.csr_matrix((3, 3)))
    with pytest.raises(ValueError, match="X.data contains 1 NaN"):
        lc.EntryOperator.from_sparse(sp.csr_matrix(np.array([[np.nan, 1.0]])))


def test_bad_input_sparse():
    meas, r, c, v = np.array([0, 1]), np.array([0, 1]), np.array([1, 0]), np.array([1.0, 2.0])
    with pytest.raises(ValueError, match=r"A has 5 columns but shape \(2, 2\) needs"):
        lc.SparseOperator(sp.csr_matrix(np.ones((3, 5))), (2, 2))
    with pytest.raises(ValueError, match="meas, rows, cols and vals must have the same length"):
        lc.SparseOperator((meas, r, c, v[:1]), (2, 2))
    with pytest.raises(ValueError, match="meas contains index 1 out of range"):
        lc.SparseOperator((meas, r, c, v), (2, 2), m=1)
    with pytest.raises(ValueError, match="rows contains index 5 out of range"):
        lc.SparseOperator((meas, np.array([0, 5]), c, v), (2, 2))
    with pytest.raises(ValueError, match="cols contains negative index"):
        lc.SparseOperator((meas, r, np.array([0, -1]), v), (2, 2))
    with pytest.raises(ValueError, match="vals contains 1 NaN"):
        lc.SparseOperator((meas, r, c, np.array([1.0, np.nan])), (2, 2))
    with pytest.raises(TypeError, match=r"vals must be a float32 or float64 array.*astype"):
        lc.SparseOperator((meas, r, c, np.array([1, 2])), (2, 2))
    with pytest.raises(ValueError, match="A has no nonzero entries"):
        lc.SparseOperator(sp.csr_matrix((3, 4)), (2, 2))
    with pytest.raises(TypeError, match="A must be a scipy.sparse matrix"):
        lc.SparseOperator(np.ones((3, 4)), (2, 2))
    with pytest.raises(ValueError, match="A.data contains 1 NaN"):
        lc.SparseOperator(sp.csr_matrix(np.array([[np.nan, 0, 0, 1.0]])), (2, 2))
    op = lc.SparseOperator((meas, r, c, v), (2, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        op.residual_gradient(np.ones((2, 1)), np.ones((2, 1)), np.ones(3))
    with pytest.raises(ValueError, match="y contains 1 NaN"):
        op.residual_gradient(np.ones((2, 1)), np.ones((2, 1)), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="F must have shape"):
        op.residual_gradient(np.ones((3, 1)), np.ones((2, 1)), np.ones(2))
    with pytest.raises(ValueError, match="G must have shape"):
        op.residual_gradient(np.ones((2, 1)), np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="F contains 1 NaN"):
        op.residual_gradient(np.array([[np.inf], [1.0]]), np.ones((2, 1)), np.ones(2))
    with pytest.raises(ValueError, match="z must have shape"):
        op.adjoint_operator(np.ones(5))
    with pytest.raises(ValueError, match=r"M must have shape \(2, 2\)"):
        op.forward(np.ones((3, 2)))


def test_bad_input_rank_one():
    a = np.ones((4, 3))
    with pytest.raises(ValueError, match="a must be 2-D"):
        lc.RankOneOperator(np.ones(3))
    with pytest.raises(TypeError, match="b has dtype float32 but the operator works in float64"):
        lc.RankOneOperator(a, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="a and b must have the same number of rows"):
        lc.RankOneOperator(a, np.ones((5, 2)))
    with pytest.raises(ValueError, match="a contains 1 NaN"):
        lc.RankOneOperator(np.array([[1.0, np.nan]]))
    with pytest.raises(TypeError, match="a must be a float32 or float64 array"):
        lc.RankOneOperator(np.ones((4, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="a must not be empty"):
        lc.RankOneOperator(np.ones((0, 3)))
    with pytest.raises(ValueError, match="block must be >= 1"):
        lc.RankOneOperator(a, block=0)
    with pytest.raises(ValueError, match="spectral|y must have shape"):
        lc.RankOneOperator(a).spectral_operator(np.ones(3))


def test_bad_input_make_problem():
    with pytest.raises(ValueError, match="either m .* or p"):
        lc.make_problem(10, rank=1, m=20, operator="entries", p=0.5)
    with pytest.raises(ValueError, match="p must be a fraction"):
        lc.make_problem(10, rank=1, m=None, operator="entries", p=1.5)
    with pytest.raises(ValueError, match="m .*is required"):
        lc.make_problem(10, rank=1, m=None, operator="sparse")
    with pytest.raises(ValueError, match="exceeds the 100 entries"):
        lc.make_problem(10, rank=1, m=101, operator="entries")
    with pytest.raises(TypeError, match="s must be an integer"):
        lc.make_problem(10, rank=1, m=20, operator="sparse", s=2.5)


@pytest.mark.parametrize("kind,m", [("entries", 500), ("sparse", 600), ("rank-one", 600)])
def test_spectral_init_and_gradient_descent_recover_truth(kind, m):
    """End to end: the spectral estimate plus plain GD on 0.5||A(F G^T) - y||^2 recovers
    M*, which checks the normalization, spectral_operator and the gradient together."""
    pr = lc.make_problem(30, 25, rank=2, m=m, operator=kind, seed=5)
    op, y, r = pr.operator, pr.y, 2
    U, s, Vt = svds(op.spectral_operator(y), k=r, random_state=0)
    F, G = U * np.sqrt(s), Vt.T * np.sqrt(s)
    assert pr.relative_error(F, G) < 0.8
    for _ in range(300):
        _, _, SG, StF = op.residual_gradient(F, G, y)
        F, G = F - 0.5 * SG, G - 0.5 * StF
    assert pr.relative_error(F, G) < 1e-6


@pytest.mark.parametrize("shape", [(1, 6), (6, 1), (2, 2)])
def test_sparse_fewer_rows_or_columns_than_threads(shape, monkeypatch):
    """The row and column passes share the measurement split's thread count, so some
    threads own no row (or column): results still match scipy."""
    monkeypatch.setattr(_indexing, "MIN_ENTRIES_PER_THREAD", 1)
    rng = np.random.default_rng(12)
    n1, n2 = shape
    m, nnz = 9, 30
    meas = rng.integers(0, m, nnz)
    rows, cols = rng.integers(0, n1, nnz), rng.integers(0, n2, nnz)
    vals = rng.standard_normal(nnz)
    A = sp.csr_matrix((vals, (meas, rows * n2 + cols)), shape=(m, n1 * n2))
    F, G = rng.standard_normal((n1, 3)), rng.standard_normal((n2, 3))
    y = rng.standard_normal(m)
    for nt in (1, 3):
        op = lc.SparseOperator((meas, rows, cols, vals), shape, m=m, n_threads=nt)
        assert_sparse_matches_scipy(op, A, F, G, y)


# every literal width of the sparse kernel's dispatchers (1..16), the run-time width up
# to KMAX = 32 and the in-place variant above it
@pytest.mark.parametrize("k", list(range(1, 18)) + [32, 33, 41])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_every_factor_width(k, dtype, monkeypatch):
    monkeypatch.setattr(_indexing, "MIN_ENTRIES_PER_THREAD", 1)
    rng = np.random.default_rng(200 + k)
    n1, n2, m, nnz = 13, 11, 40, 300
    meas = rng.integers(0, m, nnz)
    rows, cols = rng.integers(0, n1, nnz), rng.integers(0, n2, nnz)
    vals = rng.standard_normal(nnz)
    A = sp.csr_matrix((vals, (meas, rows * n2 + cols)), shape=(m, n1 * n2))
    F, G = rng.standard_normal((n1, k)), rng.standard_normal((n2, k))
    y = rng.standard_normal(m)
    zref = A @ (F @ G.T).ravel() - y
    S = (A.T @ zref).reshape(n1, n2)
    dt = np.dtype(dtype)
    for nt in (1, 3):
        op = lc.SparseOperator((meas, rows, cols, vals.astype(dt)), (n1, n2), m=m,
                               n_threads=nt)
        _, z, SG, StF = op.residual_gradient(F.astype(dt), G.astype(dt), y.astype(dt))
        assert_close(z, zref, dt.type)
        assert_close(SG, S @ G, dt.type)
        assert_close(StF, S.T @ F, dt.type)
