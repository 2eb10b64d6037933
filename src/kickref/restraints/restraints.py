"""The restraints of one model: its energy terms, statistics and outliers, riding hydrogens.

:func:`kickref.restraints.topology.build_restraints` makes a :class:`Restraints` from a model
and the monomer library. Atom indices everywhere are indices into the
:class:`kickref.core.model.Model` arrays. Ideal values: bonds Å (electron-cloud distances, as
X-ray refinement uses), angles and torsions degrees, chiral volumes Å³, planes Å.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .library import RestraintLibrary
from .nonbonded import NonbondedParameters

KINDS = ("bond", "angle", "torsion", "plane", "chiral", "nonbonded", "b_similarity",
         "adp_rigid_bond", "adp_similarity", "adp_kl")
# the Restraints attribute holding each kind's term
TERM_ATTRIBUTES = dict(zip(KINDS, ("bonds", "angles", "torsions", "planes", "chirals", "contacts",
                                   "b_pairs", "rigid_bonds", "u_pairs", "kl_pairs")))


@dataclass
class RestraintParameters:
    """σ of the restraints that the library does not give, and options."""
    chiral_sigma: float = 0.2         # Å³ (REFMAC default)
    b_sigma_bonded: float = 2.0       # Å², B similarity of bonded atoms (MAIN default)
    b_sigma_angle: float = 3.0        # Å², B similarity of atoms 1-3 apart
    rigid_bond_sigma: float = 0.01    # Å², Hirshfeld rigid bond (SHELX DELU default)
    adp_similarity_sigma: float = 0.04  # Å², U similarity of bonded atoms (SHELX SIMU)
    adp_kl_max_dist: float = 4.0      # Å, spatial neighbours in the KL-divergence ADP restraint
    adp_kl_iso_factor: float = 1.0    # weight of KL pairs of two isotropic atoms (relative)
    adp_single_b: object = None       # (n,) bool or None: anisotropic atoms with one ADP parameter
                                      # (TLS atoms: U_TLS + residual B), restrained as isotropic
                                      # ones (KL weight of isotropic pairs, B similarity, no rigid
                                      # bond or U similarity between two of them)
    find_links: bool = True           # add links found by distance (disulfides, glycans, ...)
    polymer_link_stretch: float = 3.2  # Å beyond the ideal length up to which consecutive
                                       # polymer residues are linked (C-N 4.5, O3'-P 4.8 Å)
    nonbonded: NonbondedParameters = field(default_factory=NonbondedParameters)


def _as_xyz(state_or_xyz):
    x = state_or_xyz.xyz if hasattr(state_or_xyz, "xyz") else state_or_xyz
    return np.ascontiguousarray(x, dtype=np.float64)


def _rms_entry(dev, sig, mask) -> dict:
    """n, RMS deviation and RMS Z over the restraints in ``mask``."""
    d, s = dev[mask], sig[mask]
    n = int(mask.sum())
    return {"n": n, "rmsd": float(np.sqrt(np.mean(d ** 2))) if n else 0.0,
            "rmsz": float(np.sqrt(np.mean((d / s) ** 2))) if n else 0.0}


class Restraints:
    """All restraints of one model: one term per kind (attributes named in TERM_ATTRIBUTES:
    ``bonds``, ``angles``, ``torsions``, ``planes``, ``chirals``, ``contacts`` (over the
    neighbour list ``nonbonded``), ``b_pairs``, ``rigid_bonds``, ``u_pairs``, ``kl_pairs``),
    set by :func:`~kickref.restraints.topology.build_restraints`; see :meth:`terms`,
    :meth:`statistics`, :meth:`outliers`."""

    def __init__(self, model, library: RestraintLibrary, params: RestraintParameters):
        self.model = model
        self.library = library
        self.params = params
        self.n_atoms = model.n_atoms
        self.log: list = []
        self.links: list = []
        self.link_counts: dict = {}
        self.unknown_residues: list = []
        self.hydrogens = "keep"
        self.switches: dict = {}

    # ------------------------------------------------------------- energy terms
    def term(self, kind: str):
        """The term of one restraint kind (one of KINDS)."""
        return getattr(self, TERM_ATTRIBUTES[kind])

    def terms(self):
        """EnergyTerm objects, one per kind in KINDS order (see :mod:`kickref.restraints.terms`).

        Each call gives new term objects (their ``scale`` and ``enabled`` are the caller's)
        sharing the restraint arrays and the non-bonded neighbour list; a kind in
        :attr:`switches` ({kind: (enabled, scale)}, MAIN's ``energy <term> on/off scale``) gets
        those values."""
        out = []
        for kind in KINDS:
            t = copy.copy(self.term(kind))
            if kind in self.switches:
                t.enabled, t.scale = self.switches[kind]
            out.append(t)
        return out

    def deviations(self, kind, state):
        """(deviation, sigma, mask of counted restraints) of each restraint of one kind."""
        return self.term(kind).deviations(state)

    def _state(self, state_or_xyz):
        if hasattr(state_or_xyz, "b_iso"):
            return state_or_xyz
        from ..core.state import AtomState
        st = AtomState.from_model(self.model)
        if state_or_xyz is not None:
            st.xyz = _as_xyz(state_or_xyz).copy()
        return st

    def statistics(self, state_or_xyz=None) -> dict:
        """Per kind: n, rmsd (in the term's unit), rmsz over all restraints, and n_non_h,
        rmsd_non_h, rmsz_non_h over the restraints without hydrogen atoms (what REFMAC reports
        as "refined atoms", and what the X-ray weight targets); state or xyz (default: the model)."""
        state = self._state(state_or_xyz)
        out = {}
        for kind in KINDS:
            term = self.term(kind)
            dev, sig, mask = term.deviations(state)
            entry = _rms_entry(dev, sig, mask)
            heavy = self._without_hydrogens(term)
            entry.update({f"{k}_non_h": v for k, v in _rms_entry(dev, sig, mask & heavy).items()})
            entry["unit"] = term.unit
            if kind == "nonbonded":
                entry["n_pairs"] = int(len(dev))
                entry["note"] = "n, rmsd, rmsz over contacts closer than d0"
            if kind == "plane":
                entry["n_planes"] = len(self.planes)
            out[kind] = entry
        return out

    def _without_hydrogens(self, term) -> np.ndarray:
        """Mask of the term's deviation rows that involve no hydrogen atom."""
        rows = term.row_atoms()
        if len(rows) == 0:
            return np.zeros(0, bool)
        return ~np.asarray(self.model.is_hydrogen, bool)[rows].any(axis=1)

    def rmsd_non_h(self, kind: str, state) -> float:
        """RMS deviation (in the term's unit) over the counted ``kind`` restraints that involve no
        hydrogen atom (REFMAC's "refined atoms"; what the X-ray weight targets); 0 when none."""
        term = self.term(kind)
        dev, sig, mask = term.deviations(state)
        return _rms_entry(dev, sig, mask & self._without_hydrogens(term))["rmsd"]

    def outliers(self, state_or_xyz=None, n: int = 20) -> list:
        """The ``n`` restraints with the largest |Z| = |actual − ideal|/σ, geometry kinds."""
        state = self._state(state_or_xyz)
        rows = []
        for kind in ("bond", "angle", "torsion", "chiral", "plane", "nonbonded"):
            dev, sig, mask = self.deviations(kind, state)
            z = np.where(mask, np.abs(dev / sig), 0.0)
            if len(z) == 0:
                continue
            top = np.argsort(-z)[:n]
            for k in top:
                if z[k] <= 0:
                    continue
                rows.append((float(z[k]), kind, int(k), float(dev[k])))
        rows.sort(key=lambda r: -r[0])
        act_cache = {}
        out = []
        for zabs, kind, k, dev in rows[:n]:
            term = self.term(kind)
            if kind not in act_cache:
                act_cache[kind] = term.actual(state)
            atoms, ideal, actual, label = term.describe(k, float(act_cache[kind][k]))
            sigma = abs(dev) / zabs if zabs > 0 else 0.0
            out.append({"kind": kind, "atoms": [self.model.atom_label(a) for a in atoms],
                        "ideal": ideal, "actual": actual, "sigma": sigma,
                        "z": float(np.sign(dev) * zabs) if kind != "nonbonded" else -zabs,
                        "note": label})
        return out

    def counts(self) -> dict:
        return {"bond": len(self.bonds), "angle": len(self.angles),
                "torsion": len(self.torsions), "plane": len(self.planes),
                "chiral": len(self.chirals), "nonbonded_pairs": len(self.nonbonded.pi),
                "b_similarity": len(self.b_pairs), "adp_pairs": len(self.u_pairs)}

    def without_atoms(self, mask) -> "Restraints":
        """A copy whose bond, angle, torsion, chiral and plane restraints leave out the atoms in
        ``mask`` (e.g. riding hydrogens, whose positions are constrained); other kinds are shared."""
        mask = np.asarray(mask, bool)
        R = copy.copy(self)
        for attr in ("bonds", "angles", "torsions", "chirals", "planes"):
            setattr(R, attr, getattr(self, attr).without_atoms(mask))
        return R

    def update_riding(self, xyz) -> None:
        """Re-derive the riding-H frames from ideal positions on the current heavy atoms.

        Needed when the heavy-atom geometry has changed much since set-up (a distorted start):
        the hydrogens then ride on ideal, not on the initial, local geometry."""
        from .riding import riding_setup
        model = self.model.copy()
        model.xyz[:] = _as_xyz(xyz)
        self.riding = riding_setup(self, model)

    def place_hydrogens(self, xyz) -> np.ndarray:
        """Re-place riding H atoms on their parents (see :attr:`riding`); returns new xyz."""
        from .riding import place_riding
        return place_riding(_as_xyz(xyz), self.riding)
