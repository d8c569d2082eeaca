"""Step rules of the factored solvers, one small module per family.

``METHODS`` maps the ``method=`` names of :func:`lowrank_core.solve` to their step rules.
A new method is a new :class:`~lowrank_core.methods._base.StepRule` subclass registered
here; it never touches the operators or the driver.
"""

from ._base import Preconditioner, SolverState, StepFailure, StepRule
from .agn import AlternatingGaussNewton
from .als import AlternatingLeastSquares
from .gd import GradientDescent, OneStepGD
from .gnmr import GNMR
from .preconditioned import PrecGD, ScaledGD, ScaledGDLambda
from .softimpute_als import SoftImputeALS

METHODS: dict[str, type[StepRule]] = {
    rule.name: rule
    for rule in (GradientDescent, OneStepGD, ScaledGD, ScaledGDLambda, PrecGD,
                 AlternatingGaussNewton, GNMR, AlternatingLeastSquares, SoftImputeALS)
}

__all__ = ["METHODS", "Preconditioner", "SolverState", "StepFailure", "StepRule",
           "GradientDescent", "OneStepGD", "ScaledGD", "ScaledGDLambda", "PrecGD",
           "AlternatingGaussNewton", "GNMR", "AlternatingLeastSquares", "SoftImputeALS"]
