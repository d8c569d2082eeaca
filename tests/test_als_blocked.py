"""ALS over the blocked tiles (lowrank_core._als_blocked, ALS option layout="blocked")
against plain numpy: each half-step equals the per-row ridge least-squares solve
(numpy.linalg.solve of the k x k normal equations, or the rcond pseudo-inverse for a
singular row), with many tiny tiles, empty tiles, rows and columns with no or few
observations; singular-row counts equal the row path's; the result is bitwise independent
of the thread count; a full solve recovers like the row path."""

import warnings

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods.als import RowSolves, TileSolves
from lowrank_core.operators import _indexing as ix


def numpy_half_step(keys, others, y, fixed, n, scale, lam, rcond):
    """(out, n_singular, cond): row j = (s^2 X^T X + lam I)^{-1} s X^T y over the entries with
    key j (X = fixed[others]), in float64; a system whose Cholesky pivots fall below
    rcond * max diagonal (fewer than k equations, lam = 0) gets the eigen pseudo-inverse
    with the eigenvalues below rcond * max dropped, an empty row without ridge 0; cond
    (n,) the condition number of each row's system (inf when singular)."""
    k = fixed.shape[1]
    fixed = fixed.astype(np.float64)
    y = y.astype(np.float64)
    out = np.zeros((n, k))
    cond = np.full(n, np.inf)
    n_singular = 0
    for j in range(n):
        sel = keys == j
        X = fixed[others[sel]]
        C = scale * scale * (X.T @ X) + lam * np.eye(k)
        rhs = scale * (X.T @ y[sel])
        if not sel.any() and lam == 0:
            n_singular += 1
            continue
        w, V = np.linalg.eigh(C)
        if w[0] > rcond * w[-1] * 10:     # clearly regular: the Cholesky path
            out[j] = np.linalg.solve(C, rhs)
            cond[j] = w[-1] / w[0]
        else:
            n_singular += 1
            keep = w > rcond * w[-1]
            out[j] = V[:, keep] @ ((V[:, keep].T @ rhs) / w[keep])
    return out, n_singular, cond


def _problem(n1, n2, k, m, dtype, block_shape, seed=0, empty_rows=(), few=None,
             empty_cols=(), n_threads=1):
    """A from_entries blocked operator on random entries (random order, repeats
    allowed), with the rows ``empty_rows`` and columns ``empty_cols`` unobserved and the
    rows of ``few`` ({row: count}) observed ``count`` times only."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n1, m)
    cols = rng.integers(0, n2, m)
    keep = ~np.isin(rows, list(empty_rows) + list((few or {}).keys())) \
        & ~np.isin(cols, list(empty_cols))
    rows, cols = rows[keep], cols[keep]
    for r, c in (few or {}).items():
        extra = rng.choice(np.setdiff1d(np.arange(n2), empty_cols), c, replace=False)
        rows = np.concatenate([rows, np.full(c, r)])
        cols = np.concatenate([cols, extra])
    perm = rng.permutation(rows.size)
    rows, cols = rows[perm], cols[perm]
    truth = rng.standard_normal((n1, k)) @ rng.standard_normal((n2, k)).T
    vals = (truth[rows, cols] + 0.1 * rng.standard_normal(rows.size)).astype(dtype)
    op, y, order = lc.EntryOperator.from_entries(
        rows, cols, vals, (n1, n2), k=k, layout="blocked", block_shape=block_shape,
        scale=1.3, n_threads=n_threads, return_order=True)
    assert op._blocked is not None and op._blocked["pos"] is None
    G = rng.standard_normal((n2, k)).astype(dtype)
    F = rng.standard_normal((n1, k)).astype(dtype)
    return op, y, rows[order], cols[order], F, G


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lam", [0.0, 0.7])
@pytest.mark.parametrize("k", [3, 5, 17])
def test_half_steps_match_numpy(dtype, lam, k):
    # about 2.5 k entries per row and column (well-posed rows beside the short ones)
    n1, n2 = (31, 26) if k < 10 else (70, 60)
    # tiles of 3 x 4: 11 x 7 tiles; rows 0-2 (a whole row block, so its tiles are empty),
    # row 10 and columns 8-11 (a whole column block) unobserved; rows 4 and 20 with 1
    # and k - 1 observations (fewer than k: singular without the ridge)
    op, y, rows, cols, F, G = _problem(
        n1, n2, k, int(2.5 * k * n1), dtype, (3, 4), seed=k, empty_rows=(0, 1, 2, 10),
        few={4: 1, 20: k - 1}, empty_cols=(8, 9, 10, 11))
    tptr = op._blocked["tptr"]
    assert np.sum(np.diff(tptr) == 0) >= 7 + 3 * 3   # empty tiles
    eps = float(np.finfo(dtype).eps)
    rcond = 10.0 * k * eps
    tiles = TileSolves(op, op._blocked, y, k, dtype, 1)
    F1 = np.empty((n1, k), dtype)
    sing_f = tiles.by_row.solve(y, G, F1, op.scale, lam, rcond)
    G1 = np.empty((n2, k), dtype)
    sing_g = tiles.by_col.solve(y, F1, G1, op.scale, lam, rcond)
    Fr, sr_f, cf = numpy_half_step(rows, cols, y, G, n1, op.scale, lam, rcond)
    Gr, sr_g, cg = numpy_half_step(cols, rows, y, F1, n2, op.scale, lam, rcond)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    # the singular rows (pseudo-inverse of the squared system) to a looser tolerance
    reg_r = np.bincount(rows, minlength=n1) >= k
    reg_c = np.bincount(cols, minlength=n2) >= k
    if lam:
        reg_r[:] = True
        reg_c[:] = True
    # rounding is amplified by each row's condition number: every regular row to tol
    # while cond <= c0 (1000 in float64, 100 in float32: about 1e-15 and 1e-7 cond
    # beyond); the singular rows (pseudo-inverse of the squared system) looser
    c0 = 1000 if dtype == np.float64 else 100
    for out, ref, cond, reg in ((F1, Fr, cf, reg_r), (G1, Gr, cg, reg_c)):
        good = reg & np.isfinite(cond)
        err = np.abs(out - ref).max(axis=1) / np.abs(ref).max()
        assert np.all(err[good] < tol * np.maximum(cond[good], c0) / c0)
        assert np.sum(good & (cond <= 10 * c0)) >= good.sum() // 2
        stol = 1e-8 if dtype == np.float64 else 1e-3
        assert np.all(err[~reg] < stol)
    # singular rows: at least the lines with fewer than k observations (none with the
    # ridge), numpy's count in float64, and the row path's count (below) in both
    if lam == 0:
        assert sing_f >= 4 + 2 and sing_g >= 4      # rows 0, 1, 2, 10, 4, 20; cols 8-11
        assert sing_f >= np.sum(~reg_r) and sing_g >= np.sum(~reg_c)
        assert np.all(F1[[0, 1, 2, 10]] == 0) and np.all(G1[8:12] == 0)
    else:
        assert sing_f == sing_g == 0
    if dtype == np.float64:
        assert (sing_f, sing_g) == (sr_f, sr_g)
    rs_f = RowSolves(rows, cols, n1, np.int64, k, dtype, 1)
    rs_g = RowSolves(cols, rows, n2, np.int64, k, dtype, 1)
    F2 = np.empty_like(F1)
    G2 = np.empty_like(G1)
    assert rs_f.solve(y, G, F2, op.scale, lam, rcond) == sing_f
    assert rs_g.solve(y, F1, G2, op.scale, lam, rcond) == sing_g
    assert _rel(F1, F2) < (1e-8 if dtype == np.float64 else 1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_bitwise_and_two_threads_used(dtype):
    # enough entries that the row-block partition really has 2 threads
    k, n1, n2 = 6, 700, 500
    m = 2 * ix.MIN_ENTRIES_PER_THREAD + 5000
    op, y, rows, cols, F, G = _problem(n1, n2, k, m, dtype, (64, 48), seed=3,
                                       empty_rows=(5,), empty_cols=(7,))
    rcond = 10.0 * k * float(np.finfo(dtype).eps)
    outs = []
    for nt in (1, 2):
        tiles = TileSolves(op, op._blocked, y, k, dtype, nt)
        assert tiles.by_row.bounds.shape[0] - 1 == nt
        assert tiles.by_col.bounds.shape[0] - 1 == nt
        F1 = np.empty((n1, k), dtype)
        G1 = np.empty((n2, k), dtype)
        s = (tiles.by_row.solve(y, G, F1, op.scale, 0.0, rcond),
             tiles.by_col.solve(y, F1, G1, op.scale, 0.0, rcond))
        outs.append((F1, G1, s))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert outs[0][2] == outs[1][2] == (1, 1)
    Fr, _, cond = numpy_half_step(rows, cols, y, G, n1, op.scale, 0.0, rcond)
    ok = np.arange(n1) != 5
    assert _rel(outs[0][0][ok], Fr[ok]) < (1e-12 if dtype == np.float64 else 1e-5)


def test_transposed_layout_against_numpy():
    op, y, rows, cols, F, G = _problem(23, 19, 2, 300, np.float64, (3, 4), seed=7,
                                       empty_cols=(0, 18))
    tiles = TileSolves(op, op._blocked, y, 2, np.float64, 1)
    br, bc = op._blocked["shape"]
    n_rb = -(-23 // br)
    np.testing.assert_array_equal(tiles.col_count, np.bincount(cols, minlength=19))
    np.testing.assert_array_equal(tiles.row_count, np.bincount(rows, minlength=23))
    # decode the transposed tiles: (column, row, y) in the order (col block, row block,
    # column), stable: the same multiset as the operator's entries, and sorted so
    tid = np.repeat(np.arange(tiles.tptr_t.size - 1), np.diff(tiles.tptr_t))
    c = (tid // n_rb) * bc + (tiles.code_t >> 16)
    r = (tid % n_rb) * br + (tiles.code_t & 0xFFFF)
    key = np.lexsort((r, c, tid))
    np.testing.assert_array_equal(key, np.arange(key.size))
    ref = np.lexsort((y, rows, cols))
    got = np.lexsort((tiles.y_t, r, c))
    np.testing.assert_array_equal(cols[ref], c[got])
    np.testing.assert_array_equal(rows[ref], r[got])
    np.testing.assert_array_equal(y[ref], tiles.y_t[got])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_constructed_blocked_layout(dtype):
    """A constructor-built blocked layout (positions stored): y permuted into the tiles'
    order once, the same half-step as numpy."""
    rng = np.random.default_rng(11)
    n1, n2, k = 40, 30, 4
    rows = rng.integers(0, n1, 900)
    cols = rng.integers(0, n2, 900)
    op = lc.EntryOperator(rows, cols, (n1, n2), dtype=dtype, layout="blocked",
                          block_shape=(7, 5))
    y = rng.standard_normal(900).astype(dtype)
    G = rng.standard_normal((n2, k)).astype(dtype)
    blocked = op._blocked_for(k)
    assert blocked["pos"] is not None
    tiles = TileSolves(op, blocked, y, k, dtype, 1)
    rcond = 10.0 * k * float(np.finfo(dtype).eps)
    F1 = np.empty((n1, k), dtype)
    tiles.by_row.solve(y, G, F1, op.scale, 0.2, rcond)
    Fr, _, _ = numpy_half_step(rows, cols, y, G, n1, op.scale, 0.2, rcond)
    assert _rel(F1, Fr) < (1e-12 if dtype == np.float64 else 1e-5)


def _recovery_problem(seed=0):
    rng = np.random.default_rng(seed)
    n1, n2, r = 120, 90, 3
    truth = rng.standard_normal((n1, r)) @ rng.standard_normal((n2, r)).T
    m = 3000
    rows = rng.integers(0, n1, m)
    cols = rng.integers(0, n2, m)
    op, y = lc.EntryOperator.from_entries(rows, cols, truth[rows, cols], (n1, n2), k=r,
                                          layout="blocked", block_shape=(16, 8))
    F0 = 0.1 * rng.standard_normal((n1, r))
    G0 = 0.1 * rng.standard_normal((n2, r))
    return op, y, truth, F0, G0


def test_full_solve_recovers_like_row_path():
    op, y, truth, F0, G0 = _recovery_problem()
    runs = {}
    for layout in ("rows", "blocked"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # a few short lines
            runs[layout] = lc.solve(op, y, 3, method="als", init=(F0, G0), tol=1e-12,
                                    max_iter=300, record=False, layout=layout)
    a, b = runs["rows"], runs["blocked"]
    assert abs(a.n_iter - b.n_iter) <= 1
    err = {name: np.linalg.norm(r.F @ r.G.T - truth) / np.linalg.norm(truth)
           for name, r in runs.items()}
    assert err["rows"] < 1e-6      # recovered
    assert abs(err["blocked"] - err["rows"]) <= 1e-10
    np.testing.assert_array_equal(a.singular_rows[:3], b.singular_rows[:3])
    assert a.underdetermined_lines == b.underdetermined_lines


def test_auto_picks_row_or_tiles_and_no_row_layout_built():
    op, y, truth, F0, G0 = _recovery_problem(1)
    lc.solve(op, y, 3, method="als", init=(F0, G0), max_iter=2, record=False,
             layout="blocked")
    assert op._cols_r is None         # the tile path built no row layout
    with pytest.raises(ValueError, match="layout"):
        lc.solve(op, y, 3, method="als", init=(F0, G0), max_iter=1, layout="tiles")
    rows_op = lc.EntryOperator(np.arange(10), np.arange(10), (10, 10), layout="rows")
    with pytest.raises(ValueError, match="blocked layout"):
        lc.solve(rows_op, np.ones(10), 1, method="als", max_iter=1, layout="blocked")


@pytest.mark.parametrize("sub", [1, 2, 5, 17])
def test_row_passes_bitwise_equal(sub):
    """Output blocks accumulated in passes of ``sub`` rows: the same additions per row in
    the same order as one pass, so the same bits (and the numpy result)."""
    k = 4
    op, y, rows, cols, F, G = _problem(50, 45, k, 900, np.float64, (9, 7), seed=5,
                                       empty_rows=(3,), few={11: 2})
    rcond = 10.0 * k * float(np.finfo(np.float64).eps)
    res = []
    for s in (0, sub):
        tiles = TileSolves(op, op._blocked, y, k, np.float64, 1, sub_rows=s)
        F1 = np.empty((50, k))
        G1 = np.empty((45, k))
        n = (tiles.by_row.solve(y, G, F1, op.scale, 0.0, rcond),
             tiles.by_col.solve(y, F1, G1, op.scale, 0.0, rcond))
        res.append((F1, G1, n))
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])
    assert res[0][2] == res[1][2]
    Fr, n_r, _ = numpy_half_step(rows, cols, y, G, 50, op.scale, 0.0, rcond)
    assert n_r == res[1][2][0]
    ok = np.bincount(rows, minlength=50) >= k
    assert _rel(res[1][0][ok], Fr[ok]) < 1e-12


def test_new_measurements_rebuild_the_transposed_tiles():
    """A half-step called with another y array than the one it was built with takes
    that y (both half-steps), as numpy does."""
    k = 3
    op, y, rows, cols, F, G = _problem(30, 25, k, 600, np.float64, (4, 6), seed=2)
    tiles = TileSolves(op, op._blocked, y, k, np.float64, 1)
    y2 = np.random.default_rng(9).standard_normal(y.size)
    rcond = 10.0 * k * float(np.finfo(np.float64).eps)
    F1 = np.empty((30, k))
    G1 = np.empty((25, k))
    tiles.by_row.solve(y2, G, F1, op.scale, 0.5, rcond)
    tiles.by_col.solve(y2, F1, G1, op.scale, 0.5, rcond)
    Fr, _, _ = numpy_half_step(rows, cols, y2, G, 30, op.scale, 0.5, rcond)
    Gr, _, _ = numpy_half_step(cols, rows, y2, F1, 25, op.scale, 0.5, rcond)
    assert _rel(F1, Fr) < 1e-12 and _rel(G1, Gr) < 1e-12
