"""The fused line-search products (``MeasurementOperator.line_search_products``, the
kernels of src/_linesearch.pyx.tp) against plain numpy, and the steps they give against
the fallback path of ``LineSearch`` (two factored forwards and five dots).

Every case writes its measurement matrices out as a dense (m, n1 n2) float64 array built
from the raw inputs with numpy (never from the operator's kernels); the reference forms
u = A(D_F G^T + F D_G^T) and v = A(D_F D_G^T) densely and takes the five dots in float64.
"""

import functools

import numpy as np
import pytest
import scipy.sparse as sp

import lowrank_core as lc
from lowrank_core.methods import _base as methods_base
from lowrank_core.methods.linesearch import LineSearch
from lowrank_core.operators import MeasurementOperator, _indexing, rankone

DTYPES = [np.float64, np.float32]
#: relative tolerance of each product against its Cauchy-Schwarz scale (see check)
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}
N1, N2 = 23, 17
#: literal-k ladder ends (1, 16), a run-time k <= KMAX (17) and the k > KMAX path (40)
KS = [1, 3, 16, 17, 40]


@pytest.fixture(autouse=True)
def _threads_even_for_small_problems(monkeypatch):
    """The cases are tiny; let every kind still split its work over several threads."""
    monkeypatch.setattr(_indexing, "MIN_ENTRIES_PER_THREAD", 1)
    monkeypatch.setattr(rankone, "MIN_FLOPS_PER_THREAD", 1)


# ----------------------------------------------------------------------- cases
# Each case: (operator, Aref, square) with Aref the (m, n1*n2) float64 matrix of vec(A_i).

def dense_case(rng, dtype, square):
    n2 = N1 if square else N2
    A = rng.standard_normal((70, N1, n2)).astype(dtype)
    return lc.DenseOperator(A), A.astype(np.float64).reshape(70, -1)


def symmetric_case(rng, dtype, square=True):
    B = rng.standard_normal((70, N1, N1))
    A = ((B + B.transpose(0, 2, 1)) / 2).astype(dtype)
    return lc.SymmetricDenseOperator(A), A.astype(np.float64).reshape(70, -1)


def entry_case(rng, dtype, square, *, sorted_input=False, scale=1.0):
    n2, m = (N1 if square else N2), 160
    rows = rng.integers(0, N1 - 3, m)  # rows N1-3..N1-1 never observed (empty rows)
    cols = rng.integers(0, n2 - 2, m)
    rows[10:20], cols[10:20] = rows[0], cols[0]  # one entry observed 11 times
    if sorted_input:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
    op = lc.EntryOperator(rows, cols, (N1, n2), dtype=dtype, scale=scale)
    Aref = np.zeros((m, N1 * n2))
    Aref[np.arange(m), rows * n2 + cols] = scale
    return op, Aref


def sparse_case(rng, dtype, square, *, use_scipy=False):
    n2, m, s = (N1 if square else N2), 150, 5
    meas = np.repeat(np.arange(m), s)
    meas = meas[meas != 7]  # measurement 7 has no nonzeros
    rr = rng.integers(0, N1 - 2, meas.size)
    cc = rng.integers(0, n2, meas.size)
    rr[:3], cc[:3] = rr[0], cc[0]  # repeated position inside measurement 0
    vals = rng.standard_normal(meas.size).astype(dtype)
    perm = rng.permutation(meas.size)
    meas, rr, cc, vals = meas[perm], rr[perm], cc[perm], vals[perm]
    Aref = np.zeros((m, N1 * n2))
    np.add.at(Aref, (meas, rr * n2 + cc), vals.astype(np.float64))
    if use_scipy:
        A = sp.coo_matrix((vals, (meas, rr * n2 + cc)), shape=(m, N1 * n2)).tocsr()
        return lc.SparseOperator(A, (N1, n2)), Aref
    return lc.SparseOperator((meas, rr, cc, vals), (N1, n2), m=m), Aref


def rank_one_case(rng, dtype, square, *, symmetric=False):
    m, n2 = 90, (N1 if (square or symmetric) else N2)
    a = rng.standard_normal((m, N1)).astype(dtype)
    if symmetric:
        op, b = lc.RankOneOperator(a, block=7), a
    else:
        b = rng.standard_normal((m, n2)).astype(dtype)
        op = lc.RankOneOperator(a, b, block=7)
    Aref = np.einsum("ij,il->ijl", a.astype(np.float64), b.astype(np.float64))
    return op, Aref.reshape(m, -1)


class _ForwardOnly(MeasurementOperator):
    """A minimal subclass with only ``_forward_into``: the base class's generic
    products (two factored forwards and five dots)."""

    kind = None

    def __init__(self, A):
        super().__init__()
        self._A = A
        self.m, self.shape, self.dtype = A.shape[0], A.shape[1:], A.dtype

    def _forward_into(self, M, out):
        out[...] = self._A.reshape(self.m, -1) @ M.reshape(-1)


def generic_case(rng, dtype, square):
    A = rng.standard_normal((40, N1, N1 if square else N2)).astype(dtype)
    return _ForwardOnly(A), A.astype(np.float64).reshape(40, -1)


CASES = {
    "dense": dense_case,
    "symmetric": symmetric_case,
    "entries": entry_case,
    "entries-sorted": functools.partial(entry_case, sorted_input=True, scale=0.5),
    "sparse": sparse_case,
    "sparse-scipy": functools.partial(sparse_case, use_scipy=True),
    "rank-one": rank_one_case,
    "rank-one-sym": functools.partial(rank_one_case, symmetric=True),
    "generic": generic_case,
}
#: cases whose operator models X X^T only (square; G = F, D_G = D_F runs)
SQUARE_ONLY = {"symmetric", "rank-one-sym"}
#: cases whose sums are documented bitwise independent of the thread count
THREAD_INDEPENDENT = {"dense", "symmetric", "entries", "entries-sorted", "sparse",
                      "sparse-scipy"}


def build(case, dtype, square=False, seed=0):
    rng = np.random.default_rng(seed)
    op, Aref = CASES[case](rng, dtype, square or case in SQUARE_ONLY)
    return op, Aref, rng


def reference(Aref, shape, z, F, G, D_F, D_G):
    """The five products with u, v formed densely in float64 (D None = zero block)."""
    F, G = F.astype(np.float64), G.astype(np.float64)
    D_F = np.zeros_like(F) if D_F is None else D_F.astype(np.float64)
    D_G = np.zeros_like(G) if D_G is None else D_G.astype(np.float64)
    u = Aref @ (D_F @ G.T + F @ D_G.T).reshape(-1)
    v = Aref @ (D_F @ D_G.T).reshape(-1)
    z = z.astype(np.float64)
    return np.array([z @ u, u @ u, z @ v, u @ v, v @ v]), np.linalg.norm(z), \
        np.linalg.norm(u), np.linalg.norm(v)


def check(got, ref, dtype):
    """Each product within RTOL of its Cauchy-Schwarz scale (|z.u| <= ||z|| ||u||, ...)."""
    vals, nz, nu, nv = ref
    scales = np.array([nz * nu, nu * nu, nz * nv, nu * nv, nv * nv])
    got = np.asarray(got, np.float64)
    assert got.shape == (5,)
    tol = RTOL[np.dtype(dtype)] * np.maximum(scales, 1e-300)
    assert np.all(np.abs(got - vals) <= tol), (got, vals, np.abs(got - vals) / tol)


def draw(rng, op, dtype, k, symmetric_use):
    n1, n2 = op.shape
    F = rng.standard_normal((n1, k)).astype(dtype)
    D_F = rng.standard_normal((n1, k)).astype(dtype)
    if symmetric_use:
        return F, F, D_F, D_F
    return (F, rng.standard_normal((n2, k)).astype(dtype), D_F,
            rng.standard_normal((n2, k)).astype(dtype))


# ----------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_products_match_numpy(case, dtype, k):
    """All five products, the full search, against u and v formed densely."""
    op, Aref, rng = build(case, dtype)
    F, G, D_F, D_G = draw(rng, op, dtype, k, case in SQUARE_ONLY)
    z = rng.standard_normal(op.m).astype(dtype)
    got = op.line_search_products(z, F, G, D_F, D_G)
    assert all(isinstance(x, float) for x in got)
    check(got, reference(Aref, op.shape, z, F, G, D_F, D_G), dtype)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 17, 40])
def test_products_symmetric_use(case, dtype, k):
    """G = F, D_G = D_F (the X X^T runs): u = A(D X^T + X D^T), v = A(D D^T), on every
    kind with a square shape (the rank-one symmetric model takes its one-GEMM path)."""
    op, Aref, rng = build(case, dtype, square=True)
    X, _, D, _ = draw(rng, op, dtype, k, True)
    z = rng.standard_normal(op.m).astype(dtype)
    got = op.line_search_products(z, X, X, D, D)
    check(got, reference(Aref, op.shape, z, X, X, D, D), dtype)
    # G omitted means G = F
    assert op.line_search_products(z, X, None, D, D) == got


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 5, 40])
def test_one_factor_products(case, dtype, k):
    """D_G = None: u = A(D_F G^T); D_F = None: u = A(F D_G^T); v = 0 (AGN's searches)."""
    op, Aref, rng = build(case, dtype)
    F, G, D_F, D_G = draw(rng, op, dtype, k, case in SQUARE_ONLY)
    z = rng.standard_normal(op.m).astype(dtype)
    for dirs in [(D_F, None), (None, D_G)]:
        got = op.line_search_products(z, F, G, *dirs)
        assert got[2:] == (0.0, 0.0, 0.0)
        check(got, reference(Aref, op.shape, z, F, G, *dirs), dtype)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("k", [3, 17])
def test_thread_counts(case, k):
    """Repeated calls give the same bits for a given thread count (1 and 2); the kinds
    documented as thread-count independent give the same bits for 1 and 2 threads."""
    op, _, rng = build(case, np.float64)
    F, G, D_F, D_G = draw(rng, op, np.float64, k, case in SQUARE_ONLY)
    z = rng.standard_normal(op.m)
    results = {}
    for T in (1, 2):
        op.n_threads = T
        first = op.line_search_products(z, F, G, D_F, D_G)
        for _ in range(3):
            assert op.line_search_products(z, F, G, D_F, D_G) == first
        results[T] = first
    if case in THREAD_INDEPENDENT:
        assert results[1] == results[2]
    else:
        np.testing.assert_allclose(results[1], results[2], rtol=1e-12)


def test_validation_names_the_argument():
    op, _, rng = build("entries", np.float64)
    F, G, D_F, D_G = draw(rng, op, np.float64, 3, False)
    z = rng.standard_normal(op.m)
    with pytest.raises(ValueError, match="direction"):
        op.line_search_products(z, F, G)
    with pytest.raises(ValueError, match="D_F"):
        op.line_search_products(z, F, G, D_F[:-1], D_G)
    with pytest.raises(TypeError, match="D_G"):
        op.line_search_products(z, F, G, D_F, D_G.astype(np.float32))
    with pytest.raises(ValueError, match="z"):
        op.line_search_products(z[:-1], F, G, D_F, D_G)


# ------------------------------------------------- the step: fused vs fallback
PROBLEMS = {
    "entries": {"n1": 40, "n2": 30, "m": 500, "operator": "entries"},
    "sparse": {"n1": 40, "n2": 30, "m": 400, "operator": "sparse"},
    "dense": {"n1": 12, "n2": 10, "m": 300, "operator": "gaussian"},
    "rank-one": {"n1": 20, "n2": 15, "m": 300, "operator": "rank-one"},
}


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
@pytest.mark.parametrize("psd", [False, True])
def test_step_fused_equals_fallback(kind, psd):
    """The quartic and both quadratic steps from the fused products equal those of the
    fallback (factored forwards and dots) to rounding, asymmetric and symmetric runs."""
    spec = dict(PROBLEMS[kind])
    if psd:
        spec["n2"] = spec["n1"]
    prob = lc.make_problem(**spec, rank=3, psd=psd, seed=3)
    op, y = prob.operator, prob.y
    rng = np.random.default_rng(4)
    n1, n2 = op.shape
    F = rng.standard_normal((n1, 4))
    G = F if psd else rng.standard_normal((n2, 4))
    state = methods_base.SolverState(op, y, F, G, symmetric=psd)
    state.evaluate()
    fused, slow = LineSearch(state), LineSearch(state, fused=False)
    assert fused._products is not None and slow._products is None
    D_F, D_G = state.grad_F, state.grad_G
    eta = fused.search(state.F, state.G, D_F, D_G)
    assert eta > 0
    assert eta == pytest.approx(slow.search(state.F, state.G, D_F, D_G), rel=1e-12)
    if not psd:
        for name in ("search_first", "search_second"):
            a = getattr(fused, name)(state.F, state.G, D_F if name == "search_first" else D_G)
            b = getattr(slow, name)(state.F, state.G, D_F if name == "search_first" else D_G)
            assert a > 0
            assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("method", ["precgd", "gd", "agn"])
def test_auto_iterates_fused_vs_fallback(monkeypatch, method):
    """step="auto" iterates of a whole solve on the fused path agree with the fallback
    path's to rounding (only the order of the products' summation differs)."""
    prob = lc.make_problem(n1=40, n2=30, rank=3, m=600, operator="entries", seed=5)
    kw = dict(method=method, init="spectral", max_iter=15, tol=1e-300, record=False,
              seed=1)
    fused = lc.solve(prob.operator, prob.y, 3, **kw)
    monkeypatch.setattr(methods_base, "LineSearch", functools.partial(LineSearch,
                                                                       fused=False))
    slow = lc.solve(prob.operator, prob.y, 3, **kw)
    assert fused.n_iter == slow.n_iter == 15
    np.testing.assert_allclose(fused.F, slow.F, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fused.G, slow.G, rtol=1e-8, atol=1e-10)


class _DuckOperator:
    """Only the public methods the solvers need: the line search takes the fallback."""

    def __init__(self, op):
        self._op = op
        self.shape, self.m, self.dtype, self.symmetric = op.shape, op.m, op.dtype, False

    def residual_gradient(self, F, G, y, out=None):
        return self._op.residual_gradient(F, G, y, out=out)

    def forward_factored(self, F, G=None):
        return self._op.forward_factored(F, G)


def test_duck_typed_operator_uses_the_fallback():
    prob = lc.make_problem(n1=30, n2=25, rank=2, m=400, operator="entries", seed=6)
    duck = _DuckOperator(prob.operator)
    rng = np.random.default_rng(0)
    F, G = rng.standard_normal((30, 2)), rng.standard_normal((25, 2))
    state = methods_base.SolverState(duck, prob.y, F, G, symmetric=False)
    state.evaluate()
    ls = LineSearch(state)
    assert ls._products is None
    ref_state = methods_base.SolverState(prob.operator, prob.y, F, G, symmetric=False)
    ref_state.evaluate()
    eta = ls.search(state.F, state.G, state.SG, state.StF)
    assert eta == pytest.approx(LineSearch(ref_state).search(
        ref_state.F, ref_state.G, ref_state.SG, ref_state.StF), rel=1e-12)


def test_sharded_products_are_the_sum_over_shards():
    """ShardedOperator: one round trip, the five products summed over the shards."""
    distributed = pytest.importorskip("distributed")
    import warnings

    from lowrank_core.distributed import ShardedOperator

    op, Aref, rng = build("rank-one", np.float64)
    F, G, D_F, D_G = draw(rng, op, np.float64, 3, False)
    z = rng.standard_normal(op.m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=False, dashboard_address=None,
                                           silence_logs=50)
    with cluster, distributed.Client(cluster) as client:
        with ShardedOperator.from_operator(op, 3, client) as sharded:
            got = sharded.line_search_products(z, F, G, D_F, D_G)
            check(got, reference(Aref, op.shape, z, F, G, D_F, D_G), np.float64)
            quad = sharded.line_search_products(z, F, G, None, D_G)
            check(quad, reference(Aref, op.shape, z, F, G, None, D_G), np.float64)
