"""Per-iteration product and construction memory of every operator kind."""

import numpy as np

from .common import DTYPES, KINDS, SHAPES, SIZES, THREADS, K, factors, make


class ResidualGradient:
    """op.residual_gradient(F, G, y): z = A(F G^T) - y, A^T(z) G, A^T(z)^T F (k = 10),
    into preallocated outputs: the one product every method needs per iteration."""

    params = [KINDS, DTYPES, SIZES, THREADS]
    param_names = ["operator", "dtype", "size", "n_threads"]
    timeout = 180

    def setup(self, kind, dtype, size, n_threads):
        self.prob = make(kind, SHAPES[kind][size], rank=5, dtype=dtype, n_threads=n_threads)
        op = self.prob.operator
        self.F, self.G = factors(self.prob, K, same=kind == "symmetric")
        self.out = (np.empty(op.m, op.dtype), np.empty((op.shape[0], K), op.dtype),
                    np.empty((op.shape[1], K), op.dtype))

    def time_residual_gradient(self, kind, dtype, size, n_threads):
        self.prob.operator.residual_gradient(self.F, self.G, self.prob.y, out=self.out)


class Construction:
    """Peak memory of drawing a problem (truth, operator, measurements), float64."""

    params = [KINDS, SIZES]
    param_names = ["operator", "size"]
    timeout = 180

    def setup(self, kind, size):
        # fail fast (not applicable) on commits without this operator kind
        make(kind, (4, 4, 8), rank=1, dtype="float64")

    def peakmem_make_problem(self, kind, size):
        make(kind, SHAPES[kind][size], rank=5, dtype="float64")
