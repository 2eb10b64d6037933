"""NCS benchmark on 4iid (two chains): restraints, operator refinement, averaging.

1. Refinement from the 0.5 Å-shaken deposited model (shake.py, seed 2024, as refine_bench.py)
   against the data cut to 3.5 Å (and, with ``--resolutions 3.5,2.3``, the full 2.3 Å data),
   one run after the other: ``kickref refine --ncs off``, ``kickref refine --ncs on`` (other
   options kickref's defaults), ``servalcat refine_xtal_norefmac`` without and with ``--ncsr``
   (its defaults otherwise; peers.py venv). Every output is judged by the same calculator
   (judge.py: cctbx ``mmtbx.model_vs_data`` when available) against the same (cut) data; also
   reported: geometry, xyz RMSD to the deposited model and the main-chain RMSD between the two
   copies after superposition (kickref's NCS detection).
2. Operator refinement against the deposited model's σA 2mFo−DFc map (2.3 Å): from the
   superposition operator (T_opt), and from it perturbed by 2° about a random axis through the
   copy's centroid plus 0.8 Å; the distance of the second result from T_opt (rotation °, copy
   centroid shift Å) is reported.
3. Averaging: from the 0.5 Å-shaken start, the σA 2mFo−DFc map (2.3 Å) plain and NCS-averaged
   (operators refined first), each correlated with the deposited model's 2mFo−DFc map over the
   protein mask (2 Å around the deposited polymer atoms).

Acceptance (issue 12): at 3.5 Å R-free(NCS on) ≤ R-free(off) − 0.003 and < servalcat --ncsr's;
at 2.3 Å R-free(on) ≤ R-free(off) + 0.001; operator within 0.2° / 0.1 Å; averaged CC > plain CC.
Results: benchmarks/results/ncs_bench.json, merged with the file's earlier content (rows of
other resolutions or programs, and parts not run this time, are kept).

Run: ``python benchmarks/ncs_bench.py [--resolutions 3.5[,2.3]] [--parts refine,operators,averaging]
[--programs kickref,servalcat] [--reuse]``. Heavy: each 4iid refinement takes minutes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402
import refine_bench as rb  # noqa: E402
import shake as shake_mod  # noqa: E402

DATA = rb.SHARED / "data" / "4iid"
WORK = HERE / "work" / "ncs"
RESULTS = HERE / "results" / "ncs_bench.json"
TIMEOUT = 6 * 3600


def cut_mtz(src: Path, dest: Path, d_min: float) -> Path:
    """``src`` with the reflections beyond ``d_min`` Å removed (all columns kept)."""
    if dest.exists():
        return dest
    mtz = gemmi.read_mtz_file(str(src))
    d = mtz.make_d_array()
    data = np.array(mtz, copy=True)
    mtz.set_data(data[d >= d_min * (1 - 1e-6)])
    mtz.update_reso()
    dest.parent.mkdir(parents=True, exist_ok=True)
    mtz.write_to_file(str(dest))
    return dest


def copy_rmsd(model_path) -> float | None:
    """Main-chain RMSD (Å) of 4iid's copy B superposed on A, by kickref's NCS detection."""
    from kickref import api
    groups = api.ncs_groups(str(model_path))
    return groups[0].copies[1].rmsd if groups else None


# ---------------------------------------------------------------- 1. refinement
def refine_part(args, peers, start, deposited) -> list:
    # this checkout's kickref (src/ on PYTHONPATH), whatever else is installed
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    kick_cmd, kick_version, msg = rb.kickref_status([sys.executable, "-m", "kickref"])
    print(msg, flush=True)
    rows = []
    for res in args.resolutions:
        data = DATA / "4iid.mtz" if res <= 2.3 else cut_mtz(DATA / "4iid.mtz", WORK / f"4iid_{res}.mtz", res)
        runs = []
        if "kickref" in args.programs and kick_cmd:
            runs += [("kickref", "ncs off", ["--ncs", "off"]), ("kickref", "ncs on", ["--ncs", "on"])]
        if "servalcat" in args.programs and peers.servalcat:
            runs += [("servalcat", "plain", []), ("servalcat", "--ncsr", ["--ncsr"])]
        for prog, label, extra in runs:
            run_dir = WORK / f"d{res}" / f"{prog}_{label.replace(' ', '_').strip('-')}"
            run_dir.mkdir(parents=True, exist_ok=True)
            print(f"  {res} Å  {prog} {label} ...", end="", flush=True)
            if prog == "kickref":
                r = rb.run_kickref(kick_cmd, start, data, run_dir, extra + args.kickref_args, TIMEOUT)
                r.pop("kickref_summary", None)
            else:
                r = rb.run_servalcat(peers.servalcat, start, data, run_dir, rb.MTZ_LABIN + extra, False,
                                     args.reuse, peers.versions.get("servalcat"), TIMEOUT)
            row = {"d_min": res, "program": prog, "setting": label, "run": r}
            if r.get("output"):
                row["judge"] = judge_mod.judge(r["output"], data, reference=deposited, mvd_exe=peers.model_vs_data,
                                               work_dir=run_dir / "judge")
                row["copy_rmsd"] = copy_rmsd(r["output"])
            rows.append(row)
            j = row.get("judge", {})
            print(f" R-free {j.get('r_free')}  ({r.get('wall_s')} s) {r.get('error', '')}", flush=True)
    return rows


# ---------------------------------------------------------------- 2. operators
def operator_part(deposited) -> dict:
    from kickref import api
    from kickref.refinement.ncs_operators import optimize_operator, reference_points
    from kickref.xtal.density_map import density_map_from_coefficients
    from kickref.xtal.ncs import rotation_angle
    t0 = time.perf_counter()
    model, data = api.load_inputs(str(deposited), str(DATA / "4iid.mtz"))
    mc = api.compute_maps(model, data).map_coefficients
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    groups = api.ncs_groups(model)
    x, a = reference_points(dm, model.xyz, groups, 0)
    sup = groups[0].copies[1]
    opt, rep0 = optimize_operator(dm, x, a, sup)
    bad = sup.perturbed(2.0, 0.8, sup.transform(x).mean(axis=0), np.random.default_rng(12))
    new, rep1 = optimize_operator(dm, x, a, bad)
    return {"from_superposition": rep0, "from_perturbed": rep1,
            "perturbed_to_opt_rotation_deg": rotation_angle(new.rotation @ opt.rotation.T),
            "perturbed_to_opt_shift": float(np.linalg.norm(new.transform(x).mean(0) - opt.transform(x).mean(0))),
            "time_s": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------- 3. averaging
def averaging_part(start, deposited) -> dict:
    from kickref import api
    from kickref.refinement.density_combination import sphere_mask
    from kickref.xtal.density_map import density_map_from_coefficients
    t0 = time.perf_counter()
    data = str(DATA / "4iid.mtz")
    ref_model, d = api.load_inputs(str(deposited), data)
    mc_ref = api.compute_maps(ref_model, d).map_coefficients
    res = api.ncs_average(str(start), data)
    mc = res.map_coefficients
    shape = res.map.shape
    ref = density_map_from_coefficients(mc_ref.cell, mc_ref.spacegroup, mc_ref.hkl, mc_ref.fwt, shape=shape).grid
    plain = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, api.compute_maps(str(start), data)
                                          .map_coefficients.fwt, shape=shape).grid
    protein = np.zeros(ref_model.n_atoms, bool)
    for g in api.ncs_groups(ref_model):
        for row in g.atoms:
            protein[row[row >= 0]] = True
    mask = sphere_mask(shape, mc.cell, mc.spacegroup, ref_model.xyz[protein], 2.0)
    cc = lambda m: float(np.corrcoef(m[mask], ref[mask])[0, 1])
    return {"cc_plain": cc(plain), "cc_averaged": cc(res.map.grid), "mask_fraction": float(mask.mean()),
            "operators": res.operators, "averaging": res.stats, "time_s": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------- table and checks
def checks(rows, ops, avg) -> list:
    def rfree(res, prog, setting):
        for r in rows:
            if r["d_min"] == res and r["program"] == prog and r["setting"] == setting:
                return r.get("judge", {}).get("r_free")
        return None
    out = []
    on, off, ncsr = rfree(3.5, "kickref", "ncs on"), rfree(3.5, "kickref", "ncs off"), rfree(3.5, "servalcat", "--ncsr")
    if on is not None and off is not None:
        out.append({"check": "3.5 Å: R-free(on) <= R-free(off) - 0.003", "pass": on <= off - 0.003,
                    "values": [on, off]})
    if on is not None and ncsr is not None:
        out.append({"check": "3.5 Å: R-free(on) < servalcat --ncsr", "pass": on < ncsr, "values": [on, ncsr]})
    on, off = rfree(2.3, "kickref", "ncs on"), rfree(2.3, "kickref", "ncs off")
    if on is not None and off is not None:
        out.append({"check": "2.3 Å: R-free(on) <= R-free(off) + 0.001", "pass": on <= off + 0.001,
                    "values": [on, off]})
    if ops:
        out.append({"check": "operator from 2°/0.8 Å within 0.2° / 0.1 Å of T_opt",
                    "pass": ops["perturbed_to_opt_rotation_deg"] < 0.2 and ops["perturbed_to_opt_shift"] < 0.1,
                    "values": [ops["perturbed_to_opt_rotation_deg"], ops["perturbed_to_opt_shift"]]})
    if avg:
        out.append({"check": "averaged 2mFo-DFc correlates better with the deposited map",
                    "pass": avg["cc_averaged"] > avg["cc_plain"], "values": [avg["cc_averaged"], avg["cc_plain"]]})
    return out


def table(rows) -> str:
    lines = [" d_min  program    setting   R-work  R-free  bonds   angles  xyz(Å)  copies(Å)  time(s)"]
    f = lambda v, fmt: "   -  " if v is None else format(v, fmt)
    for r in rows:
        j = r.get("judge", {})
        lines.append(f" {r['d_min']:5.1f}  {r['program']:9s}  {r['setting']:8s}  {f(j.get('r_work'), '.4f')}  "
                     f"{f(j.get('r_free'), '.4f')}  {f(j.get('bond_rmsd'), '.4f')}  {f(j.get('angle_rmsd'), '.3f')}  "
                     f"{f(j.get('xyz_rmsd'), '.3f')}  {f(r.get('copy_rmsd'), '9.3f')}  {f(r['run'].get('wall_s'), '7.0f')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default="3.5", help="comma-separated d_min values (3.5, 2.3)")
    ap.add_argument("--parts", default="refine,operators,averaging")
    ap.add_argument("--programs", default="kickref,servalcat")
    ap.add_argument("--kickref-args", default="", help="extra kickref refine arguments (all runs)")
    ap.add_argument("--reuse", action="store_true", help="reuse servalcat outputs when unchanged")
    args = ap.parse_args(argv)
    args.resolutions = [float(x) for x in args.resolutions.split(",") if x]
    args.programs = args.programs.split(",")
    args.kickref_args = args.kickref_args.split()
    parts = args.parts.split(",")
    if not DATA.is_dir():
        print(f"{DATA} not found: skipping", flush=True)
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    deposited = DATA / "4iid.pdb"
    start = WORK / "4iid_shaken.cif"
    if not start.exists():
        shake_mod.shake_file(deposited, start, rms=shake_mod.DEFAULT_RMS, seed=shake_mod.DEFAULT_SEED)
    peers = peers_mod.find_peers(install=False)
    print(peers.message, flush=True)
    t0 = time.perf_counter()
    rows = refine_part(args, peers, start, deposited) if "refine" in parts else []
    ops = operator_part(deposited) if "operators" in parts else None
    avg = averaging_part(start, deposited) if "averaging" in parts else None
    # merged with an earlier result: rows of other resolutions/programs and parts not run are kept
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = lambda r: (r["d_min"], r["program"], r["setting"])
    done = {key(r) for r in rows}
    rows = [r for r in old.get("refinement", []) if key(r) not in done] + rows
    rows.sort(key=key)
    ops = ops if ops is not None else old.get("operators")
    avg = avg if avg is not None else old.get("averaging")
    result = {"benchmark": "ncs_bench", "finished": dt.datetime.now().isoformat(timespec="seconds"),
              "machine": platform.platform(), "peers": peers.as_dict(), "start": str(start),
              "refinement": rows, "operators": ops, "averaging": avg, "checks": checks(rows, ops, avg),
              "last_run_s": round(time.perf_counter() - t0, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from kickref.io.files import json_ready
    RESULTS.write_text(json.dumps(json_ready(result), indent=1) + "\n")
    if rows:
        print(table(rows))
    for c in result["checks"]:
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {c['check']}  {c['values']}")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
