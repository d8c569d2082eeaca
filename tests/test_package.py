"""Package-level behaviour: OpenMP wait policy default, public names."""

import os
import subprocess
import sys

import lowrank_core as lc


def _policy_after_import(env_value):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    code = "import os, lowrank_core; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(sys.executable))
    return out.stdout.strip()


def test_passive_wait_policy_is_the_default_but_never_overrides_the_user():
    assert _policy_after_import(None) == "PASSIVE"
    assert _policy_after_import("ACTIVE") == "ACTIVE"


def test_public_names():
    for name in ["make_problem", "solve", "SolveResult", "DenseOperator",
                 "SymmetricDenseOperator", "SparseOperator", "EntryOperator",
                 "RankOneOperator", "Problem", "metrics", "openmp_enabled"]:
        assert name in lc.__all__ and hasattr(lc, name)
