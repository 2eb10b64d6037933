"""Atoms on special positions: site-symmetry groups, their projectors and the on-element position.

An atom at Cartesian x (Å) is on a symmetry element when some space-group operations, with a
lattice translation, map it within ``cutoff`` (Å, default 0.5) of itself. Those operations and
the identity form its site-symmetry group G; |G| is the site multiplicity (2 on a 2-fold axis;
deposited files give such atoms occupancy 1/|G|). In Cartesian coordinates each g ∈ G is
x ↦ R_g x + t_g with R_g orthogonal, and

- P = (1/|G|) Σ R_g is the orthogonal projector onto the directions the atom may move along
  (symmetric and idempotent for a group); a gradient g is kept on the element as P g;
- x̄ = (1/|G|) Σ (R_g x + t_g) = P x + c is the exact on-element position (the average of the
  atom's images next to it), the affine projection of x onto the element;
- refinement constrains the atom's moves to the element: from its start x₀ it moves to
  x₀ + P·δ, i.e. P x + c + r with r = x₀ − (P x₀ + c) the start's offset from the element (a
  deposited atom may sit a little off it: rounding, or two half-atoms modelling disorder about
  the axis), which is kept, so the distance to its own images does not change;
- a Cartesian U (Å², U11 U22 U33 U12 U13 U23) obeys the site symmetry when
  U = (1/|G|) Σ R_g U R_gᵀ; that average is a linear map on the six components, M (6×6).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.adp import mat_to_sym6, sym6_to_mat

SPECIAL_CUTOFF = 0.5   # Å: an atom closer than this to its own image is on a symmetry element


@dataclass
class SiteSymmetry:
    """Special-position atoms of one model. ``atoms`` (k,) indices; ``order`` (n_atoms,) site
    multiplicity |G| (1 for general positions); ``projector`` (k, 3, 3) P; ``offset`` (k, 3) c
    (Å) with on-element position P x + c; ``u_projector`` (k, 6, 6) M acting on U6 vectors;
    ``residual`` (k, 3) r (Å): the start position's offset from its element, kept by :meth:`place`."""
    atoms: np.ndarray
    order: np.ndarray
    projector: np.ndarray
    offset: np.ndarray
    u_projector: np.ndarray
    residual: np.ndarray

    def __len__(self) -> int:
        return len(self.atoms)

    def subset(self, atoms) -> "SiteSymmetry":
        """The special positions among ``atoms`` (indices), in ``self.atoms`` order."""
        keep = np.isin(self.atoms, atoms)
        return SiteSymmetry(self.atoms[keep], self.order, self.projector[keep], self.offset[keep],
                            self.u_projector[keep], self.residual[keep])

    def on_element(self, xyz: np.ndarray) -> np.ndarray:
        """(k, 3) exact on-element positions P x + c of the special atoms of ``xyz`` (n, 3)."""
        return np.einsum("kab,kb->ka", self.projector, xyz[self.atoms]) + self.offset

    def place(self, xyz: np.ndarray) -> np.ndarray:
        """Undo any move of the special atoms of ``xyz`` (n, 3, in place) off their elements:
        P x + c + r, the start's offset r from the element kept; returns each shift (k,) in Å."""
        x = xyz[self.atoms]
        new = self.on_element(xyz) + self.residual
        xyz[self.atoms] = new
        return np.linalg.norm(new - x, axis=1)

    def project_vectors(self, v: np.ndarray) -> np.ndarray:
        """Pᵀ v for (k, 3) per-atom vectors (gradients or shifts), a new array."""
        return np.einsum("kba,kb->ka", self.projector, v)

    def project_u(self, u6: np.ndarray) -> np.ndarray:
        """M U for (k, 6) tensors: the site-symmetric average of each U (a new array)."""
        return np.einsum("kab,kb->ka", self.u_projector, u6)

    def project_u_gradient(self, g6: np.ndarray) -> np.ndarray:
        """Mᵀ g for (k, 6) gradients with respect to the six components (chain rule of project_u)."""
        return np.einsum("kba,kb->ka", self.u_projector, g6)


def _u_average_matrix(rots: np.ndarray) -> np.ndarray:
    """6×6 matrix of U6 ↦ mean over R in ``rots`` (m, 3, 3) of R U Rᵀ."""
    basis = np.eye(6)
    mats = sym6_to_mat(basis)                                  # (6, 3, 3)
    avg = np.einsum("gab,jbc,gdc->jad", rots, mats, rots) / len(rots)
    return mat_to_sym6(avg).T                                  # column j = image of basis j


def find_site_symmetry(xyz, cell, spacegroup, cutoff: float = SPECIAL_CUTOFF) -> SiteSymmetry:
    """Site-symmetry groups of the atoms at ``xyz`` (n, 3, Å) in ``cell`` (gemmi.UnitCell) and
    ``spacegroup`` (gemmi.SpaceGroup; None or P1: no special positions)."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    n = len(xyz)
    ops = list(spacegroup.operations()) if spacegroup is not None else []
    orth = np.array(cell.orth.mat.tolist(), dtype=np.float64)
    frac = np.array(cell.frac.mat.tolist(), dtype=np.float64)
    rot = np.array([np.array(op.rot, dtype=np.float64) / op.DEN for op in ops]).reshape(-1, 3, 3)
    tran = np.array([np.array(op.tran, dtype=np.float64) / op.DEN for op in ops]).reshape(-1, 3)
    f = xyz @ frac.T
    # images of every atom under every operation, brought next to the atom (nearest lattice shift)
    img = np.einsum("sab,nb->nsa", rot, f) + tran[None]        # (n, s, 3) fractional
    shift = np.round(f[:, None, :] - img)
    img += shift
    dist = np.linalg.norm((img - f[:, None, :]) @ orth.T, axis=2)
    ident = np.all(np.isclose(rot, np.eye(3)), axis=(1, 2)) & np.all(np.isclose(tran, 0.0), axis=1)
    close = (dist < cutoff) & ~ident[None, :]
    order = np.ones(n, np.int64) + close.sum(axis=1)
    atoms = np.flatnonzero(order > 1)
    cart_rot = np.einsum("ab,sbc,cd->sad", orth, rot, frac)
    proj, off, uproj = [], [], []
    for a in atoms:
        members = close[a] | ident                             # the group, identity included
        R = cart_rot[members]
        t = (tran[members] + shift[a, members]) @ orth.T     # (m, 3) Cartesian translations
        proj.append(R.mean(axis=0))
        off.append(t.mean(axis=0))
        uproj.append(_u_average_matrix(R))
    site = SiteSymmetry(atoms, order, np.array(proj).reshape(-1, 3, 3), np.array(off).reshape(-1, 3),
                        np.array(uproj).reshape(-1, 6, 6), np.zeros((len(atoms), 3)))
    site.residual = xyz[atoms] - site.on_element(xyz)
    return site
