"""Packing refinable atomic parameters into the minimizer's vector, and gradients back.

Three kinds of parameter vector, refined in turn inside a macro-cycle:
- ``xyz``: Cartesian coordinates (Å) of the movable non-hydrogen atoms. Riding hydrogens are
  re-placed on their parents after every change and their gradient is added to the parent.
- ``adp``: B (Å²) of movable isotropic atoms and 8π²·U (Å², i.e. U in B units so that all ADP
  parameters have the same scale) of movable anisotropic atoms; hydrogens get ``h_b_factor``
  (default 1.2) × B_eq of
  their parent.
- ``occ``: one parameter per occupancy group. Altloc groups (the conformers of one residue, or
  of a set of residues sharing altloc letters) are constrained to keep their sum: with K
  conformers, K−1 free parameters and the last = total − Σ others. With
  ``refine_occupancy``, single-conformer ligands/waters whose occupancy is below 1 get one
  occupancy per residue, bounded to [0, 1].

Atoms on special positions (``site_symmetry``, :mod:`kickref.xtal.site_symmetry`) move along
their symmetry elements only: ``set`` replaces their coordinates by P x + c + r (the move's
component along the element, the start's small offset r from it kept) and their U by the
site-symmetric average M U, and ``gradient`` applies the chain rule (Pᵀ, Mᵀ), so
the minimizer sees a function of the free directions only. Their occupancy keeps the deposited
meaning (1/|G| is full occupancy): bounded to [0, 1/|G|], and "partial" means occ·|G| < 1.
Without special atoms none of this runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.adp import EIGHT_PI2, mat_to_sym6, min_eigenvalue, sym6_to_mat
from ..core.state import AtomGradient, AtomState

B_MIN, B_MAX = 1.0, 500.0


@dataclass
class OccupancyGroups:
    """Occupancy parameterization. ``members[k]`` atom indices of parameter k;
    ``dependent[g]``: (atom indices, list of parameter indices, total) of group g's last conformer."""
    members: list
    dependents: list
    x0: np.ndarray
    upper: np.ndarray = None       # per parameter: 1/|G| of its atoms (1 off special positions)

    @property
    def n(self) -> int:
        return len(self.members)


def find_occupancy_groups(model, movable, refine_partial: bool = False,
                          site_order=None) -> OccupancyGroups:
    """Altloc groups per residue (constrained sums) and, optionally, partial single-conformer
    residues. ``site_order``: (n_atoms,) site multiplicity |G| (default 1 everywhere)."""
    order = np.ones(model.n_atoms) if site_order is None else np.asarray(site_order, dtype=np.float64)
    members, dependents, x0 = [], [], []
    alt = np.asarray(model.altloc)
    ri = model.residue_index
    has_alt = alt != ""
    for r in np.unique(ri[has_alt]):          # loop over residues with altlocs (few)
        atoms = np.flatnonzero((ri == r) & has_alt & movable)
        if len(atoms) == 0:
            continue
        letters = sorted(set(alt[atoms]))
        if len(letters) < 2:
            continue
        occs = [float(np.mean(model.occ[atoms[alt[atoms] == L]])) for L in letters]
        total = float(sum(occs))
        params = []
        for L, o in zip(letters[:-1], occs[:-1]):
            members.append(atoms[alt[atoms] == L])
            x0.append(o)
            params.append(len(members) - 1)
        dependents.append((atoms[alt[atoms] == letters[-1]], params, total))
    if refine_partial:
        for r in np.unique(ri[~has_alt & movable & (model.occ * order < 0.999)]):
            atoms = np.flatnonzero((ri == r) & ~has_alt & movable)
            members.append(atoms)
            x0.append(float(np.mean(model.occ[atoms])))
    upper = np.array([1.0 / order[m].max() for m in members])
    return OccupancyGroups(members, dependents, np.array(x0, dtype=float), upper)


class Parameters:
    """Maps between a flat vector and an :class:`AtomState` for one parameter kind."""

    def __init__(self, kind: str, state: AtomState, movable: np.ndarray, hydrogen_parents=None,
                 place_hydrogens=None, occupancy_groups: OccupancyGroups | None = None,
                 h_b_factor: float = 1.2, site_symmetry=None):
        if kind not in ("xyz", "adp", "occ"):
            raise ValueError(kind)
        self.kind = kind
        n = state.n_atoms
        self.hparent = (np.full(n, -1) if hydrogen_parents is None
                        else np.asarray(hydrogen_parents, dtype=np.int64))
        self.is_h = self.hparent >= 0
        self.place_hydrogens = place_hydrogens
        self.h_b_factor = float(h_b_factor)
        self.movable = np.asarray(movable, bool) & ~self.is_h
        self.groups = occupancy_groups
        if kind == "xyz":
            self.atoms = np.flatnonzero(self.movable)
        elif kind == "adp":
            self.iso = np.flatnonzero(self.movable & ~state.is_aniso)
            self.ani = np.flatnonzero(self.movable & state.is_aniso)
            self.h_atoms = np.flatnonzero(self.is_h)
        # special positions among this kind's parameters (None: none, nothing is projected)
        self.site = None
        if site_symmetry is not None and kind in ("xyz", "adp"):
            site = site_symmetry.subset(self.atoms if kind == "xyz" else self.ani)
            self.site = site if len(site) else None
        if kind == "adp" and self.site is not None:
            self.site_rows = np.searchsorted(self.ani, self.site.atoms)   # rows of u_aniso[ani]
        self.n = self._size(state)
        self.precond = None           # per-parameter curvature estimates (see set_curvature)

    def _size(self, state):
        if self.kind == "xyz":
            return 3 * len(self.atoms)
        if self.kind == "adp":
            return len(self.iso) + 6 * len(self.ani)
        return self.groups.n if self.groups is not None else 0

    # ------------------------------------------------------------------
    def get(self, state: AtomState) -> np.ndarray:
        if self.kind == "xyz":
            return state.xyz[self.atoms].ravel().copy()
        if self.kind == "adp":
            return np.concatenate([state.b_iso[self.iso], EIGHT_PI2 * state.u_aniso[self.ani].ravel()])
        return np.array([float(np.mean(state.occ[m])) for m in self.groups.members])

    def set(self, x: np.ndarray, state: AtomState) -> AtomState:
        """Write ``x`` into ``state`` (in place) and update riding/derived atoms; returns state."""
        if self.kind == "xyz":
            state.xyz[self.atoms] = x.reshape(-1, 3)
            if self.site is not None:
                self.site.place(state.xyz)
            if self.place_hydrogens is not None and self.is_h.any():
                state.xyz[:] = self.place_hydrogens(state.xyz)
        elif self.kind == "adp":
            ni = len(self.iso)
            state.b_iso[self.iso] = x[:ni]
            state.u_aniso[self.ani] = x[ni:].reshape(-1, 6) / EIGHT_PI2
            if self.site is not None:
                a = self.site.atoms
                state.u_aniso[a] = self.site.project_u(state.u_aniso[a])
            self.update_hydrogen_b(state)
        else:
            for k, m in enumerate(self.groups.members):
                state.occ[m] = x[k]
            for atoms, params, total in self.groups.dependents:
                state.occ[atoms] = total - sum(x[p] for p in params)
        return state

    def update_hydrogen_b(self, state: AtomState) -> None:
        if not len(getattr(self, "h_atoms", ())):
            return
        p = self.hparent[self.h_atoms]
        b = state.b_iso[p].copy()
        ani = state.is_aniso[p]
        b[ani] = EIGHT_PI2 / 3.0 * state.u_aniso[p[ani], :3].sum(axis=1)
        state.b_iso[self.h_atoms] = self.h_b_factor * b
        state.is_aniso[self.h_atoms] = False

    def gradient(self, g: AtomGradient, state: AtomState) -> np.ndarray:
        """Vector gradient from per-atom gradients (chain rule through riding/constraints)."""
        if self.kind == "xyz":
            gx = g.xyz.copy()
            if self.is_h.any():
                h = np.flatnonzero(self.is_h)
                np.add.at(gx, self.hparent[h], gx[h])        # riding: H moves with its parent
            if self.site is not None:
                a = self.site.atoms
                gx[a] = self.site.project_vectors(gx[a])
            return gx[self.atoms].ravel()
        if self.kind == "adp":
            gb = self._b_gradient(g)
            gu = self.atom_u_gradient(g, gb)[self.ani]
            if self.site is not None:
                gu[self.site_rows] = self.site.project_u_gradient(gu[self.site_rows])
            return np.concatenate([gb[self.iso], gu.ravel() / EIGHT_PI2])
        out = np.array([float(np.sum(g.occ[m])) for m in self.groups.members])
        for atoms, params, _ in self.groups.dependents:
            s = float(np.sum(g.occ[atoms]))
            for p in params:
                out[p] -= s
        return out

    def _b_gradient(self, g: AtomGradient) -> np.ndarray:
        """dE/dB per atom with the riding hydrogens' B gradient added to their parents."""
        gb = g.b_iso.copy()
        if len(self.h_atoms):
            np.add.at(gb, self.hparent[self.h_atoms], self.h_b_factor * gb[self.h_atoms])
        return gb

    def atom_u_gradient(self, g: AtomGradient, gb=None) -> np.ndarray:
        """dE/dU (n, 6) per atom (kind 'adp'): the U gradient plus the B-term gradients, which
        act on B_eq = 8π²/3·tr(U) of anisotropic atoms (riding-H B included)."""
        gb = self._b_gradient(g) if gb is None else gb
        gu = g.u_aniso.copy()
        gu[:, :3] += (EIGHT_PI2 / 3.0 * gb)[:, None]
        return gu

    def set_curvature(self, c_atom: dict) -> None:
        """Per-parameter curvatures from per-atom ones ({'xyz','b','occ'}: (n_atoms,) arrays)."""
        if self.kind == "xyz":
            c = np.repeat(c_atom["xyz"][self.atoms], 3)
        elif self.kind == "adp":
            cb = c_atom["b"]
            ca = cb[self.ani]
            # 8π²U components: diagonal ≈ c_B/5, off-diagonal ≈ 4/15·c_B (isotropic averages)
            cu = np.column_stack([ca / 5, ca / 5, ca / 5, ca * 4 / 15, ca * 4 / 15, ca * 4 / 15])
            c = np.concatenate([cb[self.iso], cu.ravel()])
        else:
            co = c_atom["occ"]
            c = np.array([float(np.sum(co[m])) for m in self.groups.members])
            for atoms, params, _ in self.groups.dependents:
                for p in params:
                    c[p] += float(np.sum(co[atoms]))
        c = np.asarray(c, dtype=float)
        pos = c[c > 0]
        # atoms without restraints (waters) and weak density must not get huge steps
        floor = 0.05 * float(np.median(pos)) if len(pos) else 1.0
        self.precond = np.maximum(c, floor) if len(c) else None

    def place_special(self, state: AtomState) -> np.ndarray:
        """Undo moves of the special-position atoms off their elements (riding H follow);
        returns their shifts (Å)."""
        shift = self.site.place(state.xyz)
        if self.place_hydrogens is not None and self.is_h.any():
            state.xyz[:] = self.place_hydrogens(state.xyz)
        return shift

    def max_shift(self) -> np.ndarray:
        """Largest change per parameter in one minimizer step: 0.5 Å, 10 Å², 0.2 occupancy."""
        v = {"xyz": 0.5, "adp": 10.0, "occ": 0.2}[self.kind]
        return np.full(self.n, v)

    def bounds(self, state: AtomState):
        if self.kind == "xyz":
            return None
        if self.kind == "adp":
            b = [(B_MIN, B_MAX)] * len(self.iso)
            for _ in range(len(self.ani)):
                b += [(EIGHT_PI2 * 1e-3, B_MAX)] * 3 + [(None, None)] * 3
            return b
        return [(0.0, float(u)) for u in self.groups.upper]

    def valid(self, state: AtomState) -> bool:
        """False when a trial point is unphysical (a U not positive definite): the minimizer
        then treats the energy as infinite and shortens the step."""
        if self.kind != "adp" or not len(self.ani):
            return True
        return bool(np.all(min_eigenvalue(state.u_aniso[self.ani]) > 1e-4))

    def project(self, state: AtomState) -> None:
        """Atoms on special positions back on their elements (coordinates, riding H, U); ADPs
        physical: U positive definite (eigenvalues ≥ 0.001 Å²; keeps the site symmetry)."""
        if self.kind == "xyz" and self.site is not None:
            self.place_special(state)
        if self.kind != "adp" or not len(self.ani):
            return
        if self.site is not None:
            a = self.site.atoms
            state.u_aniso[a] = self.site.project_u(state.u_aniso[a])
        U = state.u_aniso[self.ani]
        w, v = np.linalg.eigh(sym6_to_mat(U))
        bad = (w < 1e-3).any(axis=1)
        if bad.any():
            w = np.maximum(w, 1e-3)
            M2 = np.einsum("nij,nj,nkj->nik", v, w, v)
            U[bad] = mat_to_sym6(M2)[bad]
            state.u_aniso[self.ani] = U


class CombinedParameters:
    """Several parameter kinds refined together (e.g. coordinates and ADPs in one minimization)."""

    def __init__(self, parts):
        self.parts = [p for p in parts if p.n > 0]
        self.kind = "+".join(p.kind for p in self.parts)
        self.n = sum(p.n for p in self.parts)
        self.precond = None

    def _split(self, x):
        out, i = [], 0
        for p in self.parts:
            out.append(x[i:i + p.n])
            i += p.n
        return out

    def get(self, state):
        return np.concatenate([p.get(state) for p in self.parts]) if self.parts else np.zeros(0)

    def set(self, x, state):
        for p, xi in zip(self.parts, self._split(x)):
            p.set(xi, state)
        return state

    def gradient(self, g, state):
        return np.concatenate([p.gradient(g, state) for p in self.parts])

    def set_curvature(self, c_atom):
        for p in self.parts:
            p.set_curvature(c_atom)
        self.precond = np.concatenate([p.precond for p in self.parts])

    def max_shift(self):
        return np.concatenate([p.max_shift() for p in self.parts])

    def bounds(self, state):
        out = []
        for p in self.parts:
            b = p.bounds(state)
            out += b if b is not None else [(None, None)] * p.n
        return out

    def valid(self, state):
        return all(p.valid(state) for p in self.parts)

    def project(self, state):
        for p in self.parts:
            p.project(state)
