"""ADP conventions shared by every layer: the 8π² factor, B_eq and the six-component tensors.

Anisotropic U (Å², Cartesian) is stored as six numbers in the order U11 U22 U33 U12 U13 U23
(as PDB ANISOU / 10⁴); B = 8π²·U, and B_eq = 8π²/3·tr(U).
"""
from __future__ import annotations

import numpy as np

EIGHT_PI2 = 8.0 * np.pi ** 2


def b_equivalent(b_iso, u_aniso, is_aniso) -> np.ndarray:
    """Per-atom B (Å²): B_eq = 8π²/3·tr(U) where ``is_aniso``, ``b_iso`` elsewhere (a new array)."""
    b = np.array(b_iso, dtype=np.float64)
    m = np.asarray(is_aniso, bool)
    b[m] = EIGHT_PI2 / 3.0 * np.asarray(u_aniso)[m, :3].sum(axis=1)
    return b


def sym6_to_mat(u) -> np.ndarray:
    """(…, 6) U11 U22 U33 U12 U13 U23 → symmetric (…, 3, 3)."""
    u = np.asarray(u, dtype=np.float64)
    m = np.empty(u.shape[:-1] + (3, 3))
    m[..., 0, 0] = u[..., 0]
    m[..., 1, 1] = u[..., 1]
    m[..., 2, 2] = u[..., 2]
    m[..., 0, 1] = m[..., 1, 0] = u[..., 3]
    m[..., 0, 2] = m[..., 2, 0] = u[..., 4]
    m[..., 1, 2] = m[..., 2, 1] = u[..., 5]
    return m


def min_eigenvalue(u) -> np.ndarray:
    """Smallest eigenvalue (Å²) of each tensor (n, 6) U11 U22 U33 U12 U13 U23."""
    u = np.asarray(u, dtype=np.float64)
    if len(u) == 0:
        return np.zeros(0)
    return np.linalg.eigvalsh(sym6_to_mat(u))[:, 0]


def mat_to_sym6(m) -> np.ndarray:
    """Symmetric (…, 3, 3) → (…, 6) U11 U22 U33 U12 U13 U23."""
    m = np.asarray(m, dtype=np.float64)
    return np.stack([m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], m[..., 0, 1], m[..., 0, 2],
                     m[..., 1, 2]], axis=-1)
