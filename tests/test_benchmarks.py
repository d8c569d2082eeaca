"""The one-run comparison (benchmarks/compare.py, lowrank_core.comparison) in quick mode.

Checks that every reported number is finite and positive and that every reference
computation agrees with lowrank_core's result (the script itself refuses to time a
reference that disagrees; here the recorded discrepancies are checked again). No timing
assertions: the machine may be loaded.
"""

import importlib.util
import math
import pathlib

import numpy as np
import pytest

import lowrank_core
from lowrank_core import comparison

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"


@pytest.fixture(scope="module")
def quick():
    return comparison.run_comparison(quick=True, repeats=1, solve_repeats=1, n_threads=1)


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_products_cover_every_available_kind(quick):
    kinds = {r["kind"] for r in quick.rows}
    assert {"dense", "symmetric"} <= kinds
    from lowrank_core.problems import OPERATOR_BUILDERS
    for kind, name in [("sparse", "sparse"), ("entries", "entries"), ("rank-one", "rank-one")]:
        assert (kind in kinds) == (name in OPERATOR_BUILDERS)
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
        tol = comparison.PRODUCT_RTOL[np.dtype(r["dtype"])]
        assert set(r["discrepancy"]) == set(r["baselines"])
        for name, d in r["discrepancy"].items():
            assert 0 <= d <= tol, (r["kind"], r["dtype"], name, d)
        if r["kind"] in ("dense", "symmetric"):
            for key in ("a_bytes", "ours_gbs", "stream_gbs", "npsum_gbs", "numpy_gbs"):
                assert _positive(r[key]), (r["kind"], key)


def test_method_rows_agree_with_reference_loops(quick):
    if not hasattr(lowrank_core, "solve"):
        assert quick.method_rows == []
        pytest.skip("lowrank_core.solve is not in this build")
    assert {r["method"] for r in quick.method_rows} == set(comparison.METHODS)
    for r in quick.method_rows:
        if r["kind"] == "symmetric":
            assert r["method"] in comparison.SYMMETRIC_METHODS and r["symmetric"]
        # the reference loops reached the same status (checked by the script too)
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
    assert "| lowrank_core ms |" in text or "lowrank_core ms" in text
    for r in quick.rows:
        assert r["label"] in text


def test_reference_product_detects_a_wrong_answer():
    prob = comparison.build_problem("dense", comparison.PRODUCT_SIZES["quick"]["dense"],
                                    rank=2, dtype=np.float64, seed=3)
    op = prob.operator
    rng = np.random.default_rng(0)
    F, G = rng.standard_normal((op.shape[0], 3)), rng.standard_normal((op.shape[1], 3))
    ours = op.residual_gradient(F, G, prob.y)
    ref = comparison.reference_products("dense", op, use_torch=False)["numpy"](F, G, prob.y)
    assert comparison.product_discrepancy(ours, ref) < 1e-10
    wrong = (ref[0], ref[1], ref[2] * 1.01, ref[3])
    assert comparison.product_discrepancy(ours, wrong) > 1e-3


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/ is not next to the tests")
def test_script_main_prints_markdown(capsys):
    spec = importlib.util.spec_from_file_location("compare_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--kinds", "dense", "--dtypes", "float64", "--repeats", "1",
                     "--no-solves", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "| dense Gaussian |" in out
    assert "Command: `python benchmarks/compare.py --quick --kinds dense" in out
