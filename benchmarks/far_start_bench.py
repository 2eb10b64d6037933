"""Far-start benchmark: kickref plain / default / kick and servalcat from the three far starts.

The starts are far_starts.py's (``4hg7_from_4qo4``: MDM2 from another crystal form, superposed
and trimmed, as after molecular replacement; ``1cbs_far``, ``3zt9_far``: the deposited models with
wrong rotamers, flipped peptides and a displaced loop); they are built (deterministically) into
benchmarks/work/far_starts/ when missing. From each start, one after the other, one thread each:

- **default**: ``kickref refine START DATA -o PREFIX --monlib ../shared/monomers`` (its defaults);
- **kick**, for every setting in ``--kick-settings`` (the first is the primary one; all are
  reported): ``... --cool 8`` (MAIN fast cooling with the command line's default kicks, 0.8 → 0 Å
  and B 5 → 0 Å²) and ``... --cool 8 --kick 0.3:0`` (kick_bench.py's best setting on the 0.8 Å
  shakes);
- **plain**: macro-cycles without kicks, ``... --cycles N --convergence 0``, with N chosen so that
  the number of energy+gradient evaluations (``n_eval`` of the last cycle in PREFIX.json) is within
  ±20 % of each kick run's: first N = n_eval(kick) / (n_eval per cycle of the default run), then
  rescaled by the ratio (up to 3 tries); each kick run is compared with the plain run closest in
  n_eval;
- **servalcat** defaults: ``CLIBD_MON=../shared/monomers servalcat refine_xtal_norefmac --model START
  --hklin DATA -s xray -o out --hout`` (``--labin FP,SIGFP,FREE --free 0`` for the MTZ file of 1cbs;
  isotropic ADPs, since the starts carry none: refine_bench.py's ``--adp aniso`` follows the
  deposited model, not the start).

Every run gets ``--seed 1`` from kickref's default and ``OMP_NUM_THREADS=NUMBA_NUM_THREADS=
OPENBLAS_NUM_THREADS=1`` (``--threads``). Every output model (and the start and the deposited
model) is judged the same way: R-work/R-free by cctbx ``mmtbx.model_vs_data`` (judge.py; 3zt9 with
``r_free_flags_label=_refln.status``), bond/angle RMSD over the non-H restraints of gemmi's topology
(judge.geometry_rmsd), and — as in far_starts.py — Cα and all-atom RMSD to the deposited model over
the non-H polymer atoms matched by chain, residue number and atom name (the deposited model's first
conformer) and the fraction of side chains with χ1 within 30° of the deposited model's.

Acceptance (issue 11, "refinement that generalizes"):
(a) per start: kickref's default ends with R-free ≥ 0.01 below servalcat's and a lower all-atom RMSD;
(b) per kick setting: kick beats its budget-matched plain run on R-free and all-atom RMSD on ≥ 2 of 3
    starts;
(c) every kickref run ends with bond RMSD ≤ 0.02 Å (servalcat's reported too).

Run: ``.venv/bin/python benchmarks/far_start_bench.py [--starts 4hg7_from_4qo4,1cbs_far,3zt9_far]
[--kick-settings "ARGS;ARGS"] [--programs kickref,servalcat] [--reuse] [--json FILE]``.
``--reuse`` takes a kickref or servalcat output from an earlier run with the same command, inputs
(SHA-256) and program sources/version (time and memory as recorded then).
Scratch: benchmarks/work/far_bench/; results: benchmarks/results/far_start_bench.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import far_starts as fs  # noqa: E402
import judge as judge_mod  # noqa: E402
import kick_bench as kb  # noqa: E402
import peers as peers_mod  # noqa: E402
import refine_bench as rb  # noqa: E402

ROOT = rb.ROOT
SHARED = rb.SHARED
MONLIB = rb.MONLIB
WORK = HERE / "work" / "far_bench"
RESULTS = HERE / "results" / "far_start_bench.json"
STARTS = ("4hg7_from_4qo4", "1cbs_far", "3zt9_far")
KICK_SETTINGS = ("--cool 8", "--cool 8 --kick 0.3:0")
PLAIN_ARGS = ["--convergence", "0"]          # plus --cycles N: spend the budget given
BUDGET_TOLERANCE = kb.BUDGET_TOLERANCE       # ±20 % evaluations
MAX_MATCH_TRIES = 3
RFREE_MARGIN = 0.01                          # (a): default's R-free ≤ servalcat's − this
BOND_RMSD_MAX = rb.BOND_RMSD_MAX             # (c): Å
SERVALCAT_EXTRA = {"1cbs": rb.MTZ_LABIN}     # by case; the other data files are SF-mmCIF


def spec_of(name: str) -> dict:
    return fs.MR.get(name) or fs.FAR[name]


def ensure_start(name: str) -> Path:
    """The far start's mmCIF (built by far_starts.py's builders when missing; deterministic)."""
    path = fs.WORK / f"{name}.cif"
    if not path.exists():
        st, info = (fs.mr_start if name in fs.MR else fs.far_start)(spec_of(name))
        fs.write_cif(st, path)
        path.with_suffix(".json").write_text(json.dumps(info, indent=1))
    return path


def servalcat_n_eval(run_dir: Path):
    """servalcat's gradient evaluations: one gradient + Fisher matrix per macro-cycle (a sparse
    Gauss–Newton step solved by CG), i.e. the number of ``====== CYCLE`` blocks of its log; None
    without a log. (Its target evaluations after each step, ``f1``, and the CG iterations are not
    gradient evaluations.)"""
    log = run_dir / "servalcat.log"
    if not log.exists():
        return None
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if line.startswith("====== CYCLE"))


def multistart_n_eval(run_dir: Path):
    """Sum of n_eval over the trajectories of ``--starts N`` (PREFIX_starts/startK/refined.json)."""
    total = 0
    files = sorted((run_dir / "out_starts").glob("start*/refined.json"))
    for f in files:
        cycles = json.loads(f.read_text()).get("cycles") or []
        total += (cycles[-1].get("n_eval") or 0) if cycles else 0
    return total or None


def structure_metrics(model: Path, deposited) -> dict:
    """Cα / all-atom RMSD and χ1 agreement to the deposited model (far_starts.compare), over the
    model's first conformer (refined far starts have one; the deposited model's other conformers
    would otherwise be compared with its first)."""
    try:
        st = fs.read(model)
        st.remove_alternative_conformations()
        return fs.compare(st, deposited)
    except Exception as exc:  # noqa: BLE001 - recorded, reported in the table
        return {"compare_error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- table and acceptance
_f = rb._f

COLUMNS = [("start", 14, None), ("method", 9, None), ("settings", 28, None), ("n_eval", 6, "d"),
           ("/pair", 5, ".2f"), ("R-work", 7, ".4f"), ("R-free", 7, ".4f"), ("bond Å", 7, ".4f"),
           ("angle °", 7, ".2f"), ("Cα Å", 5, ".3f"), ("all Å", 5, ".3f"), ("χ1≤30°", 6, ".3f"),
           ("time s", 6, ".0f")]


def row_values(r, j) -> list:
    m = r.get("structure", {})
    return [r["start"], r["method"], r.get("settings", ""), r.get("n_eval"), r.get("n_eval_ratio"),
            j.get("r_work"), j.get("r_free"), j.get("bond_rmsd"), j.get("angle_rmsd"),
            m.get("ca_rmsd"), m.get("all_atom_rmsd"), m.get("chi1_within_30"), r.get("wall_s")]


def _val(row, key):
    if row is None:
        return None
    v = row.get("structure", {}).get(key) if key in ("ca_rmsd", "all_atom_rmsd", "chi1_within_30") \
        else row.get("judge", {}).get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def acceptance(rows, starts, settings) -> dict:
    """The issue's three checks; each PASS / FAIL / n.a. with the numbers."""
    def find(start, method, **kw):
        return next((r for r in rows if r["start"] == start and r["method"] == method
                     and all(r.get(k) == v for k, v in kw.items())), None)

    a = []
    for s in starts:
        d, sv = find(s, "default"), find(s, "servalcat")
        rd, rs = _val(d, "r_free"), _val(sv, "r_free")
        xd, xs = _val(d, "all_atom_rmsd"), _val(sv, "all_atom_rmsd")
        ok = None if None in (rd, rs, xd, xs) else (rd <= rs - RFREE_MARGIN and xd < xs)
        a.append({"start": s, "default_r_free": rd, "servalcat_r_free": rs, "default_all_atom": xd,
                  "servalcat_all_atom": xs, "r_free_margin": None if None in (rd, rs) else rs - rd,
                  "pass": ok})
    b = []
    for k, setting in enumerate(settings):
        per = []
        for s in starts:
            kr = find(s, "kick", kick_index=k)
            pr = next((r for r in rows if kr and kr.get("matched_plain")
                       and r.get("row_id") == kr["matched_plain"]), None)
            v = [_val(kr, "r_free"), _val(pr, "r_free"), _val(kr, "all_atom_rmsd"),
                 _val(pr, "all_atom_rmsd")]
            nk, npl = (kr or {}).get("n_eval"), (pr or {}).get("n_eval")
            budget = kb.within_budget(nk, npl)
            ok = None if None in v else (v[0] < v[1] and v[2] < v[3] and budget)
            per.append({"start": s, "kick_r_free": v[0], "plain_r_free": v[1], "kick_all_atom": v[2],
                        "plain_all_atom": v[3], "n_eval_kick": nk, "n_eval_plain": npl,
                        "plain_settings": (pr or {}).get("settings"), "budget_within_20pct": budget,
                        "wins": ok})
        wins = sum(1 for c in per if c["wins"])
        decided = sum(1 for c in per if c["wins"] is not None)
        need = min(2, len(starts))
        b.append({"setting": setting, "primary": k == 0, "starts": per, "wins": wins,
                  "status": "n.a." if decided < len(starts) else ("PASS" if wins >= need else "FAIL")})
    c = [{"start": r["start"], "method": r["method"], "settings": r.get("settings"),
          "bond_rmsd": _val(r, "bond_rmsd"),
          "pass": None if _val(r, "bond_rmsd") is None else _val(r, "bond_rmsd") <= BOND_RMSD_MAX}
         for r in rows if r["method"] in ("default", "kick", "plain", "servalcat")]
    status = lambda xs: ("n.a." if any(x is None for x in xs) or not xs  # noqa: E731
                         else "PASS" if all(xs) else "FAIL")
    return {
        "a_default_vs_servalcat": {"status": status([x["pass"] for x in a]), "starts": a},
        "b_kick_vs_budget_matched_plain": b,
        "c_bond_rmsd": {"status": status([x["pass"] for x in c if x["method"] != "servalcat"]),
                        "servalcat_status": status([x["pass"] for x in c if x["method"] == "servalcat"]),
                        "rows": c},
    }


def print_acceptance(acc, starts):
    a = acc["a_default_vs_servalcat"]
    print(f"\n(a) default R-free ≤ servalcat's − {RFREE_MARGIN} and lower all-atom RMSD, every start: "
          f"{a['status']}")
    for x in a["starts"]:
        print(f"    {x['start']:<15} R-free {_f(x['default_r_free'], '.4f')} vs "
              f"{_f(x['servalcat_r_free'], '.4f')}, all-atom {_f(x['default_all_atom'], '.3f')} vs "
              f"{_f(x['servalcat_all_atom'], '.3f')} Å: "
              f"{'n.a.' if x['pass'] is None else 'PASS' if x['pass'] else 'FAIL'}")
    print(f"(b) kick beats budget-matched plain on R-free and all-atom RMSD on ≥ {min(2, len(starts))}"
          f" of {len(starts)} starts:")
    for s in acc["b_kick_vs_budget_matched_plain"]:
        print(f"    {s['status']:<4} {s['wins']}/{len(starts)}  {s['setting']}"
              f"{'  [primary]' if s['primary'] else ''}")
        for x in s["starts"]:
            print(f"         {x['start']:<15} R-free {_f(x['kick_r_free'], '.4f')} vs "
                  f"{_f(x['plain_r_free'], '.4f')}, all-atom {_f(x['kick_all_atom'], '.3f')} vs "
                  f"{_f(x['plain_all_atom'], '.3f')} Å, n_eval {x['n_eval_kick']} vs {x['n_eval_plain']}"
                  f"{'' if x['budget_within_20pct'] else ' (budget NOT within 20 %)'}")
    c = acc["c_bond_rmsd"]
    worst = max((x for x in c["rows"] if x["bond_rmsd"] is not None and x["method"] != "servalcat"),
                key=lambda x: x["bond_rmsd"], default=None)
    print(f"(c) bond RMSD ≤ {BOND_RMSD_MAX} Å for every kickref run: {c['status']}"
          + (f" (largest {worst['bond_rmsd']:.4f} Å: {worst['start']} {worst['method']})" if worst else "")
          + f"; servalcat: {c['servalcat_status']}")


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", default=",".join(STARTS), help="comma-separated far starts")
    ap.add_argument("--kick-settings", default=";".join(KICK_SETTINGS),
                    help="kick runs, ';'-separated argument strings (the first is the primary one)")
    ap.add_argument("--programs", default="kickref,servalcat", help="kickref,servalcat")
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP/NUMBA/OPENBLAS threads of every program run (default 1)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse outputs with the same command, inputs and program sources/version")
    ap.add_argument("--judge", choices=("auto", "cctbx", "kickref"), default="auto")
    ap.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    ap.add_argument("--no-install", action="store_true", help="do not pip-install the peers venv")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed numba warm-up run")
    ap.add_argument("--json", default=str(RESULTS), help="results file")
    ap.add_argument("--work", default=str(WORK), help="scratch folder (default benchmarks/work/far_bench)")
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()

    starts = [s for s in args.starts.split(",") if s]
    bad = [s for s in starts if s not in fs.MR and s not in fs.FAR]
    if bad:
        ap.error(f"unknown start(s) {', '.join(bad)}; choose from {', '.join(STARTS)}")
    programs = [p for p in args.programs.split(",") if p]
    settings = [s.strip() for s in args.kick_settings.split(";") if s.strip()]
    if not (SHARED / "data").is_dir():
        print(f"shared data not found at {SHARED / 'data'}; nothing to benchmark", file=sys.stderr)
        return 1
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    started = dt.datetime.now()
    import gemmi

    peers = peers_mod.find_peers(install=not args.no_install)
    print(peers.message, flush=True)
    mvd = peers.model_vs_data if args.judge in ("auto", "cctbx") else None
    if args.judge == "cctbx" and mvd is None:
        print("cctbx mmtbx.model_vs_data unavailable (see above)", file=sys.stderr)
        return 1
    judge_name = "cctbx mmtbx.model_vs_data" if mvd else "kickref.rfactor"
    serval_exe = peers.servalcat if "servalcat" in programs else None
    if "servalcat" in programs and serval_exe is None:
        print("servalcat unavailable: skipping servalcat", flush=True)
    kick_cmd, kick_version, kick_msg = (rb.kickref_status() if "kickref" in programs
                                        else (None, None, "kickref not requested"))
    print(f"judge: {judge_name}; geometry: gemmi {gemmi.__version__} topology\n{kick_msg}", flush=True)
    src_sha = kb.source_digest(ROOT / "src")
    if kick_cmd and not args.no_warmup:
        wcase, wmodel, wdata = rb.WARMUP_CASE
        wdir = SHARED / "data" / wcase
        if (wdir / wmodel).exists():
            print(f"warm-up (untimed): kickref refine on {wcase}", flush=True)
            w = rb.run_kickref(kick_cmd, wdir / wmodel, wdir / wdata, work / "warmup",
                               ["--cycles", "1"], args.timeout)
            if w.get("error"):
                print(f"  warm-up: {w['error']}\nkickref does not run: stopping", flush=True)
                return 1

    rows: list[dict] = []
    for name in starts:
        spec = spec_of(name)
        case = spec["case"]
        deposited_path = SHARED / "data" / case / spec["model"]
        data_orig = SHARED / "data" / case / spec["data"]
        if not deposited_path.exists() or not data_orig.exists():
            print(f"{name}: shared files missing; skipped", flush=True)
            continue
        swork = work / name
        data = judge_mod.plain_copy(data_orig, swork, stem=f"{case}-data")
        start = ensure_start(name)
        deposited = fs.read(deposited_path)
        reference = judge_mod.atom_table(deposited_path)
        stamp_base = {"data_sha256": judge_mod._digest(data), "kickref_src_sha256": src_sha,
                      "monlib": str(MONLIB.resolve()), "threads": args.threads}

        def judged(model, row_dir):
            return judge_mod.judge(model, data, reference=reference, monlib_dir=MONLIB, mvd_exe=mvd,
                                   work_dir=row_dir / "judge", cctbx_args=spec["cctbx"])

        def add(row, model, row_dir):
            if model:
                row["judge"] = judged(Path(model), row_dir)
                row["structure"] = structure_metrics(Path(model), deposited)
            rows.append(row)
            j, m = row.get("judge", {}), row.get("structure", {})
            print(f"  {row['method']:<9} {row.get('settings', ''):<28} {_f(row.get('wall_s'), '.0f'):>5} s"
                  f"{' (reused)' if row.get('reused') else ''}, n_eval {row.get('n_eval', '-')}, "
                  f"R {_f(j.get('r_work'), '.4f')}/{_f(j.get('r_free'), '.4f')}, bond "
                  f"{_f(j.get('bond_rmsd'), '.4f')}, Cα {_f(m.get('ca_rmsd'), '.3f')}, all "
                  f"{_f(m.get('all_atom_rmsd'), '.3f')}, χ1 {_f(m.get('chi1_within_30'), '.3f')} "
                  f"{row.get('error') or j.get('r_error') or ''}", flush=True)
            return row

        print(f"\n{name}: {start.name} + {data.name} (deposited {deposited_path.name})", flush=True)
        add({"start": name, "method": "deposited", "settings": "deposited model",
             "input": str(deposited_path)}, deposited_path, swork / "deposited")
        add({"start": name, "method": "start", "settings": "far start", "input": str(start)},
            start, swork / "start")

        def one(method, extra, tag, **fields):
            run_dir = swork / tag
            run_dir.mkdir(parents=True, exist_ok=True)
            row = {"start": name, "method": method, "row_id": f"{name}/{tag}", "args": list(extra),
                   "settings": " ".join(extra) or "(defaults)", "input": str(start), **fields}
            row.update(kb.run_kickref_stamped(kick_cmd, start, data, run_dir, list(extra), args.timeout,
                                              args.reuse, stamp_base))
            if "--starts" in extra:                        # multi-start: the budget of all trajectories
                row["n_eval_chosen"] = row.get("n_eval")
                row["n_eval"] = multistart_n_eval(run_dir)
            return add(row, row.get("output"), run_dir)

        if kick_cmd:
            default = one("default", [], "default")
            per_cycle = (default["n_eval"] / default["n_cycles_run"]
                         if default.get("n_eval") and default.get("n_cycles_run") else None)
            kicks = [one("kick", shlex.split(s), f"kick{k}", kick_index=k) for k, s in enumerate(settings)]
            plains: list[dict] = []
            for kr in kicks:                               # budget matching
                n_k = kr.get("n_eval")
                if not n_k:
                    continue
                for _ in range(MAX_MATCH_TRIES):
                    if any(kb.within_budget(n_k, p.get("n_eval")) for p in plains):
                        break
                    base = min((p for p in plains if p.get("n_eval")), default=None,
                               key=lambda p: abs(math.log(n_k / p["n_eval"])))
                    if base is not None:
                        old = int(kb.option_value(base["args"], "--cycles"))
                        n = max(1, round(old * n_k / base["n_eval"]))
                        if n == old:
                            n = old + (1 if n_k > base["n_eval"] else -1)
                    elif per_cycle:
                        n = max(1, round(n_k / per_cycle))
                    else:
                        n = 8
                    extra = ["--cycles", str(n), *PLAIN_ARGS]
                    if n < 1 or any(p["args"] == extra for p in plains):
                        break
                    plains.append(one("plain", extra, f"plain_c{n}"))
            for kr in kicks:
                cands = [p for p in plains if p.get("n_eval")]
                if kr.get("n_eval") and cands:
                    best = min(cands, key=lambda p: abs(math.log(kr["n_eval"] / p["n_eval"])))
                    kr["matched_plain"] = best["row_id"]
                    kr["n_eval_ratio"] = kb.ratio(kr["n_eval"], best["n_eval"])
                    best.setdefault("matched_by", []).append(kr["row_id"])
            for p in plains:                               # n_eval relative to the kick run it matches
                match = [k for k in kicks if k.get("matched_plain") == p["row_id"]]
                if match and p.get("n_eval"):
                    p["n_eval_ratio"] = p["n_eval"] / match[0]["n_eval"]
        if serval_exe:
            run_dir = swork / "servalcat"
            run_dir.mkdir(parents=True, exist_ok=True)
            res = rb.run_servalcat(serval_exe, start, data, run_dir, SERVALCAT_EXTRA.get(case, []),
                                   False, args.reuse, peers.versions.get("servalcat"), args.timeout)
            row = {"start": name, "method": "servalcat", "settings": "(defaults)", "input": str(start),
                   "n_eval": servalcat_n_eval(run_dir), **res}
            add(row, res.get("output"), run_dir)

    print(f"\nR by {judge_name}; bond/angle RMSD: non-H restraints of gemmi's topology; Cα / all-atom "
          f"RMSD: non-H polymer atoms matched by chain, residue number, atom name vs the deposited model; "
          f"χ1≤30°: fraction of side chains with χ1 within 30° of the deposited one; n_eval: kickref's "
          f"energy+gradient evaluations (servalcat: its cycles, one gradient + Fisher matrix each); /pair: n_eval over the budget-matched partner's (kick/plain, plain/kick); time: wall clock")
    print(rb.format_table(rows, COLUMNS, row_values))
    acc = acceptance(rows, starts, settings)
    print_acceptance(acc, starts)

    result = {
        "benchmark": "far starts: kickref plain / default / kick vs servalcat defaults",
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": rb.machine_info(),
        "versions": {"kickref": kick_version, "kickref_src_sha256": src_sha, "peers": peers.versions,
                     "gemmi_judge": gemmi.__version__},
        "peers": peers.as_dict(),
        "settings": {"starts": starts, "kick_settings": settings, "plain_args": PLAIN_ARGS,
                     "threads": args.threads, "budget_tolerance": BUDGET_TOLERANCE,
                     "monlib": str(MONLIB.resolve()), "judge": judge_name,
                     "geometry": "gemmi topology (h_change NoChange), restraints with all atoms non-H",
                     "rmsd": "non-H polymer atoms matched by chain, residue number, icode, atom name; "
                             "deposited model's first conformer (far_starts.compare)",
                     "reuse": args.reuse},
        "rows": rows,
        "acceptance": acc,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(rb._json_safe(result), indent=1))
    tmp.replace(out)
    print(f"\nwrote {out}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
