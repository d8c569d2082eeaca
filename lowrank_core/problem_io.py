r"""Problems on disk: the ``.npz`` format read by ``lowrank-core solve``.

One ``numpy.savez`` archive (no pickled objects) with these keys:

=========  ==========================================================================
key        content
=========  ==========================================================================
kind       string: "dense", "symmetric", "sparse", "entries" or "rank-one"
y          float array (m,): the measurements
A          dense: float array (m, n1, n2), the A_i; symmetric: (m, n, n), symmetric A_i
meas,      sparse: int arrays (nnz,) and float array (nnz,): nonzero e of measurement
rows,      meas[e] sits at (rows[e], cols[e]) with value vals[e]; ``shape`` = (n1, n2);
cols,      optional ``m`` (default max(meas) + 1)
vals
rows,      entries: int arrays (m,): measurement i observes M[rows[i], cols[i]] (times
cols       the optional float ``scale``, default 1); ``shape`` = (n1, n2)
a, b       rank-one: float arrays (m, n1) and (m, n2): y_i = a_i^T M b_i; without ``b``
           the symmetric model y_i = a_i^T M a_i
L, R       optional truth M* = L R^T, float arrays (n1, r) and (n2, r); without R,
           M* = L L^T (PSD)
M          optional truth as a dense (n1, n2) array (instead of L, R)
=========  ==========================================================================

The float arrays of the operator set its dtype (float32 or float64); ``y`` and the truth
are converted to it. :func:`save_problem` writes this format, :func:`load_problem` reads
and validates it (every problem is reported as :class:`ProblemFileError`, naming the file
and the key).
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .operators import OPERATORS

__all__ = [
    "FORMAT_HELP",
    "KINDS",
    "LoadedProblem",
    "ProblemFileError",
    "load_problem",
    "save_problem",
]

#: Operator kinds of the format: the registered kinds (lowrank_core.operators.OPERATORS).
KINDS = tuple(OPERATORS)

#: Plain-text summary of the format (shown by ``lowrank-core solve --help``).
FORMAT_HELP = "\n".join([
    "problem file (.npz written with numpy.savez; no pickles):",
    "  kind      " + " | ".join(f'"{kind}"' for kind in OPERATORS),
    "  y         (m,) measurements",
    *(f"  {kind + ':':<10} {cls.file_format}" for kind, cls in OPERATORS.items()),
    ("  truth (optional): L (n1, r) and R (n2, r) with M* = L R^T (no R: M* = L L^T), or "
    "M (n1, n2)"),
    ("  The operator's float arrays set the dtype (float32/float64); y and truth are cast "
    "to it."),
])


class ProblemFileError(ValueError):
    """A problem file is missing, unreadable or does not follow the format."""


@dataclass
class LoadedProblem:
    """A problem read from a file.

    Attributes
    ----------
    kind : str
    operator : MeasurementOperator
    y : ndarray, shape (m,)
    truth : tuple (L, R), ndarray or None
        ``truth=`` argument for :func:`lowrank_core.solve`.
    truth_factors : tuple (L, R) or None
    psd : bool
        True when the truth was stored as L alone (M* = L L^T).
    """

    kind: str
    operator: object
    y: np.ndarray
    truth: object = None
    truth_factors: tuple | None = None
    psd: bool = False

    @property
    def rank(self) -> int | None:
        """Rank of the stored truth factors (None without factors)."""
        if self.truth_factors is None:
            return None
        return int(self.truth_factors[0].shape[1])


def _get(data, key, path, *, ndim=None, kind="float", optional=False):
    if key not in data.files:
        if optional:
            return None
        raise ProblemFileError(f"{path}: missing key {key!r} (see `lowrank-core solve "
                               "--help` for the format)")
    try:
        arr = data[key]
    except ValueError as exc:  # object arrays need pickles, which are refused
        raise ProblemFileError(f"{path}: key {key!r} cannot be read without pickle "
                               f"({exc}); store plain numeric arrays") from None
    if kind == "float":
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ProblemFileError(f"{path}: key {key!r} must be a numeric array, got dtype "
                                   f"{arr.dtype}")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ProblemFileError(f"{path}: key {key!r} contains NaN or infinite values")
    elif kind == "int" and not np.issubdtype(arr.dtype, np.integer):
        raise ProblemFileError(f"{path}: key {key!r} must be an integer array, got dtype "
                               f"{arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ProblemFileError(f"{path}: key {key!r} must be {ndim}-D, got shape {arr.shape}")
    return arr


class _FileArrays(Mapping):
    """The archive's arrays as a mapping for ``from_arrays``; object arrays (which would
    need pickles) are refused, naming the file and the key."""

    def __init__(self, data, path):
        self._data, self._path = data, path

    def __getitem__(self, key):
        if key not in self._data.files:
            raise KeyError(key)
        return _get(self._data, key, self._path, kind=None)

    def __iter__(self):
        return iter(self._data.files)

    def __len__(self):
        return len(self._data.files)


def _build_operator(kind, data, path, dtype):
    """The operator of a file's ``kind``, built by its class's ``from_arrays``."""
    try:
        return OPERATORS[kind].from_arrays(_FileArrays(data, path), dtype=dtype)
    except KeyError as exc:
        raise ProblemFileError(f"{path}: missing key {exc.args[0]!r} (see `lowrank-core "
                               "solve --help` for the format)") from None


def load_problem(path) -> LoadedProblem:
    """Read and validate a problem file (format: module docstring).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    LoadedProblem

    Raises
    ------
    ProblemFileError
        Missing or unreadable file, missing keys, wrong shapes or dtypes, non-finite values.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ProblemFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ProblemFileError(f"{path}: is a directory, not a .npz problem file")
    if not stat.S_ISREG(os.stat(path).st_mode):
        # a FIFO would block the read forever, a device never ends
        raise ProblemFileError(f"{path}: not a regular file (a FIFO, socket or device); "
                               "save the problem to a .npz file first")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise ProblemFileError(f"{path}: cannot read ({exc.strerror})") from None
    if magic.startswith(b"\x93NUMPY"):
        raise ProblemFileError(f"{path}: a single .npy array, not a .npz archive of named "
                               "arrays")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ProblemFileError(f"{path}: not a readable .npz archive (no zip signature); "
                               "write problem files with lowrank_core.problem_io.save_problem "
                               "or numpy.savez")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ProblemFileError(f"{path}: not a readable .npz archive ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ProblemFileError(f"{path}: a single .npy array, not a .npz archive of named "
                               "arrays")
    try:
        return _read_archive(data, path)
    except ProblemFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        # a damaged member (bad CRC, truncated data) is only read when accessed
        raise ProblemFileError(f"{path}: damaged or unreadable archive member ({exc})") from None


def _read_archive(data, path) -> LoadedProblem:
    """The problem in the open archive ``data`` (errors name ``path``)."""
    with data:
        if "kind" not in data.files:
            raise ProblemFileError(f"{path}: missing key 'kind' (one of {', '.join(KINDS)})")
        kind_arr = data["kind"]
        if kind_arr.dtype.kind not in "US" or kind_arr.ndim != 0:
            raise ProblemFileError(f"{path}: key 'kind' must be a string, one of "
                                   f"{', '.join(KINDS)}")
        kind = str(kind_arr)
        if kind not in KINDS:
            raise ProblemFileError(f"{path}: unknown kind {kind!r}; choose one of "
                                   f"{', '.join(KINDS)}")
        try:
            y_dtype = _get(data, "y", path, ndim=1).dtype
            op = _build_operator(kind, data, path, y_dtype)
        except ProblemFileError:
            raise
        except (ValueError, TypeError, MemoryError) as exc:
            raise ProblemFileError(f"{path}: invalid {kind} operator: {exc}") from None
        y = _get(data, "y", path, ndim=1).astype(op.dtype, copy=False)
        if y.shape[0] != op.m:
            raise ProblemFileError(f"{path}: y has {y.shape[0]} entries but the operator "
                                   f"has m = {op.m} measurements")
        n1, n2 = op.shape
        truth = factors = None
        psd = False
        L = _get(data, "L", path, ndim=2, optional=True)
        M = _get(data, "M", path, ndim=2, optional=True)
        if L is not None:
            R = _get(data, "R", path, ndim=2, optional=True)
            if R is None:
                R, psd = L, True
            if L.shape[0] != n1 or R.shape[0] != n2 or L.shape[1] != R.shape[1]:
                raise ProblemFileError(
                    f"{path}: truth factors L {L.shape} and R {R.shape} do not fit the "
                    f"operator shape ({n1}, {n2}) (need (n1, r) and (n2, r))")
            factors = (L.astype(op.dtype, copy=False), R.astype(op.dtype, copy=False))
            truth = factors
        elif M is not None:
            if M.shape != (n1, n2):
                raise ProblemFileError(f"{path}: truth M has shape {M.shape}, the operator "
                                       f"({n1}, {n2})")
            truth = M.astype(op.dtype, copy=False)
    return LoadedProblem(kind=kind, operator=op, y=np.ascontiguousarray(y), truth=truth,
                         truth_factors=factors, psd=psd)


def save_problem(path, problem=None, *, operator=None, y=None, truth_factors=None) -> None:
    """Write a problem in the ``.npz`` format of :func:`load_problem`.

    Parameters
    ----------
    path : str or path-like
    problem : Problem, optional
        A :func:`lowrank_core.make_problem` result (operator, y and truth factors).
    operator, y, truth_factors : optional
        Instead of ``problem``: the operator, the measurements and (L, R) (or None).
    """
    if problem is not None:
        operator, y, truth_factors = problem.operator, problem.y, problem.truth_factors
    if operator is None or y is None:
        raise TypeError("save_problem needs a Problem or operator= and y=")
    if getattr(operator, "kind", None) not in OPERATORS:
        raise TypeError(f"cannot save a {type(operator).__name__} operator in the problem "
                        "file format (only the registered kinds: "
                        f"{', '.join(OPERATORS)})")
    arrays = dict(operator.to_arrays())
    arrays["kind"] = np.array(operator.kind)
    arrays["y"] = np.asarray(y)
    if truth_factors is not None:
        L, R = truth_factors
        arrays["L"] = np.asarray(L)
        if R is not L:
            arrays["R"] = np.asarray(R)
    np.savez(path, **arrays)
