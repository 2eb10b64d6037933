"""Figure: a kick map next to the plain 2mFo-DFc map for the same region (1cbs by default).

Protocol (all with kickref's CLI; scratch in benchmarks/work/kick_map/):
1. start: the deposited model shaken by 0.8 Å RMS (seed 2025, links kept; shake.py — the same
   start as kick_bench.py), refined briefly: ``kickref refine START DATA --cycles 3 --xyz-steps 25``
   (kickref defaults otherwise), so the model still carries errors that bias its maps;
2. from that model: ``kickref maps MODEL DATA -o plain.mtz`` (σA 2mFo-DFc, FWT/PHWT) and
   ``kickref maps MODEL DATA -o kick.mtz --kick --kick-models 50 --kick-max 0.8 --seed 1``
   (the same coefficients averaged over 50 kicked models, 0–0.8 Å); as a reference,
   ``kickref maps DEPOSITED DATA -o reference.mtz`` (the map with the deposited model's phases);
3. maps by gemmi FFT (``sample_rate=4``), each in units of its own RMS over the cell (σ).
Region: the residue with at least 5 non-H atoms where the two maps differ most — the mean
|kick − plain| (σ) at its atoms, at the refined and at the deposited positions. The picture is
the plane fitted (least squares) through those positions, ±8 Å around their centroid; three
panels: plain map, kick map (contours 1σ and 2σ) and kick − plain (±0.4σ); atoms within 1.5 Å of
the plane drawn: refined model (orange) and deposited (purple).
Also reported (JSON): correlation of each map with the reference map, and the mean density (σ) at
the refined and at the deposited positions of the atoms that are > 0.5 Å apart (model bias: a
less biased map has less density at the wrong positions).

Run: ``.venv/bin/python benchmarks/kick_map_figure.py [--case 1cbs] [--at-commit REV] [--reuse] [--out PNG]``
(writes benchmarks/results/kick_map.png and kick_map.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import judge as judge_mod  # noqa: E402
import refine_bench as rb  # noqa: E402
import shake as shake_mod  # noqa: E402

WORK = HERE / "work" / "kick_map"
OUT_PNG = HERE / "results" / "kick_map.png"
SHAKE_RMS, SHAKE_SEED = 0.8, 2025
BRIEF_REFINE = ["--cycles", "3", "--xyz-steps", "25", "--seed", "1"]
KICK_MAPS = ["--kick", "--kick-models", "50", "--kick-max", "0.8", "--seed", "1"]
HALF_WIDTH = 8.0     # Å, half the side of the drawn square
SLAB = 1.5           # Å, atoms this close to the plane are drawn
MIN_RES_ATOMS = 5    # residues with fewer non-H atoms (waters, ions, Gly, Ala, Ser) are not chosen
BOND_MAX = 1.9       # Å, atoms closer than this are joined in the drawing


def run(cmd, log):
    res = rb.run_timed(cmd, WORK, log)
    if res["rc"] != 0:
        raise SystemExit(f"failed (rc {res['rc']}): {' '.join(map(str, cmd))}\n{rb.log_tail(log)}")
    return res


def fft_map(mtz_path) -> gemmi.FloatGrid:
    """2mFo-DFc (FWT, PHWT) map in σ units (divided by its RMS over the cell)."""
    mtz = gemmi.read_mtz_file(str(mtz_path))
    grid = mtz.transform_f_phi_to_map("FWT", "PHWT", sample_rate=4)
    arr = grid.array
    arr -= arr.mean()
    arr /= arr.std()
    return grid


def heavy_atoms(path):
    """[(key, residue key, element, xyz)] of the non-H atoms, key as judge.atom_table."""
    st = judge_mod.read_structure(path)
    out = []
    for ch in st[0]:
        for res in ch:
            rkey = (ch.name, res.seqid.num, res.seqid.icode.strip(), res.name)
            for a in res:
                if a.is_hydrogen():
                    continue
                alt = a.altloc if a.altloc != "\0" else ""
                out.append(((*rkey, a.name, alt), rkey, a.element.name, np.array(a.pos.tolist())))
    return st, out


def at(grid, xyz) -> np.ndarray:
    """Map values (σ) at Cartesian positions (n, 3), trilinear."""
    return np.asarray(grid.interpolate_position_array(np.ascontiguousarray(xyz, dtype=float)), float)


def pick_residue(plain, kick, model_atoms, dep_index):
    """Residue with at least MIN_RES_ATOMS non-H atoms (a side chain; waters and ions excluded)
    whose atoms — refined and deposited positions — see the largest mean |kick − plain| (σ);
    returns (residue key, that mean)."""
    by_res: dict = {}
    for key, rkey, _, xyz in model_atoms:
        by_res.setdefault(rkey, []).append(xyz)
        if key in dep_index:
            by_res[rkey].append(dep_index[key])
    best, best_score = None, -1.0
    for rkey, pts in by_res.items():
        if len(pts) < 2 * MIN_RES_ATOMS:
            continue
        pos = np.array(pts)
        score = float(np.mean(np.abs(at(kick, pos) - at(plain, pos))))
        if score > best_score:
            best, best_score = rkey, score
    return best, best_score


def plane_frame(center, points):
    """``center`` and the in-plane unit vectors u, v and normal n of the least-squares plane through
    ``points`` (principal axes)."""
    _, _, vt = np.linalg.svd(points - points.mean(axis=0))
    return center, vt[0], vt[1], vt[2]


def draw(path, panels, frame, atoms_sets, title, note):
    """One panel per (label, grid, [(level, color, width)]): contours of the grid on the plane,
    atoms within SLAB of it projected, joined where closer than BOND_MAX."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c, u, v, n = frame
    s = np.linspace(-HALF_WIDTH, HALF_WIDTH, 241)
    su, sv = np.meshgrid(s, s, indexing="xy")
    pts = c + su[..., None] * u + sv[..., None] * v
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 6.6))
    fig.subplots_adjust(left=0.04, right=0.99, top=0.86, bottom=0.2, wspace=0.18)
    for ax, (label, grid, levels) in zip(axes, panels):
        vals = at(grid, pts.reshape(-1, 3)).reshape(su.shape)
        for level, color, width in levels:
            ax.contour(su, sv, vals, levels=[level], colors=[color], linewidths=width)
        for name, color, atoms in atoms_sets:
            xyz = np.array([a[3] for a in atoms]).reshape(-1, 3)
            d = xyz - c
            keep = np.abs(d @ n) <= SLAB
            p2 = np.column_stack([d @ u, d @ v])[keep]
            inside = (np.abs(p2) <= HALF_WIDTH).all(axis=1)
            kx, p2 = xyz[keep][inside], p2[inside]
            if len(kx) > 1:
                dist = np.linalg.norm(kx[:, None] - kx[None], axis=2)
                for a, b in zip(*np.nonzero(np.triu(dist < BOND_MAX, 1))):
                    ax.plot(p2[[a, b], 0], p2[[a, b], 1], color=color, lw=1.8, alpha=0.85)
            ax.scatter(p2[:, 0], p2[:, 1], s=14, color=color, zorder=3, label=name)
        ax.set_title("\n".join(textwrap.wrap(label, 52)), fontsize=9.5)
        ax.set_xlim(-HALF_WIDTH, HALF_WIDTH)
        ax.set_ylim(-HALF_WIDTH, HALF_WIDTH)
        ax.set_aspect("equal")
        ax.set_xlabel("Å (in the plane)", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].legend(loc="lower left", fontsize=8, framealpha=0.85)
    fig.suptitle(title, fontsize=11)
    fig.text(0.02, 0.015, "\n".join(textwrap.wrap(note, 190)), ha="left", va="bottom", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="1cbs", choices=sorted(rb.CASES))
    ap.add_argument("--reuse", action="store_true",
                    help="keep the refined model and the maps of an earlier run (only redraw)")
    ap.add_argument("--out", default=str(OUT_PNG))
    ap.add_argument("--at-commit", metavar="REV",
                    help="run kickref from a snapshot of src/ at this git revision (see kick_bench.py)")
    args = ap.parse_args(argv)
    model_name, data_name, _, _ = rb.CASES[args.case]
    case_dir = rb.SHARED / "data" / args.case
    deposited, data_orig = case_dir / model_name, case_dir / data_name
    if not deposited.exists():
        print(f"shared data not found at {case_dir}", file=sys.stderr)
        return 1
    commit = None
    if args.at_commit:
        import kick_bench
        kick_cmd, _, commit = kick_bench.kickref_at_commit(args.at_commit)
    else:
        kick_cmd = rb.kickref_command()
    WORK.mkdir(parents=True, exist_ok=True)
    data = judge_mod.plain_copy(data_orig, WORK, stem=f"{args.case}-data")
    start = WORK / f"{args.case}_shaken{SHAKE_RMS:g}.cif"
    refined = WORK / "brief.cif"
    mtz = {k: WORK / f"{k}.mtz" for k in ("plain", "kick", "reference")}
    runs = {}
    if not (args.reuse and refined.exists()):
        shake_mod.shake_file(deposited, start, rms=SHAKE_RMS, seed=SHAKE_SEED, keep_links=True)
        runs["refine"] = run([*kick_cmd, "refine", start, data, "-o", WORK / "brief", "--monlib",
                              rb.MONLIB, "-q", *BRIEF_REFINE], WORK / "brief.out")
    for key, model, extra in (("plain", refined, []), ("kick", refined, KICK_MAPS),
                              ("reference", deposited, [])):
        if not (args.reuse and mtz[key].exists()):
            runs[key] = run([*kick_cmd, "maps", model, data, "-o", mtz[key], "--json",
                             WORK / f"{key}.json", *extra], WORK / f"{key}.out")
    maps = {k: fft_map(p) for k, p in mtz.items()}

    _, model_atoms = heavy_atoms(refined)
    _, dep_atoms = heavy_atoms(deposited)
    dep_index = {key: xyz for key, _, _, xyz in dep_atoms}
    pairs = [(xyz, dep_index[key]) for key, _, _, xyz in model_atoms if key in dep_index]
    xm = np.array([p for p, _ in pairs])
    xd = np.array([d for _, d in pairs])
    shift = np.linalg.norm(xm - xd, axis=1)
    moved = shift > 0.5
    ref_arr = maps["reference"].array.ravel()
    stats = {"n_atoms_matched": len(pairs), "xyz_rmsd_model_to_deposited": float(np.sqrt(np.mean(shift ** 2))),
             "n_atoms_moved_gt_0.5A": int(moved.sum()),
             "rms_kick_minus_plain": float(np.std(maps["kick"].array - maps["plain"].array))}
    for k in ("plain", "kick"):
        arr = maps[k].array.ravel()
        stats[k] = {"cc_to_reference_map": float(np.corrcoef(arr, ref_arr)[0, 1]),
                    "mean_sigma_at_model_atoms_moved": float(at(maps[k], xm[moved]).mean()),
                    "mean_sigma_at_deposited_atoms_moved": float(at(maps[k], xd[moved]).mean()),
                    "mean_sigma_at_model_atoms_all": float(at(maps[k], xm).mean()),
                    "mean_sigma_at_deposited_atoms_all": float(at(maps[k], xd).mean())}

    rkey, score = pick_residue(maps["plain"], maps["kick"], model_atoms, dep_index)
    rm = np.array([xyz for _, rk, _, xyz in model_atoms if rk == rkey])
    rd = np.array([dep_index[key] for key, rk, _, _ in model_atoms if rk == rkey and key in dep_index])
    both = np.vstack([rm, rd])
    frame = plane_frame(both.mean(axis=0), both)
    region = {"residue": f"{rkey[0]}/{rkey[3]} {rkey[1]}{rkey[2]}", "mean_abs_kick_minus_plain_sigma": score,
              "residue_shift_refined_to_deposited": float(np.sqrt(np.mean(np.sum((rm[:len(rd)] - rd) ** 2, axis=1))))
              if len(rd) == len(rm) else None,
              "plane_center": frame[0].tolist(), "plane_normal": frame[3].tolist()}
    for k in ("plain", "kick"):
        region[k] = {"mean_sigma_at_refined_atoms": float(at(maps[k], rm).mean()),
                     "mean_sigma_at_deposited_atoms": float(at(maps[k], rd).mean()) if len(rd) else None}
    stats["region"] = region

    info = json.loads((WORK / "kick.json").read_text()) if (WORK / "kick.json").exists() else {}
    brief = json.loads((WORK / "brief.json").read_text()).get("final", {}) if (WORK / "brief.json").exists() else {}
    stats["brief_refinement"] = {"args": BRIEF_REFINE, "r_work": brief.get("r_work"), "r_free": brief.get("r_free")}
    stats["kick_maps"] = {"args": KICK_MAPS, "r_free_mean_over_kicked_models": info.get("kick", {}).get("r_free_mean")}
    diff = maps["kick"].clone()
    diff.array[:] = maps["kick"].array - maps["plain"].array
    fmt_r = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    title = (f"{args.case}, around {region['residue']}: model shaken 0.8 Å RMS and refined 3 cycles "
             f"(R-free {fmt_r(brief.get('r_free'))}, {stats['xyz_rmsd_model_to_deposited']:.2f} Å RMS from the "
             f"deposited model); 2mFo-DFc maps phased with it")
    contours = [(1.0, "#6a8fd8", 0.9), (2.0, "#102a70", 1.3)]
    panels = [(f"plain σA 2mFo-DFc (CC with the deposited-model map {stats['plain']['cc_to_reference_map']:.3f})",
               maps["plain"], contours),
              (f"kick map: average over 50 models kicked 0–0.8 Å (CC {stats['kick']['cc_to_reference_map']:.3f})",
               maps["kick"], contours),
              ("kick − plain (σ units of each): +0.4σ green, −0.4σ red", diff,
               [(0.4, "#1f9e3f", 1.0), (-0.4, "#d02020", 1.0)])]
    r = region
    note = (f"Plane: least-squares plane through the atoms of {r['residue']} (refined and deposited "
            f"positions), centred on them, ±{HALF_WIDTH:g} Å; contours 1σ (light) and "
            f"2σ (dark), each map in units of its own RMS; atoms within {SLAB:g} Å of the plane drawn. "
            f"{r['residue']} is the residue (≥ {MIN_RES_ATOMS} atoms) where the two maps differ most: mean |kick − plain| "
            f"{score:.2f}σ at its refined and deposited atom positions (map RMS difference {stats['rms_kick_minus_plain']:.2f}σ). "
            f"Whole model, {stats['n_atoms_moved_gt_0.5A']} atoms > 0.5 Å from their deposited position, mean density "
            f"at refined / deposited position: plain {stats['plain']['mean_sigma_at_model_atoms_moved']:.2f} / "
            f"{stats['plain']['mean_sigma_at_deposited_atoms_moved']:.2f}σ, kick "
            f"{stats['kick']['mean_sigma_at_model_atoms_moved']:.2f} / {stats['kick']['mean_sigma_at_deposited_atoms_moved']:.2f}σ.")
    out = Path(args.out)
    draw(out, panels, frame, [("refined model", "#e07b00", model_atoms), ("deposited", "#6b3fa0", dep_atoms)],
         title, note)
    stats.update(case=args.case, png=str(out), kickref_commit=commit, runs={k: {kk: v.get(kk) for kk in ("wall_s", "rc")}
                                                     for k, v in runs.items()})
    out_json = out.with_suffix(".json")
    out_json.write_text(json.dumps(rb._json_safe(stats), indent=1))
    print(json.dumps(rb._json_safe(stats), indent=1))
    print(f"wrote {out} and {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
