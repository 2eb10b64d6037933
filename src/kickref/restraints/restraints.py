"""Restraints of a model: topology from the monomer library (through gemmi), as flat arrays.

:func:`build_restraints` is the entry point. Atom indices everywhere are indices into the
:class:`kickref.model.Model` arrays. Ideal values: bonds Å (electron-cloud distances, as
X-ray refinement uses), angles and torsions degrees, chiral volumes Å³, planes Å.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import gemmi
import numpy as np
import scipy.sparse as sp

from ..core.errors import InputError
from . import kernels
from .library import RestraintLibrary, load_library
from .nonbonded import HB_CODES, NonbondedList, NonbondedParameters, SymmetryOps

KINDS = ("bond", "angle", "torsion", "plane", "chiral", "nonbonded", "b_similarity",
         "adp_rigid_bond", "adp_similarity", "adp_kl")
UNITS = {"bond": "Å", "angle": "°", "torsion": "°", "plane": "Å", "chiral": "Å³",
         "nonbonded": "Å", "b_similarity": "Å²", "adp_rigid_bond": "Å²", "adp_similarity": "Å²",
         "adp_kl": "KL"}


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
    find_links: bool = True           # add links found by distance (disulfides, glycans, ...)
    nonbonded: NonbondedParameters = field(default_factory=NonbondedParameters)


@dataclass
class RestraintSet:
    """Atoms and ideal values of one kind (idx: (m, k) int64 atom indices)."""
    idx: np.ndarray
    ideal: np.ndarray
    sigma: np.ndarray
    extra: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.idx)


def _as_xyz(state_or_xyz):
    x = state_or_xyz.xyz if hasattr(state_or_xyz, "xyz") else state_or_xyz
    return np.ascontiguousarray(x, dtype=np.float64)


class Restraints:
    """All restraints of one model; see :meth:`terms`, :meth:`statistics`, :meth:`outliers`."""

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

    # ------------------------------------------------------------- energy terms
    def terms(self):
        """EnergyTerm objects, one per restraint kind (see :mod:`kickref.restraints.terms`)."""
        from . import terms as T
        return [T.BondTerm(self), T.AngleTerm(self), T.TorsionTerm(self), T.PlaneTerm(self),
                T.ChiralTerm(self), T.NonbondedTerm(self), T.BSimilarityTerm(self),
                T.RigidBondTerm(self), T.ADPSimilarityTerm(self), T.ADPKLTerm(self)]

    # -------------------------------------------------------- per-kind values
    def b_effective(self, state) -> np.ndarray:
        """B (Å²) of each atom; B_eq = 8π²/3·tr(U) for anisotropic atoms."""
        b = np.array(state.b_iso, dtype=np.float64)
        m = np.asarray(state.is_aniso, bool)
        if m.any():
            b[m] = 8.0 * np.pi ** 2 / 3.0 * np.asarray(state.u_aniso)[m, :3].sum(axis=1)
        return b

    def evaluate(self, kind, state, grad=False):
        """(value, gradient arrays dict or None, actual values) for one kind."""
        n = self.n_atoms
        gx = np.zeros((n, 3)) if grad else np.zeros((1, 3))
        if kind in ("bond", "angle", "torsion", "chiral", "plane", "nonbonded"):
            xyz = _as_xyz(state)
            if kind == "bond":
                r = self.bonds
                act = np.zeros(len(r))
                v = kernels.bonds(xyz, r.idx, r.ideal, r.sigma, act, grad, gx)
            elif kind == "angle":
                r = self.angles
                act = np.zeros(len(r))
                v = kernels.angles(xyz, r.idx, r.ideal, r.sigma, act, grad, gx)
            elif kind == "torsion":
                r = self.torsions
                act = np.zeros(len(r))
                v = kernels.torsions(xyz, r.idx, r.ideal, r.sigma, r.extra["period"], act,
                                     grad, gx)
            elif kind == "chiral":
                r = self.chirals
                act = np.zeros(len(r))
                v = kernels.chirals(xyz, r.idx, r.ideal, r.sigma, r.extra["both"], act, grad, gx)
            elif kind == "plane":
                r = self.planes
                act = np.zeros(len(r.extra["atoms"]))
                v = kernels.planes(xyz, r.extra["atoms"], r.extra["start"], r.sigma, act,
                                   grad, gx)
            else:
                v = self.nonbonded.compute(xyz, grad, gx)
                act = self.nonbonded.actual
            return v, ({"xyz": gx} if grad else None), act
        # B and ADP kinds need the full state
        if kind == "b_similarity":
            b = self.b_effective(state)
            r = self.b_pairs
            gb = np.zeros(n)
            act = np.zeros(len(r))
            # pairs of two anisotropic atoms are restrained by the U terms instead
            ani = np.asarray(state.is_aniso, bool)
            active = ~(ani[r.idx[:, 0]] & ani[r.idx[:, 1]]) if len(r) else np.zeros(0, bool)
            v = kernels.b_similarity(b, r.idx, r.sigma, active, act, grad, gb)
            return v, ({"b_iso": gb} if grad else None), act
        if kind == "adp_kl":
            from .adp_kl import kl_value_and_gradient
            r = self.kl_pairs
            sigma = r.sigma
            f = self.params.adp_kl_iso_factor
            if f != 1.0 and len(r):
                # pairs of two isotropic atoms (1 parameter each, not 6) are restrained more loosely
                ani = np.asarray(state.is_aniso, bool)
                both_iso = ~ani[r.idx[:, 0]] & ~ani[r.idx[:, 1]]
                sigma = np.where(both_iso, sigma / np.sqrt(f), sigma)
            v, gb, gu, act = kl_value_and_gradient(r.idx, sigma, state.b_iso, state.u_aniso,
                                                   state.is_aniso, grad)
            return v, ({"b_iso": gb, "u_aniso": gu} if grad else None), act
        u = np.ascontiguousarray(state.u_aniso, dtype=np.float64)
        ani = np.asarray(state.is_aniso, bool)
        r = self.adp_pairs
        active = ani[r.idx[:, 0]] & ani[r.idx[:, 1]] if len(r) else np.zeros(0, bool)
        gu = np.zeros((n, 6))
        act = np.zeros(len(r))
        sig = r.sigma if kind == "adp_rigid_bond" else r.extra["sigma_sim"]
        if kind == "adp_rigid_bond":
            xyz = _as_xyz(state)
            gx = np.zeros((n, 3))
            v = kernels.rigid_bond(xyz, u, r.idx, sig, active, act, grad, gx, gu)
            return v, ({"xyz": gx, "u_aniso": gu} if grad else None), act
        if kind == "adp_similarity":
            v = kernels.adp_similarity(u, r.idx, sig, active, act, grad, gu)
            return v, ({"u_aniso": gu} if grad else None), act
        raise KeyError(kind)

    def deviations(self, kind, state):
        """(deviation, sigma, mask of counted restraints) of each restraint of one kind."""
        _, _, act = self.evaluate(kind, state, grad=False)
        if kind in ("bond", "angle"):
            r = getattr(self, kind + "s")
            return act - r.ideal, r.sigma, np.ones(len(r), bool)
        if kind == "torsion":
            r = self.torsions
            half = 180.0 / r.extra["period"]
            dev = np.mod(act - r.ideal + half, 2 * half) - half
            return dev, r.sigma, np.ones(len(r), bool)
        if kind == "chiral":
            r = self.chirals
            dev = np.where(r.extra["both"], np.abs(act) - r.ideal, act - r.ideal)
            return dev, r.sigma, np.ones(len(r), bool)
        if kind == "plane":
            r = self.planes
            return act, r.sigma[r.extra["plane_of"]], np.ones(len(act), bool)
        if kind == "nonbonded":
            nb = self.nonbonded
            dev = nb.d0 - act
            return dev, nb.sigma, dev > 0
        if kind == "adp_kl":
            return act, self.kl_pairs.sigma, np.ones(len(act), bool)
        if kind == "b_similarity":
            ani = np.asarray(state.is_aniso, bool)
            idx = self.b_pairs.idx
            active = ~(ani[idx[:, 0]] & ani[idx[:, 1]]) if len(idx) else np.zeros(0, bool)
            return act, self.b_pairs.sigma, active
        ani = np.asarray(state.is_aniso, bool)
        r = self.adp_pairs
        active = ani[r.idx[:, 0]] & ani[r.idx[:, 1]] if len(r) else np.zeros(0, bool)
        sig = r.sigma if kind == "adp_rigid_bond" else r.extra["sigma_sim"]
        return act, sig, active

    def _state(self, state_or_xyz):
        if hasattr(state_or_xyz, "b_iso"):
            return state_or_xyz
        from ..core.state import AtomState
        st = AtomState.from_model(self.model)
        if state_or_xyz is not None:
            st.xyz = _as_xyz(state_or_xyz).copy()
        return st

    def statistics(self, state_or_xyz=None) -> dict:
        """Per kind: n, rmsd (units in UNITS), rmsz; state or xyz (default: the model)."""
        state = self._state(state_or_xyz)
        out = {}
        for kind in KINDS:
            dev, sig, mask = self.deviations(kind, state)
            d, s = dev[mask], sig[mask]
            n = int(mask.sum())
            entry = {"n": n,
                     "rmsd": float(np.sqrt(np.mean(d ** 2))) if n else 0.0,
                     "rmsz": float(np.sqrt(np.mean((d / s) ** 2))) if n else 0.0,
                     "unit": UNITS[kind]}
            if kind == "nonbonded":
                entry["n_pairs"] = int(len(dev))
                entry["note"] = "n, rmsd, rmsz over contacts closer than d0"
            if kind == "plane":
                entry["n_planes"] = len(self.planes)
            out[kind] = entry
        return out

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
            if kind not in act_cache:
                act_cache[kind] = self.evaluate(kind, state)[2]
            actual = float(act_cache[kind][k])
            if kind == "plane":
                atoms = [int(self.planes.extra["atoms"][k])]
                ideal = 0.0
                label = self.planes.extra["label"][self.planes.extra["plane_of"][k]]
            elif kind == "nonbonded":
                nb = self.nonbonded
                atoms = [int(nb.pi[k]), int(nb.pj[k])]
                ideal = float(nb.d0[k])
                label = "" if nb.weight[k] == 1.0 else f"symmetry op {int(nb.pop[k])}"
            else:
                r = getattr(self, kind + "s")
                atoms = [int(a) for a in r.idx[k]]
                ideal = float(r.ideal[k])
                if kind == "chiral" and r.extra["both"][k]:
                    actual = abs(actual)
                label = ""
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
                "b_similarity": len(self.b_pairs), "adp_pairs": len(self.adp_pairs)}

    def without_atoms(self, mask) -> "Restraints":
        """A copy whose bond, angle, torsion, chiral and plane restraints leave out the atoms in
        ``mask`` (e.g. riding hydrogens, whose positions are constrained); other kinds are shared."""
        import copy
        mask = np.asarray(mask, bool)
        R = copy.copy(self)
        for kind in ("bonds", "angles", "torsions", "chirals"):
            r = getattr(self, kind)
            keep = ~mask[r.idx].any(axis=1) if len(r) else np.zeros(0, bool)
            extra = {k: (v[keep] if isinstance(v, np.ndarray) else [x for x, kk in zip(v, keep) if kk])
                     for k, v in r.extra.items()}
            setattr(R, kind, RestraintSet(r.idx[keep], r.ideal[keep], r.sigma[keep], extra))
        p = self.planes
        atoms, start = p.extra["atoms"], p.extra["start"]
        new_atoms, new_start, sig, lab = [], [0], [], []
        for k in range(len(p)):          # planes: a few thousand at most
            a = atoms[start[k]:start[k + 1]]
            a = a[~mask[a]]
            if len(a) >= 4:
                new_atoms.extend(a.tolist())
                new_start.append(len(new_atoms))
                sig.append(p.sigma[k])
                lab.append(p.extra["label"][k])
        R.planes = plane_set(new_atoms, new_start, sig, lab)
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


# ============================================================================ build
def _tag_atoms(st: gemmi.Structure) -> int:
    """Store each atom's Model index in ``Atom.fraction`` (prepare_topology renumbers
    serials, but leaves ``fraction`` alone; a float32 holds integers exactly to 2**24)."""
    k = 0
    for ch in st[0]:
        for res in ch:
            for at in res:
                at.fraction = float(k)
                k += 1
    return k


def _ix(atom) -> int:
    return int(atom.fraction)


def _unknown_residue_error(model, missing, library):
    first = np.flatnonzero(np.isin(model.resname, missing))
    resid = np.unique(model.residue_index[first])
    i = first[0]
    what = f"residue {model.resname[i]} {model.chain[i]}/{model.seqid[i]}"
    more = len(resid) - 1
    if more:
        what += f" (and {more} more residue(s) of type(s) {', '.join(sorted(missing))})"
    hint = "give its dictionary with --ligand FILE.cif"
    if library.source == "built-in":
        hint += " or a CCP4 monomer library with --monlib DIR (or $CLIBD_MON)"
    hint += "; --allow-unknown restrains it by non-bonded terms only"
    return InputError(model.path, f"no restraint dictionary for {what} in the "
                                  f"{library.source} library; {hint}")


def build_restraints(model, monlib_dir=None, ligands=(), allow_unknown=False,
                     hydrogens="keep", params: RestraintParameters | None = None) -> Restraints:
    """Build all restraints of ``model``.

    Library: ``monlib_dir``, else $CLIBD_MON, else the built-in set; ``ligands`` (CIF
    dictionaries) override it. ``hydrogens``: 'keep' restrains H atoms in the model,
    'remove' leaves them out of every restraint. A residue with no dictionary is an
    InputError unless ``allow_unknown`` (then it gets non-bonded terms only).
    """
    if hydrogens not in ("keep", "remove"):
        raise ValueError(f"hydrogens must be 'keep' or 'remove', not {hydrogens!r}")
    params = params or RestraintParameters()
    names = sorted(set(model.resname.tolist()))
    library = load_library(names, monlib_dir, ligands)
    R = Restraints(model, library, params)
    R.hydrogens = hydrogens
    R.log.append(library.describe())
    n = model.n_atoms

    unknown_atom = np.isin(model.resname, library.missing) if library.missing else \
        np.zeros(n, bool)
    if library.missing:
        if not allow_unknown:
            raise _unknown_residue_error(model, library.missing, library)
        res = np.unique(model.residue_index[unknown_atom])
        for ri in res:
            i = np.flatnonzero(model.residue_index == ri)[0]
            R.unknown_residues.append(f"{model.chain[i]}/{model.resname[i]} {model.seqid[i]}")
        R.log.append(f"--allow-unknown: {len(res)} residue(s) with no dictionary restrained by "
                     f"non-bonded terms only: {', '.join(R.unknown_residues[:10])}"
                     + (" ..." if len(res) > 10 else ""))

    st = model.structure.clone()
    if len(st) > 1:
        del st[1:]
    if n >= 2 ** 24:
        raise InputError(model.path, "too many atoms (2**24 or more)")
    if _tag_atoms(st) != n:
        raise RuntimeError("model arrays and structure are out of step")
    if hydrogens == "remove":
        st.remove_hydrogens()
    if library.missing:
        for ch in st[0]:
            for k in range(len(ch) - 1, -1, -1):
                if ch[k].name in library.missing:
                    del ch[k]
    # links: explicit records, then those found by distance
    n_records = len(st.connections)
    if params.find_links:
        try:
            gemmi.add_automatic_links(st[0], st, library.monlib)
        except Exception as e:  # never fatal: explicit records still apply
            R.log.append(f"automatic link search failed: {e}")
    warn = io.StringIO()
    try:
        topo = gemmi.prepare_topology(st, library.monlib, h_change=gemmi.HydrogenChange.NoChange,
                                      warnings=warn, reorder=False, ignore_unknown_links=True)
    except Exception as e:
        raise InputError(model.path, f"cannot build restraints: {e}") from None
    for line in warn.getvalue().splitlines():
        if line.strip():
            R.log.append("gemmi: " + line.strip())

    _extract(R, topo, params)
    _links(R, st, topo, n_records)
    _hydrogens(R, model)
    _adp_pairs(R, params)
    _nonbonded(R, model, topo, st, unknown_atom, hydrogens)
    from .riding import riding_setup
    R.riding = riding_setup(R, model)
    return R


def _extract(R, topo, params):
    bonds = [(_ix(b.atoms[0]), _ix(b.atoms[1]), b.restr.value, b.restr.esd)
             for b in topo.bonds]
    b = np.array(bonds, dtype=np.float64).reshape(-1, 4)
    keep = b[:, 3] > 0
    R.bonds = RestraintSet(b[keep, :2].astype(np.int64), b[keep, 2].copy(), b[keep, 3].copy())
    ang = [(_ix(a.atoms[0]), _ix(a.atoms[1]), _ix(a.atoms[2]), a.restr.value, a.restr.esd)
           for a in topo.angles]
    a = np.array(ang, dtype=np.float64).reshape(-1, 5)
    keep = a[:, 4] > 0
    R.angles = RestraintSet(a[keep, :3].astype(np.int64), a[keep, 3].copy(), a[keep, 4].copy())
    tor = [(_ix(t.atoms[0]), _ix(t.atoms[1]), _ix(t.atoms[2]), _ix(t.atoms[3]),
            t.restr.value, t.restr.esd, t.restr.period) for t in topo.torsions]
    t = np.array(tor, dtype=np.float64).reshape(-1, 7)
    labels = [t_.restr.label for t_ in topo.torsions]
    keep = t[:, 5] > 0   # constant torsions (esd 0) are left to the planes
    R.torsions = RestraintSet(t[keep, :4].astype(np.int64), t[keep, 4].copy(), t[keep, 5].copy(),
                              {"period": np.maximum(t[keep, 6], 1.0),
                               "label": [l for l, k in zip(labels, keep) if k]})
    pos = gemmi.ChiralityType.Positive
    neg = gemmi.ChiralityType.Negative
    ch = [(_ix(c.atoms[0]), _ix(c.atoms[1]), _ix(c.atoms[2]), _ix(c.atoms[3]),
           topo.ideal_chiral_abs_volume(c),
           1.0 if c.restr.sign == pos else (-1.0 if c.restr.sign == neg else 0.0))
          for c in topo.chirs]
    c = np.array(ch, dtype=np.float64).reshape(-1, 6)
    keep = np.isfinite(c[:, 4]) & (c[:, 4] > 0)
    c = c[keep]
    R.chirals = RestraintSet(c[:, :4].astype(np.int64),
                             np.where(c[:, 5] == 0, c[:, 4], c[:, 4] * c[:, 5]),
                             np.full(len(c), params.chiral_sigma),
                             {"both": c[:, 5] == 0})
    atoms, start, sig, lab = [], [0], [], []
    for p in topo.planes:
        if len(p.atoms) < 4 or p.restr.esd <= 0:
            continue
        atoms.extend(_ix(at) for at in p.atoms)
        start.append(len(atoms))
        sig.append(p.restr.esd)
        lab.append(p.restr.label)
    R.planes = plane_set(atoms, start, sig, lab)


def plane_set(atoms, start, sigma, labels) -> RestraintSet:
    """Planes as a RestraintSet: atom indices of all planes concatenated (``atoms``), plane k's
    atoms at ``atoms[start[k]:start[k+1]]`` (``start`` begins with 0), σ per plane (Å)."""
    start = np.array(start, dtype=np.int64)
    n = len(sigma)
    return RestraintSet(np.zeros((n, 0), np.int64), np.zeros(n), np.array(sigma, dtype=np.float64),
                        {"atoms": np.array(atoms, dtype=np.int64), "start": start,
                         "plane_of": np.repeat(np.arange(n), np.diff(start)), "label": labels})


def _links(R, st, topo, n_records):
    counts = {}
    for ci in topo.chain_infos:
        for ri in ci.res_infos:
            for p in ri.prev:
                if p.link_id:
                    counts[p.link_id] = counts.get(p.link_id, 0) + 1
    used = {}
    for e in topo.extras:
        counts[e.link_id] = counts.get(e.link_id, 0) + 1
        used[(e.res1.name, str(e.res1.seqid), e.res2.name, str(e.res2.seqid))] = e.link_id
    R.link_counts = counts
    model = st[0]
    for k, c in enumerate(st.connections):
        a1 = model.find_cra(c.partner1)
        a2 = model.find_cra(c.partner2)
        if a1.atom is None or a2.atom is None:
            continue
        key = (a1.residue.name, str(a1.residue.seqid), a2.residue.name, str(a2.residue.seqid))
        key_r = key[2:] + key[:2]
        link_id = used.get(key) or used.get(key_r) or c.link_id or ""
        R.links.append({"link_id": link_id, "type": c.type.name,
                        "atoms": (_ix(a1.atom), _ix(a2.atom)),
                        "origin": "record" if k < n_records else "distance",
                        "restrained": bool(used.get(key) or used.get(key_r))})
    n_auto = sum(1 for l in R.links if l["origin"] == "distance")
    if n_auto:
        R.log.append(f"links found by distance: {n_auto} ("
                     + ", ".join(sorted({l['link_id'] for l in R.links
                                         if l['origin'] == 'distance'})) + ")")


def _hydrogens(R, model):
    parents = np.full(R.n_atoms, -1, dtype=np.int64)
    if len(R.bonds):
        i, j = R.bonds.idx[:, 0], R.bonds.idx[:, 1]
        hi, hj = model.is_hydrogen[i], model.is_hydrogen[j]
        m = hi & ~hj
        parents[i[m]] = j[m]
        m = hj & ~hi
        parents[j[m]] = i[m]
    R.hydrogen_parents = parents


def _unique_pairs(p, n):
    if len(p) == 0:
        return np.zeros((0, 2), np.int64)
    lo, hi = np.minimum(p[:, 0], p[:, 1]), np.maximum(p[:, 0], p[:, 1])
    keys = np.unique(lo * n + hi)
    out = np.stack([keys // n, keys % n], axis=1)
    return out[out[:, 0] != out[:, 1]]


def _adp_pairs(R, params):
    n = R.n_atoms
    b12 = _unique_pairs(R.bonds.idx, n)
    b13 = _unique_pairs(R.angles.idx[:, [0, 2]], n) if len(R.angles) else np.zeros((0, 2),
                                                                                   np.int64)
    k12 = b12[:, 0] * n + b12[:, 1]
    k13 = b13[:, 0] * n + b13[:, 1]
    b13 = b13[~np.isin(k13, k12)]
    idx = np.concatenate([b12, b13]).astype(np.int64)
    sig = np.concatenate([np.full(len(b12), params.b_sigma_bonded),
                          np.full(len(b13), params.b_sigma_angle)])
    # hydrogens ride: their B follows the parent's, so they take no part in B restraints
    heavy = ~R.model.is_hydrogen
    keep = heavy[idx[:, 0]] & heavy[idx[:, 1]]
    idx, sig = idx[keep], sig[keep]
    R.b_pairs = RestraintSet(idx, np.zeros(len(idx)), sig)
    a = b12[heavy[b12[:, 0]] & heavy[b12[:, 1]]]
    R.adp_pairs = RestraintSet(a, np.zeros(len(a)), np.full(len(a), params.rigid_bond_sigma),
                               {"sigma_sim": np.full(len(a), params.adp_similarity_sigma)})
    from .adp_kl import kl_pairs
    kp, ks = kl_pairs(R.model, R.bonds.idx, params.adp_kl_max_dist)
    R.kl_pairs = RestraintSet(kp, np.zeros(len(kp)), ks)


def _graph_keys(edges, n):
    """Pair keys (lo*n+hi) at bond-graph distance 1-2 (excluded) and exactly 3 (1-4)."""
    if len(edges) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    e = np.concatenate([edges, edges[:, ::-1]])
    A = sp.csr_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    A.data[:] = 1
    A = A.astype(np.int32)
    A2 = A @ A
    A3 = A2 @ A

    def keys(M):
        M = sp.triu(M, k=1).tocoo()
        return M.row.astype(np.int64) * n + M.col

    k12 = np.union1d(keys(A), keys(A2))
    k14 = np.setdiff1d(keys(A3), k12)
    return k12, k14


def _planar_14_keys(edges, plane_keys, n):
    """Keys of pairs a-b-c-d whose central bond b-c joins two atoms of one plane."""
    if len(edges) == 0:
        return np.zeros(0, np.int64)
    e = np.concatenate([edges, edges[:, ::-1]])
    A = sp.csr_matrix((np.ones(len(e), np.int32), (e[:, 0], e[:, 1])), shape=(n, n))
    A.data[:] = 1
    bk = np.minimum(edges[:, 0], edges[:, 1]) * n + np.maximum(edges[:, 0], edges[:, 1])
    pe = edges[np.isin(bk, plane_keys)]
    pe = np.concatenate([pe, pe[:, ::-1]])
    P = sp.csr_matrix((np.ones(len(pe), np.int32), (pe[:, 0], pe[:, 1])), shape=(n, n))
    M = sp.triu(A @ P @ A, k=1).tocoo()
    return np.unique(M.row.astype(np.int64) * n + M.col)


def _plane_pair_keys(planes, n):
    """Keys lo*n+hi of all atom pairs that share a plane restraint."""
    atoms, start = planes.extra["atoms"], planes.extra["start"]
    sizes = np.diff(start)
    keys = [np.zeros(0, np.int64)]
    for size in np.unique(sizes):
        sel = np.flatnonzero(sizes == size)
        block = atoms[start[sel][:, None] + np.arange(size)[None, :]]   # (m, size)
        a, b = np.triu_indices(size, 1)
        x, y = block[:, a].ravel(), block[:, b].ravel()
        keys.append(np.minimum(x, y) * n + np.maximum(x, y))
    return np.unique(np.concatenate(keys))


def _nonbonded(R, model, topo, st, unknown_atom, hydrogens):
    n = R.n_atoms
    p = R.params.nonbonded
    types = R.library.energy_types
    active = np.ones(n, bool)
    if hydrogens == "remove":
        active &= ~model.is_hydrogen
    has_h = bool((model.is_hydrogen & active).any())
    chem = np.full(n, "", dtype=object)
    for ci in topo.chain_infos:
        for ri in ci.res_infos:
            cache = {}
            for at in ri.res:
                alt = at.altloc
                if alt not in cache:
                    try:
                        cache[alt] = ri.get_final_chemcomp(alt)
                    except Exception:
                        cache[alt] = None
                cc = cache[alt]
                if cc is None:
                    continue
                try:
                    chem[_ix(at)] = cc.get_atom(at.name).chem_type
                except Exception:
                    pass
    radius = np.zeros(n)
    ion = np.full(n, np.nan)
    hb = np.zeros(n, np.int64)
    untyped = []
    el_cache = {}
    for i in range(n):
        el = model.element[i]
        if el not in el_cache:
            e = gemmi.Element(el)
            el_cache[el] = (e.vdw_r, e.is_metal)
        t = types.get(chem[i])
        if t is None:
            radius[i] = el_cache[el][0]
            if not unknown_atom[i] and active[i]:
                untyped.append(i)
            continue
        r = t.vdw_radius if (has_h or not np.isfinite(t.vdwh_radius)) else t.vdwh_radius
        radius[i] = r if np.isfinite(r) else el_cache[el][0]
        ion[i] = t.ion_radius
        hb[i] = HB_CODES.get(t.hb_type, 0)
    if untyped:
        R.log.append(f"{len(untyped)} atom(s) without an energy type use element radii, "
                     f"e.g. {model.atom_label(untyped[0])}")
    is_metal = np.array([el_cache[e][1] for e in model.element], dtype=bool)
    # polar hydrogens: 'H' when the parent is a donor, otherwise neither
    hpar = R.hydrogen_parents
    h = np.flatnonzero(hpar >= 0)
    hb[h] = np.where(np.isin(hb[hpar[h]], [HB_CODES["D"], HB_CODES["B"]]), HB_CODES["H"], 0)
    dinc = np.array([p.dinc_14.get(e, p.dinc_14_other) for e in model.element])
    alts = sorted(set(model.altloc.tolist()) - {""})
    amap = {a: k + 1 for k, a in enumerate(alts)}
    conformer = np.array([amap.get(a, 0) for a in model.altloc], dtype=np.int64)

    edges = [R.bonds.idx]
    edges.append(np.array([l["atoms"] for l in R.links], dtype=np.int64).reshape(-1, 2))
    extra_excl = [np.zeros(0, np.int64)]
    if unknown_atom.any():
        # unknown residues: no pairs inside a residue; bonds to neighbours guessed from
        # covalent radii (for the 1-2/1-3 exclusions)
        ua = np.flatnonzero(unknown_atom)
        rres = model.residue_index[ua]
        same = rres[:, None] == rres[None, :]
        ii, jj = np.nonzero(np.triu(same, 1))
        extra_excl.append(ua[ii] * n + ua[jj])
        from scipy.spatial import cKDTree
        tree = cKDTree(model.xyz)
        cov = np.array([gemmi.Element(e).covalent_r for e in model.element])
        pairs = tree.query_ball_point(model.xyz[ua], 2.6)
        guess = []
        for a, js in zip(ua, pairs):
            for b in js:
                if b != a and model.residue_index[b] != model.residue_index[a]:
                    if np.linalg.norm(model.xyz[a] - model.xyz[b]) < cov[a] + cov[b] + 0.4:
                        guess.append((a, b))
        edges.append(np.array(guess, dtype=np.int64).reshape(-1, 2))
    E = np.concatenate(edges)
    k12, k14 = _graph_keys(E, n)
    # 1-4 pairs across a bond that lies in a plane restraint (peptide O(i)...CA(i+1),
    # ring and conjugated systems) are fixed by planes and torsions: not contacts
    pk = _plane_pair_keys(R.planes, n)
    planar = _planar_14_keys(E, pk, n)
    fixed = np.isin(k14, planar)
    extra_excl.append(k14[fixed])
    k14 = k14[~fixed]
    excluded = np.concatenate([k12] + extra_excl)
    symops = SymmetryOps(model.cell, model.spacegroup,
                         use_symmetry=not model.meta.get("no_cell", False))
    R.nonbonded = NonbondedList(n, symops, radius, hb, dinc, is_metal, ion, conformer,
                                excluded, k14, p, active=active,
                                occupancy=np.asarray(model.occ, dtype=np.float64))
    R.nonbonded.build(np.ascontiguousarray(model.xyz, dtype=np.float64))
    R.site_symmetry_order = 1 + R.nonbonded.special_count
    n_sp = int((R.site_symmetry_order > 1).sum())
    if n_sp:
        R.log.append(f"{n_sp} atom(s) on special positions")
