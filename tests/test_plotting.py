"""Figures (issue 17, item 8): resolution, vector formats, the wall-clock axis, labels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lowrank_core as lc

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402  (matplotlib depends on pillow)

from lowrank_core import plotting  # noqa: E402
from lowrank_core.driver import UnobservedAntisymmetryWarning  # noqa: E402


@pytest.fixture(scope="module")
def runs():
    p = lc.make_problem(14, rank=2, m=250, psd=True, seed=2)
    sym = lc.solve(p.operator, p.y, 3, method="precgd", symmetric=True, truth=p,
                   max_iter=60, seed=0, n_threads=1)
    with warnings.catch_warnings():  # asymmetric run on symmetric A_i: warned, on purpose
        warnings.simplefilter("ignore", UnobservedAntisymmetryWarning)
        asym = lc.solve(p.operator, p.y, 3, method="gd", truth=p, max_iter=40, seed=0,
                        n_threads=1)
    return {"PrecGD (symmetric X X^T)": sym, "GD (asymmetric F G^T)": asym}


def _png_dpi_and_size(path):
    with Image.open(path) as img:
        return img.info.get("dpi"), img.size


def test_png_default_is_150_dpi_and_dpi_is_honoured(runs, tmp_path):
    fig = plotting.plot_results(runs, tmp_path / "a.png")
    dpi, size = _png_dpi_and_size(tmp_path / "a.png")
    assert plotting.DEFAULT_DPI >= 150
    # the pHYs chunk stores whole pixels per metre: 150 dpi reads back as 150.012
    assert dpi == pytest.approx((plotting.DEFAULT_DPI,) * 2, abs=0.03)
    w_in, h_in = fig.get_size_inches()
    assert size == (round(w_in * plotting.DEFAULT_DPI), round(h_in * plotting.DEFAULT_DPI))
    plotting.plot_results(runs, tmp_path / "b.png", dpi=300)
    dpi, size300 = _png_dpi_and_size(tmp_path / "b.png")
    assert dpi == pytest.approx((300, 300), abs=0.03)
    assert size300 == (round(w_in * 300), round(h_in * 300))
    with plotting.figure_dpi(200):  # how `reproduce --dpi` reaches the experiments
        plotting.save_figure(fig, tmp_path / "c.png")
    assert _png_dpi_and_size(tmp_path / "c.png")[0] == pytest.approx((200, 200), abs=0.03)
    plotting.save_figure(fig, tmp_path / "d.png")  # the block's value does not leak
    assert _png_dpi_and_size(tmp_path / "d.png")[0] == pytest.approx((150, 150), abs=0.03)
    with pytest.raises(ValueError, match="dpi"):
        plotting.save_figure(fig, tmp_path / "e.png", dpi=0)


def test_vector_output_by_extension(runs, tmp_path):
    plotting.plot_results(runs, tmp_path / "f.pdf")
    plotting.plot_results(runs, tmp_path / "f.svg")
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    svg = (tmp_path / "f.svg").read_text()
    assert "<svg" in svg and "<path" in svg  # lines as vector paths, not an image
    assert "<image" not in svg
    with pytest.raises(ValueError, match=r"\.png, \.pdf, \.svg"):
        plotting.plot_results(runs, tmp_path / "f.jpg")


def test_x_time_axis_is_the_history_time(runs):
    fig = plotting.plot_results(runs, x="time")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "wall-clock time [s]"
    for line, res in zip(ax.get_lines(), runs.values()):
        np.testing.assert_array_equal(line.get_xdata(), res.history["time"])
        np.testing.assert_array_equal(line.get_ydata(), res.history["error"])
    fig = plotting.plot_results(runs)  # default: iterations
    for line, res in zip(fig.axes[0].get_lines(), runs.values()):
        np.testing.assert_array_equal(line.get_xdata(), res.history["iteration"])
    with pytest.raises(ValueError, match="'iteration', 'time'"):
        plotting.plot_results(runs, x="seconds")


def test_y_label_names_the_runs_form_and_legends_are_math_text(runs):
    (sym_label, sym), (asym_label, asym) = runs.items()
    ylabel = plotting.plot_results({sym_label: sym}).axes[0].get_ylabel()
    assert r"XX^\top" in ylabel and "FG" not in ylabel
    ylabel = plotting.plot_results({asym_label: asym}).axes[0].get_ylabel()
    assert r"FG^\top" in ylabel and "XX" not in ylabel
    fig = plotting.plot_results(runs)
    ylabel = fig.axes[0].get_ylabel()
    assert r"\hat M" in ylabel and r"XX^\top" in ylabel and r"FG^\top" in ylabel
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [r"PrecGD (symmetric $XX^\top$)", r"GD (asymmetric $FG^\top$)"]
    assert plotting.mathtext_label("$a$ X X^T") == "$a$ X X^T"  # math already: unchanged
    assert plotting.mathtext_label("X_tX_t^T, k=5") == r"$X_tX_t^\top$, $k=5$"


def test_missing_history_entry_says_how_to_record_it(runs):
    p = lc.make_problem(8, rank=1, m=60, seed=0)
    res = lc.solve(p.operator, p.y, 1, record=["loss"], max_iter=3, seed=0)
    with pytest.raises(ValueError, match=r"history\['time'\]"):
        plotting.plot_results({"gd": res}, x="time", metric="loss")


def test_reproduce_figures_name_the_symmetric_runs_x_xt():
    """xiong-psd overlays a symmetric (X X^T) and an asymmetric (F G^T) run: its y label is
    error_label(None), naming both; xiong-symmetric (symmetric runs only) says X_t X_t^T on
    both panels and never F G^T."""
    from lowrank_core.experiments import run_experiment

    psd = run_experiment("xiong-psd", quick=True, n_threads=1)
    (ax,) = psd.draw().axes
    assert ax.get_ylabel() == plotting.error_label(None)
    assert r"XX^\top" in ax.get_ylabel() and r"FG^\top" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [("XX" in t, "FG" in t) for t in legend] == [(False, True), (True, False)]
    sym = run_experiment("xiong-symmetric", quick=True, n_threads=1)
    labels = [a.get_ylabel() for a in sym.draw().axes]
    assert len(labels) == 2
    for label in labels:
        assert r"X_tX_t^\top" in label and "FG" not in label
