r"""Seed 002: Zhang, Fattahi, Zhang, "Preconditioned gradient descent for
over-parameterized nonconvex matrix factorization", NeurIPS 2021 / JMLR 24 (2023).

PrecGD against GD and ScaledGD at r = r* and r > r*, kappa in {1, 5}: on symmetric
Gaussian sensing (its Fig. 2, ``precgd-sensing``) and on quadratic (rank-one)
measurements (its Fig. 5, ``precgd-quadratic``).
"""

from __future__ import annotations

import numpy as np

from ..problems import make_problem
from ._common import (
    Experiment,
    ExperimentResult,
    Table,
    Verdict,
    _curve_table,
    _run,
    _sci,
    linear_rate,
    register,
)

EXPERIMENTS: list[Experiment] = []

_PREC = "seed 002: Zhang, Fattahi, Zhang, PrecGD (NeurIPS 2021 / JMLR 2023)"
_PREC_METHODS = ("gd", "scaledgd", "precgd")


def _local_init(L, r, rng, scale=1e-2):
    """X0 = [L, 0] + scale * W, W standard Gaussian (PrecGD-JMLR's local initialization)."""
    n, rs = L.shape
    Z = np.zeros((n, r), L.dtype)
    Z[:, :rs] = L
    return Z + scale * rng.standard_normal((n, r)).astype(L.dtype)


def _precgd_sweep(make, ranks, conds, T, seed, log, steps=None):
    """Run gd / scaledgd / precgd (symmetric X X^T) from the same local init per setting."""
    panels, rows = [], []
    final = {}
    rates = {}
    for cond in conds:
        prob = make(cond)
        L = prob.truth_factors[0]
        for r in ranks:
            X0 = _local_init(L, r, np.random.default_rng(seed + 7))
            curves = []
            for meth in _PREC_METHODS:
                res, t, e = _run(prob.operator, prob.y, r, L, method=meth, symmetric=True,
                                 init=X0, max_iter=T, tol=1e-13,
                                 step=(steps or {}).get(meth))
                rho = linear_rate(t, e)
                final[(cond, r, meth)] = e[-1]
                rates[(cond, r, meth)] = rho
                curves.append((meth, t, e))
                rows.append([cond, r, _PREC_METHODS.index(meth), e[-1], res.n_iter, rho])
                if log:
                    log(f"  kappa={cond:g} r={r} {meth}: final error {e[-1]:.2e} after "
                        f"{res.n_iter} iterations ({res.status})")
            panels.append((cond, r, curves))
    return panels, rows, final, rates


def _precgd_verdicts(final, rates, ranks, conds, rs, T):
    r_over = [r for r in ranks if r > rs]
    pre = [final[(c, r, "precgd")] for c in conds for r in ranks]
    v = [Verdict("PrecGD final relative error, all (kappa, r) settings",
                 "max " + _sci(max(pre)) + " over " + ", ".join(
                     f"(kappa={c:g}, r={r}) {_sci(final[(c, r, 'precgd')])}"
                     for c in conds for r in ranks),
                 "PrecGD converges linearly at r = r* and r > r*, kappa-independent",
                 bool(max(pre) <= 1e-9), "every final error <= 1e-9")]
    if r_over:
        gd = [final[(c, r, "gd")] for c in conds for r in r_over]
        v.append(Verdict(f"GD final relative error at r > r*={rs} after T={T}",
                         ", ".join(_sci(x) for x in gd) + " (PrecGD: "
                         + ", ".join(_sci(final[(c, r, 'precgd')]) for c in conds
                                     for r in r_over) + ")",
                         "GD is sublinear when over-parameterized",
                         bool(min(gd) >= 1e3 * max(final[(c, r, 'precgd')] for c in conds
                                                   for r in r_over)),
                         "GD final error >= 1000 x PrecGD's"))
    return v


def _precgd_draw(panels, title, suptitle, rs):
    def draw():
        from ..plotting import mathtext_figure, new_figure, plot_curves
        nc = len(panels)
        ncols = 2 if nc == 4 else nc
        nrows = (nc + ncols - 1) // ncols
        fig, axes = new_figure(ncols, nrows, width=4.8, height=3.6)
        axes = np.atleast_1d(axes).ravel()
        for ax, (cond, r, curves) in zip(axes, panels):
            kind = "r = r*" if r == rs else "r > r*"
            plot_curves(ax, curves, ylabel=r"$\|XX^\top - M^*\|_F\,/\,\|M^*\|_F$",
                        title=f"kappa={cond:g}, r={r} ({kind})")
        fig.suptitle(suptitle + "\n" + title, fontsize=11)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text
    return draw


@register(EXPERIMENTS, "precgd-sensing", _PREC,
           "PrecGD vs GD vs ScaledGD, symmetric Gaussian sensing, n=100, r*=2, "
           "r in {2, 4}, kappa in {1, 5} (its Fig. 2)")
def precgd_sensing(quick=False, seed=0, n_threads=None, log=None):
    n, rs = (20, 2) if quick else (100, 2)
    m = 3 * n * rs
    T = 150 if quick else 1500
    ranks, conds = (2, 4), (1.0, 5.0)

    def make(cond):
        return make_problem(n, rank=rs, m=m, psd=True, cond=cond, seed=seed,
                            n_threads=n_threads)

    panels, rows, final, rates = _precgd_sweep(make, ranks, conds, T, seed, log)
    title = (f"symmetric Gaussian A_i, n={n}, r*={rs}, m=3nr*={m}, local init "
             f"X0=[Z,0]+0.01W, default steps")
    v = _precgd_verdicts(final, rates, ranks, conds, rs, T)
    table = Table("final", ["kappa", "r", "method(0=gd,1=scaledgd,2=precgd)", "final_error",
                            "iterations", "linear_rate"], rows)
    tables = [table] + [_curve_table(f"curves_kappa{c:g}_r{r}", cv) for c, r, cv in panels]
    return ExperimentResult("precgd-sensing", "PrecGD Fig. 2 setting", title, tables, v,
                            _precgd_draw(panels, title, "PrecGD vs GD vs ScaledGD "
                                         "(Zhang-Fattahi-Zhang Fig. 2 setting)", rs))


@register(EXPERIMENTS, "precgd-quadratic", _PREC,
           "PrecGD vs GD vs ScaledGD on symmetric rank-one (quadratic) measurements "
           "y_i = a_i^T M* a_i, rank-2 100 x 100, r in {2, 4} (its Fig. 5)")
def precgd_quadratic(quick=False, seed=0, n_threads=None, log=None):
    n, rs = (20, 2) if quick else (100, 2)
    m = 10 * n * rs
    T = 150 if quick else 1500
    ranks, conds = (2, 4), (1.0, 5.0)
    # Quadratic measurements are not near-isotropic: A^T A(M) ~ M + tr(M) I / 2, so the
    # identity direction is ~n/2 times stiffer and the preconditioned methods' default
    # step 0.5 oscillates without converging. Like the paper (which lowers its steps for
    # this problem), we use a smaller step for them; GD keeps its default.
    steps = {"scaledgd": 0.2, "precgd": 0.2}

    def make(cond):
        return make_problem(n, rank=rs, m=m, psd=True, cond=cond, operator="rank-one",
                            seed=seed, n_threads=n_threads)

    panels, rows, final, rates = _precgd_sweep(make, ranks, conds, T, seed, log, steps)
    title = (f"y_i = a_i^T M* a_i, n={n}, r*={rs}, m={m}, local init X0=[Z,0]+0.01W, "
             "step 0.2 (ScaledGD, PrecGD), GD default")
    v = _precgd_verdicts(final, rates, ranks, conds, rs, T)
    table = Table("final", ["kappa", "r", "method(0=gd,1=scaledgd,2=precgd)", "final_error",
                            "iterations", "linear_rate"], rows)
    tables = [table] + [_curve_table(f"curves_kappa{c:g}_r{r}", cv) for c, r, cv in panels]
    return ExperimentResult("precgd-quadratic", "PrecGD Fig. 5 setting", title, tables, v,
                            _precgd_draw(panels, title, "PrecGD on quadratic (rank-one) "
                                         "measurements (Zhang-Fattahi-Zhang Fig. 5 setting)",
                                         rs))
