"""The benchmark harness (benchmarks/harness, benchmarks/compare.py) in quick mode.

Checks that every reported number is finite and positive and that every reference
computation agrees with lowrank_core's result (the harness itself refuses to time a
reference that disagrees; here the recorded discrepancies are checked again). No timing
assertions: the machine may be loaded.
"""

import importlib.util
import math
import pathlib
import sys

import numpy as np
import pytest

import lowrank_core

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "compare.py"
if str(BENCHMARKS) not in sys.path:  # the harness is a plain package beside the tests
    sys.path.insert(0, str(BENCHMARKS))

from harness import comparison, problems, references, solvers


@pytest.fixture(scope="module")
def quick():
    return comparison.run_comparison(quick=True, repeats=1, solve_repeats=1, n_threads=1)


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _script():
    spec = importlib.util.spec_from_file_location("compare_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_products_cover_every_kind(quick):
    assert [r["kind"] for r in quick.rows] == [k for k in problems.KINDS
                                                for _ in ("float64", "float32")]
    for r in quick.rows:
        assert r["dtype"] in ("float32", "float64")
        # numpy always; scipy.sparse for the sparse and entrywise operators
        assert "numpy" in r["baselines"]
        if r["kind"] in ("sparse", "entries"):
            assert "scipy.sparse" in r["baselines"]
        if r["kind"] == "sparse":  # the gather reference and the dense-S variant
            assert "scipy.sparse dense-S" in r["baselines"]


def test_product_numbers_finite_positive_and_references_agree(quick):
    for r in quick.rows:
        assert _positive(r["ours_s"])
        for name, t in r["baselines"].items():
            assert _positive(t), (r["kind"], name)
        tol = references.PRODUCT_RTOL[np.dtype(r["dtype"])]
        assert set(r["discrepancy"]) == set(r["baselines"])
        for name, d in r["discrepancy"].items():
            assert 0 <= d <= tol, (r["kind"], r["dtype"], name, d)
        if r["kind"] in ("dense", "symmetric"):
            for key in ("a_bytes", "ours_gbs", "stream_gbs", "npsum_gbs", "numpy_gbs"):
                assert _positive(r[key]), (r["kind"], key)


def test_method_rows_agree_with_reference_loops(quick):
    # every registered method has its numpy reference loop in the harness
    assert not [s for s in quick.skipped if "no numpy reference" in s], quick.skipped
    assert set(references.REFERENCE_METHODS) >= set(problems.METHODS)
    assert {r["method"] for r in quick.method_rows} == set(problems.METHODS)
    skipped = {(m, k) for m in problems.METHODS for k in problems.KINDS
               if k == "symmetric" and m not in problems.SYMMETRIC_METHODS}
    assert {(r["method"], r["kind"]) for r in quick.method_rows} == {
        (m, k) for m in problems.METHODS for k in problems.KINDS} - skipped
    assert len(quick.skipped) == len(skipped)
    for r in quick.method_rows:
        if r["kind"] == "symmetric":
            assert r["method"] in problems.SYMMETRIC_METHODS and r["symmetric"]
        # the reference loops reached the same status (checked by the harness too)
        assert r["status"] in ("converged", "max_iter"), r
        assert _positive(r["ours_s"]) and _positive(r["error"])
        assert r["error"] < 1e-2
        for name, t in r["baselines"].items():
            assert _positive(t)
            assert abs(r["ref_iters"][name] - r["n_iter"]) <= max(2, 0.1 * r["n_iter"])
            assert r["agreement"][name] <= 1e-3


def test_markdown_carries_machine_conditions_command(quick):
    text = quick.to_markdown()
    assert text.startswith("Machine: ")
    for r in quick.rows:  # both scipy.sparse variants of the sparse kind are listed
        if r["kind"] == "sparse":
            assert f"scipy.sparse variants for {r['label']} {r['dtype']}: gather" in text
    assert "Conditions: " in text and "Command: `" in text
    assert "| lowrank_core ms |" in text
    for r in quick.rows:
        assert r["label"] in text


def test_reference_product_detects_a_wrong_answer():
    prob = problems.build_problem("dense", problems.PRODUCT_SIZES["quick"]["dense"],
                                  rank=2, dtype=np.float64, seed=3)
    op = prob.operator
    rng = np.random.default_rng(0)
    F, G = rng.standard_normal((op.shape[0], 3)), rng.standard_normal((op.shape[1], 3))
    ours = op.residual_gradient(F, G, prob.y)
    ref = references.reference_products("dense", op, use_torch=False)["numpy"](F, G, prob.y)
    assert references.product_discrepancy(ours, ref) < 1e-10
    wrong = (ref[0], ref[1], ref[2] * 1.01, ref[3])
    assert references.product_discrepancy(ours, wrong) > 1e-3


def test_sparse_per_iteration_csr_matches_the_operator():
    prob = problems.build_problem("sparse", problems.PRODUCT_SIZES["quick"]["sparse"],
                                  rank=2, dtype=np.float64, seed=4)
    op = prob.operator
    F, G = problems.random_factors(op.shape, 4, np.float64, seed=5)
    ours = op.residual_gradient(F, G, prob.y)
    ref = references.sparse_per_iteration_csr(op)(F, G, prob.y)
    assert references.product_discrepancy(ours, ref) < 1e-12


@pytest.mark.parametrize("method,symmetric", [("gd", True), ("precgd", True),
                                              ("scaledgd-lambda", True), ("onestep", False),
                                              ("agn", False)])
def test_error_stopped_reference_loop_follows_lowrank_core(method, symmetric):
    """The solvers report's numpy loop (reference_solve stopped by an error target) takes
    the same iterations to the same estimate as lowrank_core.solve with that target."""
    prob = lowrank_core.make_problem(12, rank=2, m=400, psd=True, seed=7, n_threads=1)
    truth = prob.truth_factors
    if symmetric:
        op, y = prob.operator, prob.y
    else:  # the asymmetric-only methods measure the PSD truth with general A_i
        op = lowrank_core.DenseOperator.gaussian(400, 12, 12, seed=8, n_threads=1)
        y = op.forward_factored(*truth)
    A2 = op.matrices.reshape(op.m, -1)
    k = 2  # exact parameterization: every method reaches the 1e-10 target within the cap
    start = lowrank_core.solve(op, y, k, method=method, symmetric=symmetric, max_iter=0,
                               seed=1, init="spectral", step="fixed")
    init = start.X if symmetric else (start.F, start.G)
    opts = {k: v for k, v in start.options.items() if k in ("damping", "trigger")}
    n_ours, _, err_ours, res = solvers.ours_solve(op, y, k, method, symmetric, init,
                                                  start.options["step"], opts, truth, 400, 1)
    F0, G0 = (init, init) if symmetric else init
    n_ref, seconds, err_ref = solvers.numpy_solve(method, A2, y, F0, G0, symmetric,
                                                  start.options, truth, 400)
    assert res.status == "callback" and err_ours <= solvers.TOL  # the target was reached
    assert abs(n_ref - n_ours) <= max(2, 0.02 * n_ours)
    assert err_ref <= solvers.TOL and seconds > 0


def test_script_main_prints_markdown(capsys):
    mod = _script()
    assert mod.main(["--quick", "--kinds", "dense", "--dtypes", "float64", "--repeats", "1",
                     "--no-solves", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "| dense Gaussian |" in out
    assert "Command: `python benchmarks/compare.py --quick --kinds dense" in out


def test_script_dense_and_structured_subcommands(capsys):
    mod = _script()
    assert mod.main(["dense", "--n", "12", "--m", "60", "--k", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for case in ("general dense float64", "symmetric packed float64 (PSD)",
                 "general dense float32"):
        assert f"| {case} |" in out
    assert mod.main(["structured", "--quick", "--only", "rank-one", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| rank-one | m=2000, n1=n2=300, k=10 |" in out
