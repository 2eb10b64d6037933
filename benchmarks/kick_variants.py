"""Kick protocol variants, cycle by cycle: where does the coordinate error of a refinement go?

A diagnostic companion of kick_bench.py (not part of ``make bench``). It runs one refinement
protocol through the Python API on a 0.8 Å-shaken start made by kick_bench.py
(benchmarks/work/kick/<case>/<case>_shaken0.8.cif, seed 2025) and prints after every cycle
kickref's own R-work/R-free, the number of energy+gradient evaluations and the xyz RMSD to the
deposited model split into main chain (N, CA, C, O), side chains and waters (non-H atoms matched
by chain, residue number, residue name, atom name, altloc, as judge.py does).

Protocols (``--protocol``): ``plain`` (macro-cycles), ``kick`` (MAIN's per-atom coordinate
kicks, as ``kickref refine --cool``), ``residue-kick`` (one random translation per residue: a
coherent kick that keeps covalent geometry). Options: ``--kick K0[:K1]`` (linear law),
``--kick-b B0`` (B kicks B0 → 0), ``--strategy alternate|combined``, ``--alternate-first N``
(first N cycles alternate, then combined), ``--settle N`` (restraint-only steps after a kick),
``--freeze-weight`` (no X-ray weight adjustment), ``--average N`` (final model = mean of the
last N cycles' coordinates, then one short cycle), ``--opts JSON`` (RefineOptions fields,
e.g. '{"fix_b": true}' or '{"term_scales": {"nonbonded": 0}}'), ``--no-hydrogens``.

Run: ``.venv/bin/python benchmarks/kick_variants.py 4hg7 --protocol kick --cycles 8 --kick 0.3:0``
Logs of the runs quoted in the issue note: benchmarks/results/kick_variants/.
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

import judge as judge_mod  # noqa: E402
from kickref.api import add_hydrogens, load_inputs  # noqa: E402
from kickref.cli.common import parse_range  # noqa: E402
from kickref.refinement import kick as K  # noqa: E402
from kickref.refinement.protocol import RefineOptions, Refinement  # noqa: E402
from kickref.restraints import build_restraints  # noqa: E402

WORK = HERE / "work" / "kick"
SHARED = ROOT / ".." / "shared"
MONLIB = SHARED / "monomers"
DATA = {"4hg7": "4hg7-data.cif", "1cbs": "1cbs-data.mtz", "3zt9": "3zt9-data.cif"}
MAIN_CHAIN = {"N", "CA", "C", "O"}


def deposited_path(case) -> Path:
    path = SHARED / "data" / case / f"{case}.cif"
    return path if path.exists() else path.with_name(path.name + ".gz")


def setup(case, hydrogens=True, **options):
    start = WORK / case / f"{case}_shaken0.8.cif"
    if not start.exists():
        sys.exit(f"{start}: missing; run benchmarks/kick_bench.py once to make the shaken starts")
    model, data = load_inputs(str(start), str(WORK / case / DATA[case]), hydrogens="keep")
    if hydrogens:
        model = add_hydrogens(model, str(MONLIB))
    restraints = build_restraints(model, monlib_dir=str(MONLIB), hydrogens="keep")
    ref = Refinement(model, data, restraints, RefineOptions(**options))
    # atoms matched as judge.py matches them; atom_table lists the non-H atoms in model order
    keys_m, _ = judge_mod.atom_table(model.structure)
    keys_r, xyz_r = judge_mod.atom_table(str(deposited_path(case)))
    row_r = {k: i for i, k in enumerate(keys_r)}
    heavy = np.flatnonzero(~model.is_hydrogen)
    found = [(heavy[i], row_r[k]) for i, k in enumerate(keys_m) if k in row_r]
    idx = np.array([i for i, _ in found], dtype=np.int64)
    target = xyz_r[[j for _, j in found]]
    kind = np.where(model.is_water[idx], 2, np.where(np.isin(model.atom_name[idx], list(MAIN_CHAIN)), 0, 1))
    return ref, (idx, target, kind)


def xyz_errors(xyz, reference):
    """RMSD (Å) to the deposited model: all, main chain, side chains, waters."""
    idx, target, kind = reference
    e = ((xyz[idx] - target) ** 2).sum(axis=1)
    return [float(np.sqrt(e.mean()))] + [float(np.sqrt(e[kind == k].mean())) if (kind == k).any()
                                         else float("nan") for k in range(3)]


def record(ref, reference, t0, label, rows):
    c = ref.record(len(ref.cycles), t0, label)
    e = xyz_errors(ref.state.xyz, reference)
    row = dict(label=label, r_work=c.r_work, r_free=c.r_free, n_eval=ref.n_eval, bond=c.rmsd_bond,
               weight=c.weight, mean_b=c.mean_b, xyz=e[0], main_chain=e[1], side_chain=e[2], water=e[3],
               time=time.perf_counter() - t0)
    sc = ref.fmodel.scale
    row["scale_b_iso"] = sc.b_iso_overall
    row["b_sol"] = float(sc.b_sol)
    rows.append(row)
    print(f"{label:24s} R {c.r_work:.4f} {c.r_free:.4f} n_eval {ref.n_eval:4d} bond {c.rmsd_bond:.4f} "
          f"w {c.weight:5.2f} xyz {e[0]:.3f} mc {e[1]:.3f} sc {e[2]:.3f} wat {e[3]:.3f} "
          f"<B> {c.mean_b:.1f} scaleB {sc.b_iso_overall:.1f} Bsol {sc.b_sol:.1f} t {row['time']:.0f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", choices=sorted(DATA))
    ap.add_argument("--protocol", choices=("plain", "kick", "residue-kick"), default="kick")
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--kick", default="0.3:0")
    ap.add_argument("--kick-b", type=float, default=0.0)
    ap.add_argument("--strategy", choices=("alternate", "combined"), default="alternate")
    ap.add_argument("--alternate-first", type=int, default=0)
    ap.add_argument("--xyz-steps", type=int, default=25)
    ap.add_argument("--settle", type=int, default=0)
    ap.add_argument("--freeze-weight", action="store_true")
    ap.add_argument("--average", type=int, default=0)
    ap.add_argument("--final-steps", type=int, default=10)
    ap.add_argument("--opts", default="{}")
    ap.add_argument("--no-hydrogens", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    ref, reference = setup(a.case, hydrogens=not a.no_hydrogens, **json.loads(a.opts))
    rows = []
    t0 = time.perf_counter()
    ref.start(t0)
    record(ref, reference, t0, "start", rows)
    if a.freeze_weight:
        ref.options.weight = ref.weight
    k0, k1 = parse_range(a.kick)
    kx = K.kick_schedule(k0, k1, a.cycles, "linear")
    if a.protocol == "plain":
        kx[:] = 0.0
    rng = np.random.default_rng(a.seed)
    sel = ref.movable.copy()
    is_h = ref.p_xyz.is_h | ref.model.is_hydrogen
    kept = []
    for i in range(a.cycles):
        if a.protocol == "residue-kick" and kx[i] > 0:
            res = ref.model.residue_index
            shift = rng.uniform(-kx[i], kx[i], size=(res.max() + 1, 3))
            moving = sel & ~is_h
            ref.state.xyz[moving] += shift[res[moving]]
            ref.state.xyz[:] = ref.p_xyz.place_hydrogens(ref.state.xyz)
        if a.kick_b > 0 and a.cycles > 1:
            kb = a.kick_b * (1 - i / (a.cycles - 1))
            if kb > 0:
                K.kick_b(ref.state, kb, sel, rng, hydrogens=is_h)
                ref.p_adp.update_hydrogen_b(ref.state)
        if a.protocol == "kick" and kx[i] > 0:
            K.kick_coordinates(ref.state, kx[i], sel, rng, hydrogens=is_h, hydrogen_parents=ref.p_xyz.hparent,
                               place_hydrogens=ref.p_xyz.place_hydrogens)
        if a.protocol != "plain" and a.settle and kx[i] > 0:
            ref.minimize_geometry(a.settle)
        ref.rephase(full=False)
        strategy = (("alternate" if i < a.alternate_first else "combined") if a.alternate_first
                    else a.strategy)
        ref.macro_cycle(a.xyz_steps, strategy=strategy)
        record(ref, reference, t0, f"{a.protocol} {i + 1} k {kx[i]:.2f}", rows)
        kept.append(ref.state.xyz.copy())
    if a.average:
        ref.state.xyz[:] = np.mean(kept[-a.average:], axis=0)
        ref.restraints.update_riding(ref.state.xyz)
        ref.state.xyz[:] = ref.restraints.place_hydrogens(ref.state.xyz)
        ref.rephase(full=True)
        record(ref, reference, t0, f"average of {a.average}", rows)
        ref.macro_cycle(a.final_steps, strategy=a.strategy)
        record(ref, reference, t0, "final", rows)
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
