"""Shard recipes: pure functions that build one shard on a worker from small arguments.

Dask runs them in the actor-creation task; recovery runs them again after a worker loss,
so they must be deterministic. Every recipe builds its shard through the operator
classes' own constructors and ensembles (no operator code is repeated here).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..operators import DenseOperator, MeasurementOperator, SymmetricDenseOperator


def _gaussian_shard(m_total: int, m_shard: int, n1: int, n2: int, symmetric: bool,
                    dtype: str, entropy: int, index: int) -> MeasurementOperator:
    """Rows of shard ``index`` of a Gaussian operator with m_total measurements.

    The generator is ``SeedSequence(entropy, spawn_key=(index,))``, i.e. child ``index`` of
    ``SeedSequence(entropy).spawn(n_shards)``; the rows are drawn by the ensemble's own
    builder, :meth:`DenseOperator.gaussian` (A_i entries i.i.d. N(0, 1/m_total)) or
    :meth:`SymmetricDenseOperator.gaussian` (packed, A_i = (G_i + G_i^T) / (2
    sqrt(m_total))), with ``m_total`` normalizing the m_shard rows as one block of the
    whole ensemble.
    """
    dt = np.dtype(dtype)
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
    if symmetric:
        return SymmetricDenseOperator.gaussian(m_shard, n1, dtype=dt, seed=rng,
                                               m_total=m_total)
    return DenseOperator.gaussian(m_shard, n1, n2, dtype=dt, seed=rng, m_total=m_total)


def _npy_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype recorded in a .npy header (reads only the header)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(shape), np.dtype(dtype)


def _npy_shard_nbytes(path: str, kind: str, mmap_mode) -> int:
    """Bytes a .npy shard will occupy once loaded (rows, plus the packed copy if any)."""
    shape, dtype = _npy_header(path)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if mmap_mode is not None:
        nbytes = 0  # pages come from the page cache, not the worker's heap
    if kind == "symmetric" and len(shape) == 3:
        nbytes += shape[0] * (shape[1] * (shape[1] + 1) // 2) * dtype.itemsize
    return nbytes


def _npy_shard(path: str, kind: str, shape, mmap_mode) -> MeasurementOperator:
    """Load one shard's rows from a .npy file on the worker.

    kind "dense": an (m_s, n1, n2) array, or (m_s, n1*n2) with ``shape=(n1, n2)``.
    kind "symmetric": an (m_s, n, n) array of symmetric A_i, or packed upper triangles
    (m_s, n(n+1)/2) with ``shape=(n, n)``.
    """
    A = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    if kind == "dense":
        return DenseOperator(A, shape=shape)
    if A.ndim == 2:
        if shape is None:
            raise ValueError(f"{path}: packed symmetric rows (2-D) need shape=(n, n)")
        return SymmetricDenseOperator.from_packed(A, shape[0])
    return SymmetricDenseOperator(A)


def _spectral_is_average(op: MeasurementOperator) -> bool:
    """True when ``op``'s class overrides ``spectral_operator`` (a normalized estimate of M,
    an average over its rows such as A^T(y) / p), False when it is the plain A^T(y) (a
    sum over rows). Decides how shard estimates combine."""
    base = getattr(MeasurementOperator, "spectral_operator", None)
    own = getattr(type(op), "spectral_operator", None)
    return own is not None and own is not base


def _given_operator(op: MeasurementOperator) -> MeasurementOperator:
    """Recipe of a shard shipped from the client (a ``take_rows`` block): the operator
    itself."""
    return op


def _call_builder(builder: Callable[[], MeasurementOperator]) -> MeasurementOperator:
    """Recipe of a user shard: call the (picklable, pure) zero-argument builder."""
    return builder()


def planted_factors(n1: int, n2: int, rank: int, entropy: int) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth M* = U V^T of :func:`_completion_shard`: U (n1, rank) and V (n2,
    rank) with i.i.d. N(0, 1/n1) and N(0, 1/n2) entries (float64), drawn from
    ``SeedSequence(entropy)`` (the shards draw from its children, spawn keys (s,)), so
    U^T U and V^T V are near the identity and the singular values of M* near 1.
    O((n1 + n2) rank) time and memory; every shard draws the same factors."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    U = rng.standard_normal((n1, rank)) / np.sqrt(n1)
    V = rng.standard_normal((n2, rank)) / np.sqrt(n2)
    return U, V


def completion_entries(n1: int, n2: int, rank: int, m_total: int, n_shards: int, noise: float,
                       dtype: str, entropy: int, index: int,
                       chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The observations of shard ``index`` of a planted completion problem.

    Shard s owns the matrix rows [s n1 / S, (s + 1) n1 / S) and m_s = balanced share of
    m_total observations; their rows are uniform over its row block and their columns
    uniform over [0, n2) (a uniform sample with replacement of the whole matrix, split by
    row block; any order, as interaction logs arrive), drawn from
    ``SeedSequence(entropy, spawn_key=(s,))``. Values y_i = scale (<U_{r_i}, V_{c_i}> +
    noise e_i), e_i ~ N(0, 1), scale = 1/sqrt(p), p = m_total/(n1 n2) (the scaling of
    :meth:`EntryOperator.random_ensemble`: E||A(M)||^2 = ||M||_F^2), computed in chunks
    of ``chunk`` observations (float64, rounded to ``dtype``).

    Returns rows (int32 or int64), cols, values (dtype) and scale. Memory: 12 bytes per
    float32 observation plus (n1 + n2) rank float64 of factors.
    """
    ra, rb = (index * n1) // n_shards, ((index + 1) * n1) // n_shards
    ma, mb = (index * m_total) // n_shards, ((index + 1) * m_total) // n_shards
    m_s = mb - ma
    itype = np.int32 if max(n1, n2) < 2**31 - 1 else np.int64
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
    rows = rng.integers(ra, rb, size=m_s, dtype=itype)
    cols = rng.integers(0, n2, size=m_s, dtype=itype)
    noise_rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index, 1)))
    U, V = planted_factors(n1, n2, rank, entropy)
    scale = 1.0 / np.sqrt(m_total / (n1 * n2))
    values = np.empty(m_s, np.dtype(dtype))
    for a in range(0, m_s, chunk):
        b = min(a + chunk, m_s)
        v = np.einsum("ij,ij->i", U[rows[a:b]], V[cols[a:b]])
        if noise:
            v += noise * noise_rng.standard_normal(b - a)
        values[a:b] = scale * v
    return rows, cols, values, scale


def _completion_shard(n1: int, n2: int, rank: int, m_total: int, n_shards: int, noise: float,
                      dtype: str, layout: str, entropy: int, index: int):
    """Shard ``index`` of a planted completion problem and its measurements, built on the
    worker: the observations of :func:`completion_entries` through
    :meth:`EntryOperator.from_entries` (``layout``, tiles chosen for width ``rank``).
    Returns (operator, y): y is the shard's measurements in the operator's order, kept
    on the worker."""
    from ..operators import EntryOperator

    rows, cols, values, scale = completion_entries(n1, n2, rank, m_total, n_shards, noise,
                                                   dtype, entropy, index)
    op, y = EntryOperator.from_entries(rows, cols, values, (n1, n2), scale=scale,
                                       layout=layout, k=rank)
    return op, y
