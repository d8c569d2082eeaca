"""lowrank-core solve --reg: the ridge reaches solve(reg=). Checked in numpy: the saved
factors are a stationary point of 1/2 ||A(F G^T) - y||^2 + reg/2 (||F||^2 + ||G||^2)
(gradient S G + reg F = 0, S = A^T(A(F G^T) - y)) and not of the unregularized loss."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
#: outside the repository, so ``python -m`` imports the installed package
NEUTRAL_CWD = os.path.dirname(os.path.abspath(sys.executable))


def run(*args):
    return subprocess.run([sys.executable, "-m", "lowrank_core", *args],
                          capture_output=True, text=True, env=ENV, cwd=NEUTRAL_CWD,
                          timeout=300)


def assert_one_line_error(proc, fragment):
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert fragment in err, err


def _problem(tmp_path, n1=16, n2=12, r=2, m=300, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n1, n2)) / np.sqrt(m)
    M = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    y = np.einsum("ijk,jk->i", A, M) + 0.05 * rng.standard_normal(m)
    path = tmp_path / "noisy.npz"
    np.savez(path, kind="dense", A=A, y=y)
    return path, A, y


def _gradients(A, y, F, G, reg):
    S = np.einsum("i,ijk->jk", np.einsum("ijk,jk->i", A, F @ G.T) - y, A)
    return S @ G + reg * F, S.T @ F + reg * G


@pytest.mark.parametrize("method", ["agn", "als"])
def test_solve_reg_reaches_the_regularized_stationary_point(tmp_path, method):
    path, A, y = _problem(tmp_path)
    reg = 0.3
    out = tmp_path / "fit.npz"
    proc = run("solve", str(path), "--method", method, "--rank", "2", "--reg", str(reg),
               "--max-iter", "2000", "--tol", "1e-14", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as f:
        F, G = f["F"], f["G"]
    gF, gG = _gradients(A, y, F, G, reg)
    scale = reg * (np.linalg.norm(F) + np.linalg.norm(G))
    assert (np.linalg.norm(gF) + np.linalg.norm(gG)) < 1e-6 * scale
    g0F, g0G = _gradients(A, y, F, G, 0.0)   # not stationary without the ridge
    assert (np.linalg.norm(g0F) + np.linalg.norm(g0G)) > 0.5 * scale
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["options"]["reg"] == pytest.approx(reg)
    F_loss = 0.5 * np.sum((np.einsum("ijk,jk->i", A, F @ G.T) - y) ** 2) \
        + 0.5 * reg * (np.sum(F * F) + np.sum(G * G))
    assert doc["loss"] == pytest.approx(F_loss, rel=1e-8)


def test_solve_reg_errors(tmp_path):
    path, _, _ = _problem(tmp_path)
    assert_one_line_error(run("solve", str(path), "--rank", "2", "--reg", "-1"), "--reg")
    assert_one_line_error(run("solve", str(path), "--rank", "2", "-o", "reg=1"), "--reg")
    assert_one_line_error(run("solve", str(path), "--rank", "2", "--method", "gnmr",
                              "--reg", "1", "-o", "variant=averaging"), "variant")
