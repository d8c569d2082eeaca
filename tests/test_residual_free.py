"""The residual-free path of a from_entries blocked EntryOperator (issue 15, memory):
the gradient pass that never stores z and the line search that recomputes z from F, G
and y, against plain numpy and against the storing kernels; and ``solve`` (gd, fixed
and auto step) on it, which allocates no length-m buffer, against today's path.

Tiny tiles (block_shape) force many tiles, empty ones included; every dispatch width
(k = 1..16 literal, the run-time k <= KMAX and the large-k kernel), float32 and float64,
baseline and AVX2 builds.
"""

from __future__ import annotations

import importlib
import tracemalloc

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import _kernels
from lowrank_core.operators import _indexing
from lowrank_core.operators import entries as entries_mod

RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}
WIDTHS = list(range(1, 18)) + [32, 33, 41]


def _blocked_builds():
    out = [importlib.import_module("lowrank_core._entries_blocked")]
    if _kernels.cpu_has_avx2_fma():
        out.append(importlib.import_module("lowrank_core._entries_blocked_avx2"))
    return out


@pytest.fixture
def many_threads(monkeypatch):
    # small problems would otherwise run on one thread
    monkeypatch.setattr(_indexing, "MIN_ENTRIES_PER_THREAD", 1)


def _problem(n1, n2, m, k, dtype, seed, empty_rows=(), empty_cols=()):
    """Distinct observations in random order avoiding the given rows and columns."""
    rng = np.random.default_rng(seed)
    keep_r = np.setdiff1d(np.arange(n1), empty_rows)
    keep_c = np.setdiff1d(np.arange(n2), empty_cols)
    flat = rng.choice(keep_r.size * keep_c.size, m, replace=False)
    rows, cols = keep_r[flat // keep_c.size], keep_c[flat % keep_c.size]
    dt = np.dtype(dtype)
    F = rng.standard_normal((n1, k)).astype(dt)
    G = rng.standard_normal((n2, k)).astype(dt)
    vals = rng.standard_normal(m).astype(dt)
    D_F = rng.standard_normal((n1, k)).astype(dt)
    D_G = rng.standard_normal((n2, k)).astype(dt)
    return rows, cols, vals, F, G, D_F, D_G


def _numpy_gradient(rows, cols, F, G, y, scale):
    F64, G64, y64 = (np.asarray(x, np.float64) for x in (F, G, y))
    z = scale * np.einsum("ij,ij->i", F64[rows], G64[cols]) - y64
    SG = np.zeros(F.shape)
    np.add.at(SG, rows, scale * z[:, None] * G64[cols])
    StF = np.zeros(G.shape)
    np.add.at(StF, cols, scale * z[:, None] * F64[rows])
    return 0.5 * float(z @ z), SG, StF


def _numpy_line_search(rows, cols, F, G, D_F, D_G, y, scale):
    F, G, D_F, D_G, y = (np.asarray(x, np.float64) for x in (F, G, D_F, D_G, y))
    z = scale * np.einsum("ij,ij->i", F[rows], G[cols]) - y
    u = scale * (np.einsum("ij,ij->i", F[rows], D_G[cols])
                 + np.einsum("ij,ij->i", D_F[rows], G[cols]))
    v = scale * np.einsum("ij,ij->i", D_F[rows], D_G[cols])
    return np.array([z @ u, u @ u, z @ v, u @ v, v @ v])


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _op(rows, cols, vals, shape, T, block_shape=(4, 3), scale=0.7, k=10):
    op, y, order = lc.EntryOperator.from_entries(
        rows, cols, vals, shape, scale=scale, n_threads=T, layout="blocked", k=k,
        block_shape=block_shape, return_order=True)
    assert op._blocked["pos"] is None
    return op, y, order


# ------------------------------------------------------------------------- kernels
@pytest.mark.filterwarnings("ignore::lowrank_core._threads.ThreadCapWarning")
@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_gradient_bitwise_the_storing_kernel(monkeypatch, many_threads, k, dtype):
    """SG, S^T F and the loss without z: numpy to RTOL, bitwise the storing kernel (same
    layout, same threads), for 1, 2 and 3 threads, both tile traversals, empty tiles."""
    n1, n2, m = 41, 33, 400
    rows, cols, vals, F, G, _, _ = _problem(n1, n2, m, k, dtype, 30 + k,
                                            empty_rows=[3, 4, 5, 40], empty_cols=[0, 9])
    for kernels in _blocked_builds():
        monkeypatch.setattr(entries_mod, "_blocked_kernels", kernels)
        for T in (1, 2, 3):
            where = f"{kernels.__name__} k={k} T={T}"
            op, y, order = _op(rows, cols, vals, (n1, n2), T)
            assert op._residual_free(k)
            n1k, n2k = np.full((n1, k), np.nan, dtype), np.full((n2, k), np.nan, dtype)
            loss = op._loss_gradient_into(F, G, y, n1k, n2k)
            ref = _numpy_gradient(rows[order], cols[order], F, G, y, 0.7)
            assert abs(loss - ref[0]) <= RTOL[np.dtype(dtype)] * ref[0], where
            assert _rel(n1k, ref[1]) < RTOL[np.dtype(dtype)], where
            assert _rel(n2k, ref[2]) < RTOL[np.dtype(dtype)], where
            want = op.residual_gradient(F, G, y)
            assert loss == want[0], where
            np.testing.assert_array_equal(n1k, want[2], err_msg=where)
            np.testing.assert_array_equal(n2k, want[3], err_msg=where)
            op._col_major = False
            sg2, stf2 = np.empty_like(n1k), np.empty_like(n2k)
            assert op._loss_gradient_into(F, G, y, sg2, stf2) == loss, where
            np.testing.assert_array_equal(sg2, n1k, err_msg=where)
            np.testing.assert_array_equal(stf2, n2k, err_msg=where)
            assert op._cols_r is None, where                 # no row layout built


@pytest.mark.filterwarnings("ignore::lowrank_core._threads.ThreadCapWarning")
@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_line_search_from_y_against_the_stored_residual(monkeypatch, many_threads, k,
                                                       dtype):
    """The five products with z recomputed from F, G, y: numpy, and the storing path
    (line_search_products on the z residual_gradient stores) to rounding (z_i formed by
    another function, which the compiler may re-associate differently: measured 9e-16
    relative in float64, 1e-6 in float32); the same bits for 1, 2 and 3 threads."""
    n1, n2, m = 41, 33, 400
    rows, cols, vals, F, G, D_F, D_G = _problem(n1, n2, m, k, dtype, 50 + k,
                                                empty_rows=[0, 20, 21], empty_cols=[32])
    tol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}[np.dtype(dtype)]
    same = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 1e-5}[np.dtype(dtype)]
    for kernels in _blocked_builds():
        monkeypatch.setattr(entries_mod, "_blocked_kernels", kernels)
        runs = []
        for T in (1, 2, 3):
            where = f"{kernels.__name__} k={k} T={T}"
            op, y, order = _op(rows, cols, vals, (n1, n2), T, block_shape=(5, 4), scale=0.6)
            got = op._line_search_products_y(F, G, D_F, D_G, y)
            ref = _numpy_line_search(rows[order], cols[order], F, G, D_F, D_G, y, 0.6)
            assert np.max(np.abs(np.array(got) - ref)) <= tol * np.max(np.abs(ref)), where
            z = op.residual_gradient(F, G, y)[1]
            want = np.array(op.line_search_products(z, F, G, D_F, D_G))
            assert np.max(np.abs(np.array(got) - want)) <= same * np.max(np.abs(want)), \
                where
            runs.append(tuple(got))
            assert op._cols_r is None, where
        assert runs[0] == runs[1] == runs[2]


def test_residual_free_scope_and_arguments():
    """Only from_entries' blocked layout has the path; the one-factor search is not
    offered (it needs the other factor's z)."""
    rows, cols, vals, F, G, D_F, D_G = _problem(20, 15, 120, 3, np.float64, 1)
    op, y, _ = _op(rows, cols, vals, (20, 15), 1)
    assert op._residual_free(3) and op._residual_free(40)
    row_op, _ = lc.EntryOperator.from_entries(rows, cols, vals, (20, 15), layout="rows")
    assert not row_op._residual_free(3)
    user = lc.EntryOperator(rows, cols, (20, 15), layout="blocked", block_shape=(4, 3))
    assert not user._residual_free(3)
    dense = lc.DenseOperator(np.random.default_rng(0).standard_normal((30, 20, 15)))
    assert not dense._residual_free(3)
    with pytest.raises(ValueError, match="full search"):
        op._line_search_products_y(F, G, D_F, None, y)


# --------------------------------------------------------------------------- solve
def _today(monkeypatch, op):
    """The operator seen by solve as without the residual-free path (z stored)."""
    monkeypatch.setattr(op, "_residual_free", lambda k: False)


def _assert_same_run(res, ref, exact: bool, rtol: float) -> None:
    """Factors and every recorded history of two solves: bitwise (exact) or to rtol
    (factors relative to their largest entry)."""
    for a, b in zip(res.factors, ref.factors):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            assert np.max(np.abs(a - b)) <= rtol * np.max(np.abs(b))
    for name in ref.history:
        if exact:
            np.testing.assert_array_equal(res.history[name], ref.history[name],
                                          err_msg=name)
        else:
            np.testing.assert_allclose(res.history[name], ref.history[name], rtol=rtol,
                                       err_msg=name)


def _count_storing_passes(monkeypatch, op) -> dict:
    """Count the operator's storing gradient passes (z written into a buffer)."""
    calls = {"store": 0}
    store = op._residual_gradient_into

    def counting(*a):
        calls["store"] += 1
        return store(*a)

    monkeypatch.setattr(op, "_residual_gradient_into", counting)
    return calls


@pytest.mark.filterwarnings("ignore::lowrank_core._threads.ThreadCapWarning")
@pytest.mark.parametrize("step", ["auto", "fixed", 2e-3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gd_solve_equals_todays_path(monkeypatch, many_threads, step, dtype, symmetric):
    """gd on the residual-free path: the same iterates, losses and steps as with z
    stored, 2 threads, tiny tiles. A given fixed step: bitwise (the gradient pass is the
    storing kernel's); step="auto" (the search's z is recomputed) and step="fixed"
    (0.3 / ||A^T y||, estimated through the tile products): to rounding."""
    n = 48
    p = lc.make_problem(n, n, rank=2, m=900, operator="entries", seed=4, n_threads=1,
                        dtype=dtype, psd=symmetric)
    perm = np.random.default_rng(3).permutation(p.operator.m)
    rows, cols, vals = p.operator.rows[perm], p.operator.cols[perm], p.y[perm]
    op, y = lc.EntryOperator.from_entries(rows, cols, vals, (n, n), n_threads=2,
                                          layout="blocked", block_shape=(7, 5), k=3)
    kw = dict(method="gd", symmetric=symmetric, step=step, max_iter=15, seed=2,
              record=["loss", "residual", "grad_norm"],
              reg=1e-3 if symmetric else 0.0)
    calls = _count_storing_passes(monkeypatch, op)
    res = lc.solve(op, y, 3, **kw)
    assert calls["store"] == 0                 # z never computed into a buffer
    _today(monkeypatch, op)
    ref = lc.solve(op, y, 3, **kw)
    assert calls["store"] == ref.n_evaluations > 0
    assert res.n_iter == ref.n_iter and res.status == ref.status
    rtol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-4}[np.dtype(dtype)]
    _assert_same_run(res, ref, exact=not isinstance(step, str), rtol=rtol)
    if not isinstance(step, str):
        assert res.loss == ref.loss and res.residual == ref.residual


def test_methods_needing_z_keep_the_storing_path(monkeypatch):
    """A method whose step reads z (softImpute-ALS, GNMR) or searches one factor at a
    time (AGN with the line search) runs as before on such an operator."""
    p = lc.make_problem(40, 30, rank=2, m=700, operator="entries", seed=5, n_threads=1)
    op, y = lc.EntryOperator.from_entries(p.operator.rows, p.operator.cols, p.y, (40, 30),
                                          n_threads=1, layout="blocked",
                                          block_shape=(6, 5), k=2)
    for method in ("softimpute_als", "agn", "gnmr"):
        a = lc.solve(op, y, 2, method=method, max_iter=5, seed=1)
        with monkeypatch.context() as mp:
            mp.setattr(op, "_residual_free", lambda k: False)
            b = lc.solve(op, y, 2, method=method, max_iter=5, seed=1)
        for u, v in zip(a.factors, b.factors):
            np.testing.assert_array_equal(u, v)


@pytest.mark.filterwarnings("ignore::lowrank_core._threads.ThreadCapWarning")
@pytest.mark.parametrize("step", ["auto", "fixed", 0.3])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("method", ["precgd", "scaledgd", "scaledgd-lambda"])
def test_preconditioned_solve_equals_todays_path(monkeypatch, many_threads, method, step,
                                                 symmetric):
    """The preconditioned methods on the residual-free path: no z buffer filled, and the
    iterates, losses and dampings of the storing path, 2 threads, tiny tiles. A given
    fixed step: bitwise (the same gradient bits; PrecGD's gain is 1 there); step="auto"
    and step="fixed" (the norm estimate and the operator gain through the tile
    products instead of a stored forward pass): to rounding."""
    n = 40
    p = lc.make_problem(n, n, rank=2, m=800, operator="entries", seed=6, n_threads=1,
                        psd=symmetric, cond=3.0)
    perm = np.random.default_rng(5).permutation(p.operator.m)
    rows, cols, vals = p.operator.rows[perm], p.operator.cols[perm], p.y[perm]
    op, y, order = lc.EntryOperator.from_entries(rows, cols, vals, (n, n), n_threads=2,
                                                 layout="blocked", block_shape=(6, 7),
                                                 k=3, return_order=True)
    # a small random start: the spectral start's svds takes a different product path
    # when the run is residual-free (the tiles), which may flip singular vectors' signs
    kw = dict(method=method, symmetric=symmetric, step=step, max_iter=12, seed=3,
              init="small", init_scale=0.3, record=["loss", "residual", "grad_norm"])
    calls = _count_storing_passes(monkeypatch, op)
    res = lc.solve(op, y, 3, **kw)
    assert calls["store"] == 0
    _today(monkeypatch, op)
    ref = lc.solve(op, y, 3, **kw)
    assert calls["store"] == ref.n_evaluations > 0
    assert res.n_iter == ref.n_iter == 12 and res.status == ref.status
    _assert_same_run(res, ref, exact=not isinstance(step, str), rtol=1e-10)
    # and the iterates are those of plain numpy's loss: the reported loss is
    # 1/2 ||A(F G^T) - y||^2 of the returned factors
    F, G = res.factors
    full = F @ (F if symmetric else G).T
    z = full[rows[order], cols[order]] * op.scale - y
    half = 0.25 if symmetric else 0.5
    assert res.loss == pytest.approx(half * float(z @ z), rel=1e-10)


def test_preconditioned_gain_without_a_length_m_buffer():
    """PrecGD's operator gain ||A(F G^T)|| / ||F G^T||_F from the residual-free tile
    products equals plain numpy's on the same factors."""
    from lowrank_core.methods import preconditioned

    n1, n2, k = 30, 26, 3
    rng = np.random.default_rng(8)
    flat = rng.choice(n1 * n2, 500, replace=False)
    op, y = lc.EntryOperator.from_entries(flat // n2, flat % n2, rng.standard_normal(500),
                                          (n1, n2), n_threads=1, layout="blocked",
                                          block_shape=(5, 4), k=k)
    F, G = rng.standard_normal((n1, k)), rng.standard_normal((n2, k))

    class State:
        residual_free = True
        operator = op

    st = State()
    st.F, st.G, st.y, st.dtype = F, G, y, F.dtype
    M = F @ G.T
    full = np.zeros((n1, n2))
    full.flat[flat] = 1.0
    measured = np.linalg.norm(op.scale * M[full.astype(bool)])
    want = measured / np.linalg.norm(M)
    assert preconditioned._operator_gain(st) == pytest.approx(want, rel=1e-12)
    st.residual_free = False
    assert preconditioned._operator_gain(st) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("method", ["gd", "precgd", "scaledgd", "scaledgd-lambda"])
def test_solve_allocates_no_length_m_buffer(method):
    """Peak traced allocation of one solve (fixed and auto step) on the residual-free
    path stays below one length-m vector, while today's path allocates z (m floats):
    m = 40000 observations against factors of 2 x 300 x 2 floats. For the
    preconditioned methods step="auto" includes the operator gain (a forward pass of
    length m on the storing path); scaledgd-lambda with a given damping (its default
    schedule first estimates ||A^T(y)||_2, here by a dense SVD of the 300 x 300
    A^T(y), factor-sized scratch that would hide what is measured)."""
    n, m, k = 300, 40000, 2
    rng = np.random.default_rng(0)
    flat = rng.choice(n * n, m, replace=False)
    rows, cols = flat // n, flat % n
    vals = rng.standard_normal(m)
    op, y = lc.EntryOperator.from_entries(rows, cols, vals, (n, n), n_threads=1,
                                          layout="blocked", block_shape=(64, 64), k=k)
    F0 = rng.standard_normal((n, k)) * 0.1
    G0 = rng.standard_normal((n, k)) * 0.1

    extra = {"damping": 0.01} if method == "scaledgd-lambda" else {}

    def peak(**kw):
        kw.update(extra)
        lc.solve(op, y, k, init=(F0, G0), max_iter=2, method=method, **kw)  # warm up
        tracemalloc.start()
        try:
            lc.solve(op, y, k, init=(F0, G0), max_iter=2, method=method, **kw)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    for step in ("auto", 1e-3):
        got = peak(step=step)
        assert got < 8 * m / 2, (step, got)
        real = op._residual_free
        op._residual_free = lambda k: False
        try:
            assert peak(step=step) >= 8 * m       # today's path: z
        finally:
            op._residual_free = real


def test_result_owns_the_final_iterate():
    """The result takes the solver's buffers (no copy at the end) but never aliases the
    caller's init arrays, nor a callback's intermediate results."""
    p = lc.make_problem(30, 25, rank=2, m=400, operator="entries", seed=7, n_threads=1)
    op, y = lc.EntryOperator.from_entries(p.operator.rows, p.operator.cols, p.y, (30, 25),
                                          n_threads=1, layout="blocked",
                                          block_shape=(8, 8), k=2)
    rng = np.random.default_rng(1)
    F0, G0 = rng.standard_normal((30, 2)) * 0.1, rng.standard_normal((25, 2)) * 0.1
    F0c, G0c = F0.copy(), G0.copy()
    seen = []
    for iters in (0, 1, 2, 3):
        res = lc.solve(op, y, 2, init=(F0, G0), max_iter=iters, step=1e-2,
                       callback=lambda r: seen.append(r.factors))
        F, G = res.factors
        assert not np.shares_memory(F, F0) and not np.shares_memory(G, G0)
        assert F.flags.c_contiguous and F.flags.writeable
        for f, g in seen:
            assert not np.shares_memory(f, F) and not np.shares_memory(g, G)
        seen.clear()
    np.testing.assert_array_equal(F0, F0c)
    np.testing.assert_array_equal(G0, G0c)
    # the returned iterate is the one whose loss is reported
    F, G = res.factors
    assert res.loss == pytest.approx(0.5 * float(np.sum((op.forward_factored(F, G) - y)
                                                        ** 2)), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tile_adjoint_products_against_numpy(many_threads, dtype):
    """A^T(w) X and A^T(w)^T U (adjoint_operator, spectral_operator) of a from_entries
    blocked operator walk the tiles (no row layout built): against numpy, and a solve
    with step="fixed" (its spectral-norm estimate) builds no row layout either."""
    n1, n2, m, k = 41, 33, 400, 3
    rows, cols, vals, F, G, _, _ = _problem(n1, n2, m, k, dtype, 8, empty_rows=[2, 3],
                                            empty_cols=[5])
    op, y, order = _op(rows, cols, vals, (n1, n2), 2, scale=0.7)
    r, c = rows[order], cols[order]
    S = np.zeros((n1, n2))
    np.add.at(S, (r, c), np.asarray(y, np.float64))
    p = m / (n1 * n2)
    for lin, factor in ((op.adjoint_operator(y), 0.7), (op.spectral_operator(y),
                                                        1 / (0.7 * p))):
        assert _rel(lin.matmat(G), factor * S @ G) < RTOL[np.dtype(dtype)]
        assert _rel(lin.rmatmat(F), factor * S.T @ F) < RTOL[np.dtype(dtype)]
        assert _rel(lin.matvec(G[:, 0]), factor * S @ G[:, 0]) < RTOL[np.dtype(dtype)]
    assert op._cols_r is None
    res = lc.solve(op, y, 2, method="gd", step="fixed", max_iter=3, seed=0)
    assert op._cols_r is None and res.n_iter == 3
