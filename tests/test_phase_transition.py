"""benchmarks/phase_transition.py --quick on a tiny grid: the CSV files have the documented
columns and consistent values (not speed: no timing assertion)."""

import csv
import importlib.util
import math
import pathlib

import pytest

from lowrank_core.results import STATUSES

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "phase_transition.py"


@pytest.fixture(scope="module")
def phase(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("phase_transition", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("phase")
    args = ["--quick", "--methods", "gd,scaledgd", "--max-iter", "150", "--out",
            str(out / "ph"), "--no-plot"]
    assert mod.main(args) == 0
    with open(out / "ph_runs.csv") as fh:
        runs = list(csv.DictReader(fh))
    with open(out / "ph_summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    return mod, runs, summary


def test_runs_csv(phase):
    mod, runs, _ = phase
    assert list(runs[0]) == mod.RUN_COLUMNS
    # quick grid: completion 2 conds x 2 OS, dense 1 cond x 2 OS; 1 seed; 2 methods
    assert len(runs) == (2 * 2 + 2) * 2
    for row in runs:
        assert row["method"] in ("gd", "scaledgd")
        assert row["status"] in STATUSES and row["status"] not in ("running", "diverged")
        n, r, m, os_ = int(row["n"]), int(row["rank"]), int(row["m"]), float(row["os"])
        assert m == round(os_ * r * (2 * n - r))
        err = float(row["error"])
        assert math.isfinite(err) and err >= 0
        assert int(row["recovered"]) == int(err <= 1e-8)
        assert float(row["time"]) > 0 and 0 <= int(row["n_iter"]) <= 150
        # the papers' protocol (default): every row and column has >= r entries
        assert int(row["short_lines"]) == 0
    assert {row["kind"] for row in runs} == {"completion", "dense"}


def test_summary_matches_runs(phase):
    mod, runs, summary = phase
    assert list(summary[0]) == mod.SUMMARY_COLUMNS
    assert len(summary) == len(runs)  # one seed: one run per summary cell
    for s in summary:
        match = [r for r in runs if (r["kind"], r["cond"], r["os"], r["method"])
                 == (s["kind"], s["cond"], s["os"], s["method"])]
        assert len(match) == int(s["runs"]) == 1
        assert float(s["fraction"]) == int(match[0]["recovered"])
        assert float(s["median_time"]) == pytest.approx(float(match[0]["time"]), rel=1e-5)
        assert s["statuses"] == match[0]["status"]
    # the easy dense cell (kappa 1, OS 5) is recovered by both methods
    easy = [s for s in summary if s["kind"] == "dense" and float(s["os"]) == 5]
    assert easy and all(float(s["fraction"]) == 1 for s in easy)


def test_rst_tables_from_summary(phase, tmp_path):
    mod, runs, summary = phase
    path = tmp_path / "s.csv"
    mod.write_csv(path, mod.SUMMARY_COLUMNS, mod.summarize(
        [dict(r, n=int(r["n"]), rank=int(r["rank"]), cond=float(r["cond"]),
              os=float(r["os"]), m=int(r["m"]), recovered=int(r["recovered"]),
              time=float(r["time"]), n_iter=int(r["n_iter"])) for r in runs]))
    table = mod.rst_table(mod.read_summary(path), "completion", "t")
    lines = table.splitlines()
    # header (kappa, OS, 2 methods) + 4 cells x (kappa, OS, 2 methods)
    assert sum(line.startswith("   * - ") for line in lines) == 1 + 4
    entries = [line.split("- ")[1] for line in lines if line.startswith("     - ")
               and "/" in line]
    expected = [f"{r['recovered']}/1" for r in sorted(
        (r for r in runs if r["kind"] == "completion"),
        key=lambda r: (float(r["cond"]), float(r["os"])))]
    assert entries == expected
