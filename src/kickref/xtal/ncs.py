"""Non-crystallographic symmetry (NCS): groups of equivalent polymer chains, with operators.

Detection (:func:`detect_ncs`), after servalcat's ``prepare_ncs_restraints`` and phenix's
``ncs_search``: the polymer chains of the first model are taken in file order; each chain not yet
in a group becomes the reference of a new group, and every later chain of the same polymer type
whose sequence aligns to it (``gemmi.align_sequence_to_polymer``, partial-model scoring) with at
least ``min_aligned`` matched residues, ``min_identity`` sequence identity (relative to the shorter
chain) and a mean local RMS over windows of ``window`` aligned residues ≤ ``max_local_rms`` Å joins
it (alignment scoring: see :func:`_align`). Given groups (:func:`groups_from_chains`, ``--ncs-groups "A,B;C,D"``) skip the thresholds.

Atom correspondence (servalcat's ``NcsList``): along the alignment's CIGAR, residues of a match
with equal names have their atoms matched by (name, element); hydrogens and atoms with an altloc
are left out. ``NcsGroup.atoms`` (n_copies, n_ref) holds model atom indices, row 0 the reference
atoms, −1 where a copy lacks the atom.

Operators: ``rotation`` R and ``translation`` t (Å) map the reference onto the copy,
x_copy ≈ R·x_ref + t, from the least-squares superposition of the matched main-chain atoms
(gemmi ``superpose_positions``, 3 trimming cycles dropping atoms farther than 2 × RMSD, as gemmi's
``calculate_superposition``); ``rmsd`` (Å) is that superposition's RMSD.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import gemmi
import numpy as np
from scipy.spatial.transform import Rotation

POLYMERS = (gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD, gemmi.PolymerType.Dna,
            gemmi.PolymerType.Rna, gemmi.PolymerType.DnaRnaHybrid)
MAIN_CHAIN = {"N", "CA", "C", "O", "P", "OP1", "OP2", "O5'", "C5'", "C4'", "C3'", "O3'"}


@dataclass
class NcsCopy:
    """One copy of a group (copy 0: the reference, identity operator)."""
    chain: str
    rotation: np.ndarray                 # (3, 3): x_copy ≈ rotation @ x_ref + translation
    translation: np.ndarray              # (3,) Å
    rmsd: float = 0.0                    # Å, main-chain superposition RMSD (after trimming)
    n_sup: int = 0                       # atoms kept in the superposition
    n_aligned: int = 0                   # aligned residues with equal names
    identity: float = 100.0              # % sequence identity (relative to the shorter chain)
    local_rms: float = 0.0               # Å, mean local RMS over windows of aligned residues
    residue_pairs: list = field(default_factory=list)   # [(reference seqid, copy seqid)] as str

    def transform(self, xyz) -> np.ndarray:
        """Reference-frame positions (n, 3) Å mapped onto this copy."""
        return np.asarray(xyz) @ self.rotation.T + self.translation

    def moved(self, rotation, shift, centre) -> "NcsCopy":
        """This copy with its operator followed by the rotation matrix ``rotation`` about
        ``centre`` (Å) and the translation vector ``shift`` (Å)."""
        R = np.asarray(rotation, float)
        c = np.asarray(centre, float)
        return dataclasses.replace(self, rotation=R @ self.rotation,
                                   translation=R @ (self.translation - c) + c + np.asarray(shift, float))

    def perturbed(self, angle_deg: float, shift: float, centre, rng) -> "NcsCopy":
        """This copy with its operator followed by a rotation of ``angle_deg`` about a random axis
        through ``centre`` (Å) and a translation of ``shift`` Å in a random direction (``rng``: a
        numpy Generator); to test operator refinement."""
        axis, direction = rng.normal(size=3), rng.normal(size=3)
        R = Rotation.from_rotvec(np.radians(angle_deg) * axis / np.linalg.norm(axis)).as_matrix()
        return self.moved(R, shift * direction / np.linalg.norm(direction), centre)


@dataclass
class NcsGroup:
    copies: list                         # NcsCopy; copies[0] the reference
    atoms: np.ndarray                    # (n_copies, n_ref) int64 model atom indices, −1: missing

    @property
    def chains(self) -> list:
        return [c.chain for c in self.copies]

    def as_dict(self) -> dict:
        """JSON-ready description (operators, statistics, aligned residue ranges)."""
        out = {"chains": self.chains, "n_atoms_matched": [int((r >= 0).sum()) for r in self.atoms],
               "copies": []}
        for c in self.copies:
            out["copies"].append({"chain": c.chain, "rotation": c.rotation.round(6).tolist(),
                                  "translation": c.translation.round(4).tolist(),
                                  "rotation_deg": rotation_angle(c.rotation), "rmsd": round(c.rmsd, 4),
                                  "n_aligned": c.n_aligned, "identity": round(c.identity, 2),
                                  "local_rms": round(c.local_rms, 4),
                                  "residue_ranges": residue_ranges(c.residue_pairs)})
        return out


def rotation_angle(r) -> float:
    """Angle (degrees) of a rotation matrix."""
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def residue_ranges(pairs) -> list:
    """Runs of consecutive aligned residue pairs as 'ref_first-ref_last:copy_first-copy_last'."""
    out, start, prev = [], None, None
    num = lambda s: int(re.match(r"-?\d+", s).group())
    for p in pairs:
        if prev is not None and (num(p[0]) == num(prev[0]) + 1 and num(p[1]) == num(prev[1]) + 1):
            prev = p
            continue
        if start is not None:
            out.append(f"{start[0]}-{prev[0]}:{start[1]}-{prev[1]}")
        start = prev = p
    if start is not None:
        out.append(f"{start[0]}-{prev[0]}:{start[1]}-{prev[1]}")
    return out


# --------------------------------------------------------------------------- chains and atoms
class _Chains:
    """The polymer chains of a model: residue spans, polymer types and each residue's atoms."""

    def __init__(self, model):
        st = model.structure
        if not st.entities:
            st.setup_entities()
        self.model = model
        self.polymers = {}                       # chain name → (ResidueSpan, PolymerType)
        self.residue_atoms = {}                  # (chain, seqid str, resname) → {(name, el): atom}
        i = 0
        ok = ~model.is_hydrogen & (model.altloc == "")
        for ch in st[0]:
            for res in ch:
                key = (ch.name, str(res.seqid), res.name)
                d = self.residue_atoms.setdefault(key, {})
                for at in res:
                    if ok[i]:
                        d[(at.name, at.element.name)] = i
                    i += 1
            pol = ch.get_polymer()
            pt = pol.check_polymer_type()
            if pt in POLYMERS and len(pol) and ch.name not in self.polymers:
                self.polymers[ch.name] = (pol, pt)

    def residues(self, chain) -> list:
        pol, _ = self.polymers[chain]
        return [(str(r.seqid), r.name) for r in pol.first_conformer()]


def _align(chains: _Chains, ref: str, other: str, other_chains: _Chains | None = None):
    """Alignment of chain ``other`` (of ``other_chains``, default the same model) to ``ref``:
    (AlignmentResult, ref residues, other residues).

    Of gemmi's partial-model scoring ('p': gaps where the chain is broken, mismatches forbidden)
    and its sequence scoring ('s': mismatches allowed), the alignment with more matches."""
    oc = other_chains or chains
    pol_r, pt = chains.polymers[ref]
    pol_o, _ = oc.polymers[other]
    res_r = chains.residues(ref)
    res_o = oc.residues(other)
    seq = [n for _, n in res_r]
    al = max((gemmi.align_sequence_to_polymer(seq, pol_o, pt, gemmi.AlignmentScoring(w)) for w in "ps"),
             key=lambda a: a.match_count)
    return al, res_r, res_o


def cigar_pairs(cigar: str) -> list:
    """(i, j) position pairs of the aligned ('M') columns of a gemmi CIGAR string, e.g. '5M1I3M'
    (M: both sequences advance; I: the first only; D: the second only)."""
    pairs, i, j = [], 0, 0
    for n, op in re.findall(r"(\d+)([MID])", cigar):
        n = int(n)
        if op == "M":
            pairs += [(i + k, j + k) for k in range(n)]
            i += n
            j += n
        elif op == "I":
            i += n
        else:
            j += n
    return pairs


def _residue_pairs(al, res_r, res_o) -> list:
    """Aligned residue pairs with equal names (indices into res_r, res_o)."""
    return [(i, j) for i, j in cigar_pairs(al.cigar_str()) if res_r[i][1] == res_o[j][1]]


def _atom_pairs(chains: _Chains, ref, other, pairs, res_r, res_o, other_chains: _Chains | None = None):
    """(ref atoms, other atoms, residue-pair number of each) of the matched atoms."""
    a, b, w = [], [], []
    for k, (i, j) in enumerate(pairs):
        dr = chains.residue_atoms[(ref, *res_r[i])]
        do = (other_chains or chains).residue_atoms[(other, *res_o[j])]
        for key, ia in dr.items():
            ib = do.get(key)
            if ib is not None:
                a.append(ia)
                b.append(ib)
                w.append(k)
    return np.array(a, np.int64), np.array(b, np.int64), np.array(w, np.int64)


def superpose(fixed, movable, trim_cycles: int = 3, trim_cutoff: float = 2.0):
    """(R, t, rmsd, n) with fixed ≈ R·movable + t (gemmi ``superpose_positions``); atoms farther
    than ``trim_cutoff`` × RMSD are dropped and the fit repeated, ``trim_cycles`` times."""
    fixed, movable = np.asarray(fixed, float), np.asarray(movable, float)
    keep = np.ones(len(fixed), bool)
    for cycle in range(trim_cycles + 1):
        sr = gemmi.superpose_positions([gemmi.Position(*p) for p in fixed[keep]],
                                       [gemmi.Position(*p) for p in movable[keep]])
        R = np.array(sr.transform.mat.tolist())
        t = np.array(sr.transform.vec.tolist())
        d = np.linalg.norm(movable @ R.T + t - fixed, axis=1)
        new = d <= trim_cutoff * sr.rmsd
        if cycle == trim_cycles or new.sum() < 3 or (new == keep).all():
            break
        keep = new
    return R, t, float(sr.rmsd), int(sr.count)


def local_rms(xa, xb, window_of, window: int = 5) -> float:
    """Mean RMSD (Å) of the least-squares fits of ``xb`` onto ``xa`` over windows of ``window``
    consecutive aligned residues (``window_of``: each atom's residue-pair number); batched Kabsch."""
    n_res = int(window_of.max()) + 1 if len(window_of) else 0
    if n_res < window:
        return 0.0
    starts = np.arange(n_res - window + 1)
    rows, cols = [], []
    for s in range(window):                   # window × (atoms): each atom joins up to 5 windows
        w = window_of - s
        ok = (w >= 0) & (w < len(starts))
        rows.append(w[ok])
        cols.append(np.flatnonzero(ok))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    cnt = np.bincount(rows, minlength=len(starts)).astype(float)
    cnt_ok = np.maximum(cnt, 1)
    ca = np.zeros((len(starts), 3))
    cb = np.zeros((len(starts), 3))
    np.add.at(ca, rows, xa[cols])
    np.add.at(cb, rows, xb[cols])
    ca /= cnt_ok[:, None]
    cb /= cnt_ok[:, None]
    pa = xa[cols] - ca[rows]
    pb = xb[cols] - cb[rows]
    H = np.zeros((len(starts), 3, 3))
    np.add.at(H, rows, pb[:, :, None] * pa[:, None, :])
    ss = np.zeros(len(starts))
    np.add.at(ss, rows, (pa ** 2).sum(1) + (pb ** 2).sum(1))
    sv = np.linalg.svd(H, compute_uv=False)
    sign = np.sign(np.linalg.det(H))
    e = ss - 2 * (sv[:, 0] + sv[:, 1] + sign * sv[:, 2])
    rms = np.sqrt(np.maximum(e, 0) / cnt_ok)
    return float(rms[cnt >= 3].mean()) if (cnt >= 3).any() else 0.0


def _copy_for(chains: _Chains, ref: str, other: str, other_chains: _Chains | None = None):
    """(NcsCopy, ref atoms, other atoms) of chain ``other`` (of ``other_chains``, default the
    same model; its atoms index that model) aligned to ``ref``; None without match."""
    oc = other_chains or chains
    al, res_r, res_o = _align(chains, ref, other, oc)
    pairs = _residue_pairs(al, res_r, res_o)
    a, b, w = _atom_pairs(chains, ref, other, pairs, res_r, res_o, oc)
    if len(a) < 3:
        return None
    xyz, xyz_o = chains.model.xyz, oc.model.xyz
    mc = np.isin(chains.model.atom_name[a], list(MAIN_CHAIN))
    sel = mc if mc.sum() >= 3 else np.ones(len(a), bool)
    R, t, rmsd, n_sup = superpose(xyz_o[b[sel]], xyz[a[sel]])
    ident = al.calculate_identity(0)
    copy = NcsCopy(other, R, t, rmsd, n_sup, len(pairs), float(ident),
                   local_rms(xyz[a], xyz_o[b], w),
                   [(res_r[i][0], res_o[j][0]) for i, j in pairs])
    return copy, a, b


def _group(chains: _Chains, ref: str, members: list) -> NcsGroup:
    """A group from the reference chain and the (NcsCopy, ref atoms, copy atoms) of the others."""
    ref_atoms = np.unique(np.concatenate([m[1] for m in members]))
    table = np.full((len(members) + 1, len(ref_atoms)), -1, np.int64)
    table[0] = ref_atoms
    for k, (_, a, b) in enumerate(members):
        table[k + 1, np.searchsorted(ref_atoms, a)] = b
    n_res = len(chains.residues(ref))
    first = NcsCopy(ref, np.eye(3), np.zeros(3), 0.0, 0, n_res, 100.0, 0.0,
                    [(s, s) for s, _ in chains.residues(ref)])
    return NcsGroup([first] + [m[0] for m in members], table)


def detect_ncs(model, min_aligned: int = 10, min_identity: float = 0.8, max_local_rms: float = 2.0) -> list:
    """NCS groups found from the model's polymer chains (see the module docstring); [] if none."""
    chains = _Chains(model)
    names = list(chains.polymers)
    used, groups = set(), []
    for k, ref in enumerate(names):
        if ref in used:
            continue
        members = []
        for other in names[k + 1:]:
            if other in used or chains.polymers[other][1] != chains.polymers[ref][1]:
                continue
            if min(len(chains.polymers[ref][0]), len(chains.polymers[other][0])) < min_aligned:
                continue
            m = _copy_for(chains, ref, other)
            if m is None:
                continue
            c = m[0]
            if c.n_aligned < min_aligned or c.identity < 100 * min_identity or c.local_rms > max_local_rms:
                continue
            members.append(m)
            used.add(other)
        if members:
            used.add(ref)
            groups.append(_group(chains, ref, members))
    return groups


def cross_crystal_groups(model, chain, other_model, other_chain):
    """The same molecule in two crystal forms (MAIN's multi-crystal averaging): chain ``chain``
    (None: the first polymer chain) of ``model`` aligned and superposed onto chain ``other_chain`` of ``other_model`` as
    :func:`detect_ncs` does within a model (no thresholds). Returns two one-copy
    :class:`NcsGroup` s, one per form, whose ``atoms`` index that form's model and whose operator
    maps the common reference frame (``model``'s Cartesian frame) into that form's Cartesian frame
    (identity for the first; x₂ ≈ R·x₁ + t for the second, from the superposition)."""
    ca, cb = _Chains(model), _Chains(other_model)
    chain = chain or next(iter(ca.polymers), None)
    other_chain = other_chain or next(iter(cb.polymers), None)
    for c, ch, m in ((ca, chain, model), (cb, other_chain, other_model)):
        if ch not in c.polymers:
            raise ValueError(f"{m.path or 'model'}: no polymer chain {ch!r}")
    m = _copy_for(ca, chain, other_chain, cb)
    if m is None:
        raise ValueError(f"chain {other_chain!r} has no atoms matching chain {chain!r} of the first form")
    copy, a, b = m
    first = NcsCopy(chain, np.eye(3), np.zeros(3), 0.0, 0, len(ca.residues(chain)), 100.0, 0.0,
                    [(s, s) for s, _ in ca.residues(chain)])
    return NcsGroup([first], a[None, :]), NcsGroup([copy], b[None, :])


def parse_group_spec(text: str) -> list:
    """'A,B;C,D' → [['A', 'B'], ['C', 'D']] (groups separated by ';', chains by ',')."""
    groups = [[c.strip() for c in g.split(",") if c.strip()] for g in text.split(";") if g.strip()]
    bad = [g for g in groups if len(g) < 2]
    if bad or not groups:
        raise ValueError(f"NCS groups {text!r}: each group needs ≥ 2 chains, e.g. 'A,B;C,D'")
    return groups


def groups_from_chains(model, chain_groups) -> list:
    """NCS groups for given chain lists (first chain: the reference), without thresholds."""
    chains = _Chains(model)
    out, seen = [], set()
    for names in chain_groups:
        for c in names:
            if c not in chains.polymers:
                raise ValueError(f"NCS group {','.join(names)}: no polymer chain {c!r} in the model")
            if c in seen:
                raise ValueError(f"NCS groups: chain {c!r} is in more than one group")
            seen.add(c)
        members = []
        for other in names[1:]:
            m = _copy_for(chains, names[0], other)
            if m is None:
                raise ValueError(f"NCS group {','.join(names)}: chain {other!r} has no atoms matching {names[0]!r}")
            members.append(m)
        out.append(_group(chains, names[0], members))
    return out


def format_groups(groups) -> list:
    """Report lines: one per copy (chain, aligned residues, identity, RMSD, local RMS, rotation)."""
    if not groups:
        return ["NCS: no groups (fewer than two similar polymer chains)"]
    lines = [f"NCS: {len(groups)} group(s)",
             " group  ref  copy  aligned  identity  rmsd(Å)  local(Å)  atoms   rot(°)  translation (Å)"]
    for g, grp in enumerate(groups, 1):
        for k, c in enumerate(grp.copies[1:], 1):
            n = int((grp.atoms[k] >= 0).sum())
            lines.append(f" {g:5d}  {grp.copies[0].chain:>3s}  {c.chain:>4s}  {c.n_aligned:7d}  {c.identity:7.1f}%"
                         f"  {c.rmsd:7.3f}  {c.local_rms:8.3f}  {n:5d}  {rotation_angle(c.rotation):7.2f}"
                         f"  {' '.join(f'{v:8.3f}' for v in c.translation)}")
    return lines
