r"""Convergence plots (matplotlib, the optional ``plot`` extra).

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, so nothing here
touches pyplot's global state or the user's backend. Without matplotlib every entry point
raises :class:`PlottingUnavailable`, whose message says how to install it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

import numpy as np

__all__ = ["PlottingUnavailable", "INSTALL_HINT", "DEFAULT_DPI", "FORMATS", "X_AXES",
           "require_matplotlib", "new_figure", "save_figure", "figure_dpi", "figure_format",
           "plot_curves", "convergence_figure", "error_label", "mathtext_label", "mathtext_figure",
           "history_curves",
           "plot_results"]

#: The command that installs the plotting extra.
INSTALL_HINT = 'pip install "lowrank-core[plot]"'

#: Resolution of raster (PNG) figures unless a dpi is given (print quality starts at 150).
DEFAULT_DPI = 150

#: File extension -> matplotlib format: PNG is raster (``dpi`` applies), PDF and SVG are
#: vector (text and lines stay sharp at any size; ``dpi`` only affects embedded images).
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}

#: ``x=`` of :func:`plot_results` / ``--x`` of ``lowrank-core demo``: the history entry
#: on the horizontal axis and its label.
X_AXES = {"iteration": ("iteration", "iteration t"),
          "time": ("time", "wall-clock time [s]")}

_DPI = contextvars.ContextVar("lowrank_core_figure_dpi", default=None)


class PlottingUnavailable(ImportError):
    """matplotlib is not installed; the message says how to install it."""


def require_matplotlib():
    """Import and return matplotlib, or raise :class:`PlottingUnavailable`.

    Returns
    -------
    module
        The ``matplotlib`` module.
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise PlottingUnavailable(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return matplotlib


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 5.2, height: float = 3.9):
    """A figure with a grid of axes on an Agg canvas (no pyplot).

    Parameters
    ----------
    ncols, nrows : int
        Grid of panels.
    width, height : float
        Size of ONE panel in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : ndarray of Axes, shape (nrows, ncols), squeezed like ``plt.subplots``
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    if nrows == 1 and ncols == 1:
        return fig, axes[0, 0]
    if nrows == 1:
        return fig, axes[0]
    return fig, axes


def figure_format(path) -> str:
    """The matplotlib format of ``path`` from its extension (:data:`FORMATS`).

    Raises
    ------
    ValueError
        For another extension, naming the supported ones.
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"figure file {os.fspath(path)!r}: unsupported extension "
                         f"{ext or '(none)'!r}; use one of {', '.join(FORMATS)} (PNG raster, "
                         "PDF/SVG vector)")
    return FORMATS[ext]


def _check_dpi(dpi) -> int:
    if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer)) or not 20 <= dpi <= 2400:
        raise ValueError(f"dpi must be an integer between 20 and 2400, got {dpi!r}")
    return int(dpi)


@contextlib.contextmanager
def figure_dpi(dpi: int | None) -> Iterator[None]:
    """Within the block, :func:`save_figure` without a ``dpi`` uses ``dpi`` (None: keep
    the current default). How ``lowrank-core reproduce --dpi`` reaches the experiments'
    figures; a context variable, so other threads are unaffected."""
    token = _DPI.set(None if dpi is None else _check_dpi(dpi))
    try:
        yield
    finally:
        _DPI.reset(token)


def save_figure(fig, path, dpi: int | None = None) -> None:
    """Write ``fig`` to ``path`` in the format of its extension (.png, .pdf or .svg).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
        ``.png`` (raster), ``.pdf`` or ``.svg`` (vector); see :data:`FORMATS`.
    dpi : int, optional
        Resolution of a PNG (dots per inch; the pixel size is the figure size in inches
        times dpi). Default: the :func:`figure_dpi` block's value, else
        :data:`DEFAULT_DPI` (150). Stored in the PNG's ``pHYs`` chunk.
    """
    fmt = figure_format(path)
    if dpi is None:
        dpi = _DPI.get() or DEFAULT_DPI
    dpi = _check_dpi(dpi)
    fig.savefig(path, dpi=dpi, format=fmt)


# ASCII math of the experiments' and the demo's labels and titles -> math text. The
# ASCII strings stay what the CSV headers and the console print; only drawing maps them.
_NUM = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"
_GREEK = ("alpha", "beta", "gamma", "delta", "eta", "kappa", "lambda", "mu", "rho", "sigma",
          "tau")
# one operand: a Greek name, a coefficient product ("3nr*"), a number, or one letter with
# an optional digit subscript ("n1"); then a star, a subscript and/or a power ("^T", "^-0.9")
_ATOM = (rf"(?:(?<![A-Za-z\\])(?:{'|'.join(_GREEK)})|(?<![A-Za-z0-9.])\d+[a-z]{{1,3}}\*"
         rf"|(?<![A-Za-z0-9.]){_NUM}|(?<![A-Za-z0-9.\\])[A-Za-z]\d?)(?![A-Za-z])"
         rf"(?:\*|_[a-z0-9](?:\^(?:T|-?{_NUM}))?|\^(?:T|-?{_NUM}))?")
_OP = r"(?: ?[=<>] ?|/)"
_RULES = [  # (pattern, replacement: str or function of the match), tried left to right
    (r"\bX_t ?X_t\^T\b", r"$X_tX_t^\top$"),
    (r"\bX ?X\^T\b", r"$XX^\top$"),
    (r"\bF ?G\^T\b", r"$FG^\top$"),
    (r"\bU ?V\^T\b", r"$UV^\top$"),
    (r"\by_i = a_i\^T M\* a_i\b", r"$y_i = a_i^\top M^* a_i$"),
    (r"\bM\*", r"$M^*$"),
    # initializations: "F0=aF~", "G0=(a/3)G~", "U0 = aU~" -> F_0 = alpha F-tilde ...
    (r"\b([A-Z])0 ?= ?(a|\(a/\d+\))([A-Z])~",
     lambda m: (f"${m[1]}_0={m[2].replace('a', chr(92) + 'alpha')}"
                f"\\tilde{{{m[3]}}}$")),
    (rf"\b([A-Z])0=\[([A-Z]),0\]\+({_NUM})([A-Z])\b",
     lambda m: f"${m[1]}_0=[{m[2]},0]+{_tex_number(m[3])}{m[4]}$"),
    (r"\(([=<>]) ?([A-Za-z])\)", lambda m: f"(${m[1]}{m[2]}$)"),  # "k=3 (= r)"
    (r"\b([A-Za-z])=varies\b", lambda m: f"${m[1]}$ varies"),
    (rf"{_ATOM}(?:{_OP}{_ATOM})*", lambda m: _chain(m[0])),
]
_MATH = re.compile("|".join(f"(?P<r{i}>{p})" for i, (p, _) in enumerate(_RULES)))
_RULES_RE = [re.compile(p) for p, _ in _RULES]
_ATOM_RE = re.compile(_ATOM)


def _tex_number(text: str) -> str:
    """"1e-06" -> 10^{-6}, "2.5e-05" -> 2.5\times10^{-5}; other numbers unchanged."""
    if "e" not in text:
        return text
    mant, expo = text.split("e")
    power = f"10^{{{int(expo)}}}"
    return power if float(mant) == 1 else f"{mant}\\times{power}"


def _tex_atom(text: str) -> str:
    m = re.fullmatch(rf"({'|'.join(_GREEK)}|\d+[a-z]+(?=\*$)|{_NUM}|[A-Za-z]\d?)(.*)", text)
    base, suffix = m[1], m[2]
    if base in _GREEK:
        base = "\\" + base
    elif re.fullmatch(_NUM, base):
        base = _tex_number(base)
    elif base[-1].isdigit():  # "n1" -> n_1
        base = f"{base[0]}_{base[1:]}"
    sub, _, power = suffix.partition("^")
    if sub == "*":
        return base + "^*"
    if power:
        power = r"\top" if power == "T" else _tex_number(power)
        return f"{base}{sub}^{{{power}}}"
    return base + sub


def _chain(text: str) -> str:
    """An operand chain ("k=5 > r=3", "alpha/3", "t^-0.93") as one math span; a lone
    number or letter ("2", "iteration t") stays text."""
    ops = re.findall(_OP, text)
    atoms = _ATOM_RE.findall(text)
    if not ops and re.fullmatch(rf"{_NUM}|[A-Za-z]", atoms[0]):
        return text
    tex = _tex_atom(atoms[0])
    for op, atom in zip(ops, atoms[1:]):
        tex += op.strip() + _tex_atom(atom)
    return f"${tex}$"


def _math_sub(m) -> str:
    for i, (_, repl) in enumerate(_RULES):
        text = m[f"r{i}"]
        if text is not None:
            return repl if isinstance(repl, str) else repl(_RULES_RE[i].fullmatch(text))
    return m[0]


def mathtext_label(label: str) -> str:
    r"""``label`` with its ASCII math as matplotlib math text, so legends and titles match
    the math-text axis labels; the ASCII text (CSV headers, console) is left as it is.

    Mapped: matrix products ("X X^T" -> $XX^\top$, "X_tX_t^T", "F G^T", "U V^T", "M*"),
    initializations ("F0=aF~" -> $F_0=\alpha\tilde{F}$, "G0=(a/3)G~", "X0=[Z,0]+0.01W"),
    Greek names ("alpha=0.1" -> $\alpha=0.1$, "eta", "kappa", "sigma", ...), and chains
    of variables, numbers and the operators = < > / ("k=5 > r=3" -> $k=5>r=3$,
    "r*=2" -> $r^*=2$, "n1=n2=40" -> $n_1=n_2=40$, "t^-0.93" -> $t^{-0.93}$,
    "alpha=1e-06" -> $\alpha=10^{-6}$, "(= r)" -> ($=r$)). A lone letter or number
    stays text ("iteration t"). Labels that already contain ``$`` are returned
    unchanged.
    """
    if "$" in label:
        return label
    return _MATH.sub(_math_sub, label)


def mathtext_figure(fig):
    """Apply :func:`mathtext_label` to every title, suptitle, axis label, legend entry
    and line label of ``fig`` (drawing only; returns ``fig``). Texts that already
    contain ``$`` are unchanged."""
    texts = []
    if getattr(fig, "_suptitle", None) is not None:
        texts.append(fig._suptitle)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        texts += list(ax.texts)
        legend = ax.get_legend()
        if legend is not None:
            texts += list(legend.get_texts()) + [legend.get_title()]
        for line in ax.get_lines():
            line.set_label(mathtext_label(line.get_label()))
    for text in texts:
        text.set_text(mathtext_label(text.get_text()))
    return fig


def error_label(symmetric: bool | None) -> str:
    """The y-axis label of the relative error: X X^T for symmetric runs (True), F G^T for
    asymmetric ones (False), the estimate M-hat for a mix (None)."""
    if symmetric is None:
        return (r"relative error $\|\hat M - M^*\|_F\,/\,\|M^*\|_F$"
                "\n" r"($\hat M = XX^\top$ or $FG^\top$)")
    est = r"XX^\top" if symmetric else r"FG^\top"
    return rf"relative error $\|{est} - M^*\|_F\,/\,\|M^*\|_F$"


def plot_curves(ax, curves, *, xlabel="iteration t",
                ylabel=r"relative error $\|FG^\top - M^*\|_F\,/\,\|M^*\|_F$",
                title=None, logy=True, logx=False, legend_title=None) -> None:
    """Draw one line per labelled curve.

    Parameters
    ----------
    ax : matplotlib Axes
    curves : sequence of (label, x, y) or (label, x, y, style_dict)
        Non-positive and non-finite y values are dropped when ``logy``. Labels go through
        :func:`mathtext_label` (ASCII "X X^T", "alpha=0.1" are drawn as math text).
    xlabel, ylabel, title : str
        Also drawn through :func:`mathtext_label`; the title is first wrapped to the
        panel's width.
    logy, logx : bool
        Logarithmic axes.
    legend_title : str, optional
    """
    for entry in curves:
        label, x, y = entry[:3]
        style = dict(entry[3]) if len(entry) > 3 else {}
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        keep = np.isfinite(y)
        if logy:
            keep &= y > 0
        if logx:
            keep &= x > 0
        style.setdefault("linewidth", 1.6)
        ax.plot(x[keep], y[keep], label=mathtext_label(str(label)), **style)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(mathtext_label(xlabel))
    ax.set_ylabel(mathtext_label(ylabel))
    if title:
        ax.set_title(mathtext_label(_wrapped(title, _panel_chars(ax))), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(fontsize=8, title=legend_title and mathtext_label(legend_title),
                  title_fontsize=8)


def convergence_figure(curves, path, *, title, ylabel=None, xlabel="iteration t",
                       symmetric: bool | None = False, dpi: int | None = None) -> None:
    """One-panel convergence plot (log y) of labelled curves, written to ``path``.

    Parameters
    ----------
    curves : sequence of (label, x, values)
    path : str or path-like
        Output file: .png, .pdf or .svg (:func:`save_figure`).
    title : str
        Names the setting (shape, rank, measurements, ...).
    ylabel : str, optional
        Default: :func:`error_label` of ``symmetric``.
    xlabel : str
    symmetric : bool or None
        The runs' form, for the default y label (None: a mix).
    dpi : int, optional
        PNG resolution (default :data:`DEFAULT_DPI`).
    """
    fig, ax = new_figure()
    plot_curves(ax, curves, xlabel=xlabel,
                ylabel=error_label(symmetric) if ylabel is None else ylabel,
                title=_wrapped(title))
    save_figure(fig, path, dpi=dpi)


def _display_len(text: str) -> int:
    """Approximate drawn width, in characters, of ``text`` once math-text mapped (a
    Greek name or TeX command counts as one glyph; $ { } ^ _ as none)."""
    tex = re.sub(r"\\[A-Za-z]+", "x", mathtext_label(text))
    return len(re.sub(r"[${}^_]", "", tex))


def _wrapped(title, width: int = 52):
    """``title`` with each line wrapped at ``width`` drawn characters (one 5.2 in panel
    at fontsize 10 holds about 55), so a long setting description is not clipped.

    Widths are those of the math-text form (:func:`_display_len`), and a line never
    breaks inside a math-text span ("U0 = aU~", "r = r*"), so :func:`mathtext_label`
    can map each wrapped line."""
    if not title:
        return title
    lines = []
    for line in str(title).splitlines():
        # spaces inside a math span (any match of the mapping rules) do not break
        protected = _MATH.sub(lambda m: m[0].replace(" ", "\0"), line)
        current = ""
        for word in protected.split(" "):
            trial = f"{current} {word}" if current else word
            if current and _display_len(trial.replace("\0", " ")) > width:
                lines.append(current)
                current = word
            else:
                current = trial
        lines.append(current)
    return "\n".join(line.replace("\0", " ") for line in lines)


def _panel_chars(ax) -> int:
    """Characters of fontsize-10 text that fit across ``ax``'s grid cell (about 10 per
    inch of figure width)."""
    try:
        spec = ax.get_subplotspec()
        cols = len(spec.colspan) / spec.get_gridspec().ncols
    except AttributeError:  # not on a grid
        cols = ax.get_position().width
    return max(20, int(10 * ax.figure.get_figwidth() * cols))


def history_curves(runs, *, metric: str = "error", x: str = "iteration") -> list:
    """(label, x values, metric values) of each run, for :func:`plot_curves`.

    Parameters
    ----------
    runs : mapping label -> SolveResult, or sequence of (label, SolveResult)
    metric : str
        A recorded history entry ("error", "residual", "loss", ...).
    x : {"iteration", "time"}
        The horizontal axis: ``history["iteration"]`` or the wall-clock
        ``history["time"]`` (seconds since the iterations started).
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(map(repr, X_AXES))}, got {x!r}")
    key = X_AXES[x][0]
    items = list(runs.items()) if hasattr(runs, "items") else list(runs)
    curves = []
    for label, res in items:
        history = res["history"]
        for need in (key, metric):
            if need not in history:
                raise ValueError(f"run {label!r} has no history[{need!r}]; solve with "
                                 f"record=None (all metrics) or include {need!r} in record")
        curves.append((label, np.asarray(history[key]), np.asarray(history[metric])))
    return curves


def plot_results(runs, path=None, *, x: str = "iteration", metric: str = "error",
                 title: str | None = None, dpi: int | None = None, logy: bool = True):
    """Convergence plot of solver results: ``metric`` against iterations or wall time.

    Parameters
    ----------
    runs : mapping label -> SolveResult, or sequence of (label, SolveResult)
    path : str or path-like, optional
        Write the figure there (.png, .pdf or .svg); None only returns it.
    x : {"iteration", "time"}
        Horizontal axis: the iteration index or the wall-clock time of each history entry
        (``history["time"]``, seconds since the iterations started; initialization
        excluded).
    metric : str
        History entry on the (log) vertical axis; "error" is labelled with X X^T when every
        run is symmetric, F G^T when none is.
    title : str, optional
    dpi : int, optional
        PNG resolution (default :data:`DEFAULT_DPI`).
    logy : bool

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    curves = history_curves(runs, metric=metric, x=x)
    items = list(runs.values()) if hasattr(runs, "values") else [r for _, r in runs]
    forms = {bool(r.symmetric) for r in items}
    symmetric = forms.pop() if len(forms) == 1 else None
    ylabel = error_label(symmetric) if metric == "error" else metric
    fig, ax = new_figure()
    plot_curves(ax, curves, xlabel=X_AXES[x][1], ylabel=ylabel, title=_wrapped(title),
                logy=logy)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig
