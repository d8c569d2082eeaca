"""lowrank_core: low-rank matrix recovery from linear measurements with factorized
gradient methods on a compiled (Cython, BLAS, OpenMP) core.

Measurements y = A(M*) (+ noise), A(M)_i = <A_i, M>, M* of rank r; the solvers work on a
factorization X X^T or F G^T. See the README for the architecture.

Importing the package bounds how long idle OpenMP workers spin before they sleep
(``GOMP_SPINCOUNT=10000`` for GCC's runtime, ``KMP_BLOCKTIME=1`` ms for LLVM's), unless
the environment already sets ``OMP_WAIT_POLICY`` or those variables; it must happen
before the OpenMP runtime starts. Unbounded spinning steals the cores from other work
(measured on 2 busy cores: the demo in 49 s instead of 14.5 s); never spinning delays the
worker at every parallel region (the dense kernel 40% slower on an idle machine). The
bounded spin keeps the kernel's idle-machine speed and sleeps under load.

For the same reason it sets ``OPENBLAS_THREAD_TIMEOUT=20`` unless already set: OpenBLAS's
idle workers spin for 2**20 cycles (about 0.4 ms) after a threaded BLAS call instead of
the default 2**28 (about 0.1 s), during which they take cores from the OpenMP kernel that
runs next (measured: the dense fused product 1.6x slower right after a numpy GEMV). It
only reaches OpenBLAS builds loaded after the import (numpy's, when lowrank_core is
imported first; scipy's, which the kernels call, when scipy.linalg is not loaded yet).
"""

import os as _os

if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    _os.environ.setdefault("KMP_BLOCKTIME", "1")
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")


def _check_compiled_core() -> None:
    """Fail with a clear message when the compiled kernels cannot be found.

    Typical cause: Python runs in the repository root, so the uncompiled source folder
    ``lowrank_core/`` shadows the installed package (the current folder comes first on
    ``sys.path``).
    """
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec(f"{__name__}._parallel") is not None:
        return
    here = Path(__file__).resolve().parent
    if (here.parent / "meson.build").is_file() and (here.parent / "src").is_dir():
        raise ImportError(
            f"lowrank_core was imported from its uncompiled source folder {here}, which "
            "shadows the installed package (Python puts the current folder first on "
            "sys.path). Either run Python from another folder, where the installed package "
            "is used, or make the source tree importable with the editable install: "
            "pip install meson-python meson ninja Cython numpy scipy && "
            "pip install --no-build-isolation -e .")
    raise ImportError(
        f"the compiled core of lowrank_core (lowrank_core._parallel) is missing from {here}; "
        "reinstall the package: pip install --force-reinstall lowrank-core")


_check_compiled_core()

from . import metrics  # noqa: E402
from ._kernels import simd_variant
from ._threads import openmp_enabled
from .distributed import ShardedOperator
from .driver import solve
from .estimator import MatrixCompletion
from .operators import (
    DenseOperator,
    EntryOperator,
    MeasurementOperator,
    RankOneOperator,
    SparseOperator,
    SymmetricDenseOperator,
)
from .problems import Problem, make_problem
from .results import SolveResult

__version__ = "0.1.0"

__all__ = [
    "DenseOperator",
    "EntryOperator",
    "MatrixCompletion",
    "MeasurementOperator",
    "Problem",
    "RankOneOperator",
    "ShardedOperator",
    "SparseOperator",
    "SolveResult",
    "SymmetricDenseOperator",
    "make_problem",
    "metrics",
    "openmp_enabled",
    "simd_variant",
    "solve",
]
