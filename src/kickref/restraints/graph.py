"""The bond graph: sparse adjacency from bonded atom pairs, and atom pairs as integer keys.

A pair (i, j) is keyed ``min(i, j)·n + max(i, j)`` (n atoms). Powers of the adjacency matrix
give the pairs joined by a path of that many bonds (1-2, 1-3, 1-4 neighbours).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def adjacency(edges, n: int) -> sp.csr_matrix:
    """Symmetric (n, n) 0/1 int32 CSR matrix with an entry for each pair in ``edges`` (m, 2)
    (duplicates and either order allowed)."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    e = np.concatenate([e, e[:, ::-1]])
    A = sp.csr_matrix((np.ones(len(e), np.int32), (e[:, 0], e[:, 1])), shape=(n, n))
    A.data[:] = 1
    return A


def upper_keys(M, n: int) -> np.ndarray:
    """Keys i·n + j (int64) of the nonzero entries of sparse ``M`` with i < j (unsorted)."""
    M = sp.triu(M, k=1).tocoo()
    return M.row.astype(np.int64) * n + M.col.astype(np.int64)


def pair_keys(i, j, n: int) -> np.ndarray:
    """Keys min·n + max of the pairs (i[k], j[k])."""
    return np.minimum(i, j) * n + np.maximum(i, j)


def neighbour_keys(edges, n: int, order: int = 3) -> list:
    """[keys of A, A², …, A^order] for the bond graph of ``edges``: pairs joined by a path of
    exactly 1, 2, … bonds (a pair may appear in several; each array sorted, unique)."""
    A = adjacency(edges, n)
    out = [np.unique(upper_keys(A, n))]
    P = A
    for _ in range(order - 1):
        P = P @ A
        out.append(np.unique(upper_keys(P, n)))
    return out
