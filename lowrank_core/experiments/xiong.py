r"""Seed 000: Xiong, Ding, Du, "How over-parameterization slows down gradient descent in
matrix sensing: the curses of symmetry and initialization", ICLR 2024.

Symmetric GD slows from linear to ~1/T when k > r (``xiong-symmetric``); asymmetric GD
stays linear at a rate that depends on the initialization scale alpha (``xiong-alpha``),
also on a PSD target (``xiong-psd``); one rebalancing step removes the alpha dependence
(``xiong-onestep``).
"""

from __future__ import annotations

import numpy as np

from ._common import (
    Experiment,
    ExperimentResult,
    Table,
    Verdict,
    _curve_table,
    _fmt,
    _psd_problem,
    _run,
    _sci,
    linear_rate,
    loglog_slope,
    register,
)

EXPERIMENTS: list[Experiment] = []

_XIONG = "seed 000: Xiong, Ding, Du (ICLR 2024)"


def _xiong_setup(quick):
    if quick:
        return {"n": 20, "svals": (1.0, 0.7), "m": 300, "k_over": 4, "T": 300, "step": 0.2}
    return {"n": 50, "svals": (1.0, 0.8, 0.6), "m": 1500, "k_over": 5, "T": 3000, "step": 0.1}


@register(EXPERIMENTS, "xiong-symmetric", _XIONG,
           "symmetric GD, k = r vs k > r: linear vs ~1/T (||XX^T - M*||_F^2 ~ 1/T^2), "
           "fitted log-log slope")
def xiong_symmetric(quick=False, seed=0, n_threads=None, log=None):
    p = _xiong_setup(quick)
    rng = np.random.default_rng(seed)
    op, y, L = _psd_problem(p["n"], p["svals"], p["m"], rng, n_threads)
    r, T, alpha = len(p["svals"]), p["T"], 0.2
    norm = float(np.linalg.norm(L.T @ L))  # ||M*||_F
    curves = []
    out = {}
    for k in (r, p["k_over"]):
        res, t, e = _run(op, y, k, L, method="gd", symmetric=True, init_scale=alpha,
                         step=p["step"], max_iter=T, tol=1e-13, seed=seed + 1)
        out[k] = (t, e * norm)
        curves.append((f"k={k}" + (" (= r)" if k == r else " (> r)"), t, e * norm))
        if log:
            log(f"  k={k}: {res.n_iter} iterations, final ||XX^T - M*||_F = {e[-1] * norm:.3e}")
    t_o, e_o = out[p["k_over"]]
    slope = loglog_slope(t_o, e_o, T / 10, T)
    t_e, e_e = out[r]
    rate_exact = linear_rate(t_e, e_e)
    v1 = Verdict(f"k=r={r}: final ||XX^T - M*||_F", f"{_sci(e_e[-1])} at t={int(t_e[-1])}, "
                 f"linear rate {_fmt(rate_exact)}/iter", "linear convergence exp(-Omega(T))",
                 bool(e_e[-1] <= 1e-9), "final error <= 1e-9")
    v2 = Verdict(f"k={p['k_over']}>r: log-log slope of ||XX^T - M*||_F over "
                 f"t in [{T // 10}, {T}]",
                 f"slope {_fmt(slope)} (squared error {_fmt(2 * slope)})",
                 "~ -1, i.e. ||XX^T - M*||_F^2 ~ 1/T^2 (sublinear)",
                 bool(-1.3 <= slope <= -0.7), "-1.3 <= slope <= -0.7")
    title = (f"symmetric GD, n={p['n']}, r={r}, m={p['m']}, alpha={alpha}, "
             f"eta={p['step']}")
    fit_t = np.array([T / 10, T])

    def draw():
        from ..plotting import mathtext_figure, new_figure, plot_curves
        fig, (a1, a2) = new_figure(2)
        plot_curves(a1, curves, ylabel=r"$\|X_tX_t^\top - M^*\|_F$", title=title + "\n(semilog)")
        fitted = [c for c in curves]
        c0 = np.exp(np.interp(np.log(fit_t[0]), np.log(np.maximum(t_o, 1)), np.log(e_o)))
        fitted.append((f"fit t^{slope:.2f}", fit_t, c0 * (fit_t / fit_t[0]) ** slope,
                       {"linestyle": "--", "color": "black", "linewidth": 1.0}))
        plot_curves(a2, fitted, ylabel=r"$\|X_tX_t^\top - M^*\|_F$", logx=True,
                    title="log-log: k > r decays like 1/t")
        fig.suptitle("Xiong-Ding-Du: over-parameterization slows symmetric GD", fontsize=11)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text

    table = _curve_table("curves", curves, "frob_error")
    return ExperimentResult("xiong-symmetric", "symmetric GD: exact vs over-parameterized",
                            title, [table], [v1, v2], draw)


def _alpha_grid(quick):
    return (0.5, 0.25) if quick else (0.5, 0.35, 0.25, 0.18)


def _asym_setup(quick):
    if quick:
        return {"n": 20, "svals": (1.0, 0.7), "m": 300, "k_over": 4, "T": 300, "step": 0.2}
    return {"n": 50, "svals": (1.0, 0.8, 0.6), "m": 1500, "k_over": 5, "T": 2000, "step": 0.2}


@register(EXPERIMENTS, "xiong-alpha", _XIONG,
           "asymmetric GD, k > r (and k = r), init F0 = alpha F~, G0 = (alpha/3) G~: "
           "linear rate vs alpha (claim: exp(-Omega(alpha^2 T)))")
def xiong_alpha(quick=False, seed=0, n_threads=None, log=None):
    p = _asym_setup(quick)
    rng = np.random.default_rng(seed)
    op, y, L = _psd_problem(p["n"], p["svals"], p["m"], rng, n_threads)
    r, T = len(p["svals"]), p["T"]
    alphas = _alpha_grid(quick)
    curves = {r: [], p["k_over"]: []}
    rates = {r: [], p["k_over"]: []}
    rows = []
    for k in (p["k_over"], r):
        for a in alphas:
            res, t, e = _run(op, y, k, L, method="gd", init_scale=(a, a / 3), step=p["step"],
                             max_iter=T, tol=1e-12, seed=seed + 1)
            rho = linear_rate(t, e)
            rates[k].append(rho)
            curves[k].append((f"alpha={a:g}", t, e))
            rows.append([k, a, rho, e[-1], res.n_iter])
            if log:
                log(f"  k={k} alpha={a:g}: rate {rho:.3g}/iter, final error {e[-1]:.2e} "
                    f"after {res.n_iter} iterations")
    ro = np.array(rates[p["k_over"]])
    la = np.log(np.array(alphas))
    expo = float(np.polyfit(la, np.log(ro), 1)[0]) if np.all(ro > 0) else float("nan")
    monotone = bool(np.all(np.diff(ro) < 0))  # alphas are decreasing
    re = np.array(rates[r])
    spread = float(re.max() / re.min()) if np.all(re > 0) else float("nan")
    v1 = Verdict(f"k={p['k_over']}>r: linear rate vs alpha",
                 "rates " + ", ".join(f"{_fmt(x)}" for x in ro) + " for alpha "
                 + ", ".join(f"{a:g}" for a in alphas) + f"; fitted rate ~ alpha^{_fmt(expo)}",
                 "rate ~ alpha^2 (exp(-Omega(alpha^2 T))), larger alpha faster",
                 bool(monotone and 1.5 <= expo <= 2.5),
                 "rates increase with alpha and fitted exponent in [1.5, 2.5]")
    v2 = Verdict(f"k=r={r}: linear rate vs alpha",
                 "rates " + ", ".join(f"{_fmt(x)}" for x in re) + f" (max/min {_fmt(spread)})",
                 "linear, rate essentially independent of alpha",
                 bool(spread <= 1.5), "max/min rate <= 1.5")
    title = f"asymmetric GD, n={p['n']}, r={r}, m={p['m']}, eta={p['step']}, F0=aF~, G0=(a/3)G~"

    def draw():
        from ..plotting import mathtext_figure, new_figure, plot_curves
        fig, (a1, a2, a3) = new_figure(3)
        plot_curves(a1, curves[p["k_over"]], title=f"k={p['k_over']} > r={r}")
        plot_curves(a2, curves[r], title=f"k = r = {r}")
        a3.loglog(alphas, ro, "o-", label=f"k={p['k_over']} > r (fit alpha^{expo:.2f})")
        a3.loglog(alphas, re, "s-", label=f"k = r = {r}")
        a3.set_xlabel("initialization scale alpha")
        a3.set_ylabel("fitted linear rate (per iteration)")
        a3.set_title("rate vs alpha", fontsize=10)
        a3.grid(True, which="both", alpha=0.3)
        a3.legend(fontsize=8)
        fig.suptitle("Xiong-Ding-Du: " + title, fontsize=11)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text

    tables = [_curve_table(f"curves_k{p['k_over']}", curves[p["k_over"]]),
              _curve_table(f"curves_k{r}", curves[r]),
              Table("rates", ["k", "alpha", "rate", "final_error", "iterations"], rows)]
    return ExperimentResult("xiong-alpha", "asymmetric over-parameterized GD: rate vs alpha",
                            title, tables, [v1, v2], draw)


@register(EXPERIMENTS, "xiong-psd", _XIONG,
           "PSD target: asymmetric F G^T vs symmetric X X^T parameterization, k > r, same "
           "scale (claim: asymmetric linear, symmetric sublinear)")
def xiong_psd(quick=False, seed=0, n_threads=None, log=None):
    p = _asym_setup(quick)
    rng = np.random.default_rng(seed)
    op, y, L = _psd_problem(p["n"], p["svals"], p["m"], rng, n_threads)
    r, T, k, a = len(p["svals"]), p["T"], p["k_over"], 0.5
    res_a, t_a, e_a = _run(op, y, k, L, method="gd", init_scale=(a, a / 3), step=p["step"],
                           max_iter=T, tol=1e-12, seed=seed + 1)
    res_s, t_s, e_s = _run(op, y, k, L, method="gd", symmetric=True, init_scale=a,
                           step=p["step"], max_iter=T, tol=1e-12, seed=seed + 1)
    rate_a = linear_rate(t_a, e_a)
    slope_s = loglog_slope(t_s, e_s, T / 10, T)
    if log:
        log(f"  asymmetric: final error {e_a[-1]:.2e} after {res_a.n_iter}; symmetric: "
            f"{e_s[-1]:.2e} after {res_s.n_iter}")
    v1 = Verdict(f"asymmetric F G^T, k={k}: final relative error",
                 f"{_sci(e_a[-1])} at t={int(t_a[-1])}, linear rate {_fmt(rate_a)}/iter",
                 "linear convergence on a PSD target", bool(e_a[-1] <= 1e-9),
                 "final error <= 1e-9")
    v2 = Verdict(f"symmetric X X^T, k={k}: final relative error and log-log slope",
                 f"{_sci(e_s[-1])} at t={int(t_s[-1])}, slope {_fmt(slope_s)}",
                 "sublinear (~1/T), exponentially slower than asymmetric",
                 bool(e_s[-1] >= 1e3 * max(e_a[-1], 1e-16) and slope_s > -1.5),
                 "symmetric final error >= 1000 x asymmetric and slope > -1.5")
    curves = [("asymmetric FG^T (F0=aF~, G0=(a/3)G~)", t_a, e_a),
              ("symmetric XX^T (X0=aX~)", t_s, e_s)]
    title = (f"PSD target, n={p['n']}, r={r}, k={k}, m={p['m']}, alpha={a}, "
             f"eta={p['step']}")

    def draw():
        from ..plotting import error_label, mathtext_figure, new_figure, plot_curves
        fig, ax = new_figure(width=6.4, height=4.4)
        # one symmetric (X X^T) and one asymmetric (F G^T) run: the label names both
        plot_curves(ax, curves, ylabel=error_label(None), title="Xiong-Ding-Du: asymmetric "
                    "vs symmetric parameterization\n" + title)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text

    return ExperimentResult("xiong-psd", "PSD target: asymmetric vs symmetric", title,
                            [_curve_table("curves", curves)], [v1, v2], draw)


@register(EXPERIMENTS, "xiong-onestep", _XIONG,
           "onestep (one rebalancing step) vs plain asymmetric GD over the alpha sweep "
           "(claim: after the step the rate no longer depends on alpha)")
def xiong_onestep(quick=False, seed=0, n_threads=None, log=None):
    p = _asym_setup(quick)
    rng = np.random.default_rng(seed)
    op, y, L = _psd_problem(p["n"], p["svals"], p["m"], rng, n_threads)
    r, T, k = len(p["svals"]), p["T"], p["k_over"]
    alphas = _alpha_grid(quick)
    curves_gd, curves_os, rows = [], [], []
    post, gd_rates = [], []
    for a in alphas:
        res_g, t_g, e_g = _run(op, y, k, L, method="gd", init_scale=(a, a / 3),
                               step=p["step"], max_iter=T, tol=1e-12, seed=seed + 1)
        res_o, t_o, e_o = _run(op, y, k, L, method="onestep", init_scale=(a, a / 3),
                               step=p["step"], max_iter=T, tol=1e-12, seed=seed + 1)
        t1 = res_o.get("rebalance_iteration")
        if t1 is None:
            rho_o = float("nan")
        else:
            after = t_o >= t1
            rho_o = linear_rate(t_o[after], e_o[after], tail=1.0)
        rho_g = linear_rate(t_g, e_g)
        post.append(rho_o)
        gd_rates.append(rho_g)
        curves_gd.append((f"GD alpha={a:g}", t_g, e_g))
        curves_os.append((f"onestep alpha={a:g}" + (f" (step at t={t1})" if t1 is not None
                                                    else " (never fired)"), t_o, e_o))
        rows.append([a, rho_g, e_g[-1], res_g.n_iter, np.nan if t1 is None else t1, rho_o,
                     e_o[-1], res_o.n_iter])
        if log:
            log(f"  alpha={a:g}: GD rate {rho_g:.3g}, final {e_g[-1]:.2e}; onestep fired at "
                f"t={t1}, rate after {rho_o:.3g}, final {e_o[-1]:.2e} at t={res_o.n_iter}")
    post = np.array(post)
    gd_rates = np.array(gd_rates)
    spread = float(np.nanmax(post) / np.nanmin(post)) if np.all(post > 0) else float("nan")
    speedup = float(post[-1] / gd_rates[-1]) if gd_rates[-1] > 0 else float("nan")
    v1 = Verdict("onestep: linear rate after the rebalancing step",
                 "rates " + ", ".join(_fmt(x) for x in post) + " for alpha "
                 + ", ".join(f"{a:g}" for a in alphas) + f" (max/min {_fmt(spread)})",
                 "rate independent of alpha after the step", bool(spread <= 1.5),
                 "max/min post-step rate <= 1.5")
    v2 = Verdict(f"smallest alpha={alphas[-1]:g}: onestep rate / GD rate",
                 f"{_fmt(speedup)} ({_fmt(post[-1])} vs {_fmt(gd_rates[-1])})",
                 "the step removes the alpha^2 slowdown of GD", bool(speedup >= 5),
                 "ratio >= 5")
    title = f"asymmetric, n={p['n']}, r={r}, k={k}, m={p['m']}, eta={p['step']}, trigger 0.1"

    def draw():
        from ..plotting import mathtext_figure, new_figure, plot_curves
        fig, ax = new_figure(width=7.0, height=4.6)
        colors = [f"C{i}" for i in range(len(alphas))]
        styled = [(c[0], c[1], c[2], {"color": col, "linestyle": ":"})
                  for c, col in zip(curves_gd, colors)]
        styled += [(c[0], c[1], c[2], {"color": col}) for c, col in zip(curves_os, colors)]
        plot_curves(ax, styled, title="Xiong-Ding-Du: one-step rebalance vs GD\n" + title)
        return mathtext_figure(fig)  # ASCII labels and titles drawn as math text

    tables = [_curve_table("curves", curves_gd + curves_os),
              Table("rates", ["alpha", "gd_rate", "gd_final_error", "gd_iterations",
                              "rebalance_iteration", "onestep_rate_after", "onestep_final_error",
                              "onestep_iterations"], rows)]
    return ExperimentResult("xiong-onestep", "one-step rebalance vs GD", title, tables,
                            [v1, v2], draw)
