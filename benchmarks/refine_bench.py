"""Refinement benchmark: kickref vs servalcat on every shared case (needs ../shared/data).

For every case and start — ``rerefine`` (the deposited model) and ``shaken`` (the deposited
model with non-H atoms displaced by 0.5 Å RMS, fixed seed, peptide links kept within 2.0 Å so
that no program sees chain breaks; see shake.py) — run, one after the other on the same machine:

- ``kickref refine MODEL DATA -o PREFIX --monlib ../shared/monomers`` with its defaults;
- ``servalcat refine_xtal_norefmac --model M --hklin D -s xray -o out --hout`` with its defaults
  (``CLIBD_MON=../shared/monomers``; ``--adp aniso`` where the deposited model has anisotropic
  ADPs; ``--labin FP,SIGFP,FREE --free 0`` for the MTZ files), from a separate venv (peers.py);

then judge every output model with the same calculator (judge.py: cctbx ``mmtbx.model_vs_data``
when available, else kickref's own) and the same gemmi geometry, and print one row per
case × start × program: R-work, R-free, bond/angle RMSD (non-H restraints), xyz RMSD to the
deposited model (non-H), wall time, peak memory (max RSS of the process tree), and the time
ratio kickref/servalcat. The deposited model and the shaken start are judged too. Results,
with commands, versions, machine and timestamps, go to benchmarks/results/refine_bench.json.

Run: ``.venv/bin/python benchmarks/refine_bench.py [--cases 4hg7,1cbs] [--modes rerefine,shaken]
[--programs kickref,servalcat] [--kickref-args "..."] [--reuse]``.
``--reuse`` takes servalcat's outputs (and its recorded time and memory) from an earlier run
when its command, inputs (SHA-256) and version are unchanged.
Peers: ``$KICKREF_PEERS_VENV`` or benchmarks/work/peers-venv (created by pip when missing).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402
import shake as shake_mod  # noqa: E402

SHARED = (ROOT / ".." / "shared").resolve()
MONLIB = SHARED / "monomers"
WORK = HERE / "work" / "refine"
RESULTS = HERE / "results" / "refine_bench.json"
MTZ_LABIN = ["--labin", "FP,SIGFP,FREE", "--free", "0"]

# model, data, extra servalcat arguments, extra model_vs_data arguments
CASES = {
    "4hg7": ("4hg7.cif", "4hg7-sf.cif", [], []),
    "1cbs": ("1cbs.cif.gz", "1cbs_map.mtz", MTZ_LABIN, []),
    "3zt9": ("3zt9.cif", "r3zt9sf.ent", [], ["r_free_flags_label=_refln.status"]),
    "4iid": ("4iid.pdb", "4iid.mtz", MTZ_LABIN, []),
    # the cases kickref's defaults were not tuned on (issue: refinement that generalizes)
    "5e5z": ("5e5z.pdb", "5e5z.mtz", MTZ_LABIN, []),
    "5wkd": ("5wkd.pdb", "r5wkdsf.ent", [], ["r_free_flags_label=_refln.status"]),
    "6mw0": ("6mw0.cif", "6mw0-sf.cif.gz", [], []),            # 0.78 Å, no test set
    "gamma": ("1gyu.pdb", "gamma.mtz", MTZ_LABIN, []),
    "baz2b": ("BAZ2B.pdb", "x828.mtz", ["--labin", "F,SIGF,FreeR_flag", "--free", "0"], []),
}
TUNED_CASES = ("4hg7", "1cbs", "3zt9", "4iid")
# cases cctbx does not judge: kickref's calculator instead (recorded in the row)
OWN_JUDGE = {"baz2b": "model_vs_data refuses the apo model's cell against the soaked crystal's (0.5-0.8 % longer)"}
MODES = ("rerefine", "shaken")
PROGRAMS = ("kickref", "servalcat")
WARMUP_CASE = ("5e5z", "5e5z.pdb", "5e5z.mtz")

# acceptance limits of the issue
BOND_RMSD_MAX = 0.02            # Å
SHAKEN_RFREE_TOLERANCE = 0.01   # |R-free(shaken start) − R-free(re-refinement)|


# ---------------------------------------------------------------- running programs
def run_timed(cmd, cwd, log_path, env=None, timeout: float = 3600) -> dict:
    """Run ``cmd``; returns rc, wall_s, cpu_s (user+sys) and peak_rss_mib of its process tree.

    stdout and stderr go to ``log_path``. Memory is the max RSS reported by ``wait4`` for the
    child (Linux: the largest of the child and its waited-for descendants).
    """
    Path(cwd).mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        killed = threading.Event()

        def _kill():
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_unit = 1 if sys.platform == "darwin" else 1024       # ru_maxrss: bytes on macOS, KiB on Linux
    return {"rc": proc.returncode, "timed_out": killed.is_set(), "wall_s": round(wall, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss * rss_unit / 2**20, 1)}


def log_tail(path, n: int = 5) -> str:
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def kickref_command() -> list[str] | None:
    """How to start kickref: the repo venv's script, one on PATH, or ``python -m kickref``."""
    exe = ROOT / ".venv" / "bin" / "kickref"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kickref")
    if found:
        return [found]
    try:
        import kickref  # noqa: F401
        return [sys.executable, "-m", "kickref"]
    except ImportError:
        return None


def kickref_status(cmd=None) -> tuple[list[str] | None, str | None, str]:
    """(command, version, message): command is None when kickref has no ``refine`` yet."""
    cmd = cmd or kickref_command()
    if cmd is None:
        return None, None, "kickref is not installed: skipping kickref"
    try:
        helptext = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120).stdout
        version = subprocess.run([*cmd, "--version"], capture_output=True, text=True,
                                 timeout=120).stdout.strip() or None
    except (OSError, subprocess.SubprocessError) as exc:
        return None, None, f"kickref does not start ({exc}): skipping kickref"
    if not any(line.split()[:1] == ["refine"] for line in helptext.splitlines()):
        return None, version, "kickref has no 'refine' subcommand yet: skipping kickref"
    return cmd, version, f"kickref: {' '.join(cmd)}"


def has_aniso(model_path) -> bool:
    """True if any atom of the model carries anisotropic ADPs."""
    st = judge_mod.read_structure(model_path)
    return any(a.aniso.nonzero() for ch in st[0] for res in ch for a in res)


# ---------------------------------------------------------------- one program on one start
def run_servalcat(exe, model, data, run_dir, extra, aniso, reuse, version, timeout) -> dict:
    cmd = [str(exe), "refine_xtal_norefmac", "--model", str(model), "--hklin", str(data),
           "-s", "xray", "-o", "out", "--hout", *extra, *(["--adp", "aniso"] if aniso else [])]
    stamp = {"command": cmd, "servalcat_version": version, "CLIBD_MON": str(MONLIB.resolve()),
             "model_sha256": judge_mod._digest(Path(model)),
             "data_sha256": judge_mod._digest(Path(data))}
    stamp_path = run_dir / "stamp.json"
    output = run_dir / "out.mmcif"
    if reuse and stamp_path.exists() and output.exists():
        old = json.loads(stamp_path.read_text())
        if {k: old.get(k) for k in stamp} == stamp and old.get("run", {}).get("rc") == 0:
            return {"command": " ".join(cmd), "output": str(output), "reused": True, **old["run"]}
    if stamp_path.exists():
        stamp_path.unlink()
    for old_out in run_dir.glob("out*"):
        old_out.unlink()
    env = dict(os.environ, CLIBD_MON=str(MONLIB.resolve()))
    res = run_timed(cmd, run_dir, run_dir / "servalcat.log", env=env, timeout=timeout)
    res.update(command=f"CLIBD_MON={MONLIB.resolve()} " + " ".join(cmd), reused=False)
    if res["rc"] == 0 and output.exists():
        res["output"] = str(output)
        stamp["run"] = {k: res[k] for k in ("rc", "wall_s", "cpu_s", "peak_rss_mib")}
        stamp["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        stamp_path.write_text(json.dumps(stamp, indent=1))
    else:
        res["error"] = f"servalcat failed (rc {res['rc']}): {log_tail(run_dir / 'servalcat.log')}"
    return res


def run_kickref(cmd0, model, data, run_dir, extra, timeout) -> dict:
    for old_out in run_dir.glob("out*"):
        old_out.unlink()
    cmd = [*cmd0, "refine", str(model), str(data), "-o", str(run_dir / "out"),
           "--monlib", str(MONLIB.resolve()), *extra]
    res = run_timed(cmd, run_dir, run_dir / "kickref.log", timeout=timeout)
    res.update(command=" ".join(shlex.quote(c) for c in cmd), reused=False)
    output = next((p for p in (run_dir / "out.cif", run_dir / "out.pdb") if p.exists()), None)
    if res["rc"] == 0 and output is not None:
        res["output"] = str(output)
        summary = run_dir / "out.json"
        if summary.exists():
            try:
                res["kickref_summary"] = json.loads(summary.read_text())
            except ValueError:
                pass
    else:
        res["error"] = f"kickref failed (rc {res['rc']}): {log_tail(run_dir / 'kickref.log')}"
    return res


# ---------------------------------------------------------------- table and acceptance
def _f(x, fmt):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


COLUMNS = [("case", 5, None), ("start", 9, None), ("program", 10, None),
           ("R-work", 7, ".4f"), ("R-free", 7, ".4f"), ("bond Å", 7, ".4f"), ("angle °", 7, ".3f"),
           ("xyz Å", 6, ".3f"), ("time s", 7, ".1f"), ("peak MiB", 8, ".0f"), ("t kick/serv", 11, ".2f")]


def row_values(r, j) -> list:
    """The COLUMNS values of one result row ``r`` with judge ``j``."""
    return [r["case"], r["mode"], r["program"], j.get("r_work"), j.get("r_free"), j.get("bond_rmsd"),
            j.get("angle_rmsd"), j.get("xyz_rmsd"), r.get("wall_s"), r.get("peak_rss_mib"),
            r.get("time_ratio")]


def format_table(rows, columns=COLUMNS, values=row_values) -> str:
    """A fixed-width table: ``columns`` (name, width, format or None for text), ``values(row,
    judge)`` per row; errors and reuse are noted after the row."""
    head = "  ".join(f"{name:<{w}}" if fmt is None else f"{name:>{w}}" for name, w, fmt in columns)
    lines = [head, "-" * len(head)]
    for r in rows:
        j = r.get("judge", {})
        cells = [f"{str(v):<{w}}" if fmt is None else f"{_f(v, fmt):>{w}}"
                 for (name, w, fmt), v in zip(columns, values(r, j))]
        line = "  ".join(cells)
        note = r.get("error") or j.get("r_error") or j.get("geometry_error")
        if note:
            line += f"   ! {note[:120]}"
        if r.get("reused"):
            line += "   (reused)"
        lines.append(line)
    return "\n".join(lines)


def acceptance(rows, cases) -> list[dict]:
    """The issue's acceptance checks per case, each PASS / FAIL / n.a. with the numbers."""
    get = {(r["case"], r["mode"], r["program"]): r for r in rows}

    def val(case, mode, prog, key):
        r = get.get((case, mode, prog))
        v = (r or {}).get("judge", {}).get(key) if key != "time_ratio" else (r or {}).get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    checks = []
    for case in cases:
        def add(name, ok, detail):
            checks.append({"case": case, "check": name,
                           "status": "n.a." if ok is None else ("PASS" if ok else "FAIL"),
                           "detail": detail})

        k, s = val(case, "rerefine", "kickref", "r_free"), val(case, "rerefine", "servalcat", "r_free")
        add("re-refinement R-free <= servalcat's", None if k is None or s is None else k <= s,
            f"kickref {_f(k, '.4f')}, servalcat {_f(s, '.4f')}")
        for mode in MODES:
            b = val(case, mode, "kickref", "bond_rmsd")
            add(f"{mode}: bond RMSD <= {BOND_RMSD_MAX} Å", None if b is None else b <= BOND_RMSD_MAX,
                f"kickref {_f(b, '.4f')} Å")
        r0, r1 = val(case, "rerefine", "kickref", "r_free"), val(case, "shaken", "kickref", "r_free")
        add(f"shaken start: R-free within {SHAKEN_RFREE_TOLERANCE} of re-refinement's",
            None if r0 is None or r1 is None else abs(r1 - r0) <= SHAKEN_RFREE_TOLERANCE,
            f"shaken {_f(r1, '.4f')}, re-refinement {_f(r0, '.4f')}")
        xk, xs = val(case, "shaken", "kickref", "xyz_rmsd"), val(case, "shaken", "servalcat", "xyz_rmsd")
        add("shaken start: xyz RMSD to deposited <= servalcat's",
            None if xk is None or xs is None else xk <= xs,
            f"kickref {_f(xk, '.3f')} Å, servalcat {_f(xs, '.3f')} Å")
        ratios = [val(case, m, "kickref", "time_ratio") for m in MODES]
        checks.append({"case": case, "check": "time ratio kickref/servalcat (reported)",
                       "status": "info", "detail": ", ".join(
                           f"{m} {_f(t, '.2f')}" for m, t in zip(MODES, ratios))})
    return checks


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
        info["load_avg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def _json_safe(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated (default: all shared cases)")
    ap.add_argument("--modes", default=",".join(MODES), help="rerefine,shaken")
    ap.add_argument("--programs", default=",".join(PROGRAMS), help="kickref,servalcat")
    ap.add_argument("--kickref-args", default="", help="extra arguments for kickref refine")
    ap.add_argument("--kickref-cmd", default="",
                    help="how to start kickref (default: .venv/bin/kickref, PATH, python -m kickref)")
    ap.add_argument("--servalcat-args", default="", help="extra arguments for servalcat (all cases)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse servalcat outputs when command, inputs and version are unchanged")
    ap.add_argument("--judge", choices=("auto", "cctbx", "kickref"), default="auto",
                    help="R-factor calculator (auto: cctbx if the peers venv has it)")
    ap.add_argument("--rms", type=float, default=shake_mod.DEFAULT_RMS, help="shake RMS, Å")
    ap.add_argument("--seed", type=int, default=shake_mod.DEFAULT_SEED, help="shake seed")
    ap.add_argument("--shake-break-links", action="store_true",
                    help="plain Gaussian shake (default: keep peptide C–N within 2.0 Å, see shake.py)")
    ap.add_argument("--timeout", type=float, default=3600, help="per program run, seconds")
    ap.add_argument("--no-install", action="store_true", help="do not pip-install the peers venv")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the untimed kickref run on 5e5z (numba cache) before timing")
    ap.add_argument("--json", default=str(RESULTS), help="results file")
    args = ap.parse_args(argv)

    cases = [c for c in args.cases.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    programs = [p for p in args.programs.split(",") if p]
    for name, got, allowed in (("case", cases, CASES), ("mode", modes, MODES),
                               ("program", programs, PROGRAMS)):
        bad = [g for g in got if g not in allowed]
        if bad:
            ap.error(f"unknown {name}(s) {', '.join(bad)}; choose from {', '.join(allowed)}")
    if not (SHARED / "data").is_dir():
        print(f"shared data not found at {SHARED / 'data'}; nothing to benchmark", file=sys.stderr)
        return 1
    started = dt.datetime.now()
    import gemmi

    # ---- programs and judge
    peers = peers_mod.find_peers(install=not args.no_install)
    print(peers.message, flush=True)
    serval_exe = peers.servalcat
    if "servalcat" in programs and serval_exe is None:
        print("servalcat unavailable: skipping servalcat", flush=True)
    mvd = peers.model_vs_data if args.judge in ("auto", "cctbx") else None
    if args.judge == "cctbx" and mvd is None:
        print("cctbx mmtbx.model_vs_data unavailable (see above)", file=sys.stderr)
        return 1
    print("judge: " + ("cctbx mmtbx.model_vs_data" if mvd else
                       "kickref.rfactor" + (" (cctbx unavailable)" if args.judge == "auto" else ""))
          + f"; geometry: gemmi {gemmi.__version__} topology with {MONLIB.resolve()}", flush=True)
    kick_cmd, kick_version, kick_msg = (kickref_status(shlex.split(args.kickref_cmd))
                                        if "kickref" in programs
                                        else (None, None, "kickref not requested"))
    print(kick_msg, flush=True)
    kick_extra = shlex.split(args.kickref_args)
    serval_extra = shlex.split(args.servalcat_args)

    if kick_cmd and not args.no_warmup:
        wcase, wmodel, wdata = WARMUP_CASE
        wdir = SHARED / "data" / wcase
        if (wdir / wmodel).exists():
            print(f"warm-up (untimed): kickref refine on {wcase}", flush=True)
            w = run_kickref(kick_cmd, wdir / wmodel, wdir / wdata, WORK / "warmup", kick_extra,
                            args.timeout)
            if w.get("error"):
                print(f"  warm-up: {w['error']}", flush=True)

    rows: list[dict] = []
    shakes: dict = {}
    for case in cases:
        model_name, data_name, serval_case_args, cctbx_args = CASES[case]
        case_dir = SHARED / "data" / case
        deposited, data_orig = case_dir / model_name, case_dir / data_name
        if not deposited.exists() or not data_orig.exists():
            print(f"{case}: shared files missing; skipped", flush=True)
            continue
        cwork = WORK / case
        data = judge_mod.plain_copy(data_orig, cwork, stem=f"{case}-data")   # same data for all
        reference = judge_mod.atom_table(deposited)
        aniso = has_aniso(deposited)

        def judged(model, row_dir):
            return judge_mod.judge(model, data, reference=reference, monlib_dir=MONLIB,
                                   mvd_exe=None if case in OWN_JUDGE else mvd,
                                   work_dir=row_dir / "judge", cctbx_args=cctbx_args)

        print(f"\n{case}: {deposited.name} + {data.name}; anisotropic ADPs: {'yes' if aniso else 'no'}",
              flush=True)
        rows.append({"case": case, "mode": "-", "program": "deposited", "input": str(deposited),
                     "judge": judged(deposited, cwork / "deposited")})
        starts = {"rerefine": deposited}
        if "shaken" in modes:
            shaken = cwork / f"{case}_shaken.cif"
            shakes[case] = shake_mod.shake_file(deposited, shaken, rms=args.rms, seed=args.seed,
                                                 keep_links=not args.shake_break_links)
            starts["shaken"] = shaken
            rows.append({"case": case, "mode": "shaken", "program": "start", "input": str(shaken),
                         "shake": shakes[case], "judge": judged(shaken, cwork / "shaken" / "start")})
        for mode in modes:
            start = starts[mode]
            for prog in programs:
                run_dir = cwork / mode / prog
                run_dir.mkdir(parents=True, exist_ok=True)
                row = {"case": case, "mode": mode, "program": prog, "input": str(start)}
                if prog == "servalcat":
                    if serval_exe is None:
                        continue
                    print(f"  {mode}: servalcat ...", end="", flush=True)
                    row.update(run_servalcat(serval_exe, start, data, run_dir,
                                             serval_case_args + serval_extra, aniso, args.reuse,
                                             peers.versions.get("servalcat"), args.timeout))
                else:
                    if kick_cmd is None:
                        continue
                    print(f"  {mode}: kickref ...", end="", flush=True)
                    row.update(run_kickref(kick_cmd, start, data, run_dir, kick_extra, args.timeout))
                if row.get("output"):
                    row["judge"] = judged(Path(row["output"]), run_dir)
                j = row.get("judge", {})
                print(f" {row.get('wall_s', '-')} s{' (reused)' if row.get('reused') else ''}, "
                      f"R-free {_f(j.get('r_free'), '.4f')}, "
                      f"{row.get('error') or j.get('r_error') or ''}", flush=True)
                rows.append(row)
        for mode in modes:                              # time ratio on the kickref row
            k = next((r for r in rows if (r["case"], r["mode"], r["program"]) == (case, mode, "kickref")),
                     None)
            s = next((r for r in rows if (r["case"], r["mode"], r["program"]) == (case, mode, "servalcat")),
                     None)
            if k and s and k.get("output") and s.get("output"):
                k["time_ratio"] = k["wall_s"] / s["wall_s"]

    table = format_table(rows)
    checks = acceptance(rows, cases)
    print(f"\nR by {'cctbx mmtbx.model_vs_data' if mvd else 'kickref.rfactor'}; bond/angle RMSD: "
          f"non-H restraints of gemmi's topology; xyz RMSD: non-H atoms vs deposited; "
          f"time: wall clock; memory: peak RSS")
    print(table)
    print("\nacceptance (issue 'kickref refine', item 7):")
    for c in checks:
        print(f"  {c['case']:<5} {c['status']:<5} {c['check']}: {c['detail']}")

    data_arrays = {}
    for r in rows:
        arr = r.get("judge", {}).get("data_array")
        if arr:
            data_arrays.setdefault(r["case"], set()).add(arr.split(":", 1)[-1])
    mixed = {c: sorted(a) for c, a in data_arrays.items() if len(a) > 1}
    if mixed:
        print(f"\nWARNING: the judge used different data arrays within a case: {mixed}")

    result = {
        "benchmark": "refinement: kickref vs servalcat refine_xtal_norefmac",
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": {"kickref": kick_version, "peers": peers.versions, "gemmi_judge": gemmi.__version__},
        "peers": peers.as_dict(),
        "kickref": kick_msg,
        "settings": {"cases": cases, "modes": modes, "programs": programs, "kickref_args": kick_extra,
                     "servalcat_args": serval_extra, "reuse": args.reuse, "shake_rms": args.rms,
                     "shake_seed": args.seed, "shake_keep_links": not args.shake_break_links,
                     "monlib": str(MONLIB.resolve()),
                     "judge": "cctbx mmtbx.model_vs_data" if mvd else "kickref.rfactor",
                     "geometry": "gemmi topology (h_change NoChange), restraints with all atoms non-H",
                     "xyz_rmsd": "non-H atoms matched by chain, resseq, icode, resname, name, altloc",
                     "memory": "max RSS of the program's process tree (wait4 ru_maxrss)",
                     "warmup": None if args.no_warmup or not kick_cmd else f"kickref on {WARMUP_CASE[0]}"},
        "rows": rows,
        "acceptance": checks,
        "judge_data_arrays": {c: sorted(a) for c, a in data_arrays.items()},
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(result), indent=1))
    tmp.replace(out)
    print(f"\nwrote {out}")
    failed_runs = [r for r in rows if r.get("error")]
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
