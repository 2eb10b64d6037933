"""MLI benchmark: intensity likelihood vs French–Wilson + amplitude ML on the intensity cases.

For each shared case with measured intensities, from the deposited model and with the intensity
columns (``--labin``), one after the other in the same run:

- **ml**:  ``kickref refine MODEL DATA --labin I,SIGI[,FREE] --target ml  --cycles N --convergence 0``
  (intensities → amplitudes by French–Wilson, amplitude likelihood);
- **mli**: the same with ``--target mli`` (intensity likelihood, measurement error integrated out).

Both runs use the same D and S (σA fitted to the French–Wilson amplitudes) and the same number of
cycles. Recorded: kickref's R-work/R-free (on the French–Wilson amplitudes), bond RMSD, time,
and, when the peers venv has cctbx (``$KICKREF_PEERS_VENV`` or benchmarks/work/peers-venv), the
cctbx judge's R factors of each output model against the same data file. 6mw0 has no test set
(R-work only) and is not in the default list.

Run: ``.venv/bin/python benchmarks/mli_bench.py [--cases 5e5z,baz2b] [--cycles 6] [--judge auto|cctbx|kickref]``
Scratch: benchmarks/work/mli/; results: benchmarks/results/mli_bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402

ROOT = HERE.parent
DATA = ROOT / ".." / "shared" / "data"
MONLIB = ROOT / ".." / "shared" / "monomers"
WORK = HERE / "work" / "mli"
CASES = {   # case: (model, data, labin, extra arguments)
    "5e5z": ("5e5z.pdb", "5e5z.mtz", "I,SIGI,FREE", []),
    "baz2b": ("BAZ2B.pdb", "x828.mtz", "IMEAN,SIGIMEAN,FreeR_flag", ["--ligand", "x828_ligand.cif"]),
    "6mw0": ("6mw0.cif", "6mw0-sf.cif.gz", "I,SIGI", []),
}


def run_case(case: str, target: str, cycles: int, mvd) -> dict:
    model, data, labin, extra = CASES[case]
    d = DATA / case
    extra = [str(d / x) if x.endswith(".cif") else x for x in extra]
    prefix = WORK / f"{case}_{target}"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "kickref", "refine", str(d / model), str(d / data), "--labin", labin,
           "--monlib", str(MONLIB), "--target", target, "--cycles", str(cycles), "--convergence", "0",
           "-o", str(prefix), "-q", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    row = {"case": case, "target": target, "time_s": round(time.perf_counter() - t0, 1),
           "command": " ".join(cmd[2:])}
    if proc.returncode:
        row["error"] = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        return row
    final = json.loads(prefix.with_suffix(".json").read_text())["final"]
    row["kickref"] = {k: final.get(k) for k in ("r_work", "r_free", "rmsd_bond_non_h", "rmsd_angle_non_h")}
    if mvd:
        row["cctbx"] = judge_mod.judge(prefix.with_suffix(".pdb"), d / data, monlib_dir=MONLIB, mvd_exe=mvd,
                                       work_dir=WORK / f"{case}_{target}_judge")
        row["cctbx"] = {k: row["cctbx"].get(k) for k in ("r_work", "r_free", "r_error")}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="5e5z,baz2b")
    p.add_argument("--cycles", type=int, default=6)
    p.add_argument("--judge", choices=["auto", "cctbx", "kickref"], default="auto")
    p.add_argument("--json", default=str(HERE / "results" / "mli_bench.json"))
    a = p.parse_args(argv)
    mvd = None
    if a.judge != "kickref":
        peers = peers_mod.find_peers(install=False)
        mvd = peers.model_vs_data
        if mvd is None and a.judge == "cctbx":
            print("no cctbx in the peers venv")
            return 1
    rows = []
    for case in a.cases.split(","):
        for target in ("ml", "mli"):
            r = run_case(case, target, a.cycles, mvd)
            rows.append(r)
            k, c = r.get("kickref", {}), r.get("cctbx") or {}
            print(f"{case:6s} {target:4s} kickref R {k.get('r_work')} / {k.get('r_free')}   "
                  f"cctbx R {c.get('r_work')} / {c.get('r_free')}   {r['time_s']} s {r.get('error', '')}",
                  flush=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"cycles": a.cycles, "judge": "cctbx" if mvd else "kickref",
                                        "rows": rows}, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
