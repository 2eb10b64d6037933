"""Occupancy groups on 6mw0 (0.78 Å, whole peptide in two conformers A/B; no free set):
kickref and servalcat refine the deposited model with A and B as one complete group (A + B = 1)
in the same run; R-work of both outputs by one calculator (kickref.rfactor: cctbx's
model_vs_data needs a test set), each program's own R-work, and the refined A/B occupancies.

- ``kickref refine 6mw0.cif 6mw0-sf.cif.gz --occupancy-group 'A://A/*/*:A' --occupancy-group
  'B://A/*/*:B' --occupancy-complete A,B`` (the code under ``src/``: ``python -m kickref``);
- ``servalcat refine_xtal_norefmac … --keywords 'occupancy group id 1 chain A alt A'
  'occupancy group id 2 chain A alt B' 'occupancy group alts complete 1 2' 'occupancy refine'``
  (servalcat's own test of 6mw0 uses these keywords).

Run: ``python benchmarks/occupancy_bench.py`` → ``benchmarks/results/occupancy_bench.json``.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers as peers_mod  # noqa: E402
import refine_bench as rb  # noqa: E402

CASE = rb.SHARED / "data" / "6mw0"
WORK = HERE / "work" / "occupancy"
RESULTS = HERE / "results" / "occupancy_bench.json"
KICKREF_ARGS = ["--occupancy-group", "A://A/*/*:A", "--occupancy-group", "B://A/*/*:B",
                "--occupancy-complete", "A,B"]
SERVALCAT_ARGS = ["--keywords", "occupancy group id 1 chain A alt A",
                  "occupancy group id 2 chain A alt B", "occupancy group alts complete 1 2",
                  "occupancy refine"]


def conformer_occupancies(path) -> dict:
    """Distinct occupancies (rounded to 1e-6) of the atoms of altloc A and of altloc B."""
    st = rb.judge_mod.read_structure(path)
    out = {"A": set(), "B": set()}
    for ch in st[0]:
        for res in ch:
            for a in res:
                if a.altloc in out and not a.is_hydrogen():
                    out[a.altloc].add(round(a.occ, 6))
    return {k: sorted(v) for k, v in out.items()}


def r_work(model, data) -> float:
    import kickref
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kickref.rfactor(str(model), str(data)).r_work)


def main() -> int:
    os.environ["PYTHONPATH"] = str(rb.ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    model, data = CASE / "6mw0.cif", CASE / "6mw0-sf.cif.gz"
    if not model.exists():
        print(f"{model} missing; nothing to do", file=sys.stderr)
        return 1
    peers = peers_mod.find_peers(install=False)
    rows = {"deposited": {"output": str(model)}}
    run_dir = WORK / "kickref"
    run_dir.mkdir(parents=True, exist_ok=True)
    print("kickref ...", flush=True)
    rows["kickref"] = rb.run_kickref([sys.executable, "-m", "kickref"], model, data, run_dir,
                                     KICKREF_ARGS, 1800)
    if peers.servalcat is not None:
        run_dir = WORK / "servalcat"
        run_dir.mkdir(parents=True, exist_ok=True)
        print("servalcat ...", flush=True)
        rows["servalcat"] = rb.run_servalcat(peers.servalcat, model, data, run_dir, SERVALCAT_ARGS,
                                             rb.has_aniso(model), False,
                                             peers.versions.get("servalcat"), 1800)
    for name, row in rows.items():
        if row.get("output"):
            row["r_work_kickref_rfactor"] = r_work(row["output"], data)
            row["occupancies"] = conformer_occupancies(row["output"])
        summary = row.pop("kickref_summary", None)
        if summary:
            row["r_work_own"] = summary.get("final", {}).get("r_work")
        print(f"{name:10s} R-work {row.get('r_work_kickref_rfactor', float('nan')):.4f}  "
              f"occ A {row.get('occupancies', {}).get('A')}  B {row.get('occupancies', {}).get('B')}"
              f"  {row.get('error', '')}", flush=True)
    k, s = rows["kickref"].get("r_work_kickref_rfactor"), rows.get("servalcat", {}).get("r_work_kickref_rfactor")
    occ = rows["kickref"].get("occupancies", {})
    ok_occ = (len(occ.get("A", [])) == 1 and len(occ.get("B", [])) == 1
              and abs(occ["A"][0] + occ["B"][0] - 1) < 2e-6)
    result = {"benchmark": "occupancy groups: 6mw0 conformers A+B=1, kickref vs servalcat",
              "kickref_args": KICKREF_ARGS, "servalcat_args": SERVALCAT_ARGS,
              "rows": rows, "acceptance": {
                  "kickref A, B single-valued, sum 1 (file precision 1e-6)": ok_occ,
                  "kickref R-work < servalcat R-work": None if k is None or s is None else k < s}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result["acceptance"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
