"""Peak memory (and wall time) of ``kickref refine`` vs servalcat on the same inputs, one after the other.

    python benchmarks/memory_bench.py [--cases 5e5z,6mw0,1cbs,4hg7] [--label after]
        [--kickref-src DIR] [--programs kickref,servalcat] [--reuse] [--repeat 2]

Both programs run with their defaults on the deposited model (as ``refine_bench.py``'s
re-refinement: servalcat ``refine_xtal_norefmac -s xray`` with ``--adp aniso`` for anisotropic
models and the same labels; kickref ``refine MODEL DATA --monlib ../shared/monomers``),
single-threaded (``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` = 1).
Memory: the process's peak RSS (``wait4`` ``ru_maxrss``, MiB), start-up included. kickref runs
``--repeat`` times (default 2) and the last run is kept, so that numba's on-disk cache is warm
(a first run after a source change compiles, which costs time and ~100 MiB more);
kickref's peak RSS after imports alone (``python -c 'import kickref.cli.refine'``) is recorded too.
``--kickref-src`` runs another source tree (e.g. an exported older commit) as label ``--label``.
Results are merged into benchmarks/results/memory_bench.json under ``kickref[label]`` and ``servalcat``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402
from refine_bench import CASES, MONLIB, SHARED, has_aniso, run_servalcat, run_timed  # noqa: E402

WORK = HERE / "work" / "memory"
RESULTS = HERE / "results" / "memory_bench.json"
DEFAULT_CASES = ("5e5z", "6mw0", "1cbs", "4hg7")
ONE_THREAD = {k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "MKL_NUM_THREADS")}


def kickref_env(src: Path) -> dict:
    return dict(os.environ, **ONE_THREAD, PYTHONPATH=str(src))


def import_peak(src: Path) -> float:
    """Peak RSS (MiB) of a process that only imports the refine command's module."""
    code = "import resource, kickref.cli.refine; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=kickref_env(src)).stdout
    return round(int(out.split()[-1]) / 1024, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES))
    ap.add_argument("--programs", default="kickref,servalcat")
    ap.add_argument("--label", default="current", help="key of this kickref version in the results")
    ap.add_argument("--kickref-src", default=str(ROOT / "src"), help="source tree put on PYTHONPATH")
    ap.add_argument("--repeat", type=int, default=2, help="kickref runs per case; the last is kept")
    ap.add_argument("--reuse", action="store_true", help="reuse servalcat runs with the same stamp")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    programs = args.programs.split(",")
    src = Path(args.kickref_src).resolve()
    out_path = Path(args.json)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results.setdefault("kickref", {}).setdefault(args.label, {})
    results.setdefault("servalcat", {})
    kick = results["kickref"][args.label]
    serval_exe = version = None
    if "servalcat" in programs:
        peers = peers_mod.find_peers(install=False)
        serval_exe = peers.servalcat
        version = peers.versions.get("servalcat")
        if serval_exe is None:
            print("servalcat unavailable: skipped", flush=True)
    if "kickref" in programs:
        kick["_import_peak_rss_mib"] = import_peak(src)
        kick["_src"] = str(src)
        print(f"kickref ({args.label}, {src}): import kickref.cli.refine peak "
              f"{kick['_import_peak_rss_mib']} MiB", flush=True)
    for case in cases:
        model_name, data_name, serval_args, _ = CASES[case]
        case_dir = SHARED / "data" / case
        model, data0 = case_dir / model_name, case_dir / data_name
        cwork = WORK / case
        data = judge_mod.plain_copy(data0, cwork, stem=f"{case}-data")
        if "kickref" in programs:
            runs = []
            for i in range(args.repeat):
                env_src = kickref_env(src)
                cmd = [sys.executable, "-m", "kickref", "refine", str(model), str(data),
                       "-o", str(cwork / f"kickref-{args.label}" / "out"), "--monlib", str(MONLIB)]
                run_dir = cwork / f"kickref-{args.label}"
                run_dir.mkdir(parents=True, exist_ok=True)
                for old in run_dir.glob("out*"):
                    old.unlink()
                r = run_timed(cmd, run_dir, run_dir / "kickref.log", env=env_src, timeout=args.timeout)
                summ = run_dir / "out.json"
                if r["rc"] == 0 and summ.exists():
                    s = json.loads(summ.read_text())
                    r.update(r_work=s["final"]["r_work"], r_free=s["final"]["r_free"],
                             profile_peak_mb={k: round(v["peak_rss_mb"]) for k, v in
                                              s["profile"]["phases"].items()})
                runs.append(r)
                print(f"{case} kickref[{args.label}] run {i + 1}: rc {r['rc']} peak {r['peak_rss_mib']} MiB "
                      f"wall {r['wall_s']} s R-free {r.get('r_free')}", flush=True)
            kick[case] = dict(runs[-1], first_run_peak_rss_mib=runs[0]["peak_rss_mib"],
                              command=" ".join(cmd), finished=dt.datetime.now().isoformat(timespec="seconds"))
        if serval_exe is not None:
            run_dir = cwork / "servalcat"
            run_dir.mkdir(parents=True, exist_ok=True)
            old_env = {k: os.environ.get(k) for k in ONE_THREAD}
            os.environ.update(ONE_THREAD)
            try:
                r = run_servalcat(serval_exe, model, data, run_dir, serval_args, has_aniso(model),
                                  args.reuse, version, args.timeout)
            finally:
                for k, v in old_env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            results["servalcat"][case] = {k: r.get(k) for k in ("rc", "wall_s", "cpu_s", "peak_rss_mib",
                                                                 "command", "reused")}
            print(f"{case} servalcat: rc {r.get('rc')} peak {r.get('peak_rss_mib')} MiB wall {r.get('wall_s')} s",
                  flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        results["note"] = ("peak RSS (MiB, wait4 ru_maxrss, start-up included) and wall time of kickref refine "
                           "and servalcat refine_xtal_norefmac, defaults, single-threaded, same inputs, one "
                           "after the other on a shared 2-core VM; kickref: the last of --repeat runs (numba "
                           "cache warm). See benchmarks/memory_bench.py.")
        out_path.write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


def table(results) -> str:
    labels = list(results.get("kickref", {}))
    cases = sorted({c for lab in labels for c in results["kickref"][lab] if not c.startswith("_")}
                   | set(results.get("servalcat", {})), key=lambda c: list(CASES).index(c))
    head = "| case | servalcat MiB | servalcat s | " + " | ".join(
        f"kickref {lab} MiB | {lab} s | {lab} R-free" for lab in labels) + " |"
    lines = [head, "|" + "---|" * (3 + 3 * len(labels))]
    for c in cases:
        s = results["servalcat"].get(c, {})
        cells = [c, str(s.get("peak_rss_mib", "-")), str(s.get("wall_s", "-"))]
        for lab in labels:
            k = results["kickref"][lab].get(c, {})
            cells += [str(k.get("peak_rss_mib", "-")), str(k.get("wall_s", "-")),
                      f"{k['r_free']:.4f}" if k.get("r_free") is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
