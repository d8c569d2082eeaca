"""A sensing problem whose operator lives on Dask workers (here: 2 local worker processes).

For a running cluster replace the LocalCluster by Client("tcp://scheduler-host:8786").
Needs: pip install "lowrank-core[dask]".
"""

import numpy as np
from distributed import Client, LocalCluster

import lowrank_core as lc
from lowrank_core.distributed import ShardedOperator, make_sharded_problem

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # Gaussian shards generated on the workers; y = A(M*) measured through the shards.
        problem = make_sharded_problem(60, rank=3, m=6000, n_shards=2, client=client, seed=0)
        op = problem.operator
        print(op)
        # The solvers run unchanged; every iteration's operator work happens on the shards.
        result = lc.solve(op, problem.y, 3, method="gd", init="spectral", max_iter=100)
        print(f"{result.status} after {result.n_iter} iterations, relative error "
              f"{problem.relative_error(*result.factors):.3e}")
        # An existing operator split by rows gives the same numbers as the original.
        local = lc.DenseOperator.gaussian(500, 20, 15, seed=0)
        with ShardedOperator.from_operator(local, n_shards=2, client=client) as sharded:
            y = np.ones(500)
            A, B = np.ones((20, 2)), np.ones((15, 2))
            print("sharded == single process:",
                  np.allclose(sharded.residual_gradient(A, B, y)[2],
                              local.residual_gradient(A, B, y)[2], rtol=1e-12))
        op.close()
