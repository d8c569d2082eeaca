"""sample_entries(..., min_per_line=t): uniform among the sets with >= t entries per line.

References: the counts are checked directly; uniformity against an exact enumeration of
every qualifying set of a tiny shape (chi-square), and against the exact marginal
inclusion probability on a larger shape; the feasibility condition against brute force.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from scipy import stats

import lowrank_core as lc
from lowrank_core.operators import sample_entries
from lowrank_core.operators.entries import expected_short_lines, short_lines_message


def _covered(rows, cols, n1, n2, t):
    return (np.bincount(rows, minlength=n1).min() >= t
            and np.bincount(cols, minlength=n2).min() >= t)


@pytest.mark.parametrize("n1,n2,m,t", [(300, 300, 4462, 5), (40, 60, 400, 4), (7, 5, 20, 2)])
def test_every_line_has_min_per_line_entries(n1, n2, m, t):
    rng = np.random.default_rng(3)
    for _ in range(5):
        rows, cols = sample_entries(n1, n2, m, rng, min_per_line=t)
        assert rows.shape == cols.shape == (m,)
        assert np.bincount(rows, minlength=n1).min() >= t
        assert np.bincount(cols, minlength=n2).min() >= t
        flat = rows.astype(np.int64) * n2 + cols
        assert np.all(np.diff(flat) > 0)          # distinct, row-major sorted


def test_default_draw_is_unchanged():
    """min_per_line=0 consumes the generator exactly as the plain call (same bits)."""
    a = sample_entries(50, 40, 300, np.random.default_rng(11))
    b = sample_entries(50, 40, 300, np.random.default_rng(11), min_per_line=0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    p1 = lc.make_problem(30, 20, rank=2, m=200, operator="entries", seed=5)
    p2 = lc.make_problem(30, 20, rank=2, m=200, operator="entries", seed=5, min_per_line=0)
    np.testing.assert_array_equal(p1.operator.rows, p2.operator.rows)
    np.testing.assert_array_equal(p1.y, p2.y)


def test_uniform_over_qualifying_sets_exact_enumeration():
    """3 x 4, m = 6, t = 1: every qualifying 6-subset (enumerated) equally likely."""
    n1, n2, m, t = 3, 4, 6, 1
    cells = list(itertools.product(range(n1), range(n2)))
    feasible = []
    for subset in itertools.combinations(range(n1 * n2), m):
        r = np.array([cells[i][0] for i in subset])
        c = np.array([cells[i][1] for i in subset])
        if _covered(r, c, n1, n2, t):
            feasible.append(subset)
    index = {s: j for j, s in enumerate(feasible)}
    # the condition excludes a real part of the subsets (else the test shows nothing)
    assert len(feasible) < 0.8 * len(list(itertools.combinations(range(n1 * n2), m)))
    rng = np.random.default_rng(2024)
    draws = 30 * len(feasible)
    freq = np.zeros(len(feasible))
    for _ in range(draws):
        rows, cols = sample_entries(n1, n2, m, rng, min_per_line=t)
        freq[index[tuple((rows.astype(int) * n2 + cols).tolist())]] += 1   # KeyError if not
    chi2 = stats.chisquare(freq)
    assert chi2.pvalue > 1e-6, chi2


def test_marginal_inclusion_is_m_over_n1n2():
    """Uniform on the qualifying sets => by symmetry each entry is in Omega with probability
    exactly m / (n1 n2); a sampler that tops up short lines would over-weight nothing here
    but would change the row-count law, checked below against rejection's own law."""
    n1, n2, m, t, draws = 12, 10, 40, 2, 4000
    rng = np.random.default_rng(7)
    hits = np.zeros((n1, n2))
    row_counts = np.zeros(n2 + 1)
    for _ in range(draws):
        rows, cols = sample_entries(n1, n2, m, rng, min_per_line=t)
        hits[rows, cols] += 1
        row_counts += np.bincount(np.bincount(rows, minlength=n1), minlength=n2 + 1)
    p = m / (n1 * n2)
    z = (hits - draws * p) / np.sqrt(draws * p * (1 - p))
    assert np.abs(z).max() < 5.5          # 120 cells, each |z| > 5.5 has prob ~4e-8
    # reference law of one row's count: plain uniform m-subsets, kept when they qualify
    ref = np.zeros(n2 + 1)
    rng2 = np.random.default_rng(8)
    kept = 0
    while kept < draws:
        flat = rng2.choice(n1 * n2, m, replace=False)
        r, c = np.divmod(flat, n2)
        if _covered(r, c, n1, n2, t):
            ref += np.bincount(np.bincount(r, minlength=n1), minlength=n2 + 1)
            kept += 1
    support = (ref + row_counts) > 0
    table = np.vstack([row_counts[support], ref[support]])
    table = table[:, table.min(axis=0) >= 5]
    assert stats.chi2_contingency(table).pvalue > 1e-6


def test_feasibility_condition_matches_brute_force():
    """A qualifying set exists iff t <= min(n1, n2) and t max(n1, n2) <= m (3 x 4)."""
    n1, n2 = 3, 4
    cells = list(itertools.product(range(n1), range(n2)))
    for t in range(0, 5):
        for m in range(1, n1 * n2 + 1):
            exists = t == 0 or any(
                _covered(np.array([cells[i][0] for i in s]), np.array([cells[i][1] for i in s]),
                         n1, n2, t)
                for s in itertools.combinations(range(n1 * n2), m))
            predicted = t == 0 or (t <= min(n1, n2) and t * max(n1, n2) <= m)
            assert exists == predicted, (t, m)
            if not predicted:
                with pytest.raises(ValueError, match="min_per_line"):
                    sample_entries(n1, n2, m, np.random.default_rng(0), min_per_line=t)


def test_hopeless_rejection_refused_up_front_and_bad_values():
    # 1000 x 1000 with 5 entries per line on average: hundreds of short lines expected
    lam = expected_short_lines(1000, 1000, 5000, 5)
    assert lam > 100
    with pytest.raises(ValueError, match="exp"):
        sample_entries(1000, 1000, 5000, np.random.default_rng(0), min_per_line=5)
    for bad in (-1, 1.5, True, "5"):
        with pytest.raises(ValueError, match="min_per_line"):
            sample_entries(10, 10, 50, np.random.default_rng(0), min_per_line=bad)
    # lam about 2 (acceptance about exp(-2)): with max_tries=1 most seeds fail, in words
    assert 1.5 < expected_short_lines(60, 60, 450, 3) < 2.3
    failures = 0
    for seed in range(10):
        try:
            sample_entries(60, 60, 450, np.random.default_rng(seed), min_per_line=3,
                           max_tries=1)
        except RuntimeError as exc:
            assert "max_tries" in str(exc)
            failures += 1
    assert failures >= 5
    with pytest.raises(ValueError, match="operator='entries'"):
        lc.make_problem(10, rank=2, m=80, operator="gaussian", min_per_line=2)


def test_expected_short_lines_against_simulation():
    n, m, t = 300, 4462, 5
    lam = expected_short_lines(n, n, m, t)
    rng = np.random.default_rng(1)
    counts = []
    for _ in range(300):
        r, c = sample_entries(n, n, m, rng)
        counts.append(int(np.sum(np.bincount(r, minlength=n) < t)
                          + np.sum(np.bincount(c, minlength=n) < t)))
    mean = np.mean(counts)
    assert abs(mean - lam) < 4 * np.sqrt(lam / 300) + 0.02, (mean, lam)


def test_bernoulli_p_conditioned():
    rng_seed = 9
    prob = lc.make_problem(40, 30, rank=3, m=None, p=0.3, operator="entries",
                           min_per_line=3, seed=rng_seed)
    rows, cols = prob.operator.rows, prob.operator.cols
    assert _covered(rows, cols, 40, 30, 3)
    # scale is 1/sqrt(p_eff) of the drawn size
    assert prob.operator.scale == pytest.approx(1 / np.sqrt(prob.operator.m / 1200))
    with pytest.raises(ValueError, match="min_per_line"):
        lc.make_problem(40, 30, rank=3, m=None, p=0.05, operator="entries", min_per_line=3)


def test_make_problem_min_per_line_and_message():
    prob = lc.make_problem(300, 300, rank=5, m=4462, operator="entries", cond=10, seed=4,
                           min_per_line=5)
    op = prob.operator
    assert _covered(op.rows, op.cols, 300, 300, 5)
    assert short_lines_message(op.rows, op.cols, op.shape, 5) == ""
    # a hand-made set with one short row and two short columns
    rows = np.array([0, 0, 0, 1, 1, 1, 2])
    cols = np.array([0, 1, 2, 0, 1, 1, 0])
    msg = short_lines_message(rows, cols, (3, 4), 2)
    assert msg.startswith("1 row and 2 columns of the 3 x 4 completion problem have fewer "
                          "than k=2")
    assert "min_per_line=2" in msg


def test_solve_warns_on_underdetermined_lines():
    rows = np.repeat(np.arange(6), 6)[:-5]          # row 5 keeps one entry
    cols = np.tile(np.arange(6), 6)[:-5]
    op = lc.EntryOperator(rows, cols, (6, 6))
    rng = np.random.default_rng(0)
    L, R = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    y = op.forward_factored(L, R)
    for method in ("gnmr", "als"):
        with pytest.warns(RuntimeWarning, match="1 row of the 6 x 6 completion problem has "
                                                "fewer than k=2"):
            res = lc.solve(op, y, 2, method=method, max_iter=3)
        assert res["underdetermined_lines"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = lc.EntryOperator(np.repeat(np.arange(6), 6), np.tile(np.arange(6), 6), (6, 6))
        res = lc.solve(full, full.forward_factored(L, R), 2, method="gnmr", max_iter=3)
    assert res["underdetermined_lines"] == 0
