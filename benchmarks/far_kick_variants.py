"""Fit-directed kicks from the far starts: kick only the residues that fit the density worst.

A diagnostic companion of far_start_bench.py (not part of ``make bench``). MAIN's fast cooling
kicks every atom; from the far starts that loses to plain refinement (far_start_bench.py). Here
each of ``--cool`` cycles first ranks the protein residues by their fit to the current
difference map — the mean mFo−DFc value (σA-weighted, work reflections, in units of the map's
RMS) at the residue's non-H atoms, sampled by cubic B-spline — and kicks only the worst
``--fraction`` of them (coordinates, uniform per coordinate, amplitude K_i from ``--kick`` over
the cycles, linear law; riding H re-placed), then minimizes like ``kickref refine --cool``
(re-phase, one macro-cycle of ``--xyz-steps``, alternate by default; ``--strategy auto`` as
plain cycles). Everything else is kickref's
default options (``RefineOptions()``, riding H added, seed 1).

The final model is written to benchmarks/work/far_bench_fit/<start>[_TAG]/out.cif and judged like
far_start_bench.py's rows (cctbx R, gemmi bond RMSD, Cα/all-atom RMSD, χ1). n_eval counts the
energy+gradient evaluations only (the map per cycle is one extra Fc-sized FFT, not counted).

Run: ``.venv/bin/python benchmarks/far_kick_variants.py 1cbs_far [--kick 0.8:0] [--fraction 0.15]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

import far_start_bench as fsb  # noqa: E402
import far_starts as fs  # noqa: E402
import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402
from kickref.api import add_hydrogens, load_inputs  # noqa: E402
from kickref.cli.common import parse_range  # noqa: E402
from kickref.refinement import kick as K  # noqa: E402
from kickref.refinement.protocol import RefineOptions, Refinement  # noqa: E402
from kickref.restraints import build_restraints  # noqa: E402
from kickref.xtal.bspline import bspline_coefficients, bspline_eval, grid_coordinates  # noqa: E402
from kickref.xtal.fourier import coefficients_to_grid  # noqa: E402
from kickref.xtal.maps import compute_map_coefficients  # noqa: E402
from kickref.xtal.structure_factors import fft_size  # noqa: E402

WORK = HERE / "work" / "far_bench_fit"


def residue_fit(ref) -> tuple[np.ndarray, np.ndarray]:
    """(residue ids, mean mFo−DFc / RMS at their non-H atoms) for the polymer residues."""
    mc = compute_map_coefficients(ref.fmodel, ref.state, fill_missing=False)
    hkl = np.asarray(mc.hkl)
    shape = tuple(fft_size(int(3 * np.abs(hkl[:, k]).max() + 1)) for k in range(3))
    grid = coefficients_to_grid(mc.cell, mc.spacegroup, hkl, mc.delfwt, shape)
    grid /= np.sqrt(np.mean(grid ** 2))
    model = ref.model
    heavy = ~(ref.p_xyz.is_h | model.is_hydrogen) & ~model.is_water
    u = grid_coordinates(ref.state.xyz[heavy], mc.cell, shape)
    val, _ = bspline_eval(bspline_coefficients(grid), np.ascontiguousarray(u), False)
    res = model.residue_index[heavy]
    ids = np.unique(res)
    mean = np.bincount(res, weights=val, minlength=ids.max() + 1)[ids] / np.bincount(res)[ids]
    return ids, mean


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("start", choices=fsb.STARTS)
    ap.add_argument("--cool", type=int, default=8)
    ap.add_argument("--kick", default="0.8:0", help="amplitude START:END, Å (linear)")
    ap.add_argument("--fraction", type=float, default=0.15, help="worst-fitting residues kicked")
    ap.add_argument("--xyz-steps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strategy", choices=("alternate", "auto"), default="alternate",
                    help="minimization after a kick: alternate (as --cool) or auto (as plain cycles: "
                         "alternate while R-work > 0.25, else combined)")
    ap.add_argument("--tag", default="", help="suffix of the work folder")
    a = ap.parse_args(argv)
    spec = fsb.spec_of(a.start)
    case = spec["case"]
    work = WORK / (a.start + (f"_{a.tag}" if a.tag else ""))
    work.mkdir(parents=True, exist_ok=True)
    data = judge_mod.plain_copy(fsb.SHARED / "data" / case / spec["data"], work, stem=f"{case}-data")
    start = fsb.ensure_start(a.start)
    t0 = time.perf_counter()
    model, dat = load_inputs(str(start), str(data), hydrogens="keep")
    model = add_hydrogens(model, str(fsb.MONLIB))
    restraints = build_restraints(model, monlib_dir=str(fsb.MONLIB), hydrogens="keep")
    ref = Refinement(model, dat, restraints, RefineOptions(seed=a.seed))
    k0, k1 = parse_range(a.kick)
    kx = K.kick_schedule(k0, k1, a.cool, "linear")
    rng = np.random.default_rng(a.seed)
    is_h = ref.p_xyz.is_h | ref.model.is_hydrogen
    log = []
    with ref.stop:
        ref.start(t0)
        for i in range(a.cool):
            ref.cycle = i + 1
            n_kicked = 0
            if kx[i] > 0:
                ids, fit = residue_fit(ref)
                worst = ids[np.argsort(fit)[:max(1, int(round(a.fraction * len(ids))))]]
                sel = ref.movable & np.isin(ref.model.residue_index, worst)
                n_kicked = len(worst)
                K.kick_coordinates(ref.state, kx[i], sel, rng, hydrogens=is_h,
                                   hydrogen_parents=ref.p_xyz.hparent,
                                   place_hydrogens=ref.p_xyz.place_hydrogens)
            ref.rephase(full=False)
            ref.macro_cycle(a.xyz_steps, strategy=a.strategy)
            c = ref.record(i + 1, t0, f"fit-kick {kx[i]:.2f} Å on {n_kicked} residues")
            log.append({"cycle": i + 1, "kick": float(kx[i]), "n_kicked": n_kicked, "r_work": c.r_work,
                        "r_free": c.r_free, "n_eval": ref.n_eval})
            print(f"cycle {i + 1} kick {kx[i]:.2f} on {n_kicked} residues: R {c.r_work:.4f}/{c.r_free:.4f} "
                  f"n_eval {ref.n_eval}", flush=True)
        result = ref.finish({})
    wall = time.perf_counter() - t0
    st = result.model.sync_structure()
    out = work / "out.cif"
    fs.write_cif(st, out)
    peers = peers_mod.find_peers(install=False)
    j = judge_mod.judge(out, data, monlib_dir=fsb.MONLIB, mvd_exe=peers.model_vs_data,
                        work_dir=work / "judge", cctbx_args=spec["cctbx"])
    m = fsb.structure_metrics(out, fs.read(fsb.SHARED / "data" / case / spec["model"]))
    row = {"start": a.start, "args": vars(a), "n_eval": ref.n_eval, "wall_s": round(wall, 1),
           "cycles": log, "judge": j, "structure": m}
    (work / "result.json").write_text(json.dumps(fsb.rb._json_safe(row), indent=1))
    print(f"{a.start}: n_eval {ref.n_eval}, R {j.get('r_work', float('nan')):.4f}/"
          f"{j.get('r_free', float('nan')):.4f} (cctbx), bond {j.get('bond_rmsd', float('nan')):.4f}, "
          f"Cα {m.get('ca_rmsd', float('nan')):.3f}, all {m.get('all_atom_rmsd', float('nan')):.3f}, "
          f"χ1 {m.get('chi1_within_30', float('nan')):.3f}, {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
