"""benchmarks/phase_transition.py --replot: the heat maps redrawn from the committed summary
CSV (drawing only: nothing solved, the CSV unchanged), at 150 dpi, labels in math text."""

import csv
import hashlib
import importlib.util
import pathlib

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "phase_transition.py"
SUMMARY = ROOT / "docs" / "figures" / "phase_summary.csv"


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("phase_transition_replot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replot_draws_the_csv_without_solving(mod, tmp_path, monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("--replot must not solve anything")

    monkeypatch.setattr(mod, "run", no_run)
    before = hashlib.sha256(SUMMARY.read_bytes()).hexdigest()
    assert mod.main(["--replot", str(SUMMARY), "--figures", str(tmp_path)]) == 0
    assert hashlib.sha256(SUMMARY.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phase-completion.png",
                                                          "phase-dense.png"]
    for name in ("phase-completion.png", "phase-dense.png"):
        with Image.open(tmp_path / name) as im:
            # 4 x 2 panels of 3.3 x (2.7 + 0.6 / 2) in at the default 150 dpi
            assert im.size == (round(4 * 3.3 * 150), round(2 * 3.0 * 150))
            assert im.info["dpi"] == pytest.approx((150, 150), abs=0.05)  # pHYs: px per metre
    assert mod.main(["--replot", str(SUMMARY), "--figures", str(tmp_path), "--dpi", "100"]) \
        == 0
    with Image.open(tmp_path / "phase-dense.png") as im:
        assert im.size == (round(4 * 3.3 * 100), round(2 * 3.0 * 100))


def test_heat_map_cells_are_the_csv_fractions(mod, tmp_path):
    with open(SUMMARY, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["kind"] == "completion"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    conds = sorted({float(r["cond"]) for r in rows})
    oss = sorted({float(r["os"]) for r in rows})
    fig = mod.plot(mod.read_summary(SUMMARY), "completion", methods,
                   tmp_path / "c.png")
    for ax, method in zip(fig.axes, methods):
        expect = np.full((len(conds), len(oss)), np.nan)
        for r in rows:
            if r["method"] == method:
                expect[conds.index(float(r["cond"])), oss.index(float(r["os"]))] = \
                    float(r["fraction"])
        (image,) = ax.get_images()
        np.testing.assert_array_equal(np.asarray(image.get_array()), expect)
        assert ax.get_title() == method
        assert ax.get_xlabel() == r"oversampling $m\,/\,(r(n_1+n_2-r))$"
        assert ax.get_ylabel() == r"condition number $\kappa$"
    n = rows[0]["n"]
    assert fig._suptitle.get_text().startswith(
        rf"matrix completion, $n_1=n_2={n}$, $r={rows[0]['rank']}$: fraction of runs "
        r"reaching relative error $10^{-8}$")
    fig.canvas.draw()  # the math text parses
