"""Far starting models: molecular-replacement-like starts with real local minima.

Three starts, deterministic (fixed seeds), written as mmCIF under benchmarks/work/far_starts/
with a JSON next to each (what was changed, RMSDs, χ1 agreement); the R values of every start
(kickref's calculator and, when a peers venv provides it, cctbx ``mmtbx.model_vs_data``) and
the summary go to benchmarks/results/far_starts.json.

1. ``4hg7_from_4qo4``: MDM2 from another crystal form (4QO4) placed in 4hg7's cell, as after
   molecular replacement with a Chainsaw/Sculptor-trimmed search model. The polymer sequences are
   aligned (gemmi ``align_string_sequences``), 4qo4 is superposed on 4hg7 by the aligned Cα
   atoms (``superpose_positions``), renamed to 4hg7's chain and residue numbers, trimmed to the
   residues 4hg7 has (residues 4hg7 lacks are removed; where the residue types differ the side
   chain is cut back to the atom names both types share), first conformer only, no H, no waters,
   no ligands. B-factors stay 4qo4's (isotropic).
2. ``1cbs_far`` and ``3zt9_far``: the deposited model with errors a refinement program must climb
   out of: ~18 % of the side chains with χ1 (not Pro) set to another rotamer (side-chain atoms
   beyond CB rotated by ±120° about CA–CB: bond lengths and angles kept), a few peptide planes
   flipped (C, O of residue i and N of i+1 rotated by 180° about the CA(i)–CA(i+1) axis, as Coot's
   pepflip; never before Pro), one 10-residue loop shifted rigidly by 2.5 Å in a random direction
   with both ends ramped over 2 residues atom by atom (so no C–N link stretches past 2 Å; the
   window of Cα farthest from the centroid, which may hold helix), then
   a 0.3 Å RMS Gaussian shake of all atoms (shake.py, links kept within 2 Å). Alternative
   conformations: first one kept at occupancy 1 (MR models have none). Hydrogens (3zt9's riding
   H) removed: refinement programs add them. B-factors: all set to the deposited model's mean
   B, ANISOU removed (an MR model does not carry the true ADPs). Waters: kept, except those
   within 3.5 Å of any atom of a changed residue (deposited or moved position) — neither kickref
   nor servalcat builds waters, so dropping all of them would cap both programs' R-free by the
   missing solvent rather than test escape from the local minima; the waters next to the
   changed residues would mark the true positions (or block the way back) and are removed.
   Ligands (REA; Mn, PEG) kept, shaken with the rest.

Reported per start: Cα RMSD and all-atom RMSD (non-H protein atoms matched by chain, residue
number, atom name; the deposited model's first conformer), the fraction of residues with a χ1
in both models whose χ1 is within 30° of the deposited one, the residues changed, R-work/R-free.

Run: ``python benchmarks/far_starts.py [--no-cctbx] [--starts 4hg7_from_4qo4,1cbs_far,3zt9_far]``
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402
import shake as shake_mod  # noqa: E402
from kickref.xtal.ncs import cigar_pairs  # noqa: E402

SHARED = (ROOT / ".." / "shared").resolve()
DATA = SHARED / "data"
WORK = HERE / "work" / "far_starts"
RESULTS = HERE / "results" / "far_starts.json"

BACKBONE = {"N", "CA", "C", "O", "OXT"}
CHI1_ATOM = {"ARG": "CG", "ASN": "CG", "ASP": "CG", "CYS": "SG", "GLN": "CG", "GLU": "CG",
             "HIS": "CG", "ILE": "CG1", "LEU": "CG", "LYS": "CG", "MET": "CG", "PHE": "CG",
             "PRO": "CG", "SER": "OG", "THR": "OG1", "TRP": "CG", "TYR": "CG", "VAL": "CG1",
             "MSE": "SE"}
CHI1_TOL = 30.0         # degrees

# designed starts: case, model, data, cctbx extra args, seed, rotamer fraction, n flips, loop
FAR = {
    "1cbs_far": dict(case="1cbs", model="1cbs.cif.gz", data="1cbs_map.mtz", cctbx=[],
                     seed=11, rotamer_fraction=0.18, n_flips=3, loop_len=10, loop_shift=2.5,
                     shake=0.3),
    "3zt9_far": dict(case="3zt9", model="3zt9.cif", data="r3zt9sf.ent",
                     cctbx=["r_free_flags_label=_refln.status"],
                     seed=12, rotamer_fraction=0.18, n_flips=4, loop_len=10, loop_shift=2.5,
                     shake=0.3),
}
MR = {"4hg7_from_4qo4": dict(case="4hg7", model="4hg7.cif", search="4qo4.pdb",
                             data="4hg7-sf.cif", cctbx=[])}
WATER_CLEAR = 3.5       # Å: waters this close to a changed residue (H-bond distance) are removed
RAMP = 2                # residues at each end of the loop over which the shift is ramped


# ---------------------------------------------------------------- helpers
def read(path) -> gemmi.Structure:
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    return st


def single_conformer(st: gemmi.Structure) -> int:
    """Keep the first conformer of every atom at occupancy 1; returns atoms that had altlocs."""
    n = sum(1 for ch in st[0] for r in ch for a in r if a.altloc != "\0")
    st.remove_alternative_conformations()
    for ch in st[0]:
        for r in ch:
            for a in r:
                if a.altloc != "\0" or a.occ < 1.0 and not r.is_water():
                    a.altloc = "\0"
                    a.occ = 1.0
    return n


def reference_table(st: gemmi.Structure) -> dict:
    """(chain, resseq, icode, atom name) -> xyz of the first conformer's non-H polymer atoms."""
    table = {}
    for ch in st[0]:
        for r in ch.get_polymer():
            for a in r:
                if a.is_hydrogen():
                    continue
                key = (ch.name, r.seqid.num, r.seqid.icode, a.name)
                table.setdefault(key, np.array(a.pos.tolist()))
    return table


def residue_atoms(res: gemmi.Residue) -> dict:
    out = {}
    for a in res:
        out.setdefault(a.name, a)
    return out


def chi1(res: gemmi.Residue) -> float | None:
    at = residue_atoms(res)
    g = CHI1_ATOM.get(res.name)
    if not g or not all(n in at for n in ("N", "CA", "CB", g)):
        return None
    return math.degrees(gemmi.calculate_dihedral(at["N"].pos, at["CA"].pos, at["CB"].pos,
                                                 at[g].pos))


def compare(start: gemmi.Structure, ref: gemmi.Structure) -> dict:
    """Cα / all-atom RMSD (non-H polymer atoms) and χ1 agreement of START to REF."""
    tab = reference_table(ref)
    d_all, d_ca = [], []
    for ch in start[0]:
        for r in ch.get_polymer():
            for a in r:
                key = (ch.name, r.seqid.num, r.seqid.icode, a.name)
                if a.is_hydrogen() or key not in tab:
                    continue
                d = float(np.linalg.norm(np.array(a.pos.tolist()) - tab[key]))
                d_all.append(d)
                if a.name == "CA":
                    d_ca.append(d)
    ref_chi = {}
    for ch in ref[0]:
        for r in ch.get_polymer():
            c = chi1(r)
            if c is not None:
                ref_chi.setdefault((ch.name, r.seqid.num, r.seqid.icode), c)
    n_same = n_cmp = 0
    for ch in start[0]:
        for r in ch.get_polymer():
            key = (ch.name, r.seqid.num, r.seqid.icode)
            c = chi1(r)
            if c is None or key not in ref_chi:
                continue
            n_cmp += 1
            diff = abs((c - ref_chi[key] + 180.0) % 360.0 - 180.0)
            n_same += diff <= CHI1_TOL
    rms = lambda x: float(np.sqrt(np.mean(np.square(x)))) if x else float("nan")  # noqa: E731
    return {"ca_rmsd": rms(d_ca), "n_ca": len(d_ca), "all_atom_rmsd": rms(d_all),
            "n_atoms_matched": len(d_all), "all_atom_max": max(d_all) if d_all else float("nan"),
            "chi1_within_30": n_same / n_cmp if n_cmp else float("nan"),
            "n_chi1_compared": n_cmp, "n_chi1_reference": len(ref_chi)}


def rotate_about(points: np.ndarray, p0: np.ndarray, p1: np.ndarray, angle_deg: float):
    """Rotate ``points`` (n,3) by ``angle_deg`` about the axis through p0 and p1 (Rodrigues)."""
    k = (p1 - p0) / np.linalg.norm(p1 - p0)
    t = math.radians(angle_deg)
    v = points - p0
    rot = (v * math.cos(t) + np.cross(k, v) * math.sin(t)
           + np.outer(v @ k, k) * (1.0 - math.cos(t)))
    return rot + p0


def set_xyz(atoms, xyz):
    for a, p in zip(atoms, xyz):
        a.pos = gemmi.Position(*p)


def res_label(ch, r) -> str:
    return f"{ch.name}{r.seqid.num}{r.seqid.icode.strip()} {r.name}"


def write_cif(st: gemmi.Structure, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    st.setup_entities()
    tmp = path.with_name(path.name + ".tmp")
    st.make_mmcif_document().write_file(str(tmp))
    tmp.replace(path)


# ---------------------------------------------------------------- 1: MR-like start from 4qo4
def _polymer_residues(st):
    ch = next(ch for ch in st[0] if len(ch.get_polymer()))
    return ch, [r for r in ch.get_polymer()]


def mr_start(spec: dict) -> tuple[gemmi.Structure, dict]:
    target = read(DATA / spec["case"] / spec["model"])
    search = read(DATA / spec["case"] / spec["search"])
    search.remove_hydrogens()
    n_alt = single_conformer(search)
    tch, tres = _polymer_residues(target)
    sch, sres = _polymer_residues(search)
    scoring = gemmi.AlignmentScoring("p")
    aln = gemmi.align_string_sequences([r.name for r in sres], [r.name for r in tres], [], scoring)
    pairs = cigar_pairs(aln.cigar_str())        # (search index, target index) of aligned pairs
    ca = [(sres[a].find_atom("CA", "*"), tres[b].find_atom("CA", "*")) for a, b in pairs]
    ok = [(a, b, p) for (a, b), p in zip(ca, pairs) if a is not None and b is not None]
    sup = gemmi.superpose_positions([b.pos for a, b, _ in ok], [a.pos for a, b, _ in ok])
    search[0].transform_pos_and_adp(sup.transform)
    # new model: one chain named as the target's, residues of the target that are aligned
    new = gemmi.Structure()
    new.cell = target.cell
    new.spacegroup_hm = target.spacegroup_hm
    new.add_model(gemmi.Model(target[0].num))
    chain = gemmi.Chain(tch.name)
    mutated, removed_search, missing_target = [], [], []
    aligned = {a: b for a, b in pairs}
    for a, r in enumerate(sres):
        if a not in aligned:
            removed_search.append(f"{r.name}{r.seqid.num}")
            continue
        t = tres[aligned[a]]
        keep = set(residue_atoms(t)) if r.name != t.name else None
        nr = gemmi.Residue()
        nr.name = t.name
        nr.seqid = t.seqid
        nr.entity_type = gemmi.EntityType.Polymer
        nr.het_flag = "A"
        cut = []
        for at in r:
            if keep is not None and at.name not in keep:
                cut.append(at.name)
                continue
            na = at.clone()
            na.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
            nr.add_atom(na)
        if r.name != t.name:
            mutated.append({"search": f"{r.name}{r.seqid.num}", "target": res_label(tch, t),
                            "atoms_cut": cut})
        chain.add_residue(nr)
    seen = set(aligned.values())
    missing_target = [res_label(tch, t) for b, t in enumerate(tres) if b not in seen]
    new[0].add_chain(chain)
    new.setup_entities()
    dropped = sorted({r.name for ch in search[0] for r in ch if r.het_flag == "H"})
    info = {"kind": "molecular-replacement-like (Chainsaw/Sculptor-style trimmed homolog)",
            "search_model": spec["search"], "superposition_ca_rmsd": sup.rmsd,
            "n_ca_superposed": len(ok), "alignment_cigar": aln.cigar_str(),
            "alignment_identity": aln.calculate_identity(),
            "residues_renumbered_to": "4hg7 (chain and residue numbers of the aligned residue)",
            "search_residues_removed": removed_search,
            "target_residues_missing_in_start": missing_target,
            "mutations_trimmed": mutated, "search_atoms_with_altloc": n_alt,
            "dropped": f"waters, ligands ({', '.join(dropped)}), hydrogens, altlocs (first kept)",
            "b_factors": "4qo4's, isotropic (ANISOU removed)"}
    return new, info


# ---------------------------------------------------------------- 2: designed far starts
def _eligible_rotamer(r) -> bool:
    at = residue_atoms(r)
    g = CHI1_ATOM.get(r.name)
    return bool(g) and r.name != "PRO" and all(n in at for n in ("N", "CA", "CB", g))


def _pick_loop(polymer, length: int) -> int:
    """Start index of the ``length``-residue window (2 residues off the termini) whose Cα lie
    farthest, on average, from the protein's Cα centroid: a surface loop, chosen by geometry."""
    ca = np.array([r.find_atom("CA", "*").pos.tolist() for r in polymer])
    centre = ca.mean(axis=0)
    dist = np.linalg.norm(ca - centre, axis=1)
    best, best_val = None, -1.0
    for s in range(2, len(polymer) - length - 2):
        val = float(dist[s:s + length].mean())
        if val > best_val:
            best, best_val = s, val
    return best


def far_start(spec: dict) -> tuple[gemmi.Structure, dict]:
    st = read(DATA / spec["case"] / spec["model"])
    deposited = read(DATA / spec["case"] / spec["model"])
    n_h = sum(1 for ch in st[0] for r in ch for a in r if a.is_hydrogen())
    st.remove_hydrogens()
    n_alt = single_conformer(st)
    rng = np.random.default_rng(spec["seed"])
    ch = next(ch for ch in st[0] if len(ch.get_polymer()))
    polymer = ch.get_polymer()
    residues = [polymer[k] for k in range(len(polymer))]
    changed: set[int] = set()

    # loop window first (so rotamer changes and flips stay outside it)
    L = spec["loop_len"]
    s0 = _pick_loop(residues, L)
    loop_idx = list(range(s0, s0 + L))
    # rotamers
    cand = [k for k, r in enumerate(residues) if _eligible_rotamer(r) and k not in loop_idx]
    n_rot = int(round(spec["rotamer_fraction"] * sum(_eligible_rotamer(r) for r in residues)))
    rot_idx = sorted(rng.choice(cand, size=n_rot, replace=False).tolist())
    rotamers = []
    for k in rot_idx:
        r = residues[k]
        at = residue_atoms(r)
        before = chi1(r)
        angle = float(rng.choice([-120.0, 120.0]))
        side = [a for a in r if a.name not in BACKBONE and a.name != "CB"]
        xyz = np.array([a.pos.tolist() for a in side])
        set_xyz(side, rotate_about(xyz, np.array(at["CA"].pos.tolist()),
                                   np.array(at["CB"].pos.tolist()), angle))
        rotamers.append({"residue": res_label(ch, r), "chi1_before": round(before, 1),
                         "chi1_after": round(chi1(r), 1), "rotation": angle})
        changed.add(k)
    # peptide flips: peptide between residues k and k+1, both outside the loop and not rotated
    flip_cand = [k for k in range(1, len(residues) - 2)
                 if residues[k + 1].name != "PRO" and k not in loop_idx and k + 1 not in loop_idx
                 and residues[k + 1].seqid.num == residues[k].seqid.num + 1
                 and k not in changed and k + 1 not in changed]
    flip_idx = sorted(rng.choice(flip_cand, size=spec["n_flips"], replace=False).tolist())
    flips = []
    for k in flip_idx:
        a, b = residue_atoms(residues[k]), residue_atoms(residues[k + 1])
        moving = [a["C"], a["O"], b["N"]]
        xyz = np.array([m.pos.tolist() for m in moving])
        o_before = np.array(a["O"].pos.tolist())
        set_xyz(moving, rotate_about(xyz, np.array(a["CA"].pos.tolist()),
                                     np.array(b["CA"].pos.tolist()), 180.0))
        flips.append({"peptide": f"{res_label(ch, residues[k])} – {res_label(ch, residues[k + 1])}",
                      "O_moved": round(float(np.linalg.norm(np.array(a["O"].pos.tolist())
                                                            - o_before)), 2)})
        changed.update((k, k + 1))
    # loop shift, ramped over RAMP residues at each end, atom by atom along the backbone
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    shift = spec["loop_shift"] * direction
    frac = {"N": 0.0, "CA": 1 / 3, "C": 2 / 3, "O": 2 / 3}
    for n, k in enumerate(loop_idx):
        r = residues[k]
        for at in r:
            f = frac.get(at.name, 1 / 3)          # side chains move with their CA
            if n < RAMP:
                w = (n + f) / RAMP
            elif n >= L - RAMP:
                w = (L - n - f) / RAMP
            else:
                w = 1.0
            w = min(max(w, 0.0), 1.0)
            at.pos = gemmi.Position(*(np.array(at.pos.tolist()) + w * shift))
        changed.add(k)
    # waters near changed residues (deposited or moved positions)
    changed_xyz = [np.array(a.pos.tolist()) for k in changed for a in residues[k]]
    dep_tab = reference_table(deposited)
    for k in changed:
        r = residues[k]
        for a in r:
            key = (ch.name, r.seqid.num, r.seqid.icode, a.name)
            if key in dep_tab:
                changed_xyz.append(dep_tab[key])
    changed_xyz = np.array(changed_xyz)
    removed_w = []
    for c in st[0]:
        for i in range(len(c) - 1, -1, -1):
            r = c[i]
            if not r.is_water():
                continue
            p = np.array(r[0].pos.tolist())
            if np.min(np.linalg.norm(changed_xyz - p, axis=1)) < WATER_CLEAR:
                removed_w.append(f"{c.name}{r.seqid.num}")
                del c[i]
    n_water_left = sum(r.is_water() for c in st[0] for r in c)
    # B-factors: deposited protein mean, isotropic
    bs = [a.b_iso for r in residues for a in r]
    b_mean = float(np.mean(bs))
    for c in st[0]:
        for r in c:
            for a in r:
                a.b_iso = b_mean
                a.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
    shake_info = shake_mod.shake_structure(st, rms=spec["shake"], seed=spec["seed"])
    info = {"kind": "deposited model with local-minimum errors", "seed": spec["seed"],
            "hydrogens_removed": n_h, "atoms_with_altloc_in_deposited": n_alt,
            "altlocs": "first conformer kept, occupancy 1",
            "rotamers": {"n": len(rotamers), "n_eligible": sum(_eligible_rotamer(r) for r in residues),
                         "changed": rotamers},
            "peptide_flips": flips,
            "loop": {"residues": f"{res_label(ch, residues[loop_idx[0]])} – "
                                 f"{res_label(ch, residues[loop_idx[-1]])}",
                     "n": L, "shift_A": spec["loop_shift"],
                     "direction": [round(float(x), 3) for x in direction],
                     "ramp_residues_each_end": RAMP,
                     "chosen_by": "10-residue window with the largest mean Cα distance from the "
                                  "Cα centroid"},
            "waters_removed_near_changes": removed_w, "waters_kept": n_water_left,
            "b_factors": f"all atoms {b_mean:.2f} Å² (deposited polymer mean), ANISOU removed",
            "shake": {k: shake_info[k] for k in ("rms_target", "rms_non_h", "seed",
                                                  "n_link_redraws")}}
    return st, info


# ---------------------------------------------------------------- R factors and driver
def r_values(model: Path, data: Path, cctbx_args, mvd) -> dict:
    out = {}
    try:
        k = judge_mod.kickref_rfactors(model, data)
        out["kickref"] = {"r_work": k["r_work"], "r_free": k["r_free"]}
    except Exception as exc:  # noqa: BLE001
        out["kickref_error"] = f"{type(exc).__name__}: {exc}"
    if mvd:
        try:
            c = judge_mod.cctbx_rfactors(model, data, mvd, model.parent / f"judge_{model.stem}",
                                         extra_args=cctbx_args)
            out["cctbx"] = {"r_work": c["r_work"], "r_free": c["r_free"],
                            "data_array": c.get("data_array")}
        except Exception as exc:  # noqa: BLE001
            out["cctbx_error"] = f"{type(exc).__name__}: {exc}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", default=",".join([*MR, *FAR]))
    ap.add_argument("--no-cctbx", action="store_true", help="kickref's R only")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args(argv)
    mvd = None
    if not args.no_cctbx:
        peers = peers_mod.find_peers(install=False)
        mvd = peers.model_vs_data
        if mvd is None:
            print(f"cctbx not available: {peers.message}", file=sys.stderr)
    results = {}
    for name in args.starts.split(","):
        t0 = time.perf_counter()
        spec = MR.get(name) or FAR[name]
        st, info = (mr_start if name in MR else far_start)(spec)
        path = WORK / f"{name}.cif"
        write_cif(st, path)
        deposited = read(DATA / spec["case"] / spec["model"])
        info.update(compare(read(path), deposited))
        g = judge_mod.geometry_rmsd(path, SHARED / "monomers")
        info["geometry"] = {k: g[k] for k in ("bond_rmsd", "angle_rmsd", "bond_max", "angle_max")}
        data = DATA / spec["case"] / spec["data"]
        rv = r_values(path, data, spec["cctbx"], mvd)
        info.update(name=name, case=spec["case"], model=str(path.relative_to(ROOT)),
                    data=str(data), r=rv)
        info["seconds"] = round(time.perf_counter() - t0, 1)
        path.with_suffix(".json").write_text(json.dumps(info, indent=1))
        results[name] = info
        k = rv.get("kickref", {})
        c = rv.get("cctbx", {})
        print(f"{name}: Cα {info['ca_rmsd']:.2f} Å, all {info['all_atom_rmsd']:.2f} Å, "
              f"χ1 within 30° {info['chi1_within_30']:.2f}; kickref R {k.get('r_work', float('nan')):.4f}/"
              f"{k.get('r_free', float('nan')):.4f}; cctbx R {c.get('r_work', float('nan')):.4f}/"
              f"{c.get('r_free', float('nan')):.4f}", flush=True)
    out = Path(args.json)
    old = json.loads(out.read_text()) if out.exists() else {}
    old.setdefault("starts", {}).update(results)
    old["gemmi"] = gemmi.__version__
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(old, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
