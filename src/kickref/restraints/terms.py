"""Restraint energy terms: each owns its restraint arrays and computes value and gradient.

Every value is Σ ((actual − ideal)/σ)² over the restraints of the term (dimensionless;
nonbonded pairs and KL pairs carry weights, see their classes). Atom indices are indices into
the :class:`kickref.core.model.Model` arrays; gradients are with respect to the
:class:`~kickref.core.state.AtomState` arrays, in the same atom order. B terms act on B_eq for
anisotropic atoms (gradient in ``AtomGradient.b_iso``); ADP terms act on U (Å²).

Besides :meth:`~RestraintTerm.compute` a term gives what reporting needs:
:meth:`~RestraintTerm.actual` (the restrained quantity per restraint),
:meth:`~RestraintTerm.deviations` (deviation, σ, mask of the restraints that count) and
:meth:`~RestraintTerm.describe` (atoms, ideal, actual and a note of one restraint).
The numerical work is done by :mod:`kickref.restraints.kernels`.
"""
from __future__ import annotations

import numpy as np

from ..core.adp import b_equivalent
from ..core.state import AtomGradient
from ..core.term import EnergyTerm
from . import kernels


def _xyz(state) -> np.ndarray:
    return np.ascontiguousarray(state.xyz, dtype=np.float64)


def _both_aniso(idx, state, params=None) -> np.ndarray:
    """Mask of the pairs ``idx`` (m, 2) whose atoms are both anisotropic with six U parameters:
    atoms in ``params.adp_single_b`` (TLS atoms: U_TLS + one residual B) count as isotropic."""
    ani = np.asarray(state.is_aniso, bool)
    single = getattr(params, "adp_single_b", None)
    if single is not None:
        ani = ani & ~single
    return ani[idx[:, 0]] & ani[idx[:, 1]] if len(idx) else np.zeros(0, bool)


class RestraintTerm(EnergyTerm):
    """Base class. Subclasses set ``name``, ``unit`` and implement :meth:`evaluate` and
    :meth:`deviations`."""

    kind = "geometry"
    unit = ""

    def evaluate(self, state, gradient: bool = False):
        """(value, AtomGradient or None, actual value of each restraint)."""
        raise NotImplementedError

    def compute(self, state, gradient: bool = True):
        v, g, _ = self.evaluate(state, gradient)
        return float(v), g

    def actual(self, state) -> np.ndarray:
        """The restrained quantity of each restraint (in :attr:`unit`)."""
        return self.evaluate(state, False)[2]

    def deviations(self, state):
        """(deviation, σ, mask of the restraints counted in statistics), one entry per restraint."""
        raise NotImplementedError

    def row_atoms(self) -> np.ndarray:
        """(rows, k) indices of the atoms in each entry of :meth:`deviations`."""
        return self.idx


class IndexedTerm(RestraintTerm):
    """Restraints on k atoms each: ``idx`` (m, k) int64, ``ideal`` (m,), ``sigma`` (m,).

    ``per_restraint`` names further per-restraint arrays (or lists), in constructor order."""

    per_restraint: tuple = ()

    def __init__(self, idx, ideal, sigma, *extra, scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        self.idx = idx
        self.ideal = ideal
        self.sigma = sigma
        for name, value in zip(self.per_restraint, extra):
            setattr(self, name, value)

    def __len__(self):
        return len(self.idx)

    def subset(self, keep) -> "IndexedTerm":
        """The restraints selected by the boolean mask ``keep``, as a new term."""
        extra = []
        for name in self.per_restraint:
            v = getattr(self, name)
            extra.append(v[keep] if isinstance(v, np.ndarray) else [x for x, k in zip(v, keep) if k])
        return type(self)(self.idx[keep], self.ideal[keep], self.sigma[keep], *extra)

    def without_atoms(self, mask) -> "IndexedTerm":
        """The restraints that involve none of the atoms in ``mask`` (n,) bool."""
        keep = ~mask[self.idx].any(axis=1) if len(self) else np.zeros(0, bool)
        return self.subset(keep)

    def deviations(self, state):
        act = self.actual(state)
        return act - self.ideal, self.sigma, np.ones(len(self), bool)

    def describe(self, k: int, actual: float):
        """(atom indices, ideal, actual, note) of restraint ``k``, for outlier lists."""
        return [int(a) for a in self.idx[k]], float(self.ideal[k]), actual, ""

    def _geometry(self, state, gradient, kernel, *args):
        n = state.n_atoms
        g = AtomGradient(n) if gradient else None
        gx = g.xyz if gradient else np.zeros((1, 3))
        act = np.zeros(len(self))
        v = kernel(_xyz(state), self.idx, self.ideal, self.sigma, *args, act, gradient, gx)
        return v, g, act


class BondTerm(IndexedTerm):
    """Bond lengths: ``idx`` (m, 2), ideal and σ in Å."""
    name = "bond"
    unit = "Å"

    def evaluate(self, state, gradient=False):
        return self._geometry(state, gradient, kernels.bonds)


class AngleTerm(IndexedTerm):
    """Bond angles: ``idx`` (m, 3) with the vertex in the middle, ideal and σ in degrees."""
    name = "angle"
    unit = "°"

    def evaluate(self, state, gradient=False):
        return self._geometry(state, gradient, kernels.angles)


class TorsionTerm(IndexedTerm):
    """Torsion angles: ``idx`` (m, 4), ideal and σ in degrees, ``period`` (m,) ≥ 1 (the
    deviation is taken modulo 360°/period), ``label`` (m,) the library's names."""
    name = "torsion"
    unit = "°"
    per_restraint = ("period", "label")

    def evaluate(self, state, gradient=False):
        return self._geometry(state, gradient, kernels.torsions, self.period)

    def deviations(self, state):
        act = self.actual(state)
        half = 180.0 / self.period
        dev = np.mod(act - self.ideal + half, 2 * half) - half
        return dev, self.sigma, np.ones(len(self), bool)


class ChiralTerm(IndexedTerm):
    """Chiral volumes: ``idx`` (m, 4) centre first, signed ideal volume and σ in Å³; where
    ``both`` (m,) bool either hand is allowed (ideal is then |V|, restrained on |V|)."""
    name = "chiral"
    unit = "Å³"
    per_restraint = ("both",)

    def evaluate(self, state, gradient=False):
        return self._geometry(state, gradient, kernels.chirals, self.both)

    def deviations(self, state):
        act = self.actual(state)
        dev = np.where(self.both, np.abs(act) - self.ideal, act - self.ideal)
        return dev, self.sigma, np.ones(len(self), bool)

    def describe(self, k, actual):
        atoms, ideal, actual, note = super().describe(k, actual)
        return atoms, ideal, abs(actual) if self.both[k] else actual, note


class PlaneTerm(RestraintTerm):
    """Planes: the atoms of all planes concatenated (``atoms``), plane k's atoms at
    ``atoms[start[k]:start[k+1]]`` (``start`` begins with 0), σ per plane (Å), ``labels`` the
    library's names. The restrained quantity is each atom's distance from its plane's
    least-squares plane (ideal 0); one entry per plane atom."""
    name = "plane"
    unit = "Å"

    def __init__(self, atoms, start, sigma, labels, scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        self.start = np.array(start, dtype=np.int64)
        self.atoms = np.array(atoms, dtype=np.int64)
        self.sigma = np.array(sigma, dtype=np.float64)
        self.labels = labels
        self.plane_of = np.repeat(np.arange(len(self.sigma)), np.diff(self.start))

    def __len__(self):
        return len(self.sigma)

    def evaluate(self, state, gradient=False):
        g = AtomGradient(state.n_atoms) if gradient else None
        gx = g.xyz if gradient else np.zeros((1, 3))
        act = np.zeros(len(self.atoms))
        v = kernels.planes(_xyz(state), self.atoms, self.start, self.sigma, act, gradient, gx)
        return v, g, act

    def deviations(self, state):
        act = self.actual(state)
        return act, self.sigma[self.plane_of], np.ones(len(act), bool)

    def describe(self, k, actual):
        """Entry ``k`` is one atom of a plane."""
        return [int(self.atoms[k])], 0.0, actual, self.labels[self.plane_of[k]]

    def row_atoms(self):
        return self.atoms[:, None]

    def without_atoms(self, mask) -> "PlaneTerm":
        """The planes with the atoms in ``mask`` left out; planes left with < 4 atoms go."""
        new_atoms, new_start, sig, lab = [], [0], [], []
        for k in range(len(self)):          # planes: a few thousand at most
            a = self.atoms[self.start[k]:self.start[k + 1]]
            a = a[~mask[a]]
            if len(a) >= 4:
                new_atoms.extend(a.tolist())
                new_start.append(len(new_atoms))
                sig.append(self.sigma[k])
                lab.append(self.labels[k])
        return PlaneTerm(new_atoms, new_start, sig, lab)


class NonbondedTerm(RestraintTerm):
    """Non-bonded repulsion over the contacts of ``neighbours`` (a
    :class:`~kickref.restraints.nonbonded.NonbondedList`, rebuilt as atoms move and shared
    by every copy of the term). Only contacts closer than d0 count (deviation d0 − d > 0);
    weight 1/2 for symmetry contacts."""
    name = "nonbonded"
    unit = "Å"

    def __init__(self, neighbours, scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        self.neighbours = neighbours

    def evaluate(self, state, gradient=False):
        g = AtomGradient(state.n_atoms) if gradient else None
        gx = g.xyz if gradient else np.zeros((1, 3))
        v = self.neighbours.compute(_xyz(state), gradient, gx)
        return v, g, self.neighbours.actual

    def deviations(self, state):
        act = self.actual(state)
        nb = self.neighbours
        dev = nb.d0 - act
        return dev, nb.sigma, dev > 0

    def row_atoms(self):
        nb = self.neighbours
        return np.stack([nb.pi, nb.pj], axis=1)

    def describe(self, k, actual):
        nb = self.neighbours
        note = "" if nb.weight[k] == 1.0 else f"symmetry op {int(nb.pop[k])}"
        return [int(nb.pi[k]), int(nb.pj[k])], float(nb.d0[k]), actual, note


class PairTerm(RestraintTerm):
    """A restraint on atom pairs ``idx`` (m, 2) with σ (m,); ``_active`` marks the pairs that
    count (both used in the value and in the reported deviations)."""
    kind = "adp"

    def __init__(self, idx, sigma, scale: float = 1.0, enabled: bool = True, params=None):
        super().__init__(scale, enabled)
        self.idx = idx
        self.sigma = sigma
        self.params = params          # RestraintParameters (adp_single_b), read at each evaluation

    def __len__(self):
        return len(self.idx)

    def _active(self, state):
        return _both_aniso(self.idx, state, self.params)

    def deviations(self, state):
        act = self.actual(state)
        return act, self.sigma, self._active(state)


class BSimilarityTerm(PairTerm):
    """Similar B of bonded (and 1-3) atoms: Σ ((B_i − B_j)/σ)², ``idx`` (m, 2), σ (m,) Å².
    Pairs of two anisotropic atoms are left to the U terms (not counted)."""
    name = "b_similarity"
    unit = "Å²"

    def _active(self, state):
        return ~_both_aniso(self.idx, state, self.params) if len(self) else np.zeros(0, bool)

    def evaluate(self, state, gradient=False):
        b = b_equivalent(state.b_iso, state.u_aniso, state.is_aniso)
        g = AtomGradient(state.n_atoms) if gradient else None
        gb = g.b_iso if gradient else np.zeros(state.n_atoms)
        act = np.zeros(len(self))
        v = kernels.b_similarity(b, self.idx, self.sigma, self._active(state), act, gradient, gb)
        return v, g, act


class RigidBondTerm(PairTerm):
    """Hirshfeld rigid bond on bonded pairs of anisotropic atoms: equal mean-square
    displacement along the bond, ``idx`` (m, 2), σ (m,) Å²; acts on xyz and U."""
    name = "adp_rigid_bond"
    unit = "Å²"

    def evaluate(self, state, gradient=False):
        n = state.n_atoms
        u = np.ascontiguousarray(state.u_aniso, dtype=np.float64)
        g = AtomGradient(n) if gradient else None
        gx, gu = (g.xyz, g.u_aniso) if gradient else (np.zeros((n, 3)), np.zeros((n, 6)))
        act = np.zeros(len(self))
        v = kernels.rigid_bond(_xyz(state), u, self.idx, self.sigma, self._active(state),
                               act, gradient, gx, gu)
        return v, g, act


class ADPSimilarityTerm(PairTerm):
    """Similar U of bonded anisotropic atoms (SHELX SIMU): ``idx`` (m, 2), σ (m,) Å²."""
    name = "adp_similarity"
    unit = "Å²"

    def evaluate(self, state, gradient=False):
        n = state.n_atoms
        u = np.ascontiguousarray(state.u_aniso, dtype=np.float64)
        g = AtomGradient(n) if gradient else None
        gu = g.u_aniso if gradient else np.zeros((n, 6))
        act = np.zeros(len(self))
        v = kernels.adp_similarity(u, self.idx, self.sigma, self._active(state), act, gradient, gu)
        return v, g, act


class ADPKLTerm(PairTerm):
    """KL-divergence similarity of neighbouring atoms' ADPs (see :mod:`kickref.restraints.adp_kl`):
    ``idx`` (m, 2), σ (m,) dimensionless. Pairs of two isotropic atoms (or atoms with one B
    parameter, ``params.adp_single_b``: TLS atoms) use σ/√f with
    f = ``params.adp_kl_iso_factor``, read at each evaluation (``params`` is the
    :class:`~kickref.restraints.restraints.RestraintParameters` of the restraints, which the
    refinement sets after they are built)."""
    name = "adp_kl"
    unit = "KL"

    def __init__(self, idx, sigma, params, scale: float = 1.0, enabled: bool = True):
        super().__init__(idx, sigma, scale, enabled, params)

    def _active(self, state):
        return np.ones(len(self), bool)

    def evaluate(self, state, gradient=False):
        from .adp_kl import kl_value_and_gradient
        sigma = self.sigma
        f = self.params.adp_kl_iso_factor
        if f != 1.0 and len(self):
            # pairs of two isotropic atoms (1 parameter each, not 6) are restrained more loosely
            ani = np.asarray(state.is_aniso, bool)
            if self.params.adp_single_b is not None:
                ani = ani & ~self.params.adp_single_b
            both_iso = ~ani[self.idx[:, 0]] & ~ani[self.idx[:, 1]]
            sigma = np.where(both_iso, sigma / np.sqrt(f), sigma)
        v, gb, gu, act = kl_value_and_gradient(self.idx, sigma, state.b_iso, state.u_aniso,
                                               state.is_aniso, gradient)
        g = None
        if gradient:
            g = AtomGradient(state.n_atoms)
            g.b_iso, g.u_aniso = gb, gu
        return v, g, act
