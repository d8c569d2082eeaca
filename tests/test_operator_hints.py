"""Type hints of the public operator constructors (issue 17, item 5): every parameter and
the return are annotated, every annotation resolves at run time, and the shared arguments
(seed, n_threads, dtype) carry the same hints as ``solve`` and ``make_problem``."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest
import scipy.sparse as sp

import lowrank_core as lc
from lowrank_core.operators import (
    OPERATORS,
    DenseOperator,
    EntryOperator,
    MeasurementOperator,
    RankOneOperator,
    SparseOperator,
    SymmetricDenseOperator,
    sample_entries,
)

CONSTRUCTORS = [
    MeasurementOperator.__init__,
    DenseOperator.__init__, DenseOperator.gaussian,
    SymmetricDenseOperator.__init__, SymmetricDenseOperator.gaussian,
    SymmetricDenseOperator.from_general, SymmetricDenseOperator.from_packed,
    SparseOperator.__init__,
    EntryOperator.__init__, EntryOperator.from_sparse, EntryOperator.from_dense_with_nan,
    EntryOperator.from_entries,
    RankOneOperator.__init__, RankOneOperator.gaussian,
    sample_entries, lc.make_problem,
] + [cls.from_arrays for cls in OPERATORS.values()] \
  + [cls.random_ensemble for cls in OPERATORS.values()]


def _name(func):
    return getattr(func, "__qualname__", repr(func))


@pytest.mark.parametrize("func", CONSTRUCTORS, ids=_name)
def test_every_parameter_and_the_return_are_annotated(func):
    sig = inspect.signature(func)
    missing = [n for n, p in sig.parameters.items()
               if n not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    assert not missing, f"{_name(func)}: unannotated {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, _name(func)
    hints = typing.get_type_hints(func)  # every annotation resolves at run time
    if func.__name__ == "__init__":
        assert hints["return"] is type(None)


def test_shared_arguments_have_the_hints_of_solve_and_make_problem():
    solve = typing.get_type_hints(lc.solve)
    make = typing.get_type_hints(lc.make_problem)
    seeded = [DenseOperator.gaussian, SymmetricDenseOperator.gaussian, RankOneOperator.gaussian]
    for func in CONSTRUCTORS:
        hints = typing.get_type_hints(func)
        if "n_threads" in hints:
            assert hints["n_threads"] == solve["n_threads"], _name(func)
        if func in seeded:
            assert hints["seed"] == solve["seed"] == make["seed"], _name(func)
            assert hints["dtype"] == make["dtype"], _name(func)


def test_entry_layout_literal_lists_exactly_the_accepted_layouts():
    layouts = typing.get_args(typing.get_type_hints(EntryOperator.__init__)["layout"])
    assert set(layouts) == {"auto", "rows", "blocked"}
    rows, cols = np.array([0, 1, 2]), np.array([1, 0, 2])
    y = np.array([1.0, 2.0, 3.0])
    F = np.arange(6.0).reshape(3, 2)
    for layout in layouts:  # each hinted value is accepted and measures the same entries
        op = EntryOperator(rows, cols, (3, 3), layout=layout)
        np.testing.assert_array_equal(op.forward_factored(F, F), (F @ F.T)[rows, cols])
        assert op.residual_gradient(F, F, y)[0] == pytest.approx(
            0.5 * np.sum(((F @ F.T)[rows, cols] - y) ** 2))
    with pytest.raises(ValueError, match="layout must be"):
        EntryOperator(rows, cols, (3, 3), layout="columns")


def test_hinted_input_forms_are_accepted():
    """The forms the hints name: ArrayLike (nested lists), scipy.sparse matrices and
    arrays, COO triplet tuples; results agree with numpy."""
    M = np.array([[1.0, 2.0], [3.0, 4.0]])
    A = [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]]  # nested lists
    np.testing.assert_allclose(DenseOperator(A).forward(M), [1.0, 5.0])
    np.testing.assert_allclose(SymmetricDenseOperator(A).forward(M), [1.0, 5.0])
    rows = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]
    for A_sp in (sp.csr_matrix(rows), sp.csr_array(rows)):
        np.testing.assert_allclose(SparseOperator(A_sp, (2, 2)).forward(M), [1.0, 5.0])
    triplets = ([0, 1, 1], [0, 0, 1], [0, 1, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(SparseOperator(triplets, (2, 2)).forward(M), [1.0, 5.0])
    for X in (sp.coo_matrix(M), sp.coo_array(M)):
        op, y = EntryOperator.from_sparse(X)
        np.testing.assert_array_equal(y, M.ravel())
    op, y = EntryOperator.from_dense_with_nan([[1.0, np.nan], [3.0, 4.0]])
    np.testing.assert_array_equal(y, [1.0, 3.0, 4.0])
    a = [[1.0, 2.0], [0.0, 1.0]]
    np.testing.assert_allclose(RankOneOperator(a).forward(M),
                               np.einsum("ij,jk,ik->i", np.array(a), M, np.array(a)))
