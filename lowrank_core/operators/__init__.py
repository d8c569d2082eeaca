"""Linear measurement operators A: R^{n1 x n2} -> R^m, A(M)_i = <A_i, M>.

Every operator offers the same interface, which is all the solvers use
(:class:`MeasurementOperator`, in ``_base``):

* ``shape`` (n1, n2), ``m``, ``dtype``, ``nbytes``, ``symmetric`` (all A_i symmetric),
  ``n_threads`` (OpenMP threads of its kernels), ``kind`` (registry name);
* ``forward(M)`` -> A(M), shape (m,); ``forward_factored(F, G)`` -> A(F G^T);
* ``adjoint(z)`` -> A^T(z) = sum_i z_i A_i, shape (n1, n2);
* ``residual_gradient(F, G, y)`` -> ``(loss, z, A^T(z) G, A^T(z)^T F)`` with
  z = A(F G^T) - y and loss = 0.5 ||z||^2: the one fused call a factored gradient method
  needs per iteration;
* ``adjoint_products(w, F, G)`` -> ``(A^T(w) G, A^T(w)^T F)`` for a given w;
* ``adjoint_operator(z)`` -> A^T(z) as a :class:`scipy.sparse.linalg.LinearOperator`;
* ``spectral_operator(y)`` -> a LinearOperator estimating M from y = A(M), whose top-k
  SVD (``svds``) is the spectral initialization (A^T(y) unless the operator is biased);
* ``take_rows(start, stop)``, ``to_arrays()`` / ``from_arrays(arrays)`` and
  ``random_ensemble(...)``: row shards, the problem file format and make_problem.

One module per kind:

========================  ==========  ==================================  ==================
class                     module      A(M)_i                              residual_gradient
========================  ==========  ==================================  ==================
:class:`DenseOperator`    dense       <A_i, M>, A_i stored (m, n1 n2)     4 m n1 n2 flops
:class:`SymmetricDense-   dense       same, A_i symmetric, packed         about half
Operator`
:class:`SparseOperator`   sparse      sum_{(r, c)} (A_i)_{rc} M_{rc}       O(nnz k)
:class:`EntryOperator`    entries     scale * M[rows_i, cols_i]           O(m k)
:class:`RankOneOperator`  rankone     a_i^T M b_i  (or a_i^T M a_i)       O(m (n1 + n2) k)
========================  ==========  ==================================  ==================

:data:`OPERATORS` maps each ``kind`` to its class; :data:`ENSEMBLES` maps the
``make_problem(operator=...)`` names to the class whose ``random_ensemble`` draws it.
"""

from ._base import MeasurementOperator, available_memory
from .dense import DenseOperator, SymmetricDenseOperator
from .entries import EntryOperator, sample_entries
from .rankone import RankOneOperator
from .sparse import SparseOperator

# --------------------------------------------------------------------- the registry
# Everything that enumerates operator kinds reads OPERATORS: the problem file format
# (lowrank_core.problem_io, by ``kind``), make_problem (ENSEMBLES, by ``ensemble``), sharding
# (through ``take_rows``), the command line and the benchmarks. A new kind is its kernel,
# one line in src/meson.build, its module in this package and its line here.

#: kind (the problem file's ``kind``) -> operator class
OPERATORS: dict[str, type[MeasurementOperator]] = {
    cls.kind: cls
    for cls in (
        DenseOperator,
        SymmetricDenseOperator,
        SparseOperator,
        EntryOperator,
        RankOneOperator,
    )
}

#: ``make_problem(operator=...)`` name -> the class whose ``random_ensemble`` builds it
ENSEMBLES: dict[str, type[MeasurementOperator]] = {
    cls.ensemble: cls for cls in OPERATORS.values() if cls.ensemble is not None
}

__all__ = [
    "ENSEMBLES",
    "OPERATORS",
    "DenseOperator",
    "EntryOperator",
    "MeasurementOperator",
    "RankOneOperator",
    "SparseOperator",
    "SymmetricDenseOperator",
    "available_memory",
    "sample_entries",
]
