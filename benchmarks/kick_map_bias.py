"""Model bias of averaged kick maps: MAIN's claim tested the way it was made.

MAIN (Turk) proposes kick maps — σA-weighted 2mFo−DFc coefficients averaged over an ensemble of
randomly kicked copies of the model — as maps with less model bias than the plain σA map. Test:
start from the deposited model with deliberate errors, compute both maps from that erroneous
model and compare them, in the error regions, with the map phased by the deposited model.

Erroneous model (deterministic, ``ERROR_SEED``; builders imported from far_starts.py):
  - H removed, first conformer only at occupancy 1 (``far_starts.single_conformer``); deposited
    B-factors kept; no shake;
  (a) ``N_ROTAMERS`` side chains in a wrong rotamer: χ1 rotated by ±120° about CA–CB
      (``far_starts.rotate_about``; bond lengths and angles kept), chosen at random among the
      residues ``far_starts._eligible_rotamer`` accepts that have at least 3 side-chain atoms
      beyond CB and lie more than ``CLEAR`` Å from the ligand and from the loop;
  (b) one ``LOOP_LEN``-residue loop (``far_starts._pick_loop``: the window of Cα farthest from the
      Cα centroid) shifted rigidly by ``LOOP_SHIFT`` Å in a random direction, both ends ramped
      over ``far_starts.RAMP`` residues atom by atom (N 0, CA 1/3, C and O 2/3 of the step; side
      chains with their CA), so the peptide links stay < 2 Å;
  (c) the ligand omitted (1cbs: REA; 4hg7: NUT);
  - waters within ``far_starts.WATER_CLEAR`` Å of a changed residue (deposited or moved position)
    removed, as far_starts.py does (they would mark or block the true positions); waters around
    the omitted ligand kept (they are real and belong to the model).

Maps (kickref's Python API, the code of ``kickref maps``; data cut and test set as the CLI):
  - plain: ``compute_maps(MODEL, DATA)`` — σA 2mFo−DFc (FWT/PHWT), test set not used;
  - kick: ``compute_maps(MODEL, DATA, kick=True, kick_options={n_models: 50, max_amplitude:
    0.8, seed: s})`` = ``kickref maps MODEL DATA --kick --kick-models 50 --kick-max 0.8 --seed s``,
    for the seeds ``KICK_SEEDS`` (the spread over seeds is the noise of the method);
  - reference: the plain σA 2mFo−DFc map of the deposited model (ligand included) — the map the
    data give with the best phases we have. (Also reported: CC with the deposited model's
    Fmodel map, FC_ALL/PHIC_ALL, which contains no data.)
All maps by gemmi FFT on one grid (the reference map's, ``SAMPLE_RATE``), each in units of its
own RMS over the cell (σ).
Scenarios: ``as_built`` (maps from the erroneous model as it is) and ``brief_refined`` (the
erroneous model after ``kickref.refine`` with defaults but ``cycles=3`` — hydrogens added,
ML target, weight adjustment — then the same maps).

Measures, per error region (each rotamer's atoms beyond CB; all rotamers together; the loop
atoms moved ≥ ``LOOP_MIN_MOVE`` Å; the ligand; the whole protein: all polymer atoms, wrong =
every changed atom):
  - ``cc_true``: correlation with the reference map over the grid points within ``MASK_R`` Å of
    the true (deposited) atoms; ``cc_union``: the same over true ∪ wrong positions (there the
    model's own density at the wrong place counts against a map);
  - ``true``: mean map value (σ) at the true positions, ``wrong``: at the model's (wrong)
    positions, ``contrast`` = true − wrong (ligand: no wrong positions, contrast n/a).
A less biased map has larger ``true``, smaller ``wrong``, larger ``contrast``, higher CC.
The kick map's numbers are reported as mean and spread (min–max, SD) over the seeds.
Control: the plain map blurred, FWT × exp(−B/4d²) for B in ``BLUR_B`` — averaging over kicked
models damps high-resolution terms (like a B-factor), so a kick map should beat not only the
plain map but a plain map blurred as much to show a reduction of bias rather than a blur.

Figure: benchmarks/results/kick_map_bias.png — slabs (plane through the atoms, ±8 Å) through
the wrong rotamer with the largest shift and through the omitted ligand: reference, plain and
kick map (seed 1), true positions (purple) and model positions (orange) marked.

Run: ``python benchmarks/kick_map_bias.py [--cases 1cbs,4hg7] [--no-refine]``
(writes benchmarks/results/kick_map_bias.json and .png; scratch in benchmarks/work/kick_map_bias/).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import gemmi
import numpy as np
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import far_starts as fs  # noqa: E402
import judge as judge_mod  # noqa: E402
from kick_map_figure import BOND_MAX, HALF_WIDTH, SLAB, at, plane_frame  # noqa: E402

SHARED = (ROOT / ".." / "shared").resolve()
DATA = SHARED / "data"
MONLIB = SHARED / "monomers"
WORK = HERE / "work" / "kick_map_bias"
RESULTS = HERE / "results" / "kick_map_bias.json"
FIGURE = HERE / "results" / "kick_map_bias.png"

CASES = {
    "1cbs": dict(model="1cbs.cif.gz", data="1cbs_map.mtz", load=dict(labin="FP,SIGFP,FREE", free_value=0),
                 ligand="REA"),
    "4hg7": dict(model="4hg7.cif", data="4hg7-sf.cif", load={}, ligand="NUT"),
}
ERROR_SEED = 7
N_ROTAMERS = 5
MIN_TIP_ATOMS = 3        # side-chain atoms beyond CB, so each wrong rotamer moves several atoms
LOOP_LEN = 8
LOOP_SHIFT = 2.0         # Å
LOOP_MIN_MOVE = 1.0      # Å: loop atoms moved at least this much are measured
CLEAR = 6.0              # Å: rotamer residues this far from the ligand and the loop
KICK = dict(n_models=50, max_amplitude=0.8)
KICK_SEEDS = (1, 2, 3)
BRIEF_REFINE = dict(cycles=3, seed=1)
MASK_R = 1.6             # Å
BLUR_B = (5.0, 10.0, 20.0)   # Å²: control maps, the plain coefficients × exp(−B s²/4)
SAMPLE_RATE = 4


# ---------------------------------------------------------------- the erroneous model
def _xyz(atoms) -> np.ndarray:
    return np.array([a.pos.tolist() for a in atoms]).reshape(-1, 3)


def _ramp_weight(n: int, name: str) -> float:
    """Fraction of the loop shift applied to atom ``name`` of the n-th loop residue."""
    f = {"N": 0.0, "CA": 1 / 3, "C": 2 / 3, "O": 2 / 3}.get(name, 1 / 3)
    if n < fs.RAMP:
        w = (n + f) / fs.RAMP
    elif n >= LOOP_LEN - fs.RAMP:
        w = (LOOP_LEN - n - f) / fs.RAMP
    else:
        w = 1.0
    return min(max(w, 0.0), 1.0)


def build_erroneous(case: str) -> tuple[gemmi.Structure, dict]:
    """The deposited model with (a) wrong rotamers, (b) a shifted loop, (c) the ligand omitted.

    Returns the structure and the error regions: {'rotamers': [{residue, true, wrong}],
    'loop': {true, wrong}, 'ligand': {true}} with atom positions (n, 3) and a description."""
    spec = CASES[case]
    st = fs.read(DATA / case / spec["model"])
    st.remove_hydrogens()
    n_alt = fs.single_conformer(st)
    rng = np.random.default_rng(ERROR_SEED)
    ch = next(ch for ch in st[0] if len(ch.get_polymer()))
    polymer = ch.get_polymer()
    residues = [polymer[k] for k in range(len(polymer))]

    # (c) ligand: positions kept, residue removed
    lig_res = [(c, i) for c in st[0] for i, r in enumerate(c) if r.name == spec["ligand"]]
    if not lig_res:
        raise SystemExit(f"{case}: ligand {spec['ligand']} not in the model")
    lig_xyz = np.vstack([_xyz(c[i]) for c, i in lig_res])
    lig_label = ", ".join(fs.res_label(c, c[i]) for c, i in lig_res)

    # (b) loop window, chosen before the rotamers so these stay away from it
    s0 = fs._pick_loop(residues, LOOP_LEN)
    loop_idx = list(range(s0, s0 + LOOP_LEN))
    loop_xyz = np.vstack([_xyz(residues[k]) for k in loop_idx])

    # (a) rotamers
    def far_from(r, pts):
        return float(cKDTree(pts).query(_xyz(r))[0].min()) > CLEAR

    cand = [k for k, r in enumerate(residues)
            if fs._eligible_rotamer(r) and k not in loop_idx
            and sum(a.name not in fs.BACKBONE and a.name != "CB" for a in r) >= MIN_TIP_ATOMS
            and far_from(r, lig_xyz) and far_from(r, loop_xyz)]
    rot_idx = sorted(rng.choice(cand, size=N_ROTAMERS, replace=False).tolist())
    rotamers = []
    for k in rot_idx:
        r = residues[k]
        at_ = fs.residue_atoms(r)
        side = [a for a in r if a.name not in fs.BACKBONE and a.name != "CB"]
        true = _xyz(side)
        angle = float(rng.choice([-120.0, 120.0]))
        before = fs.chi1(r)
        fs.set_xyz(side, fs.rotate_about(true, np.array(at_["CA"].pos.tolist()),
                                         np.array(at_["CB"].pos.tolist()), angle))
        rotamers.append({"residue": fs.res_label(ch, r), "k": k, "names": [a.name for a in side],
                         "true": true, "wrong": _xyz(side), "rotation": angle,
                         "chi1_true": round(before, 1), "chi1_model": round(fs.chi1(r), 1)})

    # (b) loop shift
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    shift = LOOP_SHIFT * direction
    loop_true, loop_wrong, loop_keys = [], [], []
    for n, k in enumerate(loop_idx):
        for a in residues[k]:
            p = np.array(a.pos.tolist())
            w = _ramp_weight(n, a.name)
            a.pos = gemmi.Position(*(p + w * shift))
            if w * LOOP_SHIFT >= LOOP_MIN_MOVE:
                loop_true.append(p)
                loop_wrong.append(p + w * shift)
                loop_keys.append((fs.res_label(ch, residues[k]), a.name))
    links = []
    for k in range(max(s0 - 1, 0), min(s0 + LOOP_LEN, len(residues) - 1)):
        c_, n_ = residues[k].find_atom("C", "*"), residues[k + 1].find_atom("N", "*")
        if c_ and n_:
            links.append(c_.pos.dist(n_.pos))

    # waters next to the changed residues (deposited and moved positions); then the ligand
    dep = fs.read(DATA / case / spec["model"])
    dep_tab = fs.reference_table(dep)
    changed = set(rot_idx) | set(loop_idx)
    pts = [np.array(a.pos.tolist()) for k in changed for a in residues[k]]
    pts += [dep_tab[(ch.name, residues[k].seqid.num, residues[k].seqid.icode, a.name)]
            for k in changed for a in residues[k]
            if (ch.name, residues[k].seqid.num, residues[k].seqid.icode, a.name) in dep_tab]
    tree = cKDTree(np.array(pts))
    removed_w = []
    for c in st[0]:
        for i in range(len(c) - 1, -1, -1):
            r = c[i]
            if r.is_water() and tree.query(np.array(r[0].pos.tolist()))[0] < fs.WATER_CLEAR:
                removed_w.append(f"{c.name}{r.seqid.num}")
                del c[i]
    for c in st[0]:
        for i in range(len(c) - 1, -1, -1):
            if c[i].name == spec["ligand"]:
                del c[i]
    st.setup_entities()
    regions = {
        "rotamers": rotamers,
        "loop": {"residues": f"{fs.res_label(ch, residues[loop_idx[0]])} – "
                             f"{fs.res_label(ch, residues[loop_idx[-1]])}",
                 "true": np.array(loop_true), "wrong": np.array(loop_wrong), "keys": loop_keys,
                 "direction": [round(float(x), 3) for x in direction],
                 "max_peptide_link_A": round(max(links), 3)},
        "ligand": {"residue": lig_label, "true": lig_xyz},
    }
    info = {"error_seed": ERROR_SEED, "atoms_with_altloc_in_deposited": n_alt,
            "rotamers": [{k: v for k, v in r.items() if k in ("residue", "rotation", "chi1_true",
                                                              "chi1_model")}
                         | {"max_shift_A": round(float(np.linalg.norm(r["true"] - r["wrong"],
                                                                      axis=1).max()), 2)}
                         for r in rotamers],
            "n_rotamer_candidates": len(cand),
            "loop": {"residues": regions["loop"]["residues"], "n": LOOP_LEN, "shift_A": LOOP_SHIFT,
                     "direction": regions["loop"]["direction"], "ramp_residues_each_end": fs.RAMP,
                     "n_atoms_measured": len(loop_true),
                     "max_peptide_link_A": regions["loop"]["max_peptide_link_A"]},
            "ligand_omitted": lig_label, "ligand_atoms": int(len(lig_xyz)),
            "waters_removed_near_changes": removed_w}
    return st, regions, info


# ---------------------------------------------------------------- maps and measures
def fft_grid(mc, label=("FWT", "PHWT"), size=None) -> gemmi.FloatGrid:
    """The map of ``mc``'s coefficients on ``size`` (default: SAMPLE_RATE), in σ units."""
    from kickref.io.maps import map_coefficients_mtz
    mtz = map_coefficients_mtz(mc)
    if size is None:
        grid = mtz.transform_f_phi_to_map(*label, sample_rate=SAMPLE_RATE)
    else:
        grid = mtz.transform_f_phi_to_map(*label, exact_size=list(size))
    arr = grid.array
    arr -= arr.mean()
    arr /= arr.std()
    return grid


def mask_indices(grid: gemmi.FloatGrid, xyz: np.ndarray, radius: float = MASK_R):
    """Grid indices (wrapped into the cell, unique) of the points within ``radius`` of ``xyz``."""
    cell = grid.unit_cell
    n = np.array(grid.shape)
    O = np.array(cell.orth.mat.tolist())
    F = np.array(cell.frac.mat.tolist())
    centre = np.floor(xyz @ F.T * n).astype(int)
    r = int(math.ceil(radius / min(grid.spacing))) + 1
    off = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cand = np.unique((centre[:, None, :] + off[None]).reshape(-1, 3), axis=0)
    d, _ = cKDTree(xyz).query((cand / n) @ O.T)
    idx = np.unique(cand[d < radius] % n, axis=0)
    return tuple(idx.T)


def region_measures(maps: dict, ref: gemmi.FloatGrid, fcref: gemmi.FloatGrid, true, wrong) -> dict:
    """Per map: cc_true (mask around true), cc_union (true ∪ wrong), CC with the deposited
    Fmodel map over the true mask, mean σ at true / wrong positions, contrast."""
    m_true = mask_indices(ref, true)
    m_union = mask_indices(ref, np.vstack([true, wrong])) if wrong is not None else None
    out = {"n_true_atoms": int(len(true)), "n_mask_points": int(len(m_true[0]))}
    for name, g in maps.items():
        a = g.array
        row = {"cc_true": float(np.corrcoef(a[m_true], ref.array[m_true])[0, 1]),
               "cc_true_fmodel": float(np.corrcoef(a[m_true], fcref.array[m_true])[0, 1]),
               "true": float(at(g, true).mean())}
        if wrong is not None:
            row["cc_union"] = float(np.corrcoef(a[m_union], ref.array[m_union])[0, 1])
            row["wrong"] = float(at(g, wrong).mean())
            row["contrast"] = row["true"] - row["wrong"]
        out[name] = row
    return out


def summarize(region: dict, kick_names) -> dict:
    """Kick seeds → mean, min, max, SD per measure; kick mean − plain."""
    keys = [k for k in region["plain"]]
    s = {}
    for k in keys:
        vals = np.array([region[n][k] for n in kick_names])
        s[k] = {"mean": float(vals.mean()), "min": float(vals.min()), "max": float(vals.max()),
                "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                "kick_minus_plain": float(vals.mean() - region["plain"][k])}
    region["kick_summary"] = s
    return region


def scenario(model, case, regions, ref, fcref, dep_protein, wrong_all, true_all, log) -> dict:
    """Plain and kick maps of ``model`` (path or Model) and the measures in every region."""
    import kickref
    spec = CASES[case]
    data = DATA / case / spec["data"]
    t0 = time.perf_counter()
    res = kickref.compute_maps(model, data, **spec["load"])
    maps = {"plain": fft_grid(res.map_coefficients, size=ref.shape)}
    mc = res.map_coefficients
    s2 = np.asarray(mc.cell.calculate_1_d2_array(mc.hkl.astype(np.int32)), dtype=float)
    for b in BLUR_B:                     # control: is the kick map's effect that of a blur?
        blurred = dataclasses.replace(mc, fwt=mc.fwt * np.exp(-b * s2 / 4.0))
        maps[f"plain_B{b:g}"] = fft_grid(blurred, size=ref.shape)
    stats = {"plain": {"r_work": res.statistics.r_work, "r_free": res.statistics.r_free}}
    for s in KICK_SEEDS:
        k = kickref.compute_maps(model, data, kick=True, kick_options=dict(KICK, seed=s), **spec["load"])
        maps[f"kick_s{s}"] = fft_grid(k.map_coefficients, size=ref.shape)
        stats[f"kick_s{s}"] = {"r_free_mean_over_kicked_models": k.kick.get("r_free_mean"),
                               "r_work_mean_over_kicked_models": k.kick.get("r_work_mean")}
        log(f"  kick seed {s} done ({time.perf_counter() - t0:.0f} s)")
    kick_names = [f"kick_s{s}" for s in KICK_SEEDS]
    out = {"map_statistics": stats, "regions": {}}
    R = out["regions"]
    for r in regions["rotamers"]:
        R[f"rotamer {r['residue']}"] = region_measures(maps, ref, fcref, r["true"], r["wrong"])
    R["rotamers (all)"] = region_measures(maps, ref, fcref,
                                          np.vstack([r["true"] for r in regions["rotamers"]]),
                                          np.vstack([r["wrong"] for r in regions["rotamers"]]))
    R[f"loop {regions['loop']['residues']}"] = region_measures(maps, ref, fcref, regions["loop"]["true"],
                                                               regions["loop"]["wrong"])
    R[f"ligand {regions['ligand']['residue']} (omitted)"] = region_measures(
        maps, ref, fcref, regions["ligand"]["true"], None)
    R["whole protein"] = region_measures(maps, ref, fcref, dep_protein, None)
    R["whole protein"]["changed atoms (true vs wrong)"] = {
        n: {"true": float(at(g, true_all).mean()), "wrong": float(at(g, wrong_all).mean()),
            "contrast": float(at(g, true_all).mean() - at(g, wrong_all).mean())} for n, g in maps.items()}
    for n, g in maps.items():
        R["whole protein"][n]["cc_cell"] = float(np.corrcoef(g.array.ravel(), ref.array.ravel())[0, 1])
    for reg in R.values():
        summarize(reg, kick_names)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out, maps


def model_positions(model_path, regions) -> dict:
    """``regions`` with the 'wrong' positions replaced by those in ``model_path`` (the refined
    erroneous model) of the same atoms, matched by residue and atom name."""
    st = judge_mod.read_structure(model_path)
    tab = {}
    for ch in st[0]:
        for r in ch:
            for a in r:
                if not a.is_hydrogen():
                    tab.setdefault((fs.res_label(ch, r), a.name), np.array(a.pos.tolist()))
    rot = [dict(r, wrong=np.array([tab[(r["residue"], n)] for n in r["names"]]))
           for r in regions["rotamers"]]
    loop = dict(regions["loop"], wrong=np.array([tab[k] for k in regions["loop"]["keys"]]))
    return {"rotamers": rot, "loop": loop, "ligand": regions["ligand"]}


def error_left(regions) -> dict:
    """RMS distance (Å) between the model and the true positions per error region."""
    rms = lambda a, b: float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))  # noqa: E731
    out = {f"rotamer {r['residue']}": rms(r["true"], r["wrong"]) for r in regions["rotamers"]}
    out["loop"] = rms(regions["loop"]["true"], regions["loop"]["wrong"])
    return out


# ---------------------------------------------------------------- figure
def draw(path, rows, title, note):
    """rows: [(row title, frame, [(panel title, grid)], [(name, color, xyz)])]."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ncol = max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(4.6 * ncol, 4.9 * len(rows)), squeeze=False)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.92, bottom=0.1, wspace=0.15, hspace=0.28)
    s = np.linspace(-HALF_WIDTH, HALF_WIDTH, 201)
    su, sv = np.meshgrid(s, s, indexing="xy")
    for axrow, (rtitle, frame, panels, atoms) in zip(axes, rows):
        c, u, v, n = frame
        pts = c + su[..., None] * u + sv[..., None] * v
        for ax, (ptitle, grid) in zip(axrow, panels):
            vals = at(grid, pts.reshape(-1, 3)).reshape(su.shape)
            ax.contour(su, sv, vals, levels=[1.0], colors=["#6a8fd8"], linewidths=0.9)
            ax.contour(su, sv, vals, levels=[2.0], colors=["#102a70"], linewidths=1.3)
            for name, color, xyz in atoms:
                d = xyz - c
                keep = np.abs(d @ n) <= SLAB
                p2 = np.column_stack([d @ u, d @ v])[keep]
                kx = xyz[keep]
                if len(kx) > 1:
                    dist = np.linalg.norm(kx[:, None] - kx[None], axis=2)
                    for a, b in zip(*np.nonzero(np.triu(dist < BOND_MAX, 1))):
                        ax.plot(p2[[a, b], 0], p2[[a, b], 1], color=color, lw=1.6, alpha=0.85)
                ax.scatter(p2[:, 0], p2[:, 1], s=13, color=color, zorder=3, label=name)
            ax.set_title("\n".join(textwrap.wrap(f"{rtitle}: {ptitle}", 55)), fontsize=9)
            ax.set_xlim(-HALF_WIDTH, HALF_WIDTH)
            ax.set_ylim(-HALF_WIDTH, HALF_WIDTH)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
        axrow[0].legend(loc="lower left", fontsize=7, framealpha=0.85)
    fig.suptitle(title, fontsize=11)
    fig.text(0.02, 0.01, "\n".join(textwrap.wrap(note, 200)), ha="left", va="bottom", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def figure(case, regions, maps, ref, model_xyz, dep_xyz, res):
    """Slabs through the wrong rotamer with the largest shift and through the omitted ligand."""
    rot = max(regions["rotamers"], key=lambda r: np.linalg.norm(r["true"] - r["wrong"], axis=1).max())
    pts = np.vstack([rot["true"], rot["wrong"]])
    rows = []
    for label, pts, key in ((f"rotamer {rot['residue']}", pts, f"rotamer {rot['residue']}"),
                            (f"ligand {regions['ligand']['residue']} (omitted)", regions["ligand"]["true"],
                             f"ligand {regions['ligand']['residue']} (omitted)")):
        frame = plane_frame(pts.mean(axis=0), pts)
        reg = res["regions"][key]
        def fmt(m):
            r = reg[m]
            txt = f"true {r['true']:.2f}σ" + (f", wrong {r['wrong']:.2f}σ" if "wrong" in r else "")
            return txt + (f", CC {r['cc_true']:.3f}" if "cc_true" in r else "")
        panels = [(f"reference (deposited model, σA 2mFo−DFc), {fmt('reference')}", ref),
                  (f"plain σA 2mFo−DFc, {fmt('plain')}", maps["plain"]),
                  (f"kick map (50 models, 0–0.8 Å, seed 1), {fmt('kick_s1')}", maps["kick_s1"])]
        rows.append((label, frame, panels, [("model (erroneous)", "#e07b00", model_xyz),
                                            ("deposited (true)", "#6b3fa0", dep_xyz)]))
    title = (f"{case}: maps phased by a model with wrong rotamers, a shifted loop and the ligand omitted "
             f"(no refinement)")
    note = (f"Each map in units of its own RMS over the cell; contours 1σ (light) and 2σ (dark). Plane: "
            f"least-squares plane through the true and wrong positions of the region, ±{HALF_WIDTH:g} Å; atoms "
            f"within {SLAB:g} Å of it drawn. 'true'/'wrong': mean map value at the deposited / model positions of "
            f"the region's atoms; CC: with the reference map within {MASK_R:g} Å of the true atoms.")
    draw(FIGURE, rows, title, note)


# ---------------------------------------------------------------- driver
def _arrays_out(obj):
    if isinstance(obj, dict):
        return {k: _arrays_out(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_arrays_out(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def run_case(case: str, refine: bool, log) -> dict:
    import kickref
    spec = CASES[case]
    WORK.mkdir(parents=True, exist_ok=True)
    st, regions, info = build_erroneous(case)
    path = WORK / f"{case}_errors.cif"
    fs.write_cif(st, path)
    info["model"] = str(path.relative_to(ROOT))
    g = judge_mod.geometry_rmsd(path, MONLIB)
    info["geometry"] = {k: g[k] for k in ("bond_rmsd", "angle_rmsd", "bond_max")}
    log(f"{case}: erroneous model {path.name}; rotamers "
        f"{', '.join(r['residue'] for r in info['rotamers'])}; loop {info['loop']['residues']}; "
        f"ligand {info['ligand_omitted']} omitted")
    deposited = DATA / case / spec["model"]
    data = DATA / case / spec["data"]
    r = kickref.compute_maps(deposited, data, **spec["load"])
    ref = fft_grid(r.map_coefficients)
    fcref = fft_grid(r.map_coefficients, label=("FC_ALL", "PHIC_ALL"), size=ref.shape)
    info["reference"] = {"map": "σA 2mFo−DFc of the deposited model (ligand included)",
                         "r_work": r.statistics.r_work, "r_free": r.statistics.r_free,
                         "grid": list(ref.shape)}
    dep_st = judge_mod.read_structure(deposited)
    dep_protein = np.array([a.pos.tolist() for ch in dep_st[0] for rr in ch.get_polymer()
                            for a in rr if not a.is_hydrogen() and a.altloc in ("\0", "A")])
    dep_xyz = np.array([a.pos.tolist() for ch in dep_st[0] for rr in ch for a in rr
                        if not a.is_hydrogen() and a.altloc in ("\0", "A") and not rr.is_water()])
    true_all = np.vstack([*(x["true"] for x in regions["rotamers"]), regions["loop"]["true"]])
    wrong_all = np.vstack([*(x["wrong"] for x in regions["rotamers"]), regions["loop"]["wrong"]])
    out = {"case": case, "data": str(data), "errors": info, "scenarios": {}}
    log(f"{case}: as built")
    res, maps = scenario(path, case, regions, ref, fcref, dep_protein, wrong_all, true_all, log)
    res["rms_error_A"] = error_left(regions)
    add_reference(res, regions, ref, dep_protein, true_all, wrong_all)
    out["scenarios"]["as_built"] = res
    if case == "1cbs":
        model_xyz = np.array([a.pos.tolist() for ch in st[0] for rr in ch for a in rr
                              if not rr.is_water()])
        figure(case, regions, maps, ref, model_xyz, dep_xyz, res)
        out["figure"] = str(FIGURE.relative_to(ROOT))
    del maps
    if refine:
        from kickref.io.models import write_model
        log(f"{case}: brief refinement of the erroneous model ({BRIEF_REFINE}, defaults otherwise)")
        t0 = time.perf_counter()
        rr = kickref.refine(path, data, monlib=MONLIB, **BRIEF_REFINE, **spec["load"])
        refined = WORK / f"{case}_errors_refined.cif"
        write_model(rr.model, refined)
        secs = time.perf_counter() - t0
        reg2 = model_positions(refined, regions)
        w2 = np.vstack([*(x["wrong"] for x in reg2["rotamers"]), reg2["loop"]["wrong"]])
        res2, _ = scenario(refined, case, reg2, ref, fcref, dep_protein, w2, true_all, log)
        res2["rms_error_A"] = error_left(reg2)
        res2["refinement"] = {"options": BRIEF_REFINE, "seconds": round(secs, 1),
                              "r_work": rr.statistics.get("r_work"), "r_free": rr.statistics.get("r_free"),
                              "model": str(refined.relative_to(ROOT))}
        add_reference(res2, reg2, ref, dep_protein, true_all, w2)
        out["scenarios"]["brief_refined"] = res2
    return out


def add_reference(res, regions, ref, dep_protein, true_all, wrong_all):
    """The reference map's own numbers next to plain and kick (no CC: it is the reference)."""
    def vals(true, wrong):
        row = {"true": float(at(ref, true).mean())}
        if wrong is not None:
            row["wrong"] = float(at(ref, wrong).mean())
            row["contrast"] = row["true"] - row["wrong"]
        return row
    R = res["regions"]
    for r in regions["rotamers"]:
        R[f"rotamer {r['residue']}"]["reference"] = vals(r["true"], r["wrong"])
    R["rotamers (all)"]["reference"] = vals(np.vstack([r["true"] for r in regions["rotamers"]]),
                                            np.vstack([r["wrong"] for r in regions["rotamers"]]))
    R[f"loop {regions['loop']['residues']}"]["reference"] = vals(regions["loop"]["true"],
                                                                 regions["loop"]["wrong"])
    R[f"ligand {regions['ligand']['residue']} (omitted)"]["reference"] = vals(regions["ligand"]["true"], None)
    R["whole protein"]["reference"] = vals(dep_protein, None)
    R["whole protein"]["changed atoms (true vs wrong)"]["reference"] = vals(true_all, wrong_all)


def format_table(case_result: dict) -> str:
    """Markdown table of one case: per scenario and error region, plain vs kick (mean ± SD over
    seeds) vs the blurred-plain control (B = 10 Å²), and the reference map's own values."""
    head = ("| scenario | region | CC true: plain | kick | plain B10 | CC true∪wrong: plain | kick | "
            "true σ: ref | plain | kick | wrong σ: ref | plain | kick | contrast: ref | plain | kick | plain B10 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    notes = []
    f = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    for scn, sc in case_result["scenarios"].items():
        regs = sc["regions"]
        for name in [n for n in regs if not n.startswith("rotamer ")]:
            reg = regs[name]
            if name == "whole protein":
                rows = [("whole protein", reg, reg), ("changed atoms", reg["changed atoms (true vs wrong)"], None)]
            else:
                rows = [(name, reg, reg)]
            for label, vals, ccs in rows:
                ks = reg["kick_summary"]

                def kick(key, vals=vals, ks=ks, label=label):
                    if label == "changed atoms":
                        v = np.array([vals[n][key] for n in vals if n.startswith("kick_s")])
                        return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"
                    if key not in ks:
                        return "–"
                    return f"{ks[key]['mean']:.3f} ± {ks[key]['sd']:.3f}"
                g = lambda m, k, vals=vals: vals.get(m, {}).get(k)  # noqa: E731
                cells = [scn.replace("_", " "), label,
                         f(g("plain", "cc_true")) if ccs else "–", kick("cc_true") if ccs else "–",
                         f(g("plain_B10", "cc_true")) if ccs else "–",
                         f(g("plain", "cc_union")), kick("cc_union") if "cc_union" in vals.get("plain", {}) else "–",
                         f(g("reference", "true")), f(g("plain", "true")), kick("true"),
                         f(g("reference", "wrong")), f(g("plain", "wrong")), kick("wrong"),
                         f(g("reference", "contrast")), f(g("plain", "contrast")), kick("contrast"),
                         f(g("plain_B10", "contrast"))]
                lines.append("| " + " | ".join(cells) + " |")
        rot = [regs[n] for n in regs if n.startswith("rotamer ")]
        better = sum(r["kick_summary"]["contrast"]["mean"] > r["plain"]["contrast"] for r in rot)
        notes.append(f"{scn.replace('_', ' ')}: kick contrast > plain for {better} of {len(rot)} single rotamers")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="1cbs")
    ap.add_argument("--no-refine", action="store_true", help="only the as-built scenario")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args(argv)

    def log(s):
        print(s, flush=True)

    out = Path(args.json)
    results = json.loads(out.read_text()) if out.exists() else {}     # other cases are kept
    results.update({"method": __doc__.split("\n\n")[0], "kick": KICK, "kick_seeds": list(KICK_SEEDS),
                    "mask_radius_A": MASK_R, "blur_control_B": list(BLUR_B),
                    "reference_map": "σA 2mFo−DFc of the deposited model (ligand included)"})
    results.setdefault("cases", {})
    for case in args.cases.split(","):
        t0 = time.perf_counter()
        res = run_case(case, not args.no_refine, log)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results["cases"][case] = _arrays_out(res)
        log(f"\n{case}\n" + format_table(results["cases"][case]))
    results["gemmi"] = gemmi.__version__
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_arrays_out(results), indent=1))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
