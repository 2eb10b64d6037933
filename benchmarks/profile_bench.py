"""Where a refinement's time and memory go: ``kickref refine`` with its defaults on each shared
case (``--monlib ../shared/monomers``), one subprocess per case, and the per-phase profile of
its JSON (:mod:`kickref.core.profile`) as a table; results in results/profile_bench.json.

    python benchmarks/profile_bench.py [CASE ...]     (default: every shared case present)

Columns: seconds and % of the profiled time per phase, the process's peak RSS (MB), its wall
time measured from outside ('wall') and the part of it after the profile ended ('exit':
writing the log and JSON, interpreter shutdown). Numba's on-disk cache is used as it is: a
case run first after a source change pays the compilation in 'numba'.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = (ROOT / ".." / "shared").resolve()
MONLIB = SHARED / "monomers"
WORK = HERE / "work" / "profile"
RESULTS = HERE / "results" / "profile_bench.json"
CASES = ["5e5z", "5wkd", "6mw0", "4hg7", "1cbs", "3zt9", "4iid", "gamma", "baz2b"]
SHOWN = ["startup", "numba", "read_inputs", "topology", "mask", "scale", "fc", "gradient", "target",
         "restraints", "precondition", "minimizer", "statistics", "outputs", "other"]


def run_case(name: str, timeout: float = 3600) -> dict:
    """Refine one case in a subprocess; the profile from its JSON, or an 'error'."""
    case_dir = SHARED / "data" / name
    info = json.loads((case_dir / "case.json").read_text())
    run_dir = WORK / name
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "kickref", "refine", str(case_dir / info["model_file"]),
           str(case_dir / info["reflection_file"]), "-o", str(run_dir / "out"), "--monlib", str(MONLIB), "-q"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"case": name, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    if p.returncode:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"case": name, "error": f"rc {p.returncode}: {last}"}
    summary = json.loads((run_dir / "out.json").read_text())
    prof = summary["profile"]
    return {"case": name, "wall_s": wall, "exit_s": wall - prof["total_s"], "profile": prof,
            "r_work": summary["final"]["r_work"], "r_free": summary["final"]["r_free"],
            "n_cycles": len(summary["cycles"]) - 1}


def table(rows) -> list[str]:
    """One line per case: seconds (and %) per phase, peak MB, wall and exit seconds."""
    head = f"{'case':6s} " + " ".join(f"{p[:11]:>11s}" for p in SHOWN) + f" {'peak MB':>8s} {'wall':>6s} {'exit':>5s}"
    out = [head]
    for r in rows:
        if "error" in r:
            out.append(f"{r['case']:6s} skipped: {r['error']}")
            continue
        ph = r["profile"]["phases"]
        cells = []
        for p in SHOWN:
            s = ph.get(p, {"seconds": 0.0, "fraction": 0.0})
            cells.append(f"{s['seconds']:5.1f}({100 * s['fraction']:3.0f}%)")
        out.append(f"{r['case']:6s} " + " ".join(f"{c:>11s}" for c in cells)
                   + f" {r['profile']['peak_rss_mb']:8.0f} {r['wall_s']:6.1f} {r['exit_s']:5.1f}")
    return out


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or CASES
    rows = []
    for name in names:
        if not (SHARED / "data" / name / "case.json").exists():
            print(f"{name}: not in {SHARED / 'data'}, skipped", flush=True)
            continue
        print(f"{name} ...", flush=True)
        rows.append(run_case(name))
    lines = table(rows)
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    cases = {**old.get("cases", {}), **{r["case"]: r for r in rows}}
    RESULTS.write_text(json.dumps({"note": __doc__.split("\n\n")[0], "cases": cases,
                                   "table": table(list(cases.values()))}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
