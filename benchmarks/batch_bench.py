"""Batch benchmark: ``kickref batch`` against the same refinements run one by one.

For the shared cases (default: every ``../shared/data/<case>/`` with a case.json) and the batch's
candidate set (default: kickref.batch.DEFAULT_CANDIDATES):

1. **singles**: every (entry, candidate) as its own ``kickref refine`` process, one after the
   other, with exactly the command line the batch records for it (kickref.cli.batch.resolver);
   the wall times are summed;
2. **batch**: one ``kickref batch`` over the same entries and candidates (a fresh output folder;
   LocalCluster, ``--workers`` default one per core), timed as a whole (cluster start and the
   start models' R included);
3. **identity**: per (entry, candidate), the batch's final R-work/R-free/geometry (PREFIX.json
   'final') and atom coordinates (mmCIF, max |Δxyz|) against the single run's;
4. **judge** (judge.py: cctbx ``mmtbx.model_vs_data`` when the peers venv has it, else
   kickref.rfactor): R-free of each entry's start model, of the default candidate's model and of
   the chosen one (the start when the batch kept it).

Acceptance (issue 15): wall(batch) ≤ 0.6 × Σ wall(singles); every result identical; the chosen
R-free (judge) never above the start's, and on average below the default candidate's.

**CPU accounting**: CPU time (user + sys, ``wait4`` of each process and its waited-for
descendants: the Dask workers are joined by their nannies) of every single run and of the batch,
and each batch task's own CPU (``cpu`` of its result row: ``time.process_time`` of the task in its
worker). With ``n`` cores the batch cannot take less than CPU(batch)/n wall, so the wall ratio
is bounded below by (CPU(batch)/n) / Σ wall(singles); single runs that already use c cores
(numba threads, FFT workers, BLAS) leave a ratio of about c/n when the batch does the same work.

Run: ``python benchmarks/batch_bench.py [--cases 5e5z,1cbs] [--candidates NAME=OPTIONS ...]
[--options '--cycles 4'] [--workers N] [--judge auto|cctbx|kickref|none] [--no-install] [--skip-singles]``.
Timings need a quiet machine. Scratch: benchmarks/work/batch/; results:
benchmarks/results/batch_bench.json.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402
import refine_bench as rb  # noqa: E402

WORK = HERE / "work" / "batch"
RESULTS = HERE / "results" / "batch_bench.json"
CCTBX_ARGS = {"3zt9": ["r_free_flags_label=_refln.status"]}       # as refine_bench.py
WALL_RATIO_MAX = 0.6
# this checkout's kickref for `python -m kickref` runs, whatever the working directory
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(rb.ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}


def plan(cases, candidates, options, outdir):
    """The batch's plans for ``cases`` (entries from ../shared/data) and ``candidates``."""
    from kickref.batch import plan_batch
    from kickref.cli.batch import resolver
    from kickref.io.entries import read_entries
    entries = [e for e in read_entries(rb.SHARED / "data") if e.name in cases]
    return entries, plan_batch(entries, candidates, outdir, resolver(options, str(rb.MONLIB)))


def write_table(entries, path: Path) -> Path:
    """The entries as a batch table (name, model, data, labin, ligands, options)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "model", "data", "labin", "ligands", "options"])
        for e in entries:
            w.writerow([e.name, e.model, e.data, e.labin or "", ";".join(e.ligands), e.options])
    return path


def coordinates(path) -> np.ndarray:
    st = gemmi.read_structure(str(path))
    return np.array([cra.atom.pos.tolist() for cra in st[0].all()])


def compare(single_prefix: Path, batch_files: dict) -> dict:
    """Identity of one (entry, candidate): 'final' of the JSONs, max |Δxyz| of the mmCIFs."""
    try:
        a = json.loads(single_prefix.with_suffix(".json").read_text())["final"]
        b = json.loads(Path(batch_files["json"]).read_text())["final"]
        xa, xb = coordinates(single_prefix.with_suffix(".cif")), coordinates(batch_files["cif"])
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        return {"identical": False, "error": f"{type(e).__name__}: {e}"}
    dxyz = float(np.abs(xa - xb).max()) if xa.shape == xb.shape else None
    same = a == b and dxyz == 0.0
    return {"identical": same, "final_equal": a == b, "max_dxyz": dxyz,
            "r_free_single": a.get("r_free"), "r_free_batch": b.get("r_free")}


def main(argv=None) -> int:
    from kickref.batch import DEFAULT_CANDIDATES, parse_candidate
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all shared cases)")
    ap.add_argument("--candidates", nargs="+", help="as kickref batch --candidates (default: its defaults)")
    ap.add_argument("--options", default="", help="kickref refine options for every entry")
    ap.add_argument("--workers", type=int, help="batch workers (default: one per core)")
    ap.add_argument("--judge", choices=("auto", "cctbx", "kickref", "none"), default="auto",
                    help="none: no R-free judging (timing, CPU and identity only)")
    ap.add_argument("--no-install", action="store_true", help="do not pip-install the peers venv")
    ap.add_argument("--skip-singles", action="store_true", help="batch and judge only (no timing ratio)")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per process")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args(argv)
    data_dir = rb.SHARED / "data"
    if not data_dir.is_dir():
        print(f"shared data not found at {data_dir}; nothing to benchmark", file=sys.stderr)
        return 1
    cases = [c for c in args.cases.split(",") if c] or sorted(p.name for p in data_dir.iterdir()
                                                               if (p / "case.json").is_file())
    candidates = [parse_candidate(c) for c in args.candidates] if args.candidates else list(DEFAULT_CANDIDATES)
    kick_cmd, version, msg = rb.kickref_status()
    print(msg, flush=True)
    if kick_cmd is None:
        return 1
    peers = peers_mod.find_peers(install=not args.no_install) if args.judge in ("auto", "cctbx") else None
    mvd = peers.model_vs_data if peers is not None else None
    if args.judge == "cctbx" and mvd is None:
        print(f"cctbx unavailable: {peers.message}", file=sys.stderr)
        return 1
    print("judge: " + ("none" if args.judge == "none" else "cctbx mmtbx.model_vs_data" if mvd else "kickref.rfactor"),
          flush=True)
    started = dt.datetime.now()
    load_start = os.getloadavg()
    batch_dir = WORK / "batch"
    entries, plans = plan(cases, candidates, args.options, batch_dir)
    missing = sorted(set(cases) - {e.name for e in entries})
    if missing:
        print(f"no such shared case(s): {', '.join(missing)}", file=sys.stderr)
        return 1

    # ---- 1. singles, one after the other
    singles, single_wall = {}, 0.0
    if not args.skip_singles:
        for p in plans:
            for j in p.jobs:
                prefix = WORK / "single" / j.entry / j.candidate / "refined"
                shutil.rmtree(prefix.parent, ignore_errors=True)
                prefix.parent.mkdir(parents=True)
                argv = shlex.split(j.command)[1:]
                argv[argv.index("-o") + 1] = str(prefix)
                print(f"single: {j.entry} {j.candidate} ...", end="", flush=True)
                t = rb.run_timed([*kick_cmd, *argv, "-q"], prefix.parent, prefix.parent / "stdout.log",
                                 env=ENV, timeout=args.timeout)
                print(f" {t['wall_s']:.1f} s (rc {t['rc']})", flush=True)
                singles[(j.entry, j.candidate)] = {**t, "prefix": str(prefix)}
                single_wall += t["wall_s"]

    # ---- 2. the batch
    shutil.rmtree(batch_dir, ignore_errors=True)
    table = write_table(entries, WORK / "entries.csv")
    cmd = [*kick_cmd, "batch", str(table), "-o", str(batch_dir), "--monlib", str(rb.MONLIB), "-q",
           "--options", args.options, "--candidates", *[f"{c.name}={c.flags}" for c in candidates]]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    print("batch ...", end="", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    bt = rb.run_timed(cmd, WORK, WORK / "batch.log", env=ENV, timeout=args.timeout)
    print(f" {bt['wall_s']:.1f} s (rc {bt['rc']})", flush=True)
    try:
        summary = {r["entry"]: r for r in json.loads((batch_dir / "summary.json").read_text())["entries"]}
    except (OSError, ValueError) as e:
        print(f"batch wrote no summary ({e}); see {WORK / 'batch.log'}: {rb.log_tail(WORK / 'batch.log')}",
              file=sys.stderr)
        return 1

    # ---- 3. identity and 4. judge
    rows = []
    for e in entries:
        s = summary.get(e.name, {})
        row = {"entry": e.name, "status": s.get("status"), "chosen": s.get("chosen"), "reason": s.get("reason"),
               "error": s.get("error"), "identity": {}}
        for c in candidates:
            single = singles.get((e.name, c.name))
            files = (s.get("candidates") or {}).get(c.name, {}).get("files")
            if single and files:
                row["identity"][c.name] = compare(Path(single["prefix"]), files)
        row["task_cpu_s"] = {c.name: _task_cpu(batch_dir / e.name / c.name) for c in candidates}
        if s.get("status") == "ok" and args.judge != "none":
            data = judge_mod.plain_copy(e.data, WORK / "judge" / e.name, stem=f"{e.name}-data")

            def judged(model, tag, _e=e, _data=data):
                j = judge_mod.judge(model, _data, monlib_dir=rb.MONLIB,
                                    mvd_exe=None if _e.name in rb.OWN_JUDGE else mvd,
                                    work_dir=WORK / "judge" / _e.name / tag, cctbx_args=CCTBX_ARGS.get(_e.name, []))
                return j.get("r_free"), j
            default_files = s["candidates"].get(candidates[0].name, {}).get("files") or {}
            row["r_free_start"], row["judge_start"] = judged(e.model, "start")
            row["r_free_default"], row["judge_default"] = (judged(default_files["cif"], "default")
                                                           if default_files.get("cif") else (None, None))
            row["r_free_chosen"], row["judge_chosen"] = (judged(s["final_model"], "chosen")
                                                         if s["chosen"] != "start" else
                                                         (row["r_free_start"], row["judge_start"]))
        rows.append(row)
        print(f"{e.name}: {row['status']} chosen {row['chosen']}; R-free (judge) start "
              f"{_f(row.get('r_free_start'))} default {_f(row.get('r_free_default'))} chosen "
              f"{_f(row.get('r_free_chosen'))}; identical to singles: "
              f"{all(v.get('identical') for v in row['identity'].values()) if row['identity'] else '-'}",
              flush=True)

    # ---- acceptance
    judged_rows = [r for r in rows if r.get("r_free_chosen") is not None and r.get("r_free_start") is not None]
    both = [r for r in rows if r.get("r_free_chosen") is not None and r.get("r_free_default") is not None]
    ratio = bt["wall_s"] / single_wall if single_wall else None
    cpu = cpu_accounting(singles, single_wall, bt, rows, args.workers or os.cpu_count() or 1)
    acceptance = {
        "wall_ratio": ratio,
        "wall_ratio_ok": None if ratio is None else ratio <= WALL_RATIO_MAX,
        "identical": None if not singles else all(v.get("identical") for r in rows for v in r["identity"].values()),
        "never_above_start": (all(r["r_free_chosen"] <= r["r_free_start"] for r in judged_rows)
                              if judged_rows else None),
        "mean_r_free_chosen": _mean([r["r_free_chosen"] for r in both]),
        "mean_r_free_default": _mean([r["r_free_default"] for r in both]),
    }
    acceptance["mean_below_default"] = (None if not both else
                                        acceptance["mean_r_free_chosen"] < acceptance["mean_r_free_default"])
    acceptance["wall_ratio_bound"] = cpu.get("ratio_bound")
    print(f"\nwall: batch {bt['wall_s']:.1f} s, singles {single_wall:.1f} s, ratio "
          f"{_f(ratio, 3)} (≤ {WALL_RATIO_MAX}: {acceptance['wall_ratio_ok']})")
    print(f"identical to singles: {acceptance['identical']}; chosen never above start (judge): "
          f"{acceptance['never_above_start']}; mean R-free chosen {_f(acceptance['mean_r_free_chosen'])} vs "
          f"default {_f(acceptance['mean_r_free_default'])}")
    print_cpu(cpu)
    result = {"benchmark": "batch_bench", "started": started.isoformat(timespec="seconds"),
              "kickref": version, "judge": "cctbx" if mvd else "kickref", "cases": cases,
              "candidates": [{"name": c.name, "flags": c.flags} for c in candidates], "options": args.options,
              "workers": args.workers, "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
              "batch": bt, "singles_wall_s": single_wall, "cpu": cpu,
              "singles": {f"{k[0]}/{k[1]}": v for k, v in singles.items()}, "rows": rows, "acceptance": acceptance}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.json}")
    return 0


def _task_cpu(folder: Path):
    """CPU seconds of one batch task (its stamp's result row), None when not recorded."""
    try:
        return json.loads((folder / "task.json").read_text())["result"].get("cpu")
    except (OSError, ValueError, KeyError):
        return None


def cpu_accounting(singles: dict, single_wall: float, bt: dict, rows: list, n_cores: int) -> dict:
    """Wall and CPU of the singles and the batch, per (entry, candidate) and in total, and the
    lowest wall ratio the batch's CPU allows on ``n_cores``: (CPU(batch)/n_cores) / Σ wall(singles)."""
    per = {}
    for r in rows:
        for cand, c in r.get("task_cpu_s", {}).items():
            s = singles.get((r["entry"], cand), {})
            per[f"{r['entry']}/{cand}"] = {"single_wall_s": s.get("wall_s"), "single_cpu_s": s.get("cpu_s"),
                                           "task_cpu_s": c}
    single_cpu = sum(v["cpu_s"] for v in singles.values()) if singles else None
    task_cpu = [v["task_cpu_s"] for v in per.values()]
    task_cpu = sum(task_cpu) if task_cpu and None not in task_cpu else None
    out = {"n_cores": n_cores, "singles_wall_s": single_wall or None, "singles_cpu_s": single_cpu,
           "singles_cores": single_cpu / single_wall if single_cpu and single_wall else None,
           "batch_wall_s": bt["wall_s"], "batch_cpu_s": bt["cpu_s"], "batch_tasks_cpu_s": task_cpu,
           "batch_cores": bt["cpu_s"] / bt["wall_s"] if bt["wall_s"] else None, "per_task": per}
    out["ratio_bound"] = bt["cpu_s"] / n_cores / single_wall if single_wall else None
    return out


def print_cpu(c: dict) -> None:
    print("\n| run | wall s | CPU s | cores used |\n|---|---|---|---|")
    print(f"| Σ singles | {_f(c['singles_wall_s'], 1)} | {_f(c['singles_cpu_s'], 1)} | {_f(c['singles_cores'], 2)} |")
    print(f"| batch | {_f(c['batch_wall_s'], 1)} | {_f(c['batch_cpu_s'], 1)} | {_f(c['batch_cores'], 2)} |")
    print(f"batch tasks' own CPU: {_f(c['batch_tasks_cpu_s'], 1)} s; lowest wall ratio the batch's CPU allows on "
          f"{c['n_cores']} cores: {_f(c['ratio_bound'], 3)}")


def _f(v, n=4):
    return "-" if v is None else f"{v:.{n}f}"


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


if __name__ == "__main__":
    sys.exit(main())
