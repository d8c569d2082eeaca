"""Property-based fuzzing of the constructors and of solve() (bounded, runs on every CI run).

Every generated input either builds an operator whose products match a plain-numpy
reference (and the adjoint identity), or is refused with a ValueError / TypeError /
MemoryError; every generated solve ends with a final status, never a NaN reported as
converged, and a history whose columns have one value per recorded iteration. Kernel
calls on adversarial shapes run in a child process, so that a crash (segfault, abort) in
compiled code fails one test instead of killing the suite.

The number of examples is bounded (``FUZZ_EXAMPLES``, env ``LOWRANK_FUZZ_EXAMPLES``) so the
module takes a few seconds; raise it locally for a longer campaign.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowrank_core as lc
from lowrank_core.methods import METHODS
from lowrank_core.results import STATUSES

FUZZ_EXAMPLES = int(os.environ.get("LOWRANK_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
REFUSALS = (ValueError, TypeError, MemoryError)

index_dtypes = st.sampled_from([np.int32, np.int64, np.uint8, np.int16])
float_dtypes = st.sampled_from([np.float32, np.float64])


def _adjoint_identity(op, rng):
    M = rng.standard_normal(op.shape).astype(op.dtype)
    z = rng.standard_normal(op.m).astype(op.dtype)
    lhs = float(np.dot(op.forward(M).astype(np.float64), z))
    rhs = float(np.sum(M.astype(np.float64) * op.adjoint(z)))
    tol = 1e-4 if op.dtype == np.float32 else 1e-10
    assert abs(lhs - rhs) <= tol * (1 + abs(lhs) + np.abs(M).sum() * np.abs(z).sum())


@FUZZ
@given(n1=st.integers(1, 6), n2=st.integers(1, 6), data=st.data(), itype=index_dtypes,
       dtype=float_dtypes, explicit_m=st.booleans())
def test_sparse_operator_constructor_fuzz(n1, n2, data, itype, dtype, explicit_m):
    nnz = data.draw(st.integers(1, 12))
    ints = st.integers(-2, 9)
    meas = np.array(data.draw(st.lists(ints, min_size=nnz, max_size=nnz)))
    rows = np.array(data.draw(st.lists(ints, min_size=nnz, max_size=nnz)))
    cols = np.array(data.draw(st.lists(ints, min_size=nnz, max_size=nnz)))
    vals = np.array(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=nnz, max_size=nnz)),
                    dtype=dtype)
    m = data.draw(st.integers(1, 12)) if explicit_m else None
    try:
        cast = [x.astype(itype) for x in (meas, rows, cols)]
    except OverflowError:
        return
    try:
        op = lc.SparseOperator((*cast, vals), (n1, n2), m=m)
    except REFUSALS:
        bad_index = (meas.min() < 0 or rows.min() < 0 or cols.min() < 0
                     or rows.max() >= n1 or cols.max() >= n2
                     or (m is not None and meas.max() >= m)
                     or (m is None and meas.max() + 1 > 2 * nnz)
                     or np.any(cast[0] != meas) or np.any(cast[1] != rows)
                     or np.any(cast[2] != cols))
        assert bad_index, "a valid triplet set was refused"
        return
    rng = np.random.default_rng(0)
    M = rng.standard_normal((n1, n2)).astype(dtype)
    expected = np.zeros(op.m)
    np.add.at(expected, meas, vals.astype(np.float64) * M[rows, cols])
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(op.forward(M), expected, rtol=tol, atol=tol * 1e3)
    _adjoint_identity(op, rng)


@FUZZ
@given(n1=st.integers(1, 7), n2=st.integers(1, 7), data=st.data(), itype=index_dtypes,
       dtype=float_dtypes,
       scale=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([1.0, 1e-50, 1e300, -2.0, np.float32(0.5)])))
def test_entry_operator_constructor_fuzz(n1, n2, data, itype, dtype, scale):
    m = data.draw(st.integers(1, 15))
    rows = np.array(data.draw(st.lists(st.integers(-1, 8), min_size=m, max_size=m)))
    cols = np.array(data.draw(st.lists(st.integers(-1, 8), min_size=m, max_size=m)))
    strided = data.draw(st.booleans())
    r, c = rows.astype(itype), cols.astype(itype)
    if strided:
        r, c = np.stack([r, c], axis=1)[:, 0], np.stack([r, c], axis=1)[:, 1]
    try:
        op = lc.EntryOperator(r, c, (n1, n2), dtype=dtype, scale=scale)
    except REFUSALS:
        info = np.finfo(dtype)
        representable = (np.isfinite(scale) and scale != 0
                         and float(info.tiny) <= abs(float(scale)) <= float(info.max))
        bad = (rows.min() < 0 or cols.min() < 0 or rows.max() >= n1 or cols.max() >= n2
               or not representable or np.any(r != rows) or np.any(c != cols))
        assert bad, "a valid entry set was refused"
        return
    rng = np.random.default_rng(1)
    M = rng.standard_normal((n1, n2)).astype(dtype)
    expected = dtype(op.scale) * M[rows, cols]
    np.testing.assert_allclose(op.forward(M), expected,
                               rtol=1e-6 if dtype == np.float32 else 1e-15)
    assert np.all(np.isfinite(op.forward(M)))
    _adjoint_identity(op, rng)


@FUZZ
@given(kind=st.sampled_from(["gaussian", "sparse", "entries", "rank-one"]),
       method=st.sampled_from(sorted(METHODS)), psd=st.booleans(), dtype=float_dtypes,
       log_step=st.floats(-3, 1.5), k=st.integers(1, 3), max_iter=st.integers(0, 15),
       seed=st.integers(0, 2**16), init=st.sampled_from(["small", "spectral"]))
def test_solve_fuzz_ends_with_an_honest_status(kind, method, psd, dtype, log_step, k,
                                               max_iter, seed, init):
    n = 8
    m = 60 if kind != "entries" else 50
    problem = lc.make_problem(n, n, rank=2, m=m, operator=kind, psd=psd, dtype=dtype,
                              seed=seed)
    symmetric = psd and "symmetric" in METHODS[method].forms
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # e.g. the unobserved-antisymmetry warning
        res = lc.solve(problem.operator, problem.y, k, method=method, symmetric=symmetric,
                       init=init, step=10.0 ** log_step, max_iter=max_iter, seed=seed,
                       truth=problem)
    assert res.status in STATUSES and res.status not in ("running", "interrupted",
                                                         "callback")
    assert res.n_iter <= max_iter
    if res.status == "converged":
        assert np.isfinite(res.loss) and np.isfinite(res.residual)
        assert res.residual <= (1e-5 if dtype == np.float32 else 1e-10)
    if res.status in ("converged", "max_iter"):
        assert np.isfinite(res.loss) and all(np.all(np.isfinite(f)) for f in res.factors)
        assert np.isfinite(res.error)
    for f in res.factors:
        assert f.dtype == dtype
    h = res.history
    lengths = {name: len(v) for name, v in h.items()}
    assert len(set(lengths.values())) == 1, lengths
    it = h["iteration"]
    assert np.all(np.diff(it) > 0) and (len(it) == 0 or it[-1] <= res.n_iter)


_KERNEL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import lowrank_core as lc

    def dense_of(op):
        n1, n2 = op.shape
        basis = np.zeros((n1, n2), op.dtype)
        A = np.empty((op.m, n1 * n2))
        for j in range(n1 * n2):
            basis.flat[j] = 1
            A[:, j] = op.forward(basis)
            basis.flat[j] = 0
        return A

    rng = np.random.default_rng(int(sys.argv[1]))
    checks = 0
    for case in range(int(sys.argv[2])):
        n1, n2 = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        m = int(rng.integers(1, 40))
        dtype = [np.float32, np.float64][int(rng.integers(0, 2))]
        nt = int(rng.integers(1, 4))
        kind = ["dense", "sparse", "entries", "rank-one"][case % 4]
        if kind == "dense":
            op = lc.DenseOperator(rng.standard_normal((m, n1, n2)).astype(dtype),
                                  n_threads=nt)
        elif kind == "sparse":
            nnz = int(rng.integers(1, 3 * m + 1))
            op = lc.SparseOperator((rng.integers(0, m, nnz), rng.integers(0, n1, nnz),
                                    rng.integers(0, n2, nnz),
                                    rng.standard_normal(nnz).astype(dtype)), (n1, n2),
                                   m=m, n_threads=nt)
        elif kind == "entries":
            op = lc.EntryOperator(rng.integers(0, n1, m), rng.integers(0, n2, m), (n1, n2),
                                  dtype=dtype, scale=float(rng.uniform(0.5, 2)),
                                  n_threads=nt)
        else:
            op = lc.RankOneOperator(rng.standard_normal((m, n1)).astype(dtype),
                                    rng.standard_normal((m, n2)).astype(dtype),
                                    n_threads=nt)
        A = dense_of(op)
        k = int(rng.integers(1, 4))
        F = rng.standard_normal((n1, k)).astype(dtype)
        G = rng.standard_normal((n2, k)).astype(dtype)
        y = rng.standard_normal(m).astype(dtype)
        loss, z, SG, StF = op.residual_gradient(F, G, y)
        z_ref = A @ (F.astype(np.float64) @ G.T.astype(np.float64)).ravel() - y
        S = (A.T @ z_ref).reshape(n1, n2)
        tol = 2e-3 if dtype == np.float32 else 1e-9
        scale = 1 + np.abs(A).sum() * (1 + np.abs(F).max() * np.abs(G).max() * k)
        assert np.max(np.abs(z - z_ref)) <= tol * scale, (kind, "z")
        assert abs(loss - 0.5 * z_ref @ z_ref) <= tol * scale ** 2, (kind, "loss")
        assert np.max(np.abs(SG - S @ G)) <= tol * scale ** 2, (kind, "SG")
        assert np.max(np.abs(StF - S.T @ F)) <= tol * scale ** 2, (kind, "StF")
        checks += 4
    print(checks)
""")


@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_products_on_adversarial_shapes_in_a_child_process(seed):
    # 1 x 1 matrices, m = 1, more threads than rows, float32 and float64: the fused
    # residual gradient of every kind against the dense numpy matrix of the same operator.
    n_cases = max(8, FUZZ_EXAMPLES)
    proc = subprocess.run([sys.executable, "-c", _KERNEL_SCRIPT, str(seed), str(n_cases)],
                          cwd=__import__("tempfile").gettempdir(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (f"child exited with {proc.returncode} (negative: killed "
                                  f"by a signal)\n{proc.stderr[-3000:]}")
    assert int(proc.stdout.split()[-1]) == 4 * n_cases
