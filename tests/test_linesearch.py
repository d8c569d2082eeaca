"""The exact line search (step="auto") against dense evaluations of the loss along the line,
its wiring into every step rule, the fixed-step path against iterates saved before the line
search existed, and the scale invariance it gives ScaledGD.

References: f(eta) evaluated from dense matrices through ``op.forward`` (never the factored
passes the line search uses) on a fine grid; the directions written out in plain numpy
(ALGORITHMS.md §3-§4, §8.1).
"""

import os

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods import METHODS, SolverState
from lowrank_core.methods.linesearch import CAP, LineSearch, quadratic_step, quartic_step

KINDS = ("gaussian", "sparse", "entries", "rank-one")
#: (kind, symmetric form) pairs make_problem builds (no symmetric completion operator)
KIND_FORMS = [(kind, psd) for kind in KINDS for psd in (False, True)
              if not (kind == "entries" and psd)]
DATA = os.path.join(os.path.dirname(__file__), "data", "fixed_step_reference.npz")


def _problem(kind, psd, seed=3, dtype=np.float64):
    m = 70 if kind == "entries" else 110
    return lc.make_problem(12, 12 if psd else 10, rank=2, m=m, operator=kind, psd=psd,
                           cond=4.0, seed=seed, dtype=dtype)


def _dense_loss(op, y, F, G):
    """1/2 ||A(F G^T) - y||^2 with the dense product and op.forward (not forward_factored)."""
    return 0.5 * float(np.sum((op.forward(F @ G.T) - y) ** 2))


def _grid_check(loss, eta, eta_max, n=1201):
    """eta is the minimizer of loss on [0, eta_max]: no grid point does better, and the grid's
    best point is within one grid spacing of eta."""
    grid = np.linspace(0.0, eta_max, n)
    values = np.array([loss(e) for e in grid])
    best = int(np.argmin(values))
    f_eta = loss(eta)
    scale = max(abs(values[0]), 1e-300)
    assert f_eta <= values.min() + 1e-12 * scale, (f_eta, values.min())
    assert abs(grid[best] - eta) <= 1.01 * (grid[1] - grid[0]), (grid[best], eta)


# ------------------------------------------------------------- the scalar minimizers
@pytest.mark.parametrize("seed", range(12))
def test_quartic_step_is_the_minimizer_on_a_grid(seed):
    r = np.random.default_rng(seed)
    m = 7
    z, u = r.standard_normal(m), r.standard_normal(m)
    v = r.standard_normal(m) * 10.0 ** r.uniform(-3, 1)
    if z @ u < 0:
        u = -u  # a descent direction: f'(0) = -z.u < 0

    def f(e):
        return 0.5 * float(np.sum((z - e * u + e * e * v) ** 2))

    # uncapped: the grid covers the whole region where f < f(0)
    eta = quartic_step(z @ u, u @ u, z @ v, u @ v, v @ v, np.inf)
    assert eta > 0
    _grid_check(f, eta, 3.0 * eta + 1.0)
    # a cap inside the region of descent: the minimizer over [0, cap]
    cap = 0.5 * eta
    eta_c = quartic_step(z @ u, u @ u, z @ v, u @ v, v @ v, cap)
    _grid_check(f, eta_c, cap)


def test_quartic_step_degenerate_cases():
    # not a descent direction, zero direction, non-finite data: no step
    assert quartic_step(-1.0, 1.0, 0.0, 0.0, 0.0, 10.0) == 0.0
    assert quartic_step(0.0, 0.0, 0.0, 0.0, 0.0, 10.0) == 0.0
    assert quartic_step(1.0, np.nan, 0.0, 0.0, 1.0, 10.0) == 0.0
    # v = 0: a quadratic, minimized at z.u / u.u (= 2 here), capped at 1.5
    assert quartic_step(2.0, 1.0, 0.0, 0.0, 0.0, np.inf) == pytest.approx(2.0, rel=1e-14)
    assert quartic_step(2.0, 1.0, 0.0, 0.0, 0.0, 1.5) == 1.5
    assert quadratic_step(2.0, 1.0, np.inf) == 2.0
    assert quadratic_step(2.0, 1.0, 1.5) == 1.5
    assert quadratic_step(-2.0, 1.0, 1.5) == 0.0


# ---------------------------------------------------- the operator passes, every kind
def _state(prob, psd, rng, scale=1.0):
    op, y = prob.operator, prob.y
    n1, n2 = op.shape
    k = 3
    F = rng.standard_normal((n1, k)) * scale
    G = F if psd else rng.standard_normal((n2, k)) * scale
    state = SolverState(op, y, F.astype(op.dtype), G.astype(op.dtype), psd)
    state.evaluate()
    return state


@pytest.mark.parametrize("kind,psd", KIND_FORMS)
def test_search_is_the_minimizer_along_a_direction(kind, psd, rng):
    prob = _problem(kind, psd)
    op, y = prob.operator, prob.y
    state = _state(prob, psd, rng, scale=0.4)
    F, G = state.F, state.G
    D_F = rng.standard_normal(F.shape)
    D_G = D_F if psd else rng.standard_normal(G.shape)
    D_F = D_F * 0.05
    D_G = D_F if psd else D_G * 0.05
    # make it a descent direction: <grad, D> > 0
    sign = np.sign(np.sum(state.grad_F * D_F) + (0 if psd else np.sum(state.grad_G * D_G)))
    D_F = np.ascontiguousarray(sign * D_F)
    D_G = D_F if psd else np.ascontiguousarray(sign * D_G)

    def loss(e):
        Fe = F - e * D_F
        Ge = Fe if psd else G - e * D_G
        return _dense_loss(op, y, Fe, Ge)

    uncapped = LineSearch(state, cap=np.inf)
    eta = uncapped.search(F, G, D_F, D_G)
    assert eta > 0
    _grid_check(loss, eta, 3.0 * eta)
    # the default cap: eta_max = CAP ||(F, G)|| / ||(D_F, D_G)||
    capped = LineSearch(state)
    if psd:
        eta_max = CAP * np.linalg.norm(F) / np.linalg.norm(D_F)
    else:
        eta_max = CAP * np.hypot(np.linalg.norm(F), np.linalg.norm(G)) / \
            np.hypot(np.linalg.norm(D_F), np.linalg.norm(D_G))
    eta_c = capped.search(F, G, D_F, D_G)
    _grid_check(loss, eta_c, eta_max)
    # a tight cap binds (f decreases on [0, eta / 4])
    tight = LineSearch(state, cap=0.25 * eta / eta_max * CAP)
    assert tight.search(F, G, D_F, D_G) == pytest.approx(0.25 * eta, rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_one_factor_searches_are_the_minimizers(kind, rng):
    prob = _problem(kind, False)
    op, y = prob.operator, prob.y
    state = _state(prob, False, rng, scale=0.4)
    F, G = state.F, state.G
    D_F = np.ascontiguousarray(state.grad_F * 0.3)
    D_G = np.ascontiguousarray(state.grad_G * 0.3)
    ls = LineSearch(state, cap=np.inf)
    eta = ls.search_first(F, G, D_F)
    _grid_check(lambda e: _dense_loss(op, y, F - e * D_F, G), eta, 3.0 * eta)
    eta = ls.search_second(F, G, D_G)
    _grid_check(lambda e: _dense_loss(op, y, F, G - e * D_G), eta, 3.0 * eta)


# ------------------------------------------------------------ wiring into the rules
def _numpy_direction(method, op, y, F, G, psd):
    """The method's search direction from dense numpy (A^T via op.adjoint of the residual).

    PrecGD with step="auto": lam = ||z|| / g, g = ||A(F G^T)|| / ||F G^T||_F the operator's
    gain on the initial iterate (here the iterate itself)."""
    z = op.forward(F @ G.T) - y
    S = op.adjoint(z)
    gain = np.linalg.norm(op.forward(F @ G.T)) / np.linalg.norm(F @ G.T)
    if psd:
        grad = 0.5 * (S + S.T) @ F
        if method == "gd":
            return grad, grad
        lam = {"scaledgd": 0.0, "precgd": np.linalg.norm(z) / gain}[method]
        d = grad @ np.linalg.inv(F.T @ F + lam * np.eye(F.shape[1]))
        return d, d
    gF, gG = S @ G, S.T @ F
    if method in ("gd", "onestep"):
        return gF, gG
    lam = {"scaledgd": 0.0, "precgd": np.linalg.norm(z) / gain}[method]
    eye = np.eye(F.shape[1])
    return gF @ np.linalg.inv(G.T @ G + lam * eye), gG @ np.linalg.inv(F.T @ F + lam * eye)


@pytest.mark.parametrize("kind,psd", KIND_FORMS)
@pytest.mark.parametrize("method", ["gd", "scaledgd", "precgd"])
def test_auto_step_is_the_exact_step_along_the_methods_direction(kind, psd, method):
    prob = _problem(kind, psd)
    op, y = prob.operator, prob.y
    start = lc.solve(op, y, 3, method=method, symmetric=psd, init="spectral", max_iter=3,
                     seed=2, step=0.2)  # a non-trivial iterate to search from
    F = start.X if psd else start.F
    G = F if psd else start.G
    res = lc.solve(op, y, 3, method=method, symmetric=psd, init=(F if psd else (F, G)),
                   max_iter=1, tol=1e-300)
    assert res.options["step"] == "auto"
    h = res.history
    np.testing.assert_array_equal(h["iteration"], [0, 1])
    assert np.isnan(h["step"][1])  # no step from the final iterate
    eta = h["step"][0]
    D_F, D_G = _numpy_direction(method, op, y, F, G, psd)

    def loss(e):
        Fe = F - e * D_F
        Ge = Fe if psd else G - e * D_G
        return _dense_loss(op, y, Fe, Ge)

    nF, nD = np.linalg.norm(F), np.linalg.norm(D_F)
    if not psd:
        nF, nD = np.hypot(nF, np.linalg.norm(G)), np.hypot(nD, np.linalg.norm(D_G))
    _grid_check(loss, eta, CAP * nF / nD)
    F1 = res.X if psd else res.F
    np.testing.assert_allclose(F1, F - eta * D_F, rtol=1e-9, atol=1e-12 * np.abs(F).max())
    if not psd:
        np.testing.assert_allclose(res.G, G - eta * D_G, rtol=1e-9,
                                   atol=1e-12 * np.abs(G).max())


@pytest.mark.parametrize("kind", KINDS)
def test_agn_half_steps_are_exact(kind):
    prob = _problem(kind, False)
    op, y = prob.operator, prob.y
    start = lc.solve(op, y, 3, method="agn", init="spectral", max_iter=2, seed=2, step=0.3)
    F, G = start.F, start.G
    res = lc.solve(op, y, 3, method="agn", init=(F, G), max_iter=1, tol=1e-300)
    eta_F, eta_G = res.history["step"][0], res.history["step_G"][0]
    z = op.forward(F @ G.T) - y
    D_F = op.adjoint(z) @ G @ np.linalg.pinv(G.T @ G)
    _grid_check(lambda e: _dense_loss(op, y, F - e * D_F, G), eta_F,
                CAP * np.linalg.norm(F) / np.linalg.norm(D_F))
    F1 = F - eta_F * D_F
    np.testing.assert_allclose(res.F, F1, rtol=1e-9, atol=1e-12 * np.abs(F).max())
    z1 = op.forward(F1 @ G.T) - y
    D_G = op.adjoint(z1).T @ F1 @ np.linalg.pinv(F1.T @ F1)
    _grid_check(lambda e: _dense_loss(op, y, F1, G - e * D_G), eta_G,
                CAP * np.linalg.norm(G) / np.linalg.norm(D_G))
    np.testing.assert_allclose(res.G, G - eta_G * D_G, rtol=1e-9, atol=1e-12 * np.abs(G).max())


def test_auto_is_the_default_and_loss_never_increases():
    prob = _problem("entries", False)
    for method in ("gd", "onestep", "scaledgd", "scaledgd-lambda", "precgd", "agn"):
        res = lc.solve(prob.operator, prob.y, 2, max_iter=60, method=method, seed=1)
        assert res.options["step"] == "auto"
        loss = res.history["loss"]
        assert np.all(np.diff(loss) <= 1e-12 * loss[:-1]), method
        steps = res.history["step"][:-1]
        assert np.all(steps > 0) and np.all(np.isfinite(steps)), method


def test_fixed_steps_are_recorded():
    prob = _problem("gaussian", False)
    res = lc.solve(prob.operator, prob.y, 2, method="scaledgd", step=0.3, max_iter=5)
    np.testing.assert_array_equal(res.history["step"][:-1], 0.3)
    res = lc.solve(prob.operator, prob.y, 2, method="agn", step="fixed", max_iter=5)
    assert res.options["step"] == 0.5
    np.testing.assert_array_equal(res.history["step_G"][:-1], 0.5)
    with pytest.raises(ValueError, match="auto"):
        lc.solve(prob.operator, prob.y, 2, step="exact")


# ------------------------------------------------------ fixed steps: today's bits
def _reference_cases():
    data = np.load(DATA)
    keys = sorted({k.rsplit("|", 1)[0] for k in data.files})
    return data, keys


_DATA, _KEYS = _reference_cases()


@pytest.mark.parametrize("key", _KEYS)
def test_fixed_step_reproduces_the_iterates_before_the_line_search(key):
    """Saved by tests/data/make_fixed_step_reference.py with main at d614505 (before
    step="auto"); a numeric step must give the same iterates. Compared to rounding, not
    bitwise: on another CPU OpenBLAS picks other kernels (make_problem's y already differs
    in the last bit), and the 6 iterations amplify that to ~1e-16 relatively; a changed
    update rule moves the iterates by far more than 1e-12."""
    kind, psd, method = key.split("|")
    psd = bool(int(psd))
    m = 60 if kind == "entries" else 90
    prob = lc.make_problem(12, 12 if psd else 10, rank=2, m=m, operator=kind, psd=psd,
                           cond=3.0, seed=5)
    np.testing.assert_allclose(prob.y, _DATA[key + "|y"], rtol=1e-13, atol=1e-16,
                               err_msg="make_problem changed: regenerate the reference")
    step = float(_DATA[key + "|step"])
    res = lc.solve(prob.operator, prob.y, 3, method=method, symmetric=psd, init="small",
                   step=step, max_iter=6, tol=1e-30, record=False, seed=11, n_threads=1,
                   **({"trigger": 0.9} if method == "onestep" else {}))
    assert res.n_iter == int(_DATA[key + "|n_iter"])
    for name, arr in zip("FG", res.factors):
        ref = _DATA[key + "|" + name]
        np.testing.assert_allclose(arr, ref, rtol=1e-12, atol=1e-14 * np.abs(ref).max())
    # step="fixed" resolves to the same number (the data-dependent gd step included)
    fixed = lc.solve(prob.operator, prob.y, 3, method=method, symmetric=psd, init="small",
                     step="fixed", max_iter=0, seed=11)
    assert fixed.options["step"] == pytest.approx(step, rel=1e-14)


# -------------------------------------------------------------- scale invariance
@pytest.mark.parametrize("method", ["scaledgd", "agn", "precgd"])
def test_auto_step_is_invariant_to_the_entry_operators_scale(method):
    """Completion with scale 1 and with 1/sqrt(p) (make_problem's): same iterates."""
    n1, n2, r = 30, 25, 2
    prob = lc.make_problem(n1, n2, rank=r, m=400, operator="entries", cond=3.0, seed=4)
    op = prob.operator
    rows, cols = op.rows, op.cols
    M = prob.truth
    runs = []
    for scale in (1.0, op.scale):
        o = lc.EntryOperator(rows, cols, (n1, n2), scale=scale)
        y = o.forward(M)
        res = lc.solve(o, y, r, method=method, init="small", max_iter=25, tol=1e-300,
                       seed=7)
        runs.append(res)
    a, b = runs
    assert a.n_iter == b.n_iter == 25
    Ma, Mb = a.matrix(), b.matrix()
    np.testing.assert_allclose(Ma, Mb, rtol=0, atol=1e-9 * np.abs(M).max())
    assert not np.allclose(a.history["step"][:-1], b.history["step"][:-1])  # steps differ


def test_methods_have_default_inits():
    expected = {"gd": "small", "onestep": "small", "precgd": "small", "scaledgd": "spectral",
                "scaledgd-lambda": "spectral", "agn": "spectral"}
    for name, init in expected.items():
        assert METHODS[name].default_init == init
    prob = _problem("gaussian", False)
    for name, init in expected.items():
        a = lc.solve(prob.operator, prob.y, 2, method=name, max_iter=0, seed=3)
        scale = METHODS[name].default_init_scale  # init=None's own alpha (issue 18)
        scale = scale.get("asymmetric") if isinstance(scale, dict) else scale
        b = lc.solve(prob.operator, prob.y, 2, method=name, init=init, max_iter=0, seed=3,
                     init_scale=scale if init == "small" else None)
        assert a.options["init"] == init
        np.testing.assert_array_equal(a.F, b.F)
