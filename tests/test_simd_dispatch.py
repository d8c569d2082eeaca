"""Run-time CPU dispatch: baseline and AVX2/FMA builds of the rank-one and completion
kernels.

Both builds, both rank-one kernel paths (small GEMMs through the BLAS shim and the
hand-written vector loops), every factor width of the completion kernel's dispatcher, and
the loader's environment switch, against numpy references in float64.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import _kernels
from lowrank_core import _rankone as rankone_base
from lowrank_core.operators import _indexing, entries, rankone

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

HAS_AVX2 = _kernels.cpu_has_avx2_fma()


def _avx2_module():
    if not HAS_AVX2:
        pytest.skip("this CPU lacks AVX2/FMA: the _rankone_avx2 build cannot run here")
    from lowrank_core import _rankone_avx2  # built on every x86_64 host
    return _rankone_avx2


@pytest.fixture(params=["baseline", "avx2"])
def kernel(request):
    return rankone_base if request.param == "baseline" else _avx2_module()


def _reference(a, b, F, G, y):
    a, b, F, G, y = (np.asarray(x, np.float64) for x in (a, b, F, G, y))
    U, V = a @ F, b @ G
    z = np.einsum("ij,ij->i", U, V) - y
    return z, a.T @ (z[:, None] * V), b.T @ (z[:, None] * U)


def _fused(mod, a, b, same, F, G, y, method, n_threads, block=5):
    m, n1 = a.shape
    n2, k, dt = b.shape[1], F.shape[1], a.dtype
    z = np.empty(m, dt)
    SG, StF = np.empty((n1, k), dt), np.empty((n2, k), dt)
    acc_sg = np.empty((n_threads, n1, k), dt)
    acc_stf = np.empty((n_threads, n2, k), dt)
    work = np.empty((n_threads, 4 * block * k), dt)
    loss = mod.fused_pass(a, b, same, True, F, G, y, True, z, acc_sg, acc_stf, SG, StF,
                          work, block, n_threads, method)
    return loss, z, SG, StF


def _rel(x, ref):
    return np.linalg.norm(np.asarray(x, np.float64) - ref) / np.linalg.norm(ref)


# m not a multiple of the 4-row blocks; k below, at and above the vector widths (4 double,
# 8 float), and k = 70 > HAND_MAX_K = 24 (method 1 forced, method -1 falls back to GEMMs)
SHAPES = [(37, 13, 7, 1), (50, 9, 11, 3), (101, 30, 25, 10), (64, 17, 17, 13),
          (33, 5, 40, 24), (22, 8, 9, 70)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", [-1, 0, 1])
@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
def test_fused_pass_matches_numpy(kernel, dtype, method, n_threads, symmetric):
    rng = np.random.default_rng(7)
    dt = np.dtype(dtype)
    for m, n1, n2, k in SHAPES:
        if symmetric:
            n2 = n1
        a = rng.standard_normal((m, n1)).astype(dt)
        F = rng.standard_normal((n1, k)).astype(dt)
        y = rng.standard_normal(m).astype(dt)
        b, G = (a, F) if symmetric else (rng.standard_normal((m, n2)).astype(dt),
                                         rng.standard_normal((n2, k)).astype(dt))
        loss, z, SG, StF = _fused(kernel, a, b, symmetric, F, G, y, method, n_threads)
        z_ref, SG_ref, StF_ref = _reference(a, b, F, G, y)
        where = f"{kernel.__name__} method={method} T={n_threads} shape={(m, n1, n2, k)}"
        assert _rel(z, z_ref) < RTOL[dt], where
        assert _rel(SG, SG_ref) < RTOL[dt], where
        assert _rel(StF, StF_ref) < RTOL[dt], where
        assert abs(loss - 0.5 * z_ref @ z_ref) <= RTOL[dt] * (0.5 * z_ref @ z_ref), where


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_hand_path_is_deterministic(kernel, n_threads):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((203, 31)), rng.standard_normal((203, 29))
    F, G = rng.standard_normal((31, 10)), rng.standard_normal((29, 10))
    y = rng.standard_normal(203)
    first = _fused(kernel, a, b, False, F, G, y, 1, n_threads)
    for _ in range(3):
        again = _fused(kernel, a, b, False, F, G, y, 1, n_threads)
        for x, x0 in zip(again[1:], first[1:]):
            np.testing.assert_array_equal(x, x0)


def test_builds_report_their_target():
    assert rankone_base.simd_build() is False  # default compiler target, no -mavx2
    assert rankone_base.hand_path(10) is False  # baseline keeps the GEMM path
    avx2 = _avx2_module()
    assert avx2.simd_build() is True
    assert avx2.hand_path(10) is True
    assert avx2.hand_path(avx2.HAND_MAX_K + 1) is False


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("symmetric", [False, True])
def test_operator_on_both_builds(kernel, monkeypatch, dtype, symmetric):
    """RankOneOperator's public products with each build swapped in."""
    monkeypatch.setattr(rankone, "_rankone", kernel)
    monkeypatch.setattr(rankone, "MIN_FLOPS_PER_THREAD", 1)
    rng = np.random.default_rng(11)
    dt = np.dtype(dtype)
    m, n1, n2, k = 83, 19, 15, 6
    a = rng.standard_normal((m, n1)).astype(dt)
    b = None if symmetric else rng.standard_normal((m, n2)).astype(dt)
    n2 = n1 if symmetric else n2
    F = rng.standard_normal((n1, k)).astype(dt)
    G = F if symmetric else rng.standard_normal((n2, k)).astype(dt)
    y = rng.standard_normal(m).astype(dt)
    z_ref, SG_ref, StF_ref = _reference(a, a if symmetric else b, F, G, y)
    for n_threads in (1, 2, 3):
        op = lc.RankOneOperator(a, b, n_threads=n_threads)
        loss, z, SG, StF = op.residual_gradient(F, G, y)
        assert _rel(z, z_ref) < RTOL[dt]
        assert _rel(SG, SG_ref) < RTOL[dt]
        assert _rel(StF, StF_ref) < RTOL[dt]
        assert _rel(op.forward_factored(F, G), z_ref + y) < RTOL[dt]


def _variant_in_subprocess(env_value):
    env = dict(os.environ)
    env.pop(_kernels.DISABLE_ENV, None)
    if env_value is not None:
        env[_kernels.DISABLE_ENV] = env_value
    code = ("import lowrank_core, lowrank_core.operators.rankone as s; "
            "print(lowrank_core.simd_variant(), s._rankone.__name__)")
    # outside the repository: python -c puts its working directory on sys.path
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(sys.executable))).stdout.split()
    return out


def test_environment_variable_forces_baseline():
    assert _variant_in_subprocess("1") == ["baseline", "lowrank_core._rankone"]
    expected = (["avx2", "lowrank_core._rankone_avx2"] if HAS_AVX2
                else ["baseline", "lowrank_core._rankone"])
    assert _variant_in_subprocess("0") == expected
    assert _variant_in_subprocess(None) == expected


def test_existing_rank_one_tests_pass_on_the_baseline_build():
    """The rank-one tests (the contract cases and the rank-one specifics), rerun with SIMD
    disabled (the in-process runs already exercise the AVX2 build on AVX2 CPUs)."""
    env = dict(os.environ, **{_kernels.DISABLE_ENV: "1"})
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         os.path.join(here, "test_structured_operators.py"),
         os.path.join(here, "test_operator_contract.py"), "-k", "rank"],
        env=env, capture_output=True, text=True, cwd=here)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


# --------------------------------------------------------------------- completion kernel
def _entries_builds():
    from lowrank_core import _entries as entries_base
    builds = [entries_base]
    if HAS_AVX2:
        from lowrank_core import _entries_avx2  # built on every x86_64 host
        builds.append(_entries_avx2)
    return builds


# every literal width of the dispatcher (1..16), the run-time width up to KMAX = 32 and
# the pointer variant above it
@pytest.mark.parametrize("k", list(range(1, 18)) + [32, 33, 41])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_entries_kernel_every_width_matches_numpy(monkeypatch, k, dtype):
    """EntryOperator.residual_gradient with each build against gather + bincount."""
    monkeypatch.setattr(_indexing, "MIN_ENTRIES_PER_THREAD", 1)
    rng = np.random.default_rng(100 + k)
    dt = np.dtype(dtype)
    n1, n2, nobs = 23, 17, 150
    flat = rng.choice(n1 * n2, nobs, replace=False)
    rows, cols = np.divmod(flat, n2)
    F = rng.standard_normal((n1, k)).astype(dt)
    G = rng.standard_normal((n2, k)).astype(dt)
    y = rng.standard_normal(nobs).astype(dt)
    F64, G64, y64 = (x.astype(np.float64) for x in (F, G, y))
    z_ref = np.einsum("ij,ij->i", F64[rows], G64[cols]) - y64
    SG_ref = np.zeros((n1, k))
    np.add.at(SG_ref, rows, z_ref[:, None] * G64[cols])
    StF_ref = np.zeros((n2, k))
    np.add.at(StF_ref, cols, z_ref[:, None] * F64[rows])
    for build in _entries_builds():
        monkeypatch.setattr(entries, "_entries", build)
        for n_threads in (1, 3):
            op = lc.EntryOperator(rows, cols, (n1, n2), dtype=dt, n_threads=n_threads)
            loss, z, SG, StF = op.residual_gradient(F, G, y)
            where = f"{build.__name__} k={k} T={n_threads}"
            assert _rel(z, z_ref) < RTOL[dt], where
            assert _rel(SG, SG_ref) < RTOL[dt], where
            assert _rel(StF, StF_ref) < RTOL[dt], where
            assert abs(loss - 0.5 * z_ref @ z_ref) <= RTOL[dt] * (0.5 * z_ref @ z_ref), where
