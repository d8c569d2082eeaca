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
import textwrap
from collections.abc import Iterator

import numpy as np

__all__ = ["PlottingUnavailable", "INSTALL_HINT", "DEFAULT_DPI", "FORMATS", "X_AXES",
           "require_matplotlib", "new_figure", "save_figure", "figure_dpi", "figure_format",
           "plot_curves", "convergence_figure", "error_label", "mathtext_label", "history_curves",
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


# ASCII math of the experiments' and the demo's labels -> the same math text as the axes
_MATH = [
    (re.compile(r"\bX_t ?X_t\^T\b"), r"$X_tX_t^\top$"),
    (re.compile(r"\bX ?X\^T\b"), r"$XX^\top$"),
    (re.compile(r"\bF ?G\^T\b"), r"$FG^\top$"),
    (re.compile(r"\bU ?V\^T\b"), r"$UV^\top$"),
    (re.compile(r"\bM\*"), r"$M^*$"),
]


def mathtext_label(label: str) -> str:
    """``label`` with its ASCII matrix products as math text ("X X^T" -> $XX^\\top$,
    "F G^T", "U V^T", "M*"), so legends match the math-text axis labels. Labels that
    already contain ``$`` are returned unchanged."""
    if "$" in label:
        return label
    for pattern, tex in _MATH:
        label = pattern.sub(lambda _m, tex=tex: tex, label)
    return label


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
        :func:`mathtext_label` (ASCII "X X^T" is drawn as math text).
    xlabel, ylabel, title : str
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
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(fontsize=8, title=legend_title, title_fontsize=8)


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


def _wrapped(title, width: int = 52):
    """``title`` with each line wrapped at ``width`` characters (one 5.2 in panel at
    fontsize 10 holds about 55), so a long setting description is not clipped."""
    if not title:
        return title
    return "\n".join(textwrap.fill(line, width) for line in str(title).splitlines())


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
