"""Legends and titles of the reproduce figures are math text (issue 17, item 8).

The experiments keep their ASCII labels ("alpha=0.1", "F0=aF~"): they are the CSV headers
and the console text. Only drawing maps them (plotting.mathtext_label / mathtext_figure),
so these tests read the drawn texts back from the matplotlib objects and check the CSV
headers are still the committed ASCII ones.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib
import pytest

from lowrank_core import plotting
from lowrank_core.experiments import run_experiment

matplotlib.use("Agg")

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"

#: the experiments whose figures are docs/figures/NAME.png
REPRODUCE = ("xiong-symmetric", "xiong-alpha", "xiong-psd", "xiong-onestep", "ssx-alpha",
             "ssx-rank", "ssx-balance", "precgd-sensing", "precgd-quadratic")

# (ASCII as the experiments write it, the math text drawn)
CASES = [
    ("F0=aF~, G0=(a/3)G~", r"$F_0=\alpha\tilde{F}$, $G_0=(\alpha/3)\tilde{G}$"),
    ("symmetric XX^T (X0=aX~)", r"symmetric $XX^\top$ ($X_0=\alpha\tilde{X}$)"),
    ("U0 = aU~, V0 = aV~", r"$U_0=\alpha\tilde{U}$, $V_0=\alpha\tilde{V}$"),
    ("alpha=0.1", r"$\alpha=0.1$"),
    ("alpha=1e-06", r"$\alpha=10^{-6}$"),
    ("alpha=2.5e-05", r"$\alpha=2.5\times10^{-5}$"),
    ("eta=0.292", r"$\eta=0.292$"),
    ("kappa=5, r=4 (r > r*)", r"$\kappa=5$, $r=4$ ($r>r^*$)"),
    ("n1=n2=40", r"$n_1=n_2=40$"),
    ("m=3nr*=600", r"$m=3nr^*=600$"),
    ("local init X0=[Z,0]+0.01W", r"local init $X_0=[Z,0]+0.01W$"),
    ("y_i = a_i^T M* a_i", r"$y_i = a_i^\top M^* a_i$"),
    ("symmetric Gaussian A_i", r"symmetric Gaussian $A_i$"),
    ("k=5 > r (fit alpha^1.83)", r"$k=5>r$ (fit $\alpha^{1.83}$)"),
    ("fit t^-0.93", r"fit $t^{-0.93}$"),
    ("k=3 (= r)", r"$k=3$ ($=r$)"),
    ("k = r = 3", r"$k=r=3$"),
    ("alpha, alpha/3 (Xiong)", r"$\alpha$, $\alpha/3$ (Xiong)"),
    ("log-log: k > r decays like 1/t", r"log-log: $k>r$ decays like $1/t$"),
    ("k=varies", r"$k$ varies"),
    # plain words, lone letters and numbers stay text; Greek only as whole words
    ("iteration t", "iteration t"),
    ("PrecGD vs GD (Zhang-Fattahi-Zhang Fig. 2 setting)",
     "PrecGD vs GD (Zhang-Fattahi-Zhang Fig. 2 setting)"),
    ("beta and theta", r"$\beta$ and theta"),
    ("trigger 0.1", "trigger 0.1"),
]


@pytest.mark.parametrize("ascii_text, tex", CASES)
def test_mathtext_label_maps_the_ascii_math(ascii_text, tex):
    assert plotting.mathtext_label(ascii_text) == tex


def test_mathtext_label_leaves_math_text_unchanged():
    for text in (r"$\alpha=0.1$", r"rate $\rho$ vs alpha=0.1", "$x$ F0=aF~ kappa=2"):
        assert plotting.mathtext_label(text) == text
    # idempotent: mapping a mapped label again changes nothing
    for ascii_text, tex in CASES:
        assert plotting.mathtext_label(plotting.mathtext_label(ascii_text)) == tex


def test_mapped_labels_are_valid_math_text():
    """Every mapped case renders (a bad TeX string raises ValueError at draw time)."""
    fig, _ = plotting.new_figure(height=8.0)
    for i, (ascii_text, _) in enumerate(CASES):
        fig.text(0.02, i / len(CASES), plotting.mathtext_label(ascii_text), fontsize=8)
    fig.canvas.draw()


def test_wrapped_title_never_splits_a_math_span():
    title = "asymmetric GD, n1=n2=40, r=2, k=varies, m=800, kappa=2, U0 = aU~, V0 = aV~"
    lines = plotting._wrapped(title, 30).split("\n")
    assert len(lines) >= 3
    assert " ".join(lines) == title  # only spaces became line breaks
    for line in lines:
        assert plotting._display_len(line) <= 30
        assert plotting.mathtext_label(line).count("$") % 2 == 0
    assert "U0 = aU~," in lines[-1] or "U0 = aU~," in lines[-2]


def _drawn_texts(fig):
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        if legend is not None:
            texts += [t.get_text() for t in legend.get_texts()]
    return [t for t in texts if t]


# ASCII math that must not survive outside $...$ in a drawn text
_RESIDUE = re.compile(r"\b(alpha|eta|kappa|sigma)\b|~|\^T\b|\b[A-Z]0 ?=|[A-Za-z]\*|"
                      r"\b[a-zA-Z] ?[=<>] ?\w|\b[A-Za-z]_[a-z0-9]\b")


@pytest.fixture(scope="module")
def drawn():
    out = {}
    for name in REPRODUCE:
        res = run_experiment(name, quick=True, n_threads=1)
        out[name] = res, res.draw()
    return out


@pytest.mark.parametrize("name", REPRODUCE)
def test_reproduce_figure_texts_are_math_text(drawn, name):
    res, fig = drawn[name]
    texts = _drawn_texts(fig)
    assert any("$" in t for t in texts)
    for text in texts:
        outside = re.sub(r"\$[^$]*\$", "", text)
        assert not _RESIDUE.search(outside), (name, text)
    fig.canvas.draw()  # every math span parses
    # drawing only: the tables (CSV headers) keep the ASCII labels
    for table in res.tables:
        assert not any("$" in c for c in table.columns), (name, table.columns)


def test_xiong_psd_and_alpha_legends_and_titles_read_back(drawn):
    _, fig = drawn["xiong-psd"]
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        r"asymmetric $FG^\top$ ($F_0=\alpha\tilde{F}$, $G_0=(\alpha/3)\tilde{G}$)",
        r"symmetric $XX^\top$ ($X_0=\alpha\tilde{X}$)"]
    assert [line.get_label() for line in ax.get_lines()] == [
        t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_title().split("\n")[1] == (
        r"PSD target, $n=20$, $r=2$, $k=4$, $m=300$, $\alpha=0.5$, $\eta=0.2$")
    _, fig = drawn["xiong-alpha"]
    a1, a2, a3 = fig.axes
    assert [t.get_text() for t in a1.get_legend().get_texts()] == [
        r"$\alpha=0.5$", r"$\alpha=0.25$"]
    assert (a1.get_title(), a2.get_title(), a3.get_title()) == (
        "$k=4>r=2$", "$k=r=2$", r"rate vs $\alpha$")
    assert a3.get_xlabel() == r"initialization scale $\alpha$"
    assert fig._suptitle.get_text().endswith(
        r"$\eta=0.2$, $F_0=\alpha\tilde{F}$, $G_0=(\alpha/3)\tilde{G}$")


def test_csv_headers_stay_the_committed_ascii(drawn):
    """xiong-psd's curve labels do not depend on the size: its quick table header is the
    committed docs/figures CSV header, byte for byte (ASCII, not math text)."""
    res, _ = drawn["xiong-psd"]
    (table,) = res.tables
    with open(FIGURES / "xiong-psd_curves.csv", newline="") as f:
        header = next(csv.reader(f))
    assert list(table.columns) == header
    assert "asymmetric FG^T (F0=aF~; G0=(a/3)G~) error" in header
