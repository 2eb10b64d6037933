"""Per-atom state and gradient: what every energy term reads and returns.

``AtomState``: ``xyz`` (n,3) Å, ``b_iso`` (n,) Å², ``u_aniso`` (n,6) Å² (U11 U22 U33 U12 U13 U23,
used where ``is_aniso``), ``occ`` (n,). ``AtomGradient`` has the same shapes; a term leaves the
parts it has no say in at zero. For anisotropic atoms the B terms act on B_eq = 8π²/3·tr(U);
``refinement.parameters`` carries dE/dB_eq over to U.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .adp import b_equivalent


@dataclass
class AtomState:
    xyz: np.ndarray
    b_iso: np.ndarray
    u_aniso: np.ndarray
    is_aniso: np.ndarray
    occ: np.ndarray

    @classmethod
    def from_model(cls, model) -> "AtomState":
        return cls(model.xyz.copy(), model.b_iso.copy(), model.u_aniso.copy(),
                   model.is_aniso.copy(), model.occ.copy())

    @property
    def n_atoms(self) -> int:
        return len(self.xyz)

    def b_eq(self) -> np.ndarray:
        """Per-atom B (Å²): B_eq of anisotropic atoms, B_iso of the others."""
        return b_equivalent(self.b_iso, self.u_aniso, self.is_aniso)

    def copy(self) -> "AtomState":
        return AtomState(self.xyz.copy(), self.b_iso.copy(), self.u_aniso.copy(),
                         self.is_aniso.copy(), self.occ.copy())

    def subset(self, idx) -> "AtomState":
        """The state of the atoms ``idx`` (indices or a mask), as copies."""
        return AtomState(self.xyz[idx], self.b_iso[idx], self.u_aniso[idx], self.is_aniso[idx],
                         self.occ[idx])


class AtomGradient:
    """dE/d(per-atom parameter); all arrays allocated, zero where a term has no say."""

    __slots__ = ("xyz", "b_iso", "u_aniso", "occ")

    def __init__(self, n: int):
        self.xyz = np.zeros((n, 3))
        self.b_iso = np.zeros(n)
        self.u_aniso = np.zeros((n, 6))
        self.occ = np.zeros(n)

    def add(self, other: "AtomGradient", scale: float = 1.0) -> "AtomGradient":
        self.xyz += scale * other.xyz
        self.b_iso += scale * other.b_iso
        self.u_aniso += scale * other.u_aniso
        self.occ += scale * other.occ
        return self

    def expanded(self, n: int, index) -> "AtomGradient":
        """A gradient over ``n`` atoms holding this one's rows at ``index`` (zero elsewhere)."""
        g = AtomGradient(n)
        g.xyz[index] = self.xyz
        g.b_iso[index] = self.b_iso
        g.u_aniso[index] = self.u_aniso
        g.occ[index] = self.occ
        return g
