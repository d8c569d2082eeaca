"""Solver throughput, memory and convergence per method (lowrank_core.solve)."""


from .common import (
    CONVERGENCE_COND,
    CONVERGENCE_RANK,
    CONVERGENCE_SHAPES,
    DTYPES,
    KINDS,
    MAX_ITER,
    METHODS,
    SHAPES,
    SIZES,
    TOL,
    is_symmetric_run,
    make,
    require_solve,
)

#: iterations per time_iteration sample
ITERATIONS = 10


def _start(solve, prob, method, symmetric, rank, seed=0):
    """Spectral initial factors and the method's resolved options (step, damping)."""
    op, y = prob.operator, prob.y
    first = solve(op, y, rank, method=method, symmetric=symmetric, init="spectral",
                  max_iter=0, record=False, seed=seed)
    init = first.X if symmetric else (first.F, first.G)
    options = {"step": first.options["step"]}
    if method == "scaledgd-lambda":
        options["damping"] = first.options["damping"]
    return init, options


class Iteration:
    """Ten iterations of a method from a fixed spectral start (step and damping resolved
    beforehand, so no spectral norm is computed in the timed call), float64 and float32,
    one kernel thread. One solve call: validation and result assembly included."""

    params = [METHODS, KINDS, DTYPES]
    param_names = ["method", "operator", "dtype"]
    timeout = 180

    def setup(self, method, kind, dtype):
        self.solve = require_solve()
        self.symmetric = is_symmetric_run(kind, method)
        self.prob = make(kind, SHAPES[kind]["small"], rank=CONVERGENCE_RANK, dtype=dtype)
        self.init, self.options = _start(self.solve, self.prob, method, self.symmetric,
                                         CONVERGENCE_RANK)

    def time_iteration(self, method, kind, dtype):
        self.solve(self.prob.operator, self.prob.y, CONVERGENCE_RANK, method=method,
                   symmetric=self.symmetric, init=self.init, max_iter=ITERATIONS,
                   tol=1e-30, record=False, **self.options)


class SolveMemory:
    """Peak memory of drawing a problem and running 20 GD iterations (X X^T on the
    symmetric kind) from a small random start (subtract Construction.peakmem_make_problem
    for the solve's own share)."""

    params = [KINDS, SIZES]
    param_names = ["operator", "size"]
    timeout = 180

    def setup(self, kind, size):
        self.solve = require_solve()
        make(kind, (4, 4, 8), rank=1, dtype="float64")

    def peakmem_solve(self, kind, size):
        prob = make(kind, SHAPES[kind][size], rank=5, dtype="float64")
        self.solve(prob.operator, prob.y, 5, method="gd", symmetric=kind == "symmetric",
                   max_iter=20, record=False, seed=0)


class Convergence:
    """Iterations to a relative residual of 1e-6 (float64) / 1e-4 (float32) and the final
    relative error ||F G^T - M*||_F / ||M*||_F, per method and operator, on fixed-seed
    rank-3 problems (cond 5, k = 3, spectral start, default step). All runs happen once
    in setup_cache; NaN iterations = did not converge within 2000."""

    params = [METHODS, KINDS, DTYPES]
    param_names = ["method", "operator", "dtype"]
    timeout = 600

    def setup_cache(self):
        results = {}
        try:
            solve = require_solve()
        except NotImplementedError:
            return results
        for kind in KINDS:
            for dtype in DTYPES:
                try:
                    prob = make(kind, CONVERGENCE_SHAPES[kind], rank=CONVERGENCE_RANK,
                                dtype=dtype, seed=0, cond=CONVERGENCE_COND)
                except NotImplementedError:
                    continue
                for method in METHODS:
                    try:
                        sym = is_symmetric_run(kind, method)
                    except NotImplementedError:
                        continue
                    res = solve(prob.operator, prob.y, CONVERGENCE_RANK, method=method,
                                symmetric=sym, init="spectral", tol=TOL[dtype],
                                max_iter=MAX_ITER, record=False, truth=prob, seed=0)
                    n = float(res.n_iter) if res.status == "converged" else float("nan")
                    results[(method, kind, dtype)] = (n, float(res.error))
        return results

    def setup(self, results, method, kind, dtype):
        if (method, kind, dtype) not in results:
            raise NotImplementedError(f"{method} on {kind} is not available at this commit")

    def track_iterations_to_tol(self, results, method, kind, dtype):
        return results[(method, kind, dtype)][0]

    track_iterations_to_tol.unit = "iterations"

    def track_final_error(self, results, method, kind, dtype):
        return results[(method, kind, dtype)][1]

    track_final_error.unit = "relative error"
