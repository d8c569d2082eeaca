"""The cache-blocked layout of EntryOperator: against plain numpy (gather + np.add.at) and
bitwise against the row layout (same within-row order, same row split over threads).

Tiny tiles (a few rows and columns) force many tiles, empty ones included.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import _kernels
from lowrank_core.operators import _indexing
from lowrank_core.operators import entries as entries_mod

RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}
HAS_AVX2 = _kernels.cpu_has_avx2_fma()


def _builds():
    """(row-layout kernels, blocked kernels) of every build: baseline and AVX2."""
    out = [(importlib.import_module("lowrank_core._entries"),
            importlib.import_module("lowrank_core._entries_blocked"))]
    if HAS_AVX2:
        out.append((importlib.import_module("lowrank_core._entries_avx2"),
                    importlib.import_module("lowrank_core._entries_blocked_avx2")))
    return out


def _numpy_reference(rows, cols, F, G, y, scale=1.0):
    F64, G64, y64 = (np.asarray(x, np.float64) for x in (F, G, y))
    z = scale * np.einsum("ij,ij->i", F64[rows], G64[cols]) - y64
    SG = np.zeros((F.shape[0], F.shape[1]))
    np.add.at(SG, rows, scale * z[:, None] * G64[cols])
    StF = np.zeros((G.shape[0], F.shape[1]))
    np.add.at(StF, cols, scale * z[:, None] * F64[rows])
    return 0.5 * float(z @ z), z, SG, StF


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _problem(n1, n2, m, k, dtype, seed, *, sorted_input, empty_rows=(), empty_cols=()):
    rng = np.random.default_rng(seed)
    keep_r = np.setdiff1d(np.arange(n1), empty_rows)
    keep_c = np.setdiff1d(np.arange(n2), empty_cols)
    flat = rng.choice(keep_r.size * keep_c.size, m, replace=False)
    rows, cols = keep_r[flat // keep_c.size], keep_c[flat % keep_c.size]
    if sorted_input:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
    dt = np.dtype(dtype)
    F = rng.standard_normal((n1, k)).astype(dt)
    G = rng.standard_normal((n2, k)).astype(dt)
    y = rng.standard_normal(m).astype(dt)
    return rows, cols, F, G, y


def _row_kernel_with_split(op, F, G, y, bounds_rows, kernels):
    """The row layout's kernel with an explicit row split (bounds in rows)."""
    ptr, cols, pos, has = op._pr()
    n1, n2 = op.shape
    k = F.shape[1]
    T = bounds_rows.shape[0] - 1
    z = np.empty(op.m, op.dtype)
    SG = np.empty((n1, k), op.dtype)
    StF = np.empty((n2, k), op.dtype)
    bufs = np.empty((max(T - 1, 1), n2, k), op.dtype)
    loss = kernels.residual_gradient(ptr, cols, pos, has, F, G, y, z, SG, StF, bufs,
                                     op._sc(), np.empty(n1), bounds_rows)
    return loss, z, SG, StF


@pytest.fixture
def many_threads(monkeypatch):
    # small problems would otherwise run on one thread
    monkeypatch.setattr(_indexing, "MIN_ENTRIES_PER_THREAD", 1)


@pytest.mark.parametrize("k", list(range(1, 18)) + [32, 33, 41])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_width_and_build_matches_numpy_and_row_layout(monkeypatch, many_threads, k,
                                                            dtype):
    n1, n2, m = 29, 23, 260
    rows, cols, F, G, y = _problem(n1, n2, m, k, dtype, 10 + k, sorted_input=True)
    ref = _numpy_reference(rows, cols, F, G, y, scale=0.7)
    for row_kernels, blocked_kernels in _builds():
        monkeypatch.setattr(entries_mod, "_entries", row_kernels)
        monkeypatch.setattr(entries_mod, "_blocked_kernels", blocked_kernels)
        for T in (1, 2):
            kw = {"dtype": dtype, "scale": 0.7, "n_threads": T}
            blk = lc.EntryOperator(rows, cols, (n1, n2), layout="blocked",
                                   block_shape=(4, 3), **kw)
            row = lc.EntryOperator(rows, cols, (n1, n2), layout="rows", **kw)
            got = blk.residual_gradient(F, G, y)
            where = f"{blocked_kernels.__name__} k={k} T={T}"
            assert blk._blocked is not None and blk.block_shape(k) == (4, 3), where
            for a, b in zip(got[1:], ref[1:]):
                assert _rel(a, b) < RTOL[np.dtype(dtype)], where
            assert abs(got[0] - ref[0]) <= RTOL[np.dtype(dtype)] * ref[0], where
            # bitwise: the row kernel with the blocked run's row split
            bounds = np.minimum(blk._blocked_bounds(blk._blocked) * 4, n1)
            want = _row_kernel_with_split(row, F, G, y, bounds, row_kernels)
            assert got[0] == want[0], where
            for a, b in zip(got[1:], want[1:]):
                np.testing.assert_array_equal(a, b, err_msg=where)
            if T == 1:  # and the operator's own row path (one thread: same split)
                for a, b in zip(got, row.residual_gradient(F, G, y)):
                    np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T", [1, 2])
def test_random_order_input_and_empty_tiles(many_threads, dtype, T):
    """Observations in random order, whole rows, columns and row blocks empty."""
    n1, n2, m, k = 40, 31, 300, 5
    empty_rows = list(range(8, 16)) + [39]       # row blocks 2 and 3 of 4 rows empty
    empty_cols = [0, 1, 2, 17, 30]
    rows, cols, F, G, y = _problem(n1, n2, m, k, dtype, 3, sorted_input=False,
                                   empty_rows=empty_rows, empty_cols=empty_cols)
    blk = lc.EntryOperator(rows, cols, (n1, n2), dtype=dtype, n_threads=T,
                           layout="blocked", block_shape=(4, 5))
    loss, z, SG, StF = blk.residual_gradient(F, G, y)
    tptr = blk._blocked["tptr"]
    assert np.any(np.diff(tptr) == 0)            # empty tiles exist
    ref = _numpy_reference(rows, cols, F, G, y)
    tol = RTOL[np.dtype(dtype)]
    assert _rel(z, ref[1]) < tol and _rel(SG, ref[2]) < tol and _rel(StF, ref[3]) < tol
    assert abs(loss - ref[0]) <= tol * ref[0]
    assert not SG[empty_rows].any() and not StF[empty_cols].any()
    # bitwise against the row layout given the blocked within-row order (row, column
    # block, user order): a stable sort of the input by (row, column block)
    perm = np.lexsort((cols // 5, rows))
    row = lc.EntryOperator(rows[perm], cols[perm], (n1, n2), dtype=dtype, n_threads=T,
                           layout="rows")
    bounds = np.minimum(blk._blocked_bounds(blk._blocked) * 4, n1)
    want = _row_kernel_with_split(row, F, G, y[perm], bounds, entries_mod._entries)
    assert loss == want[0]
    np.testing.assert_array_equal(z[perm], want[1])
    np.testing.assert_array_equal(SG, want[2])
    np.testing.assert_array_equal(StF, want[3])
    # dtype is kept
    assert z.dtype == SG.dtype == StF.dtype == np.dtype(dtype)


def test_repeatable_for_a_thread_count_and_independent_parts(many_threads):
    rows, cols, F, G, y = _problem(50, 37, 700, 6, np.float64, 4, sorted_input=False)
    runs = {}
    for T in (1, 2):
        op = lc.EntryOperator(rows, cols, (50, 37), n_threads=T, layout="blocked",
                              block_shape=(3, 7))
        a, b = op.residual_gradient(F, G, y), op.residual_gradient(F, G, y)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
        runs[T] = a
    # z, the loss and S G do not depend on the thread count (rows are owned by threads)
    assert runs[1][0] == runs[2][0]
    np.testing.assert_array_equal(runs[1][1], runs[2][1])
    np.testing.assert_array_equal(runs[1][2], runs[2][2])
    np.testing.assert_allclose(runs[1][3], runs[2][3], rtol=1e-13, atol=1e-13)


def test_solve_with_blocked_layout_reproduces_row_layout():
    p = lc.make_problem(60, 45, rank=3, m=1500, operator="entries", seed=7, n_threads=1)
    rows, cols = p.operator.rows, p.operator.cols
    kw = {"method": "gd", "max_iter": 25, "seed": 1}
    blk = lc.EntryOperator(rows, cols, p.operator.shape, scale=p.operator.scale,
                           n_threads=1, layout="blocked", block_shape=(7, 6))
    a = lc.solve(blk, p.y, 3, **kw)
    b = lc.solve(p.operator, p.y, 3, **kw)
    assert a.n_iter == b.n_iter
    for u, v in zip(a.factors, b.factors):
        np.testing.assert_array_equal(u, v)
    # the other products use the row layout and are unchanged
    z = np.random.default_rng(0).standard_normal(blk.m)
    np.testing.assert_array_equal(blk.adjoint(z), p.operator.adjoint(z))


def test_layout_choice_and_arguments():
    rows, cols, *_ = _problem(30, 20, 100, 2, np.float64, 0, sorted_input=False)
    auto = lc.EntryOperator(rows, cols, (30, 20))
    assert auto.layout == "auto" and auto.block_shape(10) is None      # rows
    blk = lc.EntryOperator(rows, cols, (30, 20), layout="blocked")
    br, bc = blk.block_shape(10)
    assert 1 <= br <= 30 and 1 <= bc <= 20
    l2, llc = entries_mod.cache_sizes()
    assert l2 >= 1 and llc >= l2
    # the default tile shape: a column block's G and S^T F slices in a quarter of a
    # thread's share of cache_size (default the LLC); 65536 rows
    big = 10**6
    op = lc.EntryOperator([0, big - 1], [0, big - 1], (big, big), layout="blocked",
                          cache_size=32 << 20, n_threads=2)
    assert op.block_shape(10) == (65536, (32 << 20) // (8 * 2 * 10 * 8))
    op = lc.EntryOperator([0, big - 1], [0, big - 1], (big, big), layout="blocked",
                          n_threads=1)
    assert op.block_shape(10) == (65536, min(max(llc // (8 * 10 * 8), 64), 65536))
    # "auto": blocked exactly when G and the S^T F buffer (2 n2 k itemsize) exceed the LLC
    wide = max(big, llc // (2 * 10 * 8) + 1)      # G and the buffer exceed this LLC
    auto_big = lc.EntryOperator([0, big - 1], [0, wide - 1], (big, wide), n_threads=2)
    forced = lc.EntryOperator([0, big - 1], [0, wide - 1], (big, wide), n_threads=2,
                              layout="blocked")
    assert auto_big.block_shape(10) == forced.block_shape(10) is not None
    n2_fit = llc // (2 * 10 * 8)          # the widest G that still fits
    for n2, blocked in ((n2_fit, False), (n2_fit + 1, True), (15000, False)):
        op = lc.EntryOperator([0, 1], [0, n2 - 1], (20000, n2))
        assert (op.block_shape(10) is not None) == blocked, n2
    assert lc.EntryOperator([0, 1], [0, n2_fit], (20000, n2_fit + 1),
                            dtype=np.float32).block_shape(10) is None
    with pytest.raises(ValueError, match="layout must be"):
        lc.EntryOperator(rows, cols, (30, 20), layout="tiles")
    with pytest.raises(ValueError, match="exceeds 65536"):
        lc.EntryOperator(rows, cols, (30, 20), block_shape=(70000, 4))
    with pytest.raises(ValueError, match="block_shape"):
        lc.EntryOperator(rows, cols, (30, 20), block_shape=4)
    with pytest.raises(ValueError, match="cache_size"):
        lc.EntryOperator(rows, cols, (30, 20), cache_size=0)
    # take_rows keeps the layout options
    part = blk.take_rows(0, 50)
    assert part.layout == "blocked"


def test_scale_benchmark_smoke(many_threads):
    """benchmarks/scale.py at a tiny size: its four kernels agree (checked inside run())
    and the reports have every row."""
    import os
    import sys

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")
    sys.path.insert(0, here)
    try:
        import scale as bench
    finally:
        sys.path.remove(here)
    r = bench.run(3000, 40000, 4, 2, 1, 0, block_shape=(256, 128))
    assert r["shape"] == (256, 128)
    text = bench.report(r)
    for name in [f"| {p} |" for p in bench.PATHS] + ["peak RSS", "from_entries, blocked"]:
        assert name in text
    mem = bench.memory_run(3000, 40000, 4, 2, 0, block_shape=(256, 128))
    assert [ph["phase"] for ph in mem["phases"]] == ["problem", "build", "iteration"]
    it = mem["phases"][-1]
    assert tuple(it["shape"]) == (256, 128) and not it["row_layout_built"]
    # the user's arrays: rows, cols int32 and values float64, 16 bytes per observation
    # (VmRSS in KiB pages: to within 64 KiB)
    drawn = mem["phases"][0]["steps"][0]["kept"] * 2**30
    assert abs(drawn - 16 * 40000) < 65536
    text = bench.memory_report(mem)
    assert "| iteration | solve(" in text and "| build | from_entries" in text
    bench.probe(3000, 40000, 4, 2, 0, "blocked, from_entries", 1, block_shape=(256, 128))
    sw = bench.sweep(3000, 40000, 4, 2, 1, 0, [(256, 128), (64, 64)], [4, 8])
    assert [tuple(r["shape"]) for r in sw] == [(256, 128), (64, 64)]
    text = bench.sweep_report(sw, 40000)
    assert "| 64 x 64 | residual gradient, prefetch 4 |" in text and "line search" in text
    assert "| 64 x 64 | numpy gather of G rows, tile order |" in text
    # the gather's columns are the observations' columns in the layout's order
    rng = np.random.default_rng(2)
    rows, cols = rng.integers(0, 50, 900), rng.integers(0, 40, 900)
    op, _, order = lc.EntryOperator.from_entries(rows, cols, rng.standard_normal(900),
                                                 (50, 40), layout="blocked", k=3,
                                                 block_shape=(7, 5), return_order=True)
    np.testing.assert_array_equal(bench.tile_order_columns(op), cols[order])
    G = rng.standard_normal((40, 3))
    assert bench.gather_rows(G, bench.tile_order_columns(op), chunk=64)() == \
        G[cols[order][(900 // 64) * 64], 0]


# ---------------------------------------------------------------- from_entries
def _user_order_blocked(rows, cols, shape, dtype, T, block_shape, scale=1.0):
    return lc.EntryOperator(rows, cols, shape, dtype=dtype, n_threads=T, scale=scale,
                            layout="blocked", block_shape=block_shape)


@pytest.mark.parametrize("k", list(range(1, 18)) + [32, 33, 41])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_from_entries_every_width_and_build(monkeypatch, many_threads, k, dtype):
    """The streamed path (no positions): numpy to RTOL, and bitwise the user-order
    blocked layout (z permuted) and the row kernel over its lazily built row layout."""
    n1, n2, m = 29, 23, 260
    rows, cols, F, G, vals = _problem(n1, n2, m, k, dtype, 20 + k, sorted_input=False)
    for row_kernels, blocked_kernels in _builds():
        monkeypatch.setattr(entries_mod, "_entries", row_kernels)
        monkeypatch.setattr(entries_mod, "_blocked_kernels", blocked_kernels)
        for T in (1, 2):
            where = f"{blocked_kernels.__name__} k={k} T={T}"
            op, y, order = lc.EntryOperator.from_entries(
                rows, cols, vals, (n1, n2), scale=0.7, n_threads=T, layout="blocked",
                k=k, block_shape=(4, 3), return_order=True)
            assert op._blocked["pos"] is None and op._cols_r is None, where
            np.testing.assert_array_equal(y, vals[order])
            assert y.dtype == np.dtype(dtype)
            got = op.residual_gradient(F, G, y)
            ref = _numpy_reference(rows[order], cols[order], F, G, y, scale=0.7)
            for a, b in zip(got[1:], ref[1:]):
                assert _rel(a, b) < RTOL[np.dtype(dtype)], where
            assert abs(got[0] - ref[0]) <= RTOL[np.dtype(dtype)] * ref[0], where
            user = _user_order_blocked(rows, cols, (n1, n2), dtype, T, (4, 3), scale=0.7)
            want = user.residual_gradient(F, G, vals)
            assert got[0] == want[0], where
            np.testing.assert_array_equal(got[1], want[1][order], err_msg=where)
            np.testing.assert_array_equal(got[2], want[2], err_msg=where)
            np.testing.assert_array_equal(got[3], want[3], err_msg=where)
            # row blocks outermost instead of column blocks: the same bits
            op._col_major = False
            for a, b in zip(op.residual_gradient(F, G, y), got):
                np.testing.assert_array_equal(a, b, err_msg=where)
            op._col_major = True
            # the row layout built from the tiles: its kernel with the blocked split
            bounds = np.minimum(op._blocked_bounds(op._blocked) * 4, n1)
            rk = _row_kernel_with_split(op, F, G, y, bounds, row_kernels)
            assert op._cols_r is not None
            assert got[0] == rk[0], where
            for a, b in zip(got[1:], rk[1:]):
                np.testing.assert_array_equal(a, b, err_msg=where)
            np.testing.assert_array_equal(op.rows, rows[order])
            np.testing.assert_array_equal(op.cols, cols[order])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T", [1, 2])
def test_from_entries_empty_tiles_and_products(many_threads, dtype, T):
    n1, n2, m, k = 40, 31, 300, 5
    empty_rows = list(range(8, 16)) + [39]
    empty_cols = [0, 1, 2, 17, 30]
    rows, cols, F, G, vals = _problem(n1, n2, m, k, dtype, 5, sorted_input=False,
                                      empty_rows=empty_rows, empty_cols=empty_cols)
    op, y, order = lc.EntryOperator.from_entries(rows, cols, vals, (n1, n2), n_threads=T,
                                                 layout="blocked", block_shape=(4, 5),
                                                 return_order=True)
    assert np.any(np.diff(op._blocked["tptr"]) == 0)
    small = op.nbytes
    loss, z, SG, StF = op.residual_gradient(F, G, y)
    assert op._cols_r is None and op.nbytes == small       # nothing else built
    # 4 bytes per observation (codes) plus the tile and row pointers
    assert small == 4 * m + op._blocked["tptr"].nbytes + op._ptr_r.nbytes
    ref = _numpy_reference(rows[order], cols[order], F, G, y)
    tol = RTOL[np.dtype(dtype)]
    assert _rel(z, ref[1]) < tol and _rel(SG, ref[2]) < tol and _rel(StF, ref[3]) < tol
    assert not SG[empty_rows].any() and not StF[empty_cols].any()
    # the other products walk the row layout built on first use: against the operator
    # built from the same observations in the same order
    plain = lc.EntryOperator(rows[order], cols[order], (n1, n2), dtype=dtype, n_threads=T)
    w = np.random.default_rng(1).standard_normal(m).astype(dtype)
    np.testing.assert_allclose(op.adjoint(w), plain.adjoint(w), rtol=tol, atol=tol)
    np.testing.assert_allclose(op.forward_factored(F, G), plain.forward_factored(F, G),
                               rtol=tol, atol=tol)
    assert op._cols_r is not None and op.nbytes == small + 2 * m * op._itype.itemsize


def test_from_entries_row_layout_and_solve():
    """layout="rows": the row order becomes the measurement order (no positions); a
    solve from it reproduces the constructor given the observations in that order."""
    rng = np.random.default_rng(3)
    p = lc.make_problem(60, 45, rank=3, m=1500, operator="entries", seed=7, n_threads=1)
    perm = rng.permutation(p.operator.m)
    rows, cols, vals = p.operator.rows[perm], p.operator.cols[perm], p.y[perm]
    op, y, order = lc.EntryOperator.from_entries(rows, cols, vals, p.operator.shape,
                                                 scale=p.operator.scale, n_threads=1,
                                                 layout="rows", return_order=True)
    assert op._pos_r is None and op.block_shape(3) is None
    np.testing.assert_array_equal(np.sort(order), np.arange(op.m))
    assert np.all(np.diff(op.rows) >= 0)
    np.testing.assert_array_equal(y, vals[order])
    kw = {"method": "gd", "max_iter": 25, "seed": 1}
    ref = lc.EntryOperator(rows[order], cols[order], p.operator.shape,
                           scale=p.operator.scale, n_threads=1, layout="rows")
    a, b = lc.solve(op, y, 3, **kw), lc.solve(ref, y, 3, **kw)
    assert a.n_iter == b.n_iter
    for u, v in zip(a.factors, b.factors):
        np.testing.assert_array_equal(u, v)
    # blocked (line search on the lazily built row layout): same iterates to rounding
    opb, yb = lc.EntryOperator.from_entries(rows, cols, vals, p.operator.shape,
                                            scale=p.operator.scale, n_threads=1,
                                            layout="blocked", block_shape=(7, 6), k=3)
    c = lc.solve(opb, yb, 3, **kw)
    assert c.n_iter == b.n_iter
    for u, v in zip(c.factors, b.factors):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_from_entries_arguments():
    rows, cols = [0, 1, 2], [2, 1, 0]
    with pytest.raises(ValueError, match="values must have one entry"):
        lc.EntryOperator.from_entries(rows, cols, [1.0, 2.0], (3, 3))
    with pytest.raises((TypeError, ValueError), match="values"):
        lc.EntryOperator.from_entries(rows, cols, np.array([1, 2, 3]), (3, 3))
    with pytest.raises(ValueError, match="k"):
        lc.EntryOperator.from_entries(rows, cols, [1.0, 2.0, 3.0], (3, 3), k=0)
    op, y = lc.EntryOperator.from_entries(rows, cols, np.float32([1, 2, 3]), (3, 3))
    assert op.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(y, [1, 2, 3])      # already row-sorted: same order


# ------------------------------------- from_entries' direct build and blocked line search
def _numpy_tile_order(rows, cols, n2, br, bc):
    """The blocked order by numpy: stable by (tile, tile-local row), then user order."""
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    tile = (rows // br) * -(-n2 // bc) + cols // bc
    order = np.lexsort((np.arange(rows.size), rows % br, tile))
    code = ((rows % br) << 16 | (cols % bc)).astype(np.uint32)[order]
    return order, code, tile


@pytest.mark.parametrize("shape, block, m", [
    ((40, 31), (4, 5), 300),            # many tiles, empty ones: the direct build
    ((300, 200), (64, 32), 5000),       # a partial last row and column block
    ((2000, 1000), (2000, 1), 1000),    # n_tiles * rows > 4 m + 2**20: the row-layout path
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_from_entries_build_order_against_numpy(shape, block, m, dtype):
    """from_entries' blocked order (built from the user's arrays without a row layout or
    a permutation of length m) is numpy's stable sort by (tile, row, user order)."""
    n1, n2 = shape
    rng = np.random.default_rng(11)
    rows = rng.integers(0, n1, m).astype(np.int32)
    cols = rng.integers(0, n2, m).astype(np.int32)
    rows[:7] = rows[0]                                   # repeated rows and entries
    cols[:3] = cols[0]
    vals = rng.standard_normal(m).astype(dtype)
    for ret in (True, False):
        out = lc.EntryOperator.from_entries(rows, cols, vals, shape, layout="blocked",
                                            block_shape=block, return_order=ret)
        op, y = out[0], out[1]
        order, code, tile = _numpy_tile_order(rows, cols, n2, *block)
        if ret:
            np.testing.assert_array_equal(out[2], order)
        np.testing.assert_array_equal(y, vals[order])
        b = op._blocked
        np.testing.assert_array_equal(b["code"], code)
        n_tiles = -(-n1 // block[0]) * -(-n2 // block[1])
        np.testing.assert_array_equal(
            b["tptr"], np.concatenate([[0], np.cumsum(np.bincount(tile,
                                                                 minlength=n_tiles))]))
        np.testing.assert_array_equal(
            op._ptr_r, np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n1))]))
        np.testing.assert_array_equal(op.rows, rows[order])
        np.testing.assert_array_equal(op.cols, cols[order])


def _numpy_line_search(rows, cols, F, G, D_F, D_G, z, scale):
    F, G, z = (np.asarray(x, np.float64) for x in (F, G, z))
    if D_G is None or D_F is None:
        X, Y = (np.asarray(D_F, np.float64), G) if D_G is None else (F, np.asarray(D_G,
                                                                                 np.float64))
        u = scale * np.einsum("ij,ij->i", X[rows], Y[cols])
        v = np.zeros_like(u)
    else:
        D_F, D_G = np.asarray(D_F, np.float64), np.asarray(D_G, np.float64)
        u = scale * (np.einsum("ij,ij->i", F[rows], D_G[cols])
                     + np.einsum("ij,ij->i", D_F[rows], G[cols]))
        v = scale * np.einsum("ij,ij->i", D_F[rows], D_G[cols])
    return np.array([z @ u, u @ u, z @ v, u @ v, v @ v])


@pytest.mark.filterwarnings("ignore::lowrank_core._threads.ThreadCapWarning")
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8, 10, 16, 33])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_from_entries_blocked_line_search(monkeypatch, many_threads, k, dtype):
    """The line search of a from_entries blocked operator walks the tiles (no row layout
    built): against numpy, bitwise the same for 1, 2 and 3 threads, and equal to the
    row layout's search to rounding; every build (baseline and AVX2)."""
    n1, n2, m = 41, 33, 400
    rows, cols, F, G, vals = _problem(n1, n2, m, k, dtype, 20 + k, sorted_input=False,
                                      empty_rows=[3, 4, 40], empty_cols=[0, 9])
    rng = np.random.default_rng(k)
    D_F = rng.standard_normal(F.shape).astype(dtype)
    D_G = rng.standard_normal(G.shape).astype(dtype)
    z = rng.standard_normal(m).astype(dtype)
    tol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}[np.dtype(dtype)]
    for _rows_k, blocked_k in _builds():
        monkeypatch.setattr(entries_mod, "_blocked_kernels", blocked_k)
        runs = []
        for T in (1, 2, 3):
            op, y, order = lc.EntryOperator.from_entries(
                rows, cols, vals, (n1, n2), scale=0.6, n_threads=T, layout="blocked",
                block_shape=(5, 4), return_order=True)
            zb = z[order]
            got = [op.line_search_products(zb, F, G, D_F, D_G),
                   op.line_search_products(zb, F, G, D_F, None),
                   op.line_search_products(zb, F, G, None, D_G)]
            assert op._cols_r is None                      # no row layout built
            runs.append(got)
            for res, (a, b) in zip(got, ((D_F, D_G), (D_F, None), (None, D_G))):
                ref = _numpy_line_search(rows, cols, F, G, a, b, z, 0.6)
                scale_ref = np.max(np.abs(ref))
                assert np.max(np.abs(np.array(res) - ref)) <= tol * scale_ref
        assert runs[0] == runs[1] == runs[2]
        # the row layout of the same operator (built from the tiles: the same within-row
        # order): equal to rounding (its per-row sums are compiler-vectorized reductions)
        op._row_layout()
        op._blocked, op.layout = None, "rows"
        rowres = op.line_search_products(zb, F, G, D_F, D_G)
        np.testing.assert_allclose(rowres, runs[0][0], rtol=tol, atol=tol * max(
            abs(x) for x in rowres))


def test_from_entries_solve_builds_no_row_layout():
    """One solve of a from_entries blocked operator (gd, line search) holds only the
    tile codes (4 bytes per observation) and the row pointers: the row layout (two
    index words per observation) is never built; the iterates match the row layout's
    solve to rounding."""
    p = lc.make_problem(60, 45, rank=3, m=1500, operator="entries", seed=9, n_threads=1)
    perm = np.random.default_rng(2).permutation(p.operator.m)
    rows, cols, vals = p.operator.rows[perm], p.operator.cols[perm], p.y[perm]
    op, y, order = lc.EntryOperator.from_entries(
        rows, cols, vals, p.operator.shape, scale=p.operator.scale, n_threads=1,
        layout="blocked", block_shape=(7, 6), k=3, return_order=True)
    small = op.nbytes
    res = lc.solve(op, y, 3, method="gd", max_iter=20, seed=1)
    assert op._cols_r is None and op.nbytes == small
    ref = lc.EntryOperator(rows[order], cols[order], p.operator.shape,
                           scale=p.operator.scale, n_threads=1, layout="rows")
    b = lc.solve(ref, y, 3, method="gd", max_iter=20, seed=1)
    assert res.n_iter == b.n_iter
    for u, v in zip(res.factors, b.factors):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)
