"""The operator registry: kind name -> class.

Everything that enumerates operator kinds reads :data:`OPERATORS`: the problem file format
(:mod:`lowrank_core.problem_io`, by ``kind``), :func:`lowrank_core.make_problem` (by
``ensemble``), sharding (through :meth:`MeasurementOperator.take_rows`), the command line
and the benchmarks. A new kind is its kernel, one line in ``src/meson.build``, its module
in this package and one line here.
"""

from __future__ import annotations

from ._base import MeasurementOperator
from .dense import DenseOperator, SymmetricDenseOperator
from .entries import EntryOperator
from .rankone import RankOneOperator
from .sparse import SparseOperator

__all__ = ["ENSEMBLES", "OPERATORS"]

#: kind (the problem file's ``kind``) -> operator class
OPERATORS: dict[str, type[MeasurementOperator]] = {
    cls.kind: cls
    for cls in (DenseOperator, SymmetricDenseOperator, SparseOperator, EntryOperator,
                RankOneOperator)
}

#: ``make_problem(operator=...)`` name -> the class whose ``random_ensemble`` builds it
ENSEMBLES: dict[str, type[MeasurementOperator]] = {
    cls.ensemble: cls for cls in OPERATORS.values() if cls.ensemble is not None
}
