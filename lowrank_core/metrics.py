"""Diagnostics of factored iterates computed from the factors alone.

All functions cost O((n1 + n2) k^2) and never form an n1 x n2 matrix. Distances are
computed through thin QR factorizations, which keeps them accurate down to rounding
(about 1e-16 relative) even when the two products nearly cancel; the textbook expansion
||FG^T||^2 - 2<FG^T, LR^T> + ||LR^T||^2 would lose half the digits.
Computation is in float64 whatever the factors' dtype (a float32 iterate of a diverged
run, with entries near 1e20, would overflow float32 in the squares); the O((n1 + n2) k)
conversion copies the factors only when they are not float64 already.
"""

from __future__ import annotations

import numpy as np

__all__ = ["factored_norm", "factored_distance", "singular_values", "imbalance"]


def _f64(A: np.ndarray) -> np.ndarray:
    return np.asarray(A).astype(np.float64, copy=False)


def _r_factor(A: np.ndarray) -> np.ndarray:
    if A.shape[0] >= A.shape[1]:
        return np.linalg.qr(A, mode="r")
    return A  # short-and-wide: the matrix itself is already small


def factored_norm(F: np.ndarray, G: np.ndarray) -> float:
    """||F G^T||_F. F (n1, k), G (n2, k)."""
    return float(np.linalg.norm(_r_factor(_f64(F)) @ _r_factor(_f64(G)).T))


def factored_distance(F: np.ndarray, G: np.ndarray, L: np.ndarray, R: np.ndarray) -> float:
    """||F G^T - L R^T||_F via QR of [F, -L] and [G, R]: O((n1 + n2)(k + r)^2)."""
    A = np.hstack([_f64(F), -_f64(L)])
    B = np.hstack([_f64(G), _f64(R)])
    return float(np.linalg.norm(_r_factor(A) @ _r_factor(B).T))


def singular_values(F: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Singular values of F G^T (descending, min(k, n1, n2) of them), in O((n1+n2)k^2)."""
    return np.linalg.svd(_r_factor(_f64(F)) @ _r_factor(_f64(G)).T, compute_uv=False)


def imbalance(F: np.ndarray, G: np.ndarray) -> float:
    """||F^T F - G^T G||_F, the quantity gradient flow conserves."""
    F, G = _f64(F), _f64(G)
    return float(np.linalg.norm(F.T @ F - G.T @ G))
