"""Input checks shared by the whole Python layer.

Every public entry point validates here, then hands C-contiguous arrays of one floating
dtype to the compiled kernels. Messages name the argument, what was expected and how to
fix it. Nothing is silently upcast: float32 stays float32, mixing dtypes is an error.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return ``dtype`` as np.dtype if it is float32 or float64, else raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def as_float_array(
    x,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    shape: tuple | None = None,
    dtype: np.dtype | None = None,
    allow_cast_from_int: bool = False,
    finite: bool = True,
    copy: bool = False,
) -> np.ndarray:
    """Validate an array argument and return it C-contiguous.

    Parameters
    ----------
    x : array_like
    name : str
        Argument name used in error messages.
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    shape : tuple, optional
        Expected shape; ``None`` entries match any length.
    dtype : np.dtype, optional
        Required floating dtype. A floating array of the other precision is an error
        (never a silent cast); integer/bool input is cast only when
        ``allow_cast_from_int`` (a lossless, documented conversion).
        When ``dtype`` is None the array must already be float32 or float64.
    finite : bool
        Reject NaN and infinity.
    copy : bool
        Always return a fresh array.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and such
            raise TypeError(f"{name} must be array-like of numbers: {exc}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got an array of shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(
            s is not None and a != s for a, s in zip(arr.shape, shape)
        ):
            parts = ["any" if s is None else str(s) for s in shape]
            want = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{name} has dtype {arr.dtype}; only float32 and float64 are supported "
                f"(convert with {name}.astype(np.float64))"
            )
        if dtype is not None and arr.dtype != dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but the operator works in {dtype}; "
                f"convert explicitly with {name}.astype(np.{dtype}) (lowrank_core never "
                f"mixes precisions silently)"
            )
    else:
        if not allow_cast_from_int or dtype is None:
            raise TypeError(
                f"{name} must be a float32 or float64 array, got {arr.dtype}"
                + (f"; convert with {name}.astype(np.float64)" if dtype is None else
                   f"; convert with {name}.astype(np.{dtype})")
            )
        arr = arr.astype(dtype)
    if finite and not _all_finite(arr):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); remove or impute them")
    if copy:
        return np.array(arr, order="C", copy=True)
    return np.ascontiguousarray(arr)


def _all_finite(arr: np.ndarray, chunk: int = 1 << 20) -> bool:
    """np.isfinite(arr).all() without a full-size boolean temporary: a C-contiguous array
    is checked in chunks of ``chunk`` elements (a multi-GB operator would otherwise need
    an extra byte per entry, e.g. +25% of a float32 operator, at construction)."""
    if arr.size <= chunk or not arr.flags.c_contiguous:
        return bool(np.isfinite(arr).all())
    flat = arr.reshape(-1)
    return all(bool(np.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.size, chunk))


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer >= minimum, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_float(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float if it is finite and > 0 (>= 0 with allow_zero)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def check_random_state(seed) -> np.random.Generator:
    """Turn None, an int, a SeedSequence or a Generator into a numpy Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {seed!r}")
