r"""Seed 001: Soltanolkotabi, Stöger, Xie, "Implicit balancing and regularization:
generalization and convergence guarantees for overparameterized asymmetric matrix
sensing", COLT 2023 / IEEE TIT 2025.

Asymmetric GD from a small random initialization with k = n: the test error falls with
alpha and the escape time grows like log(1/alpha) (``ssx-alpha``), the result hardly depends
on k (``ssx-rank``), and the factors stay balanced with a small sigma_{r+1} (``ssx-balance``).
"""

from __future__ import annotations

import numpy as np

from ..driver import solve
from ..problems import make_problem
from ._common import (
    Experiment,
    ExperimentResult,
    Table,
    Verdict,
    _curve_table,
    _first_below,
    _fmt,
    _run,
    _sci,
    register,
)

EXPERIMENTS: list[Experiment] = []

_SSX = "seed 001: Soltanolkotabi, Stoger, Xie (COLT 2023 / TIT 2025)"


def _ssx_setup(quick):
    if quick:
        return {"n": 20, "r": 2, "m": 200, "T": 300, "cond": 2.0}
    return {"n": 40, "r": 2, "m": 800, "T": 1500, "cond": 2.0}


def _ssx_problem(p, seed, n_threads):
    return make_problem(p["n"], rank=p["r"], m=p["m"], cond=p["cond"], seed=seed,
                        n_threads=n_threads)


def _ssx_title(p, k, extra=""):
    return (f"asymmetric GD, n1=n2={p['n']}, r={p['r']}, k={k}, m={p['m']}, "
            f"kappa={p['cond']:g}{extra}")


@register(EXPERIMENTS, "ssx-alpha", _SSX,
           "asymmetric GD from small equal-scale random init, k = n: test error vs alpha "
           "(claim: smaller alpha, smaller error; iterations ~ log(1/alpha))")
def ssx_alpha(quick=False, seed=0, n_threads=None, log=None):
    p = _ssx_setup(quick)
    prob = _ssx_problem(p, seed, n_threads)
    k = p["n"]
    alphas = (1e-1, 1e-3, 1e-5) if quick else (1e-1, 1e-2, 1e-3, 1e-4, 1e-6)
    curves, rows, finals, escapes = [], [], [], []
    for a in alphas:
        res, t, e = _run(prob.operator, prob.y, k, *prob.truth_factors, method="gd",
                         init_scale=(a, a), max_iter=p["T"], tol=1e-14, seed=seed + 1)
        esc = _first_below(t, e, 0.5)
        curves.append((f"alpha={a:g}", t, e))
        finals.append(e[-1])
        escapes.append(esc)
        rows.append([a, e[-1], np.min(e), esc, res.residual])
        if log:
            log(f"  alpha={a:g}: final test error {e[-1]:.3e}, error < 0.5 at t={esc:g}, "
                f"train residual {res.residual:.2e}")
    finals = np.array(finals)
    escapes = np.array(escapes)
    la = np.log(np.array(alphas))
    expo = float(np.polyfit(la, np.log(finals), 1)[0])
    monotone = bool(np.all(np.diff(finals) < 0))
    ok = np.isfinite(escapes)
    if ok.sum() >= 2:
        coef = np.polyfit(-la[ok], escapes[ok], 1)
        pred = np.polyval(coef, -la[ok])
        ss = float(np.sum((escapes[ok] - escapes[ok].mean()) ** 2))
        r2 = 1 - float(np.sum((escapes[ok] - pred) ** 2)) / ss if ss > 0 else float("nan")
        slope = float(coef[0])
    else:
        r2 = slope = float("nan")
    v1 = Verdict(f"final test error after T={p['T']} vs alpha",
                 ", ".join(_sci(f) for f in finals) + " for alpha "
                 + ", ".join(f"{a:g}" for a in alphas) + f"; error ~ alpha^{_fmt(expo)}",
                 "test error decreases as alpha decreases", bool(monotone and expo > 0),
                 "strictly decreasing with alpha, positive fitted exponent")
    v2 = Verdict("iterations until test error < 0.5 vs log(1/alpha)",
                 ", ".join(_fmt(x) for x in escapes) + f"; linear fit slope {_fmt(slope)} "
                 f"per unit of log(1/alpha), R^2 {_fmt(r2)}",
                 "iterations grow like log(1/alpha)",
                 bool(np.isfinite(r2) and slope > 0 and r2 >= 0.95), "slope > 0, R^2 >= 0.95")
    title = _ssx_title(p, k, ", U0 = aU~, V0 = aV~")

    def draw():
        from ..plotting import mathtext_figure, new_figure, plot_curves
        fig, (a1, a2) = new_figure(2)
        plot_curves(a1, curves, ylabel=r"test error $\|UV^\top - M^*\|_F\,/\,\|M^*\|_F$",
                    title=title)
        a2.loglog(alphas, finals, "o-", label=f"final (t={p['T']}), fit alpha^{expo:.2f}")
        a2.set_xlabel("initialization scale alpha")
        a2.set_ylabel("final test error")
        a2.set_title("final test error vs alpha", fontsize=10)
        a2.grid(True, which="both", alpha=0.3)
        a2.legend(fontsize=8)
        fig.suptitle("Soltanolkotabi-Stoger-Xie: small initialization generalizes",
                     fontsize=11)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text

    tables = [_curve_table("curves", curves),
              Table("final", ["alpha", "final_error", "min_error", "iterations_to_0.5",
                              "train_residual"], rows)]
    return ExperimentResult("ssx-alpha", "test error vs alpha", title, tables, [v1, v2], draw)


@register(EXPERIMENTS, "ssx-rank", _SSX,
           "final test error vs the factor width k at fixed small alpha "
           "(claim: insensitive to over-parameterization)")
def ssx_rank(quick=False, seed=0, n_threads=None, log=None):
    p = _ssx_setup(quick)
    prob = _ssx_problem(p, seed, n_threads)
    r, a = p["r"], 1e-3
    ks = (2, 4, 10, 20) if quick else (2, 4, 10, 20, 40)
    curves, rows, finals = [], [], []
    for k in ks:
        res, t, e = _run(prob.operator, prob.y, k, *prob.truth_factors, method="gd",
                         init_scale=(a, a), max_iter=p["T"], tol=1e-12, seed=seed + 1)
        curves.append((f"k={k}", t, e))
        finals.append(e[-1])
        rows.append([k, e[-1], res.n_iter, res.residual])
        if log:
            log(f"  k={k}: final test error {e[-1]:.3e} after {res.n_iter} iterations")
    finals = np.array(finals)
    over = finals[np.array(ks) > r]
    ratio = float(over.max() / over.min())
    v1 = Verdict(f"final test error over k in {{{', '.join(str(k) for k in ks if k > r)}}} "
                 f"(k > r={r}), alpha={a:g}",
                 ", ".join(_sci(f) for f in over) + f" (max/min {_fmt(ratio)}); k=r: "
                 f"{_sci(finals[0])}",
                 "largely insensitive to the over-parameterization k",
                 bool(ratio <= 10 and over.max() <= 1e-2), "max/min <= 10 and max <= 1e-2")
    title = _ssx_title(p, "varies", f", alpha={a:g}, T={p['T']}")

    def draw():
        from ..plotting import mathtext_figure, new_figure, plot_curves
        fig, (a1, a2) = new_figure(2)
        plot_curves(a1, curves, ylabel=r"test error $\|UV^\top - M^*\|_F\,/\,\|M^*\|_F$",
                    title=title)
        a2.semilogy(ks, finals, "o-")
        a2.set_xlabel(f"factor width k (r = {r:d})")
        a2.set_ylabel("final test error")
        a2.set_title("final test error vs k", fontsize=10)
        a2.grid(True, which="both", alpha=0.3)
        fig.suptitle("Soltanolkotabi-Stoger-Xie: insensitivity to over-parameterization",
                     fontsize=11)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text

    tables = [_curve_table("curves", curves),
              Table("final", ["k", "final_error", "iterations", "train_residual"], rows)]
    return ExperimentResult("ssx-rank", "final error vs k", title, tables, [v1], draw)


@register(EXPERIMENTS, "ssx-balance", _SSX,
           "imbalance ||U^T U - V^T V||_F and sigma_{r+1}(U V^T) over time "
           "(claim: implicit balancing and low-rank regularization)")
def ssx_balance(quick=False, seed=0, n_threads=None, log=None):
    p = _ssx_setup(quick)
    prob = _ssx_problem(p, seed, n_threads)
    k, a, r = p["n"], 1e-3, p["r"]
    _L, _R = prob.truth_factors
    norm_M = float(np.linalg.norm(prob.truth))
    sigma_r = float(prob.singular_values[-1])
    runs = {}
    from ..initialization import top_singular_value
    from ..methods.gd import GD_STEP
    eta = GD_STEP / top_singular_value(prob.operator.adjoint_operator(prob.y),
                                       np.random.default_rng(0))
    for label, scale, step in (("equal scales (SSX)", (a, a), eta),
                               ("alpha, alpha/3 (Xiong)", (a, a / 3), eta),
                               ("equal scales, half step", (a, a), eta / 2)):
        res = solve(prob.operator, prob.y, k, method="gd", init="small", init_scale=scale,
                    truth=prob,
                    record=("error", "imbalance", "tail_sv"), max_iter=p["T"], tol=1e-14,
                    seed=seed + 1, step=step)
        runs[label] = res.history
        if log:
            h = res.history
            log(f"  {label}: max imbalance {h['imbalance'].max():.2e}, max sigma_(r+1) "
                f"{h['tail_sv'].max():.2e}, final error {h['error'][-1]:.2e}")
    h = runs["equal scales (SSX)"]
    imb_max = float(h["imbalance"].max())
    tail_max = float(h["tail_sv"].max())
    imb_half = float(runs["equal scales, half step"]["imbalance"].max())
    v1 = Verdict("max_t ||U^T U - V^T V||_F / ||M*||_F (equal scales)",
                 f"{_sci(imb_max / norm_M)} (initial {_sci(h['imbalance'][0] / norm_M)}; "
                 f"with half the step {_sci(imb_half / norm_M)}: the growth comes from GD's "
                 "finite step, not from alpha)",
                 "the factors stay balanced: imbalance << ||M*||",
                 bool(imb_max / norm_M <= 1e-2), "ratio <= 1e-2")
    v2 = Verdict("max_t sigma_{r+1}(U V^T) / sigma_r(M*)",
                 f"{_sci(tail_max / sigma_r)}",
                 "iterates stay approximately rank r (implicit low-rank regularization)",
                 bool(tail_max / sigma_r <= 1e-2), "ratio <= 1e-2")
    title = _ssx_title(p, k, f", alpha={a:g}, eta={eta:.3g}")

    def draw():
        from ..plotting import mathtext_figure, new_figure, plot_curves
        fig, (a1, a2, a3) = new_figure(3)
        items = list(runs.items())
        plot_curves(a1, [(lab, hh["iteration"], hh["imbalance"]) for lab, hh in items],
                    ylabel=r"$\|U^\top U - V^\top V\|_F$", title="imbalance")
        plot_curves(a2, [(lab, hh["iteration"], hh["tail_sv"]) for lab, hh in items],
                    ylabel=rf"$\sigma_{{{r + 1}}}(UV^\top)$",
                    title="size of the extra directions")
        plot_curves(a3, [(lab, hh["iteration"], hh["error"]) for lab, hh in items],
                    ylabel="test error", title="test error")
        fig.suptitle("Soltanolkotabi-Stoger-Xie: implicit balancing, " + title, fontsize=11)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text

    tables = []
    for lab, hh in runs.items():
        tag = {"equal scales (SSX)": "equal", "alpha, alpha/3 (Xiong)": "xiong",
               "equal scales, half step": "equal_halfstep"}[lab]
        tables.append(Table(f"history_{tag}", ["iteration", "error", "imbalance", "tail_sv"],
                            [[int(i), e, b, s] for i, e, b, s in
                             zip(hh["iteration"], hh["error"], hh["imbalance"], hh["tail_sv"])]))
    return ExperimentResult("ssx-balance", "imbalance and sigma_{r+1} over time", title,
                            tables, [v1, v2], draw)
