r"""Convergence plots (matplotlib, the optional ``plot`` extra).

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, so nothing here
touches pyplot's global state or the user's backend. Without matplotlib every entry point
raises :class:`PlottingUnavailable`, whose message says how to install it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PlottingUnavailable", "INSTALL_HINT", "require_matplotlib", "new_figure",
           "save_figure", "plot_curves", "convergence_figure"]

#: The command that installs the plotting extra.
INSTALL_HINT = 'pip install "lowrank-core[plot]"'


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


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write ``fig`` as a PNG file to ``path``."""
    fig.savefig(path, dpi=dpi, format="png")


def plot_curves(ax, curves, *, xlabel="iteration t",
                ylabel=r"relative error $\|FG^\top - M^*\|_F\,/\,\|M^*\|_F$",
                title=None, logy=True, logx=False, legend_title=None) -> None:
    """Draw one line per labelled curve.

    Parameters
    ----------
    ax : matplotlib Axes
    curves : sequence of (label, x, y) or (label, x, y, style_dict)
        Non-positive and non-finite y values are dropped when ``logy``.
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
        ax.plot(x[keep], y[keep], label=label, **style)
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


def convergence_figure(curves, path, *, title,
                       ylabel=r"relative error $\|FG^\top - M^*\|_F\, /\, \|M^*\|_F$",
                       xlabel="iteration t") -> None:
    """One-panel convergence plot (log y) of labelled curves, written as a PNG.

    Parameters
    ----------
    curves : sequence of (label, iterations, values)
    path : str or path-like
        Output PNG file.
    title : str
        Names the setting (shape, rank, measurements, ...).
    ylabel, xlabel : str
    """
    fig, ax = new_figure()
    plot_curves(ax, curves, xlabel=xlabel, ylabel=ylabel, title=title)
    save_figure(fig, path)
