"""Package-level behaviour: OpenMP wait policy default, public names."""

import os
import subprocess
import sys

import lowrank_core as lc


def _policy_after_import(env_value, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
                        "OPENBLAS_THREAD_TIMEOUT")}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    env.update(extra)
    code = ("import os, lowrank_core; e = os.environ; print(e.get('OMP_WAIT_POLICY'), "
            "e.get('GOMP_SPINCOUNT'), e.get('KMP_BLOCKTIME'), "
            "e.get('OPENBLAS_THREAD_TIMEOUT'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(sys.executable))
    return out.stdout.strip()


def test_bounded_spin_is_the_default_but_never_overrides_the_user():
    assert _policy_after_import(None) == "None 10000 1 20"
    assert _policy_after_import("ACTIVE") == "ACTIVE None None 20"
    assert _policy_after_import(None, OPENBLAS_THREAD_TIMEOUT="28") == "None 10000 1 28"


def test_public_names():
    for name in ["make_problem", "solve", "SolveResult", "DenseOperator",
                 "SymmetricDenseOperator", "SparseOperator", "EntryOperator",
                 "RankOneOperator", "Problem", "metrics", "openmp_enabled"]:
        assert name in lc.__all__ and hasattr(lc, name)
