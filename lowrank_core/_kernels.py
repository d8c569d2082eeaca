"""Run-time CPU dispatch of the compiled kernel modules.

Some kernel modules are built twice from the same source: the baseline ``_name`` (the
compiler's default target, SSE2 on x86-64) and ``_name_avx2`` (``-mavx2 -mfma``, x86_64
only). :func:`load` returns the AVX2 build when the CPU supports AVX2 and FMA and the
module was built, else the baseline. Setting the environment variable
``LOWRANK_CORE_DISABLE_SIMD`` to a non-empty value other than ``0`` before lowrank_core
is imported forces the baseline builds.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["load", "cpu_has_avx2_fma", "simd_variant", "DISABLE_ENV"]

#: Environment variable that forces the baseline (non-SIMD) kernel builds.
DISABLE_ENV = "LOWRANK_CORE_DISABLE_SIMD"

_loaded: dict = {}


def _cpu_features() -> dict:
    """numpy's run-time CPU feature table ({} if this numpy does not expose it)."""
    try:  # numpy >= 2
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:  # numpy 1.x
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return {}
    return dict(__cpu_features__)


def cpu_has_avx2_fma() -> bool:
    """True if the running CPU (and OS) supports both AVX2 and FMA3.

    Returns
    -------
    bool
        From numpy's run-time feature detection; False when it is unavailable.
    """
    feats = _cpu_features()
    return bool(feats.get("AVX2", False) and feats.get("FMA3", False))


def _simd_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip() not in ("", "0")


def load(name: str):
    """Import the best available build of the kernel module ``lowrank_core.<name>``.

    Parameters
    ----------
    name : str
        Baseline module name, e.g. ``"_rankone"``.

    Returns
    -------
    module
        ``lowrank_core.<name>_avx2`` if the CPU supports AVX2 and FMA, that module was
        built and ``LOWRANK_CORE_DISABLE_SIMD`` is not set; otherwise
        ``lowrank_core.<name>``.
    """
    if name in _loaded:
        return _loaded[name]
    mod = None
    if not _simd_disabled() and cpu_has_avx2_fma():
        try:
            mod = importlib.import_module(f"lowrank_core.{name}_avx2")
        except ImportError:
            mod = None
    if mod is None:
        mod = importlib.import_module(f"lowrank_core.{name}")
    _loaded[name] = mod
    return mod


def simd_variant() -> str:
    """Which build of the dispatched kernels is active.

    Returns
    -------
    str
        ``"avx2"`` if the AVX2/FMA builds are in use, else ``"baseline"`` (CPU without
        AVX2/FMA, non-x86_64 build, or ``LOWRANK_CORE_DISABLE_SIMD`` set).
    """
    return "avx2" if load("_rankone").__name__.endswith("_avx2") else "baseline"
