"""Every method at its defaults (step="auto", its own init) on hard cells and on every
operator kind: it converges or stops with a status and a message that says what happened;
none diverges (issue 13 §4). The reference for "converged" is the truth itself: a run that
claims convergence must have a small relative error."""

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.methods import METHODS
from lowrank_core.results import STATUSES

#: completion 60 x 70, rank 3: kappa and oversampling m / (r (n1 + n2 - r))
HARD_CELLS = [(cond, os_) for cond in (10.0, 1000.0) for os_ in (1.5, 2.5)]


def _completion(cond, os_, seed):
    n1, n2, r = 60, 70, 3
    m = round(os_ * r * (n1 + n2 - r))
    return lc.make_problem(n1, n2, rank=r, m=m, operator="entries", cond=cond, seed=seed)


def _check_outcome(res, prob):
    assert res.status in STATUSES and res.status != "running"
    assert res.status != "diverged", res.message
    assert res.status.split("_")[0] in res.message, res.message  # says what happened
    assert np.isfinite(res.residual) and np.isfinite(res.error)
    if res.status == "converged":  # tol 1e-10 on the residual: the truth is recovered
        assert res.error < 1e-6, (res.method, res.error)


@pytest.mark.parametrize("cond,os_", HARD_CELLS)
@pytest.mark.parametrize("method", list(METHODS))
def test_no_divergence_on_hard_completion_cells(method, cond, os_):
    prob = _completion(cond, os_, seed=1)
    res = lc.solve(prob.operator, prob.y, 3, method=method, truth=prob, record=False,
                   max_iter=1500, seed=2)
    _check_outcome(res, prob)
    assert res.options["step"] == "auto"
    assert res.options["init"] == METHODS[method].default_init


def test_hard_cells_diverged_with_the_fixed_steps():
    """The cells above are hard: at the old defaults (fixed step 0.5, spectral start)
    ScaledGD diverges on at least one of them, which the line search prevents."""
    statuses = []
    for cond, os_ in HARD_CELLS:
        prob = _completion(cond, os_, seed=1)
        res = lc.solve(prob.operator, prob.y, 3, method="scaledgd", init="spectral",
                       step="fixed", truth=prob, record=False, max_iter=1500, seed=2)
        statuses.append(res.status)
    assert "diverged" in statuses, statuses


KINDS = [("gaussian", False), ("gaussian", True), ("sparse", False), ("sparse", True),
         ("entries", False), ("rank-one", False), ("rank-one", True)]
#: symmetric operators (psd=True) with the methods that have the symmetric form X X^T
#: (an asymmetric run does not observe the antisymmetric part there)
CASES = [(method, kind, psd) for method, rule in METHODS.items() for kind, psd in KINDS
         if not psd or "symmetric" in rule.forms]


@pytest.mark.parametrize("method,kind,psd", CASES)
def test_defaults_on_every_operator_kind(method, kind, psd):
    symmetric = psd
    m = 150 if kind == "entries" else 400
    prob = lc.make_problem(16, 16, rank=2, m=m, operator=kind, psd=psd, cond=5.0, seed=4)
    res = lc.solve(prob.operator, prob.y, 2, method=method, symmetric=symmetric, truth=prob,
                   record=False, max_iter=800, seed=3)
    _check_outcome(res, prob)
