"""TLS (translation, libration, screw) description of a rigid group's anisotropic displacements.

For an atom at r = x − origin (Å), with A(r) = [[0, z, −y], [−z, 0, x], [y, −x, 0]]
(Schomaker & Trueblood 1968; Winn, Isupov & Murshudov 2001):

    U_TLS(r) = T + A L Aᵀ + A S + Sᵀ Aᵀ

T in Å², L in rad², S in Å·rad (kickref's internal units; the PDB and mmCIF records, and
gemmi's ``TlsGroup``, hold L in deg² and S in Å·deg). U is linear in (T, L, S), so one group is
20 numbers p = [T11 T22 T33 T12 T13 T23, L11 L22 L33 L12 L13 L23, S11 S22 S12 S13 S21 S23 S31 S32]
with S33 = −S11 − S22 (the trace of S does not change U) and U = J(r) p with a per-atom
Jacobian J (6 × 20, the U order of :mod:`kickref.core.adp`).
"""
from __future__ import annotations

import numpy as np

from ..core.adp import mat_to_sym6, sym6_to_mat

N_TLS = 20
DEG = np.pi / 180.0
_S_INDEX = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]     # off-diagonal S entries, in p order


def _sym_basis() -> np.ndarray:
    """(6, 3, 3): the symmetric matrices of the six U components (1 at ij and ji)."""
    E = np.zeros((6, 3, 3))
    for k, (i, j) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]):
        E[k, i, j] = E[k, j, i] = 1.0
    return E


def _s_basis() -> np.ndarray:
    """(8, 3, 3): S11−S33, S22−S33 and the six off-diagonal entries."""
    B = np.zeros((8, 3, 3))
    B[0, 0, 0], B[0, 2, 2] = 1.0, -1.0
    B[1, 1, 1], B[1, 2, 2] = 1.0, -1.0
    for k, (i, j) in enumerate(_S_INDEX):
        B[2 + k, i, j] = 1.0
    return B


def libration_matrix(r) -> np.ndarray:
    """(n, 3, 3) A(r) for displacements r (n, 3) from the origin (Å)."""
    r = np.asarray(r, dtype=np.float64)
    A = np.zeros(r.shape[:-1] + (3, 3))
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    A[..., 0, 1], A[..., 0, 2] = z, -y
    A[..., 1, 0], A[..., 1, 2] = -z, x
    A[..., 2, 0], A[..., 2, 1] = y, -x
    return A


def tls_jacobian(xyz, origin) -> np.ndarray:
    """(n, 6, 20) dU/dp at atoms ``xyz`` (n, 3) Å for a group with ``origin`` (3,) Å."""
    A = libration_matrix(np.asarray(xyz, dtype=np.float64) - np.asarray(origin, dtype=np.float64))
    n = len(A)
    J = np.zeros((n, 6, N_TLS))
    J[:, np.arange(6), np.arange(6)] = 1.0                                   # T
    UL = np.einsum("nia,mab,njb->nmij", A, _sym_basis(), A)                 # A E Aᵀ
    J[:, :, 6:12] = np.moveaxis(mat_to_sym6(UL), 1, 2)
    AS = np.einsum("nia,mab->nmib", A, _s_basis())                          # A B
    J[:, :, 12:] = np.moveaxis(mat_to_sym6(AS + np.swapaxes(AS, -1, -2)), 1, 2)
    return J


def u_from_tls(p, xyz, origin) -> np.ndarray:
    """U_TLS (n, 6) Å² at atoms ``xyz`` for the 20 parameters ``p`` (internal units)."""
    return tls_jacobian(xyz, origin) @ np.asarray(p, dtype=np.float64)


def tls_tensors(p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T (3,3) Å², L (3,3) rad², S (3,3) Å·rad) from the 20 parameters."""
    p = np.asarray(p, dtype=np.float64)
    return sym6_to_mat(p[:6]), sym6_to_mat(p[6:12]), np.einsum("m,mij->ij", p[12:], _s_basis())


def tls_parameters(T, L, S) -> np.ndarray:
    """The 20 parameters from T (Å²), L (rad²) and S (Å·rad) 3×3 matrices (S's trace dropped)."""
    S = np.asarray(S, dtype=np.float64)
    S = S - np.trace(S) / 3.0 * np.eye(3)
    return np.concatenate([mat_to_sym6(T), mat_to_sym6(L), [S[0, 0], S[1, 1]],
                           [S[i, j] for i, j in _S_INDEX]])


def centre_of_mass(xyz, element) -> np.ndarray:
    """Mass-weighted centre (Å) of atoms ``xyz`` (n, 3) with element symbols ``element``."""
    import gemmi
    el = np.asarray(element)
    names, inv = np.unique(el, return_inverse=True)
    w = np.array([gemmi.Element(str(e)).weight for e in names])[inv]
    return (np.asarray(xyz) * w[:, None]).sum(axis=0) / w.sum()
