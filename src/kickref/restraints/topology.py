"""Topology: the restraints of a model from the monomer library (through gemmi), as terms.

:func:`build_restraints` is the entry point: gemmi's ``prepare_topology`` gives the bonds,
angles, torsions, chiral centres and planes (with links: explicit records; consecutive
polymer residues linked from the sequence however stretched, up to ideal + 3.2 Å; others
found by gemmi's ``add_automatic_links``, which takes a link up to 1.4× its ideal length,
e.g. SG-SG 2.84 Å, a rule it hard-codes);
from them come the riding-H parents, the B/ADP pairs and the non-bonded neighbour list
(exclusions from the bond graph, :mod:`kickref.restraints.graph`). Atom indices are indices
into the :class:`kickref.core.model.Model` arrays (each gemmi atom carries its index in
``Atom.fraction`` while the topology is built).
"""
from __future__ import annotations

import io

import gemmi
import numpy as np

from ..core.errors import InputError
from ..xtal.site_symmetry import find_site_symmetry
from .graph import adjacency, neighbour_keys, pair_keys, upper_keys
from .library import load_library
from .nonbonded import HB_CODES, NonbondedList, SymmetryOps
from .restraints import Restraints, RestraintParameters
from .terms import (ADPKLTerm, ADPSimilarityTerm, AngleTerm, BondTerm, BSimilarityTerm,
                    ChiralTerm, NonbondedTerm, PlaneTerm, RigidBondTerm, TorsionTerm)


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
    # links: explicit records, stretched polymer links, then those found by distance
    n_records = len(st.connections)
    st.assign_label_seq_id(False)
    _polymer_links(R, st, library.monlib, params.polymer_link_stretch)
    n_polymer = len(st.connections)
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
    _links(R, st, topo, n_records, n_polymer)
    _hydrogens(R, model)
    _adp_pairs(R, params)
    _nonbonded(R, model, topo, st, unknown_atom, hydrogens)
    from .riding import riding_setup
    R.riding = riding_setup(R, model)
    return R


# polymer bond: atom of residue i, atom of residue i+1, ideal length, gemmi's distance limit
_PEPTIDE = ("C", "C", "N", "N", 1.33, 1.341 * 1.5)
_NUCLEOTIDE = ("O3'", "O", "P", "P", 1.61, 1.6 * 1.5)
_PEPTIDE_GROUPS = {gemmi.ChemComp.Group.Peptide: "", gemmi.ChemComp.Group.PPeptide: "P",
                   gemmi.ChemComp.Group.MPeptide: "NM"}
_NUCLEOTIDE_GROUPS = {gemmi.ChemComp.Group.Dna, gemmi.ChemComp.Group.Rna,
                      gemmi.ChemComp.Group.DnaRna}


def _residue_label(ch, res) -> str:
    return f"{ch.name}/{res.name} {res.seqid}"


def _sequence_gap(r1, r2) -> bool:
    """True when numbering (insertion codes allowed) or the entity sequence skips residues."""
    if r2.seqid.num - r1.seqid.num not in (0, 1):
        return True
    return r1.label_seq is not None and r2.label_seq is not None and \
        r2.label_seq - r1.label_seq != 1


def _polymer_links(R, st, monlib, stretch):
    """Add Connection records linking consecutive polymer residues whose bond atoms are
    beyond gemmi's distance rule (C-N 2.01, O3'-P 2.4 Å) but within ideal + ``stretch``,
    unless the sequence shows a gap; farther ones are left unlinked with a warning.
    Peptide link CIS/TRANS (P-, NM- for Pro-like and N-methyl residues) from the start's
    omega, as gemmi does; microheterogeneities and non-standard groups are left to gemmi."""
    far = []
    for ch in st[0]:
        poly = ch.get_polymer()
        ptype = poly.check_polymer_type()
        if ptype in (gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD):
            name1, el1, name2, el2, ideal, near = _PEPTIDE
            groups = _PEPTIDE_GROUPS
        elif ptype in (gemmi.PolymerType.Dna, gemmi.PolymerType.Rna,
                       gemmi.PolymerType.DnaRnaHybrid):
            name1, el1, name2, el2, ideal, near = _NUCLEOTIDE
            groups = _NUCLEOTIDE_GROUPS
        else:
            continue
        seqids = [r.seqid for r in poly]
        for k in range(len(poly) - 1):
            r1, r2 = poly[k], poly[k + 1]
            if seqids[k] in seqids[k - 1:k] or seqids[k + 1] in seqids[k + 2:k + 3] or \
                    seqids[k] == seqids[k + 1] or _sequence_gap(r1, r2):
                continue
            if r1.name not in monlib.monomers or r2.name not in monlib.monomers:
                continue
            cc1, cc2 = monlib.monomers[r1.name], monlib.monomers[r2.name]
            if cc1.group not in groups or cc2.group not in groups:
                continue
            pairs = [(a1, a2, a1.pos.dist(a2.pos)) for a1 in r1 if a1.name == name1 and
                     a1.element.name == el1 for a2 in r2 if a2.name == name2 and
                     a2.element.name == el2 and (a1.altloc == a2.altloc or
                                                 "\0" in (a1.altloc, a2.altloc))]
            if not pairs or min(d for _, _, d in pairs) < near:
                continue    # gemmi links it (or there is nothing to link)
            for a1, a2, d in pairs:
                if d > ideal + stretch:
                    far.append(f"{_residue_label(ch, r1)} {a1.name}-{_residue_label(ch, r2)} "
                               f"{a2.name} {d:.2f} Å")
                    continue
                conn = gemmi.Connection()
                conn.name = f"polymer{len(st.connections) + 1}"
                conn.type = gemmi.ConnectionType.Covale
                conn.link_id = "p" if groups is _NUCLEOTIDE_GROUPS else \
                    groups[cc2.group] + ("CIS" if _is_cis(r1, a1, a2, r2) else "TRANS")
                conn.partner1 = gemmi.make_address(ch, r1, a1)
                conn.partner2 = gemmi.make_address(ch, r2, a2)
                conn.reported_distance = d
                st.connections.append(conn)
    if far:
        R.log.append(f"warning: {len(far)} polymer link(s) too long to restrain (more than "
                     f"{stretch:.1f} Å beyond ideal), left as chain breaks: " + "; ".join(far))


def _is_cis(r1, c, n, r2) -> bool:
    """Omega CA-C-N-CA within 60° of 0 (gemmi's rule); trans without both CA atoms."""
    alt = n.altloc if n.altloc != "\0" else c.altloc
    alt = alt if alt != "\0" else "*"
    ca1 = r1.find_atom("CA", alt, gemmi.Element("C"))
    ca2 = r2.find_atom("CA", alt, gemmi.Element("C"))
    if ca1 is None or ca2 is None:
        return False
    return abs(gemmi.calculate_dihedral(ca1.pos, c.pos, n.pos, ca2.pos)) < np.radians(60)


def _extract(R, topo, params):
    bonds = [(_ix(b.atoms[0]), _ix(b.atoms[1]), b.restr.value, b.restr.esd)
             for b in topo.bonds]
    b = np.array(bonds, dtype=np.float64).reshape(-1, 4)
    keep = b[:, 3] > 0
    R.bonds = BondTerm(b[keep, :2].astype(np.int64), b[keep, 2].copy(), b[keep, 3].copy())
    ang = [(_ix(a.atoms[0]), _ix(a.atoms[1]), _ix(a.atoms[2]), a.restr.value, a.restr.esd)
           for a in topo.angles]
    a = np.array(ang, dtype=np.float64).reshape(-1, 5)
    keep = a[:, 4] > 0
    R.angles = AngleTerm(a[keep, :3].astype(np.int64), a[keep, 3].copy(), a[keep, 4].copy())
    tor = [(_ix(t.atoms[0]), _ix(t.atoms[1]), _ix(t.atoms[2]), _ix(t.atoms[3]),
            t.restr.value, t.restr.esd, t.restr.period) for t in topo.torsions]
    t = np.array(tor, dtype=np.float64).reshape(-1, 7)
    labels = [t_.restr.label for t_ in topo.torsions]
    keep = t[:, 5] > 0   # constant torsions (esd 0) are left to the planes
    R.torsions = TorsionTerm(t[keep, :4].astype(np.int64), t[keep, 4].copy(), t[keep, 5].copy(),
                             np.maximum(t[keep, 6], 1.0), [l for l, k in zip(labels, keep) if k])
    pos = gemmi.ChiralityType.Positive
    neg = gemmi.ChiralityType.Negative
    ch = [(_ix(c.atoms[0]), _ix(c.atoms[1]), _ix(c.atoms[2]), _ix(c.atoms[3]),
           topo.ideal_chiral_abs_volume(c),
           1.0 if c.restr.sign == pos else (-1.0 if c.restr.sign == neg else 0.0))
          for c in topo.chirs]
    c = np.array(ch, dtype=np.float64).reshape(-1, 6)
    keep = np.isfinite(c[:, 4]) & (c[:, 4] > 0)
    c = c[keep]
    idx = c[:, :4].astype(np.int64)
    sign = c[:, 5].copy()
    pseudo = _pseudo_chiral(R.model, idx[:, 0], sign != 0, R.bonds.idx, R.bonds.ideal)
    if pseudo.any():
        sign[pseudo] = 0.0
        names = sorted({f"{R.model.resname[i]} {R.model.atom_name[i]}" for i in idx[pseudo, 0]})
        R.log.append(f"chirality: {int(pseudo.sum())} signed centre(s) with two equivalent terminal "
                     f"substituents ({', '.join(names)}) restrained on |V|, either hand (their sign is "
                     f"a naming convention, not stereochemistry)")
    R.chirals = ChiralTerm(idx, np.where(sign == 0, c[:, 4], c[:, 4] * sign),
                           np.full(len(c), params.chiral_sigma), sign == 0)
    atoms, start, sig, lab = [], [0], [], []
    for p in topo.planes:
        if len(p.atoms) < 4 or p.restr.esd <= 0:
            continue
        atoms.extend(_ix(at) for at in p.atoms)
        start.append(len(atoms))
        sig.append(p.restr.esd)
        lab.append(p.restr.label)
    R.planes = PlaneTerm(atoms, start, sig, lab)


def _pseudo_chiral(model, centre, signed, bonds, ideal, tol: float = 0.02) -> np.ndarray:
    """(m,) bool: which ``signed`` chiral centres (atom indices ``centre``) are pseudo-chiral, i.e.
    have two equivalent terminal substituents: non-H atoms of one element bonded to no other
    non-H atom, with as many H neighbours and ideal bonds to the centre equal within ``tol`` Å
    (``bonds`` (k, 2) atom pairs, ``ideal`` (k,) lengths). Swapping the two names inverts the
    volume, so the library's sign there is a naming convention (LEU CG and VAL CB are 'both' in
    the CCP4 library; MLE CG, the same centre, is 'negativ', and 6mw0 names its methyls the
    other way: restrained on the sign, the methyls were pulled through the centre).
    """
    m = len(centre)
    if not signed.any() or not len(bonds):
        return np.zeros(m, bool)
    n = model.n_atoms
    h = np.asarray(model.is_hydrogen, bool)
    e = np.concatenate([bonds, bonds[:, ::-1]])            # directed: (atom, neighbour)
    d = np.concatenate([ideal, ideal])
    n_heavy = np.bincount(e[:, 0], weights=~h[e[:, 1]], minlength=n)
    n_h = np.bincount(e[:, 0], weights=h[e[:, 1]], minlength=n).astype(np.int64)
    row = np.full(n, -1, np.int64)
    row[centre[signed]] = np.flatnonzero(signed)           # atom → its signed centre row
    k = (row[e[:, 0]] >= 0) & ~h[e[:, 1]] & (n_heavy[e[:, 1]] == 1)
    if not k.any():
        return np.zeros(m, bool)
    nb = e[k, 1]
    _, el = np.unique(model.element[nb].astype(str), return_inverse=True)
    r, length = row[e[k, 0]], d[k]
    o = np.lexsort((length, n_h[nb], el, r))                # sorted by centre, element, nH, length
    same = ((r[o][1:] == r[o][:-1]) & (el[o][1:] == el[o][:-1]) & (n_h[nb][o][1:] == n_h[nb][o][:-1])
            & (np.abs(length[o][1:] - length[o][:-1]) <= tol))
    out = np.zeros(m, bool)
    out[r[o][1:][same]] = True
    return out


def _links(R, st, topo, n_records, n_polymer):
    counts = {}
    used = {}
    for e in topo.extras:
        counts[e.link_id] = counts.get(e.link_id, 0) + 1
        used[(e.res1.name, str(e.res1.seqid), e.res2.name, str(e.res2.seqid))] = e.link_id
    for ci in topo.chain_infos:
        for ri in ci.res_infos:
            for p in ri.prev:
                key = (p.res1.name, str(p.res1.seqid), p.res2.name, str(p.res2.seqid))
                if p.link_id and not (p.link_id == "gap" and key in used):
                    counts[p.link_id] = counts.get(p.link_id, 0) + 1
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
                        "origin": "record" if k < n_records else
                        "polymer" if k < n_polymer else "distance",
                        "restrained": bool(used.get(key) or used.get(key_r))})
    n_auto = sum(1 for l in R.links if l["origin"] == "distance")
    if n_auto:
        R.log.append(f"links found by distance: {n_auto} ("
                     + ", ".join(sorted({l['link_id'] for l in R.links
                                         if l['origin'] == 'distance'})) + ")")
    stretched = [l for l in R.links if l["origin"] == "polymer"]
    if stretched:
        R.log.append(f"stretched polymer links restrained: {len(stretched)} ("
                     + ", ".join(R.model.atom_label(l["atoms"][0]) + "-"
                                 + R.model.atom_label(l["atoms"][1]) for l in stretched) + ")")


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
    R.b_pairs = BSimilarityTerm(idx, sig, params=params)
    a = b12[heavy[b12[:, 0]] & heavy[b12[:, 1]]]
    R.rigid_bonds = RigidBondTerm(a, np.full(len(a), params.rigid_bond_sigma), params=params)
    R.u_pairs = ADPSimilarityTerm(a, np.full(len(a), params.adp_similarity_sigma), params=params)
    from .adp_kl import kl_pairs
    kp, ks = kl_pairs(R.model, R.bonds.idx, params.adp_kl_max_dist)
    R.kl_pairs = ADPKLTerm(kp, ks, params)


def _graph_keys(edges, n):
    """Pair keys (lo*n+hi) at bond-graph distance 1-2 (excluded) and exactly 3 (1-4)."""
    if len(edges) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k1, k2, k3 = neighbour_keys(edges, n, 3)
    k12 = np.union1d(k1, k2)
    k14 = np.setdiff1d(k3, k12)
    return k12, k14


def _planar_14_keys(edges, plane_keys, n):
    """Keys of pairs a-b-c-d whose central bond b-c joins two atoms of one plane."""
    if len(edges) == 0:
        return np.zeros(0, np.int64)
    A = adjacency(edges, n)
    pe = edges[np.isin(pair_keys(edges[:, 0], edges[:, 1], n), plane_keys)]
    P = adjacency(pe, n)
    return np.unique(upper_keys(A @ P @ A, n))


def _plane_pair_keys(planes, n):
    """Keys lo*n+hi of all atom pairs that share a plane restraint."""
    atoms, start = planes.atoms, planes.start
    sizes = np.diff(start)
    keys = [np.zeros(0, np.int64)]
    for size in np.unique(sizes):
        sel = np.flatnonzero(sizes == size)
        block = atoms[start[sel][:, None] + np.arange(size)[None, :]]   # (m, size)
        a, b = np.triu_indices(size, 1)
        x, y = block[:, a].ravel(), block[:, b].ravel()
        keys.append(pair_keys(x, y, n))
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
    R.contacts = NonbondedTerm(R.nonbonded)
    R.site_symmetry = find_site_symmetry(model.xyz, model.cell,
                                         model.spacegroup if symops.use_symmetry else None)
    R.site_symmetry_order = R.site_symmetry.order
    sp = R.site_symmetry.atoms
    if len(sp):
        listed = ", ".join(f"{model.atom_label(a)} (multiplicity {R.site_symmetry.order[a]}, "
                           f"occupancy {model.occ[a]:.2f})" for a in sp[:10])
        R.log.append(f"warning: {len(sp)} atom(s) on special positions, kept on their symmetry "
                     f"elements: {listed}{', ...' if len(sp) > 10 else ''}")
