"""The operator contract, checked with the same tests on every registered operator kind.

Each case builds an operator together with its measurement matrices written out as a
plain dense (m, n1 n2) float64 array, constructed from the raw inputs with numpy, never
from the operator's kernels. Every public product is compared against numpy on that
matrix, in both dtypes, with ONE tolerance table (``RTOL``). Kind-specific behaviour
(dispatch widths, packed layout, index types, spectral estimators, ...) is tested in
test_dense_operators.py and test_structured_operators.py.
"""

import itertools
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

import lowrank_core as lc
from lowrank_core.operators import ENSEMBLES, OPERATORS, _indexing, rankone

DTYPES = [np.float64, np.float32]
#: relative tolerance (to the reference's largest entry) of every product in this module
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
N1, N2, K = 23, 17, 4


@pytest.fixture(autouse=True)
def _threads_even_for_small_problems(monkeypatch):
    """The cases are tiny; let every kind still split its work over several threads."""
    monkeypatch.setattr(_indexing, "MIN_ENTRIES_PER_THREAD", 1)
    monkeypatch.setattr(rankone, "MIN_FLOPS_PER_THREAD", 1)


# ----------------------------------------------------------------------- cases
# Each case: (operator, Aref) with Aref the (m, n1*n2) float64 matrix of vec(A_i).

def dense_case(rng, dtype, n_threads=None):
    m = 60
    A = rng.standard_normal((m, N1, N2)).astype(dtype)
    return lc.DenseOperator(A, n_threads=n_threads), A.astype(np.float64).reshape(m, -1)


def symmetric_case(rng, dtype, n_threads=None):
    m = 60
    B = rng.standard_normal((m, N1, N1))
    A = ((B + B.transpose(0, 2, 1)) / 2).astype(dtype)
    op = lc.SymmetricDenseOperator(A, n_threads=n_threads)
    return op, A.astype(np.float64).reshape(m, -1)


def entry_case(rng, dtype, *, sorted_input=False, scale=1.0, n_threads=None):
    m = 150
    rows = rng.integers(0, N1 - 3, m)  # rows N1-3..N1-1 never observed (empty rows)
    cols = rng.integers(0, N2 - 2, m)  # columns N2-2, N2-1 never observed
    rows[10:20] = rows[0]
    cols[10:20] = cols[0]  # the same entry observed 11 times
    if sorted_input:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
    op = lc.EntryOperator(rows, cols, (N1, N2), dtype=dtype, scale=scale,
                          n_threads=n_threads)
    Aref = np.zeros((m, N1 * N2))
    Aref[np.arange(m), rows * N2 + cols] = scale
    return op, Aref


def sparse_case(rng, dtype, *, use_scipy=False, n_threads=None):
    m, s = 60, 5
    meas = np.repeat(np.arange(m), s)
    meas = meas[meas != 7]  # measurement 7 has no nonzeros
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


def rank_one_case(rng, dtype, *, symmetric=False, n_threads=None, block=7):
    m = 90
    a = rng.standard_normal((m, N1)).astype(dtype)
    if symmetric:
        op, b = lc.RankOneOperator(a, n_threads=n_threads, block=block), a
    else:
        b = rng.standard_normal((m, N2)).astype(dtype)
        op = lc.RankOneOperator(a, b, n_threads=n_threads, block=block)
    Aref = np.einsum("ij,il->ijl", a.astype(np.float64), b.astype(np.float64))
    return op, Aref.reshape(m, -1)


CASES = {
    "dense": dense_case,
    "symmetric": symmetric_case,
    "entries": entry_case,
    "entries-sorted": lambda rng, dt, **kw: entry_case(rng, dt, sorted_input=True,
                                                         scale=0.5, **kw),
    "sparse": sparse_case,
    "sparse-scipy": lambda rng, dt, **kw: sparse_case(rng, dt, use_scipy=True, **kw),
    "rank-one": rank_one_case,
    "rank-one-sym": lambda rng, dt, **kw: rank_one_case(rng, dt, symmetric=True, **kw),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param


def build(case, dtype, seed=0, **kw):
    rng = np.random.default_rng(seed)
    op, Aref = CASES[case](rng, dtype, **kw)
    return op, Aref, rng


def assert_close(x, ref, dtype):
    """x keeps the operator's dtype and matches ref to RTOL of ref's largest entry."""
    dtype = np.dtype(dtype)
    assert x.dtype == dtype, f"dtype changed: {x.dtype} != {dtype}"
    ref = np.asarray(ref, np.float64)
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(x.astype(np.float64), ref, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * scale)


def factors(rng, op, dtype, k=K):
    n1, n2 = op.shape
    return (rng.standard_normal((n1, k)).astype(dtype),
            rng.standard_normal((n2, k)).astype(dtype))


def adjoint_matrix(Aref, z, shape):
    return (Aref.T @ np.asarray(z, np.float64)).reshape(shape)


# ----------------------------------------------------------------------- registry
def test_every_registered_kind_has_a_case():
    """A new kind registered in OPERATORS must get a case here (and so every check)."""
    kinds = {CASES[c](np.random.default_rng(0), np.float64)[0].kind for c in CASES}
    assert kinds == set(OPERATORS)
    for name, cls in OPERATORS.items():
        assert cls.kind == name and issubclass(cls, lc.MeasurementOperator)
        assert getattr(lc, cls.__name__) is cls  # public from the package root
    assert set(ENSEMBLES) == {"gaussian", "sparse", "entries", "rank-one"}


@pytest.mark.parametrize("kind", sorted(OPERATORS))
def test_every_kind_draws_a_random_instance_and_documents_its_file_keys(kind):
    cls = OPERATORS[kind]
    assert cls.file_format  # listed by `lowrank-core solve --help`
    for dtype in (np.dtype(np.float64), np.dtype(np.float32)):
        op = cls.random_ensemble(np.random.default_rng(0), 9, 9, 40, kind == "symmetric",
                                 dtype)
        assert type(op) is cls and op.kind == kind
        assert (op.m, op.shape, op.dtype) == (40, (9, 9), dtype)


@pytest.mark.parametrize("name", sorted(ENSEMBLES))
@pytest.mark.parametrize("psd", [False, True])
def test_make_problem_every_ensemble_measures_its_truth(name, psd):
    n2 = 14 if psd else 11
    pr = lc.make_problem(14, n2, rank=2, m=120, operator=name, psd=psd, seed=1)
    L, R = pr.truth_factors
    np.testing.assert_allclose(pr.y, pr.operator.forward(L @ R.T), rtol=1e-10, atol=1e-12)
    assert type(pr.operator).kind in OPERATORS and pr.operator.m == 120


# ----------------------------------------------------------------------- products
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_adjoint_match_numpy(case, dtype):
    op, Aref, rng = build(case, dtype)
    n1, n2 = op.shape
    M = rng.standard_normal((n1, n2)).astype(dtype)
    z = rng.standard_normal(op.m).astype(dtype)
    assert_close(op.forward(M), Aref @ M.astype(np.float64).ravel(), dtype)
    S = op.adjoint(z)
    assert S.shape == op.shape
    assert_close(S, adjoint_matrix(Aref, z, op.shape), dtype)
    F, G = factors(rng, op, dtype)
    P = F.astype(np.float64) @ G.astype(np.float64).T
    assert_close(op.forward_factored(F, G), Aref @ P.ravel(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adjoint_identity(case, dtype):
    """<A(M), z> = <M, A^T(z)> up to rounding (scale ||A(M)|| ||z||)."""
    op, _, rng = build(case, dtype, seed=2)
    M = rng.standard_normal(op.shape).astype(dtype)
    z = rng.standard_normal(op.m).astype(dtype)
    AM = op.forward(M).astype(np.float64)
    lhs = float(AM @ z.astype(np.float64))
    rhs = float(np.sum(M.astype(np.float64) * op.adjoint(z).astype(np.float64)))
    assert abs(lhs - rhs) <= RTOL[np.dtype(dtype)] * np.linalg.norm(AM) * np.linalg.norm(z)


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_gradient_matches_numpy(case, dtype, n_threads):
    op, Aref, rng = build(case, dtype, n_threads=n_threads)
    F, G = factors(rng, op, dtype)
    y = rng.standard_normal(op.m).astype(dtype)
    F64, G64 = F.astype(np.float64), G.astype(np.float64)
    zref = Aref @ (F64 @ G64.T).ravel() - y.astype(np.float64)
    S = adjoint_matrix(Aref, zref, op.shape)
    loss, z, SG, StF = op.residual_gradient(F, G, y)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, 0.5 * zref @ zref, rtol=RTOL[np.dtype(dtype)])
    assert_close(z, zref, dtype)
    assert_close(SG, S @ G64, dtype)
    assert_close(StF, S.T @ F64, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_gradient_with_G_omitted(case, dtype):
    """G = None means G = F (square operators only)."""
    op, Aref, rng = build(case, dtype, seed=5)
    n1, n2 = op.shape
    y = rng.standard_normal(op.m).astype(dtype)
    if n1 != n2:
        with pytest.raises(ValueError, match="G may be omitted"):
            op.residual_gradient(np.ones((n1, 2), dtype), None, y)
        return
    X = rng.standard_normal((n1, K)).astype(dtype)
    X64 = X.astype(np.float64)
    zref = Aref @ (X64 @ X64.T).ravel() - y.astype(np.float64)
    S = adjoint_matrix(Aref, zref, op.shape)
    _, z, SX, StX = op.residual_gradient(X, None, y)
    assert_close(z, zref, dtype)
    assert_close(SX, S @ X64, dtype)
    assert_close(StX, S.T @ X64, dtype)
    assert_close(op.forward_factored(X), Aref @ (X64 @ X64.T).ravel(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adjoint_products_match_numpy(case, dtype):
    op, Aref, rng = build(case, dtype)
    n1, n2 = op.shape
    F, G = factors(rng, op, dtype)
    w = rng.standard_normal(op.m).astype(dtype)
    S = adjoint_matrix(Aref, w, op.shape)
    SG, StF = op.adjoint_products(w, F, G)
    assert SG.shape == (n1, K) and StF.shape == (n2, K)
    assert_close(SG, S @ G.astype(np.float64), dtype)
    assert_close(StF, S.T @ F.astype(np.float64), dtype)
    if n1 == n2:  # G omitted means G = F
        SX, StX = op.adjoint_products(w, F)
        assert_close(SX, S @ F.astype(np.float64), dtype)
        assert_close(StX, S.T @ F.astype(np.float64), dtype)
    # the same call twice (cached workspace reused) gives the same bits
    again = op.adjoint_products(w, F, G)
    np.testing.assert_array_equal(again[0], SG)
    np.testing.assert_array_equal(again[1], StF)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adjoint_operator_matches_numpy(case, dtype):
    op, Aref, rng = build(case, dtype, seed=3)
    n1, n2 = op.shape
    z = rng.standard_normal(op.m).astype(dtype)
    S = adjoint_matrix(Aref, z, op.shape)
    L = op.adjoint_operator(z)
    assert L.shape == (n1, n2) and L.dtype == np.dtype(dtype)
    X = rng.standard_normal((n2, 3)).astype(dtype)
    U = rng.standard_normal((n1, 3)).astype(dtype)
    assert_close(L.matmat(X), S @ X.astype(np.float64), dtype)
    assert_close(L.matvec(X[:, 0]), S @ X[:, 0].astype(np.float64), dtype)
    assert_close(L.rmatmat(U), S.T @ U.astype(np.float64), dtype)
    assert_close(L.rmatvec(U[:, 1]), S.T @ U[:, 1].astype(np.float64), dtype)
    assert_close(L.H.matmat(U), S.T @ U.astype(np.float64), dtype)
    # the spectral estimate is a LinearOperator of the same shape and dtype
    sp_op = op.spectral_operator(z)
    assert sp_op.shape == (n1, n2)
    assert sp_op.matvec(np.ones(n2, dtype)).dtype == np.dtype(dtype)


def test_finite_difference_gradient(case):
    """(S G, S^T F) is the gradient of 0.5 ||A(F G^T) - y||^2 (a directional derivative)."""
    op, _, rng = build(case, np.float64, seed=4)
    F, G = factors(rng, op, np.float64)
    D, E = factors(rng, op, np.float64)
    y = rng.standard_normal(op.m)
    _, _, SG, StF = op.residual_gradient(F, G, y)

    def f(t):
        return op.residual_gradient(F + t * D, G + t * E, y)[0]

    h = 1e-5
    fd = (f(h) - f(-h)) / (2 * h)
    exact = float(np.sum(SG * D) + np.sum(StF * E))
    assert fd == pytest.approx(exact, rel=1e-7)
    # and the loss is 0.5 ||forward_factored - y||^2
    assert f(0.0) == pytest.approx(0.5 * float(np.sum((op.forward_factored(F, G) - y) ** 2)),
                                   rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_preallocated_out_is_filled(case, dtype):
    op, _, rng = build(case, dtype, seed=1)
    n1, n2 = op.shape
    F, G = factors(rng, op, dtype)
    y = rng.standard_normal(op.m).astype(dtype)
    out = (np.full(op.m, np.nan, dtype), np.full((n1, K), np.nan, dtype),
           np.full((n2, K), np.nan, dtype))
    loss, z, SG, StF = op.residual_gradient(F, G, y, out=out)
    assert z is out[0] and SG is out[1] and StF is out[2]
    ref = op.residual_gradient(F, G, y)
    assert loss == ref[0]
    for got, want in zip((z, SG, StF), ref[1:]):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"out\[SG\]"):
        op.residual_gradient(F, G, y, out=(out[0], np.empty((n1, K + 1), dtype), out[2]))
    with pytest.raises(TypeError, match="out must be a tuple"):
        op.residual_gradient(F, G, y, out=out[0])


def test_non_contiguous_inputs(case):
    """Strided and Fortran-ordered F, G, y, M give the same numbers as contiguous ones."""
    op, _, rng = build(case, np.float64, seed=7)
    n1, n2 = op.shape
    F = np.asfortranarray(rng.standard_normal((n1, K)))
    G = rng.standard_normal((K, n2)).T
    y = rng.standard_normal(2 * op.m)[::2]
    M = rng.standard_normal((n2, n1)).T
    got = op.residual_gradient(F, G, y)
    want = op.residual_gradient(np.ascontiguousarray(F), np.ascontiguousarray(G),
                                np.ascontiguousarray(y))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(op.forward(M), op.forward(np.ascontiguousarray(M)))


@pytest.mark.parametrize("nt", [1, 2, 3])
def test_bitwise_repeatable_for_fixed_threads(case, nt):
    op, _, rng = build(case, np.float64, seed=6, n_threads=nt)
    F, G = factors(rng, op, np.float64)
    y = rng.standard_normal(op.m)
    w = rng.standard_normal(op.m)
    first = op.residual_gradient(F, G, y)
    first_ap = op.adjoint_products(w, F, G)
    for _ in range(3):
        again = op.residual_gradient(F, G, y)
        assert again[0] == first[0]
        for a, b in zip(first[1:], again[1:]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(first_ap, op.adjoint_products(w, F, G)):
            np.testing.assert_array_equal(a, b)


#: outputs of residual_gradient that are bitwise independent of the thread count: each
#: entry is computed by one thread in a fixed order (entries: z, the loss from it and S G,
#: rows owned by one thread; sparse: the three gather passes). The others are summed from
#: per-thread buffers in another grouping: equal up to rounding.
THREAD_INDEPENDENT = {
    "entries": ("loss", "z", "SG"), "entries-sorted": ("loss", "z", "SG"),
    "sparse": ("loss", "z", "SG", "StF"), "sparse-scipy": ("loss", "z", "SG", "StF"),
}


def test_thread_count_changes_only_rounding(case):
    results = {}
    for nt in (1, 2, 3):
        op, _, _ = build(case, np.float64, seed=6, n_threads=nt)
        rng = np.random.default_rng(7)
        F, G = factors(rng, op, np.float64)
        y = rng.standard_normal(op.m)
        results[nt] = dict(zip(("loss", "z", "SG", "StF"), op.residual_gradient(F, G, y)))
    for nt in (2, 3):
        for name in THREAD_INDEPENDENT.get(case, ()):
            np.testing.assert_array_equal(results[nt][name], results[1][name])
        for name in ("z", "SG", "StF"):
            b = results[1][name]
            np.testing.assert_allclose(results[nt][name], b, rtol=1e-13,
                                       atol=1e-13 * np.abs(b).max())


def test_precision_is_kept_and_never_mixed(case):
    """A float32 operator returns float32 everywhere and refuses float64 input."""
    op, _, rng = build(case, np.float32, seed=9)
    assert op.dtype == np.float32
    F, G = factors(rng, op, np.float32)
    y = rng.standard_normal(op.m).astype(np.float32)
    _, z, SG, StF = op.residual_gradient(F, G, y)
    assert z.dtype == SG.dtype == StF.dtype == np.float32
    assert op.forward_factored(F, G).dtype == np.float32
    assert op.adjoint(y).dtype == np.float32
    assert all(a.dtype == np.float32 for a in op.adjoint_products(y, F, G))
    with pytest.raises(TypeError, match=r"F has dtype float64.*astype"):
        op.residual_gradient(F.astype(np.float64), G, y)
    with pytest.raises(TypeError, match="y has dtype float64"):
        op.residual_gradient(F, G, y.astype(np.float64))
    with pytest.raises(TypeError, match="M has dtype float64"):
        op.forward(np.zeros(op.shape))


# ----------------------------------------------------------------------- bad input
BAD_CALLS = [
    (lambda op, F, G, y: op.residual_gradient(F[:-1], G, y), ValueError,
     lambda op: rf"F must have shape \({op.shape[0]}, k\)"),
    (lambda op, F, G, y: op.residual_gradient(F, G[:, :1], y), ValueError,
     lambda op: "G must have shape"),
    (lambda op, F, G, y: op.residual_gradient(F, G, y[:-1]), ValueError,
     lambda op: rf"y must have shape \({op.m},\)"),
    (lambda op, F, G, y: op.residual_gradient(F, G, np.where(y > 0, np.nan, y)), ValueError,
     lambda op: "y contains"),
    (lambda op, F, G, y: op.residual_gradient(np.where(F > 0, np.inf, F), G, y), ValueError,
     lambda op: "F contains"),
    (lambda op, F, G, y: op.residual_gradient(F, G), TypeError, lambda op: "needs y"),
    (lambda op, F, G, y: op.residual_gradient(F.astype(np.complex128), G, y), TypeError,
     lambda op: "real numeric"),
    (lambda op, F, G, y: op.residual_gradient(F.astype(np.int64), G, y), TypeError,
     lambda op: "float32 or float64"),
    (lambda op, F, G, y: op.residual_gradient(F.astype(np.float32), G, y), TypeError,
     lambda op: r"F has dtype float32.*astype"),
    (lambda op, F, G, y: op.residual_gradient(F, G, y.astype(np.float32)), TypeError,
     lambda op: "y has dtype float32"),
    (lambda op, F, G, y: op.residual_gradient(F[:, :0], G[:, :0], y), ValueError,
     lambda op: "empty"),
    (lambda op, F, G, y: op.forward(np.ones((op.shape[0], op.shape[1] + 1))), ValueError,
     lambda op: rf"M must have shape \({op.shape[0]}, {op.shape[1]}\)"),
    (lambda op, F, G, y: op.forward_factored(F, G[:-1]), ValueError,
     lambda op: "G must have shape"),
    (lambda op, F, G, y: op.adjoint(np.ones(3)), ValueError,
     lambda op: rf"z must have shape \({op.m},\)"),
    (lambda op, F, G, y: op.adjoint_operator(y[:-1]), ValueError,
     lambda op: "z must have shape"),
    (lambda op, F, G, y: op.spectral_operator(y[:-1]), ValueError,
     lambda op: "y must have shape"),
    (lambda op, F, G, y: op.adjoint_products(y[:-1], F, G), ValueError,
     lambda op: rf"w must have shape \({op.m},\)"),
    (lambda op, F, G, y: op.adjoint_products(y.astype(np.float32), F, G), TypeError,
     lambda op: "w has dtype float32"),
    (lambda op, F, G, y: op.adjoint_products(y, F, G[:, :1]), ValueError,
     lambda op: "G must have shape"),
    (lambda op, F, G, y: op.take_rows(3, 3), ValueError, lambda op: "row range"),
    (lambda op, F, G, y: op.take_rows(0, op.m + 1), ValueError, lambda op: "row range"),
]


@pytest.mark.parametrize("index", range(len(BAD_CALLS)))
def test_bad_input_is_named(case, index):
    op, _, rng = build(case, np.float64)
    F, G = factors(rng, op, np.float64)
    y = rng.standard_normal(op.m)
    call, exc, match = BAD_CALLS[index]
    with pytest.raises(exc, match=match(op)):
        call(op, F, G, y)


def test_G_omitted_on_a_rectangular_operator_is_an_error():
    op, _, _ = build("dense", np.float64)
    with pytest.raises(ValueError, match="square"):
        op.residual_gradient(np.ones((N1, 2)), None, np.zeros(op.m))
    with pytest.raises(ValueError, match="square"):
        op.adjoint_products(np.zeros(op.m), np.ones((N1, 2)))


# ----------------------------------------------------------------- shards and files
@pytest.mark.parametrize("dtype", DTYPES)
def test_take_rows_shards_add_up_to_the_whole(case, dtype):
    """Row blocks measure their rows, and A^T(z) = sum_s A_s^T(z_s)."""
    op, Aref, rng = build(case, dtype, seed=8)
    F, G = factors(rng, op, dtype)
    y = rng.standard_normal(op.m).astype(dtype)
    M = rng.standard_normal(op.shape).astype(dtype)
    blocks = list(itertools.pairwise([0, 1, op.m // 3, op.m]))
    shards = [op.take_rows(a, b) for a, b in blocks]
    for (a, b), sh in zip(blocks, shards):
        assert type(sh) is type(op) and sh.m == b - a and sh.shape == op.shape
        assert sh.dtype == op.dtype
        assert_close(sh.forward(M), Aref[a:b] @ M.astype(np.float64).ravel(), dtype)
    parts = [sh.residual_gradient(F, G, y[a:b])
             for (a, b), sh in zip(blocks, shards)]
    whole = op.residual_gradient(F, G, y)
    F64, G64 = F.astype(np.float64), G.astype(np.float64)
    np.testing.assert_allclose(sum(p[0] for p in parts), whole[0], rtol=RTOL[np.dtype(dtype)])
    assert_close(np.concatenate([p[1] for p in parts]), whole[1].astype(np.float64), dtype)
    zref = Aref @ (F64 @ G64.T).ravel() - y.astype(np.float64)
    S = adjoint_matrix(Aref, zref, op.shape)
    assert_close(sum(p[2].astype(np.float64) for p in parts).astype(dtype), S @ G64, dtype)
    assert_close(sum(p[3].astype(np.float64) for p in parts).astype(dtype), S.T @ F64, dtype)


def test_to_arrays_from_arrays_round_trip(case):
    """The problem-file form rebuilds an operator measuring exactly the same."""
    for dtype in DTYPES:
        op, _, rng = build(case, dtype, seed=9)
        arrays = op.to_arrays()
        assert "kind" not in arrays
        for v in arrays.values():
            assert isinstance(v, np.ndarray | np.generic) and v.dtype != object
        back = OPERATORS[op.kind].from_arrays(arrays, dtype=op.dtype)
        assert type(back) is type(op)
        assert (back.m, back.shape, back.dtype, back.symmetric) == \
            (op.m, op.shape, op.dtype, op.symmetric)
        M = rng.standard_normal(op.shape).astype(dtype)
        np.testing.assert_allclose(back.forward(M), op.forward(M), rtol=RTOL[np.dtype(dtype)],
                                   atol=RTOL[np.dtype(dtype)] * np.abs(op.forward(M)).max())
    with pytest.raises(KeyError):
        OPERATORS[op.kind].from_arrays({})


def test_pickle_round_trip(case):
    """Operators ship to Dask workers by pickle: same numbers, fresh lock and workspace."""
    op, _, rng = build(case, np.float64, seed=10)
    F, G = factors(rng, op, np.float64)
    y = rng.standard_normal(op.m)
    before = op.residual_gradient(F, G, y)
    back = pickle.loads(pickle.dumps(op))
    for a, b in zip(back.residual_gradient(F, G, y), before):
        np.testing.assert_array_equal(a, b)
