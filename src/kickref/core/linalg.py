"""Products that give the same bits whatever the BLAS thread count.

numpy's ``@`` hands vector and matrix–vector products to BLAS. A threaded OpenBLAS splits the
rows of a matrix–vector product (or the long sum of a dot or vector–matrix product) between its
threads, and the rows at a split go through another kernel path, so the last bits depend on the
thread count (measured with OpenBLAS on 1 vs 2 threads: (14 782, 40) @ (40,) differs in 2 rows;
(297 001,) @ (297 001, 3) and dot products of > 10⁴ elements in every entry). A refinement run
alone (BLAS on every core) and as a Dask task (the nanny pins BLAS to one thread) must give the
same model, so sums over atoms or reflections use these: numpy's pairwise reduction along a
contiguous axis, no BLAS, no threads.
"""
from __future__ import annotations

import numpy as np


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """a·b of two 1-D float arrays."""
    return float(np.add.reduce(a * b))


def matvec(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """M v for M (n, m), v (m,): (n,), each row summed alone."""
    return np.add.reduce(np.asarray(M) * np.asarray(v)[None, :], axis=1)


def vecmat(v: np.ndarray, M: np.ndarray) -> np.ndarray:
    """vᵀ M for v (n,), M (n, m): (m,), each column summed pairwise over n."""
    return np.add.reduce(np.ascontiguousarray(np.asarray(M).T) * np.asarray(v)[None, :], axis=1)
