"""Quick start: a PSD sensing problem, its operator, and one fused residual-gradient call."""

import numpy as np

import lowrank_core as lc

problem = lc.make_problem(100, rank=5, m=2500, psd=True, seed=0)
op = problem.operator
print(op)
X = np.random.default_rng(1).standard_normal((100, 10)) * 0.1
loss, z, SG, StF = op.residual_gradient(X, None, problem.y)
print(f"loss = {loss:.6f}, ||grad|| = {np.linalg.norm(SG):.6f}")
