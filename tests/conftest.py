import os
import pathlib

import numpy as np
import pytest

import lowrank_core

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def pytest_report_header(config):
    where = pathlib.Path(lowrank_core.__file__).resolve().parent
    return (f"lowrank_core {lowrank_core.__version__} from {where}; "
            f"OpenMP: {lowrank_core.openmp_enabled()}; OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _threads_even_for_small_problems(monkeypatch):
    """Dense operators use fewer threads for small problems; the tests' problems are small
    but must still exercise the multi-threaded partitions."""
    monkeypatch.setattr(lowrank_core.operators.dense._DenseBase, "min_entries_per_thread", 1)
