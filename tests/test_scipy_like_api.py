"""A new user's first hour with the API (issue 17, item 5): SciPy's result names, did-you-mean
messages, case-insensitive method names, resolved options, short reprs, type hints, the
operator names shared by make_problem, the command line and the file format."""

from __future__ import annotations

import inspect
import os
import typing

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.initialization import DEFAULT_INIT_SCALE
from lowrank_core.methods import METHODS
from lowrank_core.problems import OPERATOR_NAMES


@pytest.fixture(scope="module")
def prob():
    return lc.make_problem(20, 16, rank=2, m=300, seed=0)


def solve(*args, **kwargs):
    kwargs.setdefault("n_threads", 1)
    return lc.solve(*args, **kwargs)


# ------------------------------------------------------------------- SciPy's names
@pytest.mark.parametrize("method,max_iter", [("gd", 5), ("scaledgd", 300)])
def test_success_nit_fun_agree_with_our_keys_and_the_history(prob, method, max_iter):
    res = solve(prob.operator, prob.y, 2, method=method, max_iter=max_iter, seed=0)
    assert res.status == ("max_iter" if method == "gd" else "converged")
    assert res.success is (res.status == "converged") and res["success"] is res.success
    assert res.nit == res.n_iter == res["nit"] == res.history["iteration"][-1]
    assert res.fun == res.loss == res["fun"] == res.history["loss"][-1]
    # fun is the objective itself, recomputed with numpy: 1/2 ||A(F G^T) - y||^2
    z = prob.operator.forward(res.F @ res.G.T) - prob.y
    np.testing.assert_allclose(res.fun, 0.5 * float(z @ z), rtol=1e-9, atol=1e-28)
    assert {"success", "nit", "fun"} <= set(dir(res))
    assert "nit" not in res.keys()  # derived on access, never a second copy
    with pytest.raises(AttributeError):
        res.nfev_typo  # noqa: B018


def test_scipy_names_of_a_symmetric_run():
    p = lc.make_problem(12, rank=2, m=200, psd=True, seed=3)
    res = solve(p.operator, p.y, 2, method="precgd", symmetric=True, max_iter=400, seed=0)
    X = res.X
    z = p.operator.forward(X @ X.T) - p.y
    assert res.success and res.nit == res.n_iter
    # at convergence z is ~1e-10 of y: each z_i carries the rounding of A(X X^T) and y
    # (~eps |y_i|), so fun is known to about eps ||z|| ||y|| absolutely, not to rtol 1e-9
    atol = 8 * np.finfo(float).eps * np.linalg.norm(z) * np.linalg.norm(p.y)
    np.testing.assert_allclose(res.fun, 0.25 * float(z @ z), rtol=1e-9, atol=atol)


# ------------------------------------------------------------------- did you mean
@pytest.mark.parametrize("kwargs,suggestion", [
    (dict(maxiter=5), "solve's max_iter="),
    (dict(max_iters=5), "solve's max_iter="),
    (dict(random_state=0), "solve's seed="),
    (dict(method="onestep", triger=0.2), "onestep's option trigger="),
    (dict(method="precgd", dampng="residual"), "precgd's option damping="),
])
def test_unknown_option_names_the_nearest_keyword(prob, kwargs, suggestion):
    with pytest.raises(TypeError) as info:
        solve(prob.operator, prob.y, 2, **kwargs)
    text = str(info.value)
    bad = next(k for k in kwargs if k != "method")
    assert f"unexpected option(s) {bad}" in text
    assert f"did you mean {suggestion}" in text, text
    assert "max_iter" in text  # solve's own keywords are listed


def test_unknown_option_without_a_near_name_lists_the_valid_ones(prob):
    with pytest.raises(TypeError) as info:
        solve(prob.operator, prob.y, 2, method="onestep", zzzz=1)
    text = str(info.value)
    assert "did you mean" not in text
    assert "the options of 'onestep' are: beta, trigger" in text


@pytest.mark.parametrize("spelling,method", [
    ("GD", "gd"), ("PrecGD", "precgd"), ("ScaledGD", "scaledgd"),
    ("scaledgd_lambda", "scaledgd-lambda"), ("ScaledGD-Lambda", "scaledgd-lambda"),
    (" AGN ", "agn"), ("GNMR", "gnmr"),
])
def test_method_names_are_case_and_separator_insensitive(prob, spelling, method):
    a = solve(prob.operator, prob.y, 2, method=spelling, max_iter=3, seed=0)
    b = solve(prob.operator, prob.y, 2, method=method, max_iter=3, seed=0)
    assert a.method == method == a.options["method"]
    np.testing.assert_array_equal(a.F, b.F)  # the same run, bit for bit


@pytest.mark.parametrize("typo,nearest", [("precdg", "precgd"), ("scaled-gd", "scaledgd"),
                                          ("gradient", None)])
def test_unknown_method_has_a_did_you_mean(prob, typo, nearest):
    with pytest.raises(ValueError) as info:
        solve(prob.operator, prob.y, 2, method=typo)
    text = str(info.value)
    assert f"unknown method {typo!r}" in text and "'gd', 'onestep'" in text
    if nearest:
        assert f"did you mean {nearest!r}" in text, text
    else:
        assert "did you mean" not in text
    with pytest.raises(TypeError, match="method must be a string"):
        solve(prob.operator, prob.y, 2, method=3)


# ------------------------------------------------------------------ resolved options
@pytest.mark.parametrize("method", list(METHODS))
def test_options_hold_resolved_defaults(prob, method, ):
    res = solve(prob.operator, prob.y, 2, method=method, max_iter=2, seed=0)
    opts = res.options
    init = METHODS[method].default_init
    assert opts["init"] == init
    # init_scale: the alpha the initialization used, None only where none applies
    # (a method's own default start, e.g. gd's asymmetric alpha, else the global default)
    own = METHODS[method].default_init_scale
    if isinstance(own, dict):
        own = own["asymmetric"]
    expected = own if (own is not None and init == "small") else DEFAULT_INIT_SCALE.get(init)
    assert opts["init_scale"] == expected
    # None only for settings that are unset by meaning (no time limit, no seed, ...) or
    # decided later in the run (onestep's beta, fixed when the rebalance fires)
    allowed_none = {"max_time", "seed", "n_threads", "beta", "init_scale"}
    unresolved = {k for k, v in opts.items() if v is None} - allowed_none
    assert not unresolved, (method, unresolved)
    assert opts["tol"] == 1e-10 and opts["step"] == "auto"


def test_init_scale_as_given_and_small_init_matches_it(prob):
    res = solve(prob.operator, prob.y, 2, method="gd", init="small", init_scale=0.05,
                max_iter=0, seed=4)
    assert res.options["init_scale"] == 0.05
    pair = solve(prob.operator, prob.y, 2, method="gd", init="small",
                 init_scale=(0.05, 0.02), max_iter=0, seed=4)
    assert pair.options["init_scale"] == (0.05, 0.02)
    # the recorded default is the one used: the same draw as passing it explicitly
    a = solve(prob.operator, prob.y, 2, method="gd", max_iter=0, seed=4)
    b = solve(prob.operator, prob.y, 2, method="gd", max_iter=0, seed=4,
              init_scale=a.options["init_scale"])
    np.testing.assert_array_equal(a.F, b.F)
    spectral = solve(prob.operator, prob.y, 2, method="scaledgd", max_iter=0)
    assert spectral.options["init_scale"] is None


# ---------------------------------------------------------------------------- reprs
@pytest.mark.parametrize("kwargs", [dict(), dict(psd=True, cond=3.0, noise=0.01),
                                    dict(operator="entries"), dict(operator="rank-one")])
def test_problem_repr_is_one_short_line(kwargs):
    n2 = None if kwargs.get("psd") else 30
    p = lc.make_problem(40, n2, rank=3, m=900, seed=5, **kwargs)
    text = repr(p)
    assert len(text) < 200 and "\n" not in text and "array" not in text, text
    n1, n2 = p.operator.shape
    for part in (f"shape=({n1}, {n2})", "rank=3", "m=900", f"operator={p.operator.kind!r}",
                 "dtype=float64", "seed=5"):
        assert part in text, (part, text)
    if kwargs.get("psd"):
        assert "psd=True" in text and "cond=3" in text and "noise=0.01" in text


def test_history_repr_says_what_was_recorded(prob):
    res = solve(prob.operator, prob.y, 2, method="gd", record=False, max_iter=7, seed=0)
    text = repr(res.history)
    assert "no metrics recorded (record=False)" in text and "iteration 7" in text, text
    assert text.startswith("History<1 entry")
    full = solve(prob.operator, prob.y, 2, method="gd", max_iter=7, seed=0)
    text = repr(full.history)
    assert text.startswith("History<8 entries (iterations 0..7): loss, residual"), text
    assert "no metrics" not in text
    assert len(repr(full)) < 2000  # arrays summarized, not dumped


# ----------------------------------------------------------------------- type hints
def test_solve_and_make_problem_are_annotated():
    for func, names in ((lc.solve, ("operator", "y", "rank", "method", "symmetric", "init",
                                    "init_scale", "step", "max_iter", "tol", "max_time",
                                    "truth", "record", "callback", "seed", "n_threads",
                                    "progress")),
                        (lc.make_problem, ("n1", "n2", "rank", "m", "operator", "psd",
                                           "cond", "noise", "dtype", "seed", "n_threads"))):
        sig = inspect.signature(func)
        missing = [n for n in names if sig.parameters[n].annotation is inspect.Parameter.empty]
        assert not missing, (func.__name__, missing)
        hints = typing.get_type_hints(func)  # every annotation resolves at run time
        assert hints["return"] in (lc.SolveResult, lc.Problem)


def test_py_typed_marker_is_installed():
    import lowrank_core
    marker = os.path.join(os.path.dirname(lowrank_core.__file__), "py.typed")
    assert os.path.isfile(marker), marker


# ------------------------------------------------------------------ operator names
def test_dense_is_the_public_name_and_gaussian_an_alias():
    assert OPERATOR_NAMES[0] == "dense"
    a = lc.make_problem(10, 8, rank=2, m=50, operator="dense", seed=1)
    b = lc.make_problem(10, 8, rank=2, m=50, operator="gaussian", seed=1)
    c = lc.make_problem(10, 8, rank=2, m=50, seed=1)
    assert a.operator.kind == b.operator.kind == c.operator.kind == "dense"
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.y, c.y)
    assert lc.make_problem(6, rank=1, m=30, operator="Dense", psd=True).operator.kind \
        == "symmetric"
    with pytest.raises(ValueError, match="did you mean 'entries'"):
        lc.make_problem(10, rank=2, m=50, operator="entires")
