"""Leave-one-case-out (LOO) validation of kickref's refinement defaults (needs ../shared/data).

A small family of candidate defaults — settings that act at d_min ≥ 1.2 Å: the bond-RMSD target
of the automatic X-ray weight (``weighting.BOND_RMSD_REFINE``, 0.008 Å today) and the scale of
the ADP restraints (``--adp-weight``, 0.6 today) — is run by ``kickref refine`` from the
deposited model (the ``rerefine`` start of refine_bench.py) on every shared case, and every
output is judged like refine_bench.py does (cctbx ``mmtbx.model_vs_data``; baz2b by kickref's
calculator, refine_bench.OWN_JUDGE). The figure of merit of a case is R-free, or R-work where the
data have no test set (6mw0). A candidate is a *rule*: on a case with d_min ≥ 1.2 Å it passes its
options (``--bond-rmsd X`` and/or ``--adp-weight W``); below 1.2 Å (6mw0, 0.78 Å) it is the
current default (the atomic-resolution rules are not part of this family), so those cases are run
once, with the defaults, and that result stands for every candidate.

Choice rule, for each held-out case h: the candidate minimizing the unweighted mean over the
other cases t of (metric(candidate, t) − metric(servalcat, t)); every case counts once (the
peptides with ~20 test reflections included; 6mw0 by R-work, the same for every candidate so it
does not move the choice); ties (within 1e-4) go to the current default. The chosen candidate's
result on h is then compared with servalcat's (criterion: held-out R-free ≤ servalcat's) and with
the current default's. A second rule (peptides and 6mw0 left out of the training mean) is reported
alongside as a sensitivity check.

servalcat is deterministic: its figures are read from refine_bench.py results (default:
results/refine_bench.json and results/refine_bench_untuned.json, rerefine rows) unless
``--run-servalcat`` runs it here (into benchmarks/work/loo/<case>/servalcat, with refine_bench's
stamp-based reuse).

Every kickref run is kept in benchmarks/work/loo/<case>/<candidate>/ with a ``result.json``;
``--resume`` reuses a run whose kickref command is unchanged, so the matrix can be filled over
several invocations (``--candidates``, ``--cases``) and ``--analyse-only`` rebuilds the table.
Results: benchmarks/results/loo_bench.json.

Run: ``.venv/bin/python benchmarks/loo_bench.py [--candidates default,bond0.010] [--cases ...]
[--resume] [--analyse-only] [--run-servalcat]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import judge as judge_mod  # noqa: E402
import peers as peers_mod  # noqa: E402
import refine_bench as rb  # noqa: E402

WORK = HERE / "work" / "loo"
RESULTS = HERE / "results" / "loo_bench.json"
SERVALCAT_SOURCES = [HERE / "results" / "refine_bench.json", HERE / "results" / "refine_bench_untuned.json"]
ATOMIC_D_MIN = 1.2        # Å: below it the candidates do not act (weighting.ATOMIC_RESOLUTION[1])
PEPTIDES = ("5e5z", "5wkd")
NO_TEST_SET = ("6mw0",)
TIE = 1e-4

# name -> options of kickref refine applied at d_min >= ATOMIC_D_MIN; "default" must be first
CANDIDATES = {
    "default": [],                                   # bond 0.008 Å, ADP weight 0.6
    "bond0.010": ["--bond-rmsd", "0.010"],
    "bond0.012": ["--bond-rmsd", "0.012"],
    "bond0.006": ["--bond-rmsd", "0.006"],
    "bond0.005": ["--bond-rmsd", "0.005"],
    "bond0.004": ["--bond-rmsd", "0.004"],
    "bond0.007": ["--bond-rmsd", "0.007"],
    "adp0.3": ["--adp-weight", "0.3"],               # half the default ADP restraint scale
    "bond0.010+adp0.3": ["--bond-rmsd", "0.010", "--adp-weight", "0.3"],
    "adp1.2": ["--adp-weight", "1.2"],               # twice the default ADP restraint scale
}
# run order: cheap cases first, 4iid (14,782 atoms) last
CASE_ORDER = ("1cbs", "4hg7", "5wkd", "5e5z", "3zt9", "baz2b", "gamma", "6mw0", "4iid")


def case_d_min(case: str) -> float:
    """d_min (Å) from the shared case.json."""
    info = json.loads((rb.SHARED / "data" / case / "case.json").read_text())
    found = _find_key(info, "d_min")
    return float(found)


def refl_per_atom(case: str):
    """Reflections per non-H atom of the case (case.json counts), a data-to-parameter proxy."""
    info = json.loads((rb.SHARED / "data" / case / "case.json").read_text())
    n_refl, atoms = _find_key(info.get("data", {}), "n_refl"), info.get("model", {}).get("atoms")
    if not n_refl or not atoms:
        return None
    return n_refl / max(atoms - (info["model"].get("H_atoms") or 0), 1)


def n_free(case: str) -> int:
    """Test-set reflections of the case: case.json's n_free, else counted in the MTZ (free flag
    value with a measured amplitude), 0 without a test set."""
    info = json.loads((rb.SHARED / "data" / case / "case.json").read_text())
    data = info.get("data", {})
    if data.get("n_free") is not None:
        return int(data["n_free"])
    ri = data.get("refl_info", {})
    if ri.get("format") != "MTZ" or not ri.get("free_column"):
        return 0
    import gemmi
    import numpy as np
    mtz = gemmi.read_mtz_file(str(rb.SHARED / "data" / case / info["reflection_file"]))
    flag = np.array(mtz.column_with_label(ri["free_column"]), copy=False)
    f = np.array(mtz.column_with_label(ri["data_columns"][0]), copy=False)
    return int(((flag == ri.get("free_value_used", 0)) & ~np.isnan(f)).sum())


def _find_key(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            got = _find_key(v, key)
            if got is not None:
                return got
    return None


def metric(j: dict):
    """(value, name): R-free, or R-work when the data have no test set."""
    rf = j.get("r_free")
    if rf is not None and not (isinstance(rf, float) and math.isnan(rf)):
        return rf, "R-free"
    rw = j.get("r_work")
    return (rw, "R-work") if rw is not None else (None, None)


def servalcat_from_json(paths) -> dict:
    """case -> {judge, wall_s, source}: servalcat's rerefine rows of refine_bench results."""
    out = {}
    for p in paths:
        p = Path(p)
        if not p.exists():
            continue
        d = json.loads(p.read_text())
        for r in d.get("rows", []):
            if r.get("mode") == "rerefine" and r.get("program") == "servalcat" and r.get("judge"):
                out[r["case"]] = {"judge": r["judge"], "wall_s": r.get("wall_s"),
                                  "source": f"{p.relative_to(ROOT)} ({d.get('started')}, servalcat "
                                            f"{d.get('versions', {}).get('peers', {}).get('servalcat')})"}
    return out


# ---------------------------------------------------------------- runs
def kickref_env() -> dict:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def git_rev() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_one(case, cand, args_extra, kick_cmd, mvd, timeout, resume) -> dict:
    """kickref refine on ``case`` from the deposited model with ``args_extra``; judged."""
    model_name, data_name, _, cctbx_args = rb.CASES[case]
    case_dir = rb.SHARED / "data" / case
    deposited = case_dir / model_name
    cwork = WORK / case
    data = judge_mod.plain_copy(case_dir / data_name, cwork, stem=f"{case}-data")
    run_dir = cwork / cand
    run_dir.mkdir(parents=True, exist_ok=True)
    res_path = run_dir / "result.json"
    cmd_key = [*args_extra]
    if resume and res_path.exists():
        old = json.loads(res_path.read_text())
        if old.get("kickref_args") == cmd_key and old.get("judge") and not old.get("error"):
            old["resumed"] = True
            return old
    row = {"case": case, "candidate": cand, "kickref_args": cmd_key, "kickref_rev": git_rev(),
           "started": dt.datetime.now().isoformat(timespec="seconds")}
    env = os.environ.copy()
    os.environ.update(kickref_env())            # run_timed inherits the environment
    try:
        row.update(rb.run_kickref(kick_cmd, deposited, data, run_dir, cmd_key, timeout))
    finally:
        os.environ.clear()
        os.environ.update(env)
    row.pop("kickref_summary", None)
    if row.get("output"):
        row["judge"] = judge_mod.judge(Path(row["output"]), data, reference=judge_mod.atom_table(deposited),
                                       monlib_dir=rb.MONLIB, mvd_exe=None if case in rb.OWN_JUDGE else mvd,
                                       work_dir=run_dir / "judge", cctbx_args=cctbx_args)
        row["judge"]["judge"] = "kickref.rfactor" if case in rb.OWN_JUDGE or not mvd else "cctbx"
    res_path.write_text(json.dumps(rb._json_safe(row), indent=1))
    return row


def load_runs(cases, candidates) -> dict:
    """(case, candidate) -> stored result of earlier runs (matching the candidate's options)."""
    runs = {}
    for case in cases:
        for cand in candidates:
            p = WORK / case / cand / "result.json"
            if p.exists():
                r = json.loads(p.read_text())
                if r.get("kickref_args") == effective_args(case, cand) and r.get("judge"):
                    runs[(case, cand)] = r
    return runs


def effective_args(case, cand) -> list[str]:
    return list(CANDIDATES[cand]) if case_d_min(case) >= ATOMIC_D_MIN else []


def run_dir_name(case, cand) -> str:
    """Below ATOMIC_D_MIN every candidate is the default: one run, under 'default'."""
    return cand if case_d_min(case) >= ATOMIC_D_MIN else "default"


# ---------------------------------------------------------------- analysis
def matrix(cases, candidates, runs, serval) -> dict:
    """case -> {cand: metric - servalcat metric} (None where missing), plus raw metrics."""
    m = {}
    for case in cases:
        s, sname = metric(serval.get(case, {}).get("judge", {}))
        row = {"servalcat": s, "metric": sname, "d_min": case_d_min(case),
               "refl_per_atom": refl_per_atom(case), "kickref": {}, "delta": {}, "bond": {}}
        for cand in candidates:
            r = runs.get((case, run_dir_name(case, cand)))
            v, name = metric(r["judge"]) if r else (None, None)
            row["kickref"][cand] = v
            row["bond"][cand] = r["judge"].get("bond_rmsd") if r else None
            row["delta"][cand] = None if v is None or s is None else v - s
            if name and sname and name != sname:
                row["metric_mismatch"] = f"{name} vs servalcat {sname}"
        have = {c: v for c, v in row["delta"].items() if v is not None}
        row["best"] = min(have, key=have.get) if have else None     # per-case oracle (in-sample)
        m[case] = row
    return m


def choose(train, candidates, mat, weights=None):
    """The candidate minimizing the mean delta over ``train`` (cases where every candidate has a
    result), weighted by ``weights`` (case -> weight; None: equal); ties within TIE go to the
    first candidate (the default). Returns (cand, scores, used)."""
    used = [t for t in train if all(mat[t]["delta"][c] is not None for c in candidates)]
    w = {t: 1.0 if weights is None else weights.get(t, 0.0) for t in used}
    if not used or sum(w.values()) <= 0:
        return None, {}, used
    scores = {c: sum(w[t] * mat[t]["delta"][c] for t in used) / sum(w.values()) for c in candidates}
    best = min(scores.values())
    chosen = next(c for c in candidates if scores[c] <= best + TIE)
    return chosen, scores, used


def loo(cases, candidates, mat, exclude=(), weights=None):
    """One row per held-out case h: the choice made on the other cases (minus ``exclude``)."""
    out = []
    for h in cases:
        avail = [c for c in candidates if mat[h]["kickref"][c] is not None]
        if not avail or "default" not in avail:
            out.append({"held_out": h, "error": "no result on the held-out case"})
            continue
        train = [t for t in cases if t != h and t not in exclude]
        covered = [t for t in train if all(mat[t]["delta"][c] is not None for c in avail)]
        if len(covered) < len(train) - 1:       # more than one training case lacks a candidate:
            avail = [c for c in avail if all(mat[t]["delta"][c] is not None for t in train)]
        chosen, scores, used = choose(train, avail, mat, weights)
        if chosen is None:
            out.append({"held_out": h, "error": "no training case with every candidate"})
            continue
        k, s, d = mat[h]["kickref"][chosen], mat[h]["servalcat"], mat[h]["kickref"]["default"]
        out.append({"held_out": h, "metric": mat[h]["metric"], "chosen": chosen,
                    "candidates_tested": avail, "train_cases": used,
                    "train_scores": {c: round(v, 5) for c, v in scores.items()},
                    "held_out_kickref": k, "held_out_default": d, "servalcat": s,
                    "minus_servalcat": None if s is None else k - s,
                    "minus_default": k - d,
                    "criterion_met": None if s is None else k <= s})
    return out


RULE_THRESHOLDS = (10.0, 15.0, 20.0)     # reflections per non-H atom


def rule_matrix(cases, candidates, mat) -> tuple[dict, dict]:
    """Data-driven rules as extra columns, built from the runs (no new refinements).

    A rule "lo<τ<hi" uses bond-target candidate ``lo`` on cases with fewer than τ reflections per
    non-H atom and ``hi`` on the others (lo ≤ hi: the tighter target where there are fewer data);
    the plain candidates stay in as constant rules, the default first. Returns (matrix as
    :func:`matrix` with the rule names as candidates, rule -> description)."""
    bonds = sorted((c for c in candidates if c == "default" or c.startswith("bond") and "+" not in c),
                   key=lambda c: 0.008 if c == "default" else float(c[4:]))
    value = {c: 0.008 if c == "default" else float(c[4:]) for c in bonds}
    rules = {c: c for c in candidates}
    pick = {c: (lambda case, c=c: c) for c in candidates}
    for tau in RULE_THRESHOLDS:
        for i, lo in enumerate(bonds):
            for hi in bonds[i + 1:]:
                name = f"{value[lo]:.3f}<{tau:g}<{value[hi]:.3f}"
                rules[name] = (f"bond target {value[lo]} Å below {tau:g} reflections per non-H atom, "
                               f"{value[hi]} Å above")
                pick[name] = (lambda case, lo=lo, hi=hi, tau=tau:
                              lo if (mat[case]["refl_per_atom"] or 0) < tau else hi)
    out = {}
    for case in cases:
        r = mat[case]
        row = {k: r[k] for k in ("servalcat", "metric", "d_min", "refl_per_atom")}
        row["column"] = {name: pick[name](case) for name in rules}
        row["kickref"] = {name: r["kickref"][col] for name, col in row["column"].items()}
        row["delta"] = {name: r["delta"][col] for name, col in row["column"].items()}
        out[case] = row
    return out, rules


def rule_table(rows, rows_alt) -> str:
    head = (f"{'held out':<8} {'rule chosen on the others':<26} {'kickref':>7} {'servalcat':>9} {'Δ serv':>7} "
            f"{'Δ def':>7} {'met':<4} {'alt rule chosen':<26} {'alt Δ serv':>10} {'alt met':<4}")
    lines = [head, "-" * len(head)]
    for r, ra in zip(rows, rows_alt):
        if r.get("error"):
            lines.append(f"{r['held_out']:<8} {r['error']}")
            continue
        met = {None: "n.a.", True: "yes", False: "no"}
        lines.append(f"{r['held_out']:<8} {r['chosen']:<26} {fmt(r['held_out_kickref']):>7} {fmt(r['servalcat']):>9} "
                     f"{fmt(r['minus_servalcat'], '.4f', True):>7} {fmt(r['minus_default'], '.4f', True):>7} "
                     f"{met[r['criterion_met']]:<4} {ra.get('chosen') or '–':<26} "
                     f"{fmt(ra.get('minus_servalcat'), '.4f', True):>10} {met[ra.get('criterion_met')]:<4}")
    return "\n".join(lines)


def fmt(x, f=".4f", sign=False):
    if x is None:
        return "–"
    return format(x, ("+" if sign else "") + f)


def tables(cases, candidates, mat, rows, rows_alt) -> str:
    lines = ["matrix: metric (R-free; 6mw0 R-work) of kickref per candidate, servalcat's, and the "
             "bond RMSD (Å) of each run", ""]
    head = (f"{'case':<6} {'d_min':>5} {'refl/at':>7} {'serv':>7} " + " ".join(f"{c:>16}" for c in candidates)
            + "  best")
    lines += [head, "-" * len(head)]
    for case in cases:
        r = mat[case]
        cells = " ".join(f"{fmt(r['kickref'][c]) + ('' if r['bond'][c] is None else ' (' + fmt(r['bond'][c])[1:] + ')'):>16}"
                         for c in candidates)
        lines.append(f"{case:<6} {r['d_min']:>5.2f} {fmt(r['refl_per_atom'], '.1f'):>7} "
                     f"{fmt(r['servalcat']):>7} {cells}  {r['best']}")
    lines += ["", "leave-one-case-out (rule: min mean Δ over the other cases; alt: peptides and 6mw0 "
              "left out of the training mean)", ""]
    head = (f"{'held out':<8} {'metric':<6} {'chosen':<17} {'kickref':>7} {'servalcat':>9} {'Δ serv':>7} "
            f"{'default':>7} {'Δ def':>7} {'met':<4} {'alt chosen':<17} {'alt Δ serv':>10}")
    lines += [head, "-" * len(head)]
    for r, ra in zip(rows, rows_alt):
        if r.get("error"):
            lines.append(f"{r['held_out']:<8} {r['error']}")
            continue
        met = {None: "n.a.", True: "yes", False: "no"}[r["criterion_met"]]
        lines.append(f"{r['held_out']:<8} {r['metric']:<6} {r['chosen']:<17} {fmt(r['held_out_kickref']):>7} "
                     f"{fmt(r['servalcat']):>9} {fmt(r['minus_servalcat'], '.4f', True):>7} "
                     f"{fmt(r['held_out_default']):>7} {fmt(r['minus_default'], '.4f', True):>7} {met:<4} "
                     f"{ra.get('chosen') or '–':<17} {fmt(ra.get('minus_servalcat'), '.4f', True):>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASE_ORDER), help="comma-separated (default: all, 4iid last)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES),
                    help=f"comma-separated from {', '.join(CANDIDATES)} (runs in the given order, "
                         "candidate by candidate)")
    ap.add_argument("--analyse", default="",
                    help="candidates of the analysis (default: those of --candidates)")
    ap.add_argument("--resume", action="store_true", help="reuse stored runs with the same kickref command")
    ap.add_argument("--analyse-only", action="store_true", help="no runs: table from stored runs")
    ap.add_argument("--run-servalcat", action="store_true",
                    help="run servalcat here (stamp reuse) instead of reading refine_bench results")
    ap.add_argument("--servalcat-json", default=",".join(str(p) for p in SERVALCAT_SOURCES),
                    help="refine_bench results with servalcat's rerefine rows")
    ap.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    ap.add_argument("--json", default=str(RESULTS), help="results file")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    cands = [c for c in args.candidates.split(",") if c]
    analyse = [c for c in (args.analyse or args.candidates).split(",") if c]
    for bad in [c for c in cases if c not in rb.CASES] + [c for c in cands + analyse if c not in CANDIDATES]:
        ap.error(f"unknown case or candidate {bad}")
    if "default" not in analyse:
        analyse.insert(0, "default")
    analyse.sort(key=list(CANDIDATES).index)
    if not (rb.SHARED / "data").is_dir():
        print(f"shared data not found at {rb.SHARED / 'data'}", file=sys.stderr)
        return 1
    started = dt.datetime.now()
    peers = peers_mod.find_peers(install=False)
    mvd = peers.model_vs_data
    print(peers.message, "| judge:", "cctbx" if mvd else "kickref.rfactor", flush=True)

    kick_cmd = [sys.executable, "-m", "kickref"]
    if not args.analyse_only:
        for cand in cands:
            for case in cases:
                if run_dir_name(case, cand) != cand:
                    continue                     # below 1.2 Å: the default run stands for it
                print(f"{case} {cand} {' '.join(CANDIDATES[cand])} ...", end="", flush=True)
                r = run_one(case, cand, effective_args(case, cand), kick_cmd, mvd, args.timeout, args.resume)
                v, name = metric(r.get("judge", {}))
                print(f" {r.get('wall_s', '-')} s{' (resumed)' if r.get('resumed') else ''}, {name} "
                      f"{fmt(v)}, bond {fmt(r.get('judge', {}).get('bond_rmsd'))} {r.get('error') or ''}",
                      flush=True)

    # servalcat reference
    if args.run_servalcat:
        serval = {}
        for case in cases:
            model_name, data_name, serval_args, cctbx_args = rb.CASES[case]
            case_dir = rb.SHARED / "data" / case
            data = judge_mod.plain_copy(case_dir / data_name, WORK / case, stem=f"{case}-data")
            run_dir = WORK / case / "servalcat"
            run_dir.mkdir(parents=True, exist_ok=True)
            r = rb.run_servalcat(peers.servalcat, case_dir / model_name, data, run_dir, serval_args,
                                 rb.has_aniso(case_dir / model_name), True, peers.versions.get("servalcat"),
                                 args.timeout)
            if r.get("output"):
                r["judge"] = judge_mod.judge(Path(r["output"]), data, monlib_dir=rb.MONLIB,
                                             mvd_exe=None if case in rb.OWN_JUDGE else mvd,
                                             work_dir=run_dir / "judge", cctbx_args=cctbx_args)
                serval[case] = {"judge": r["judge"], "wall_s": r.get("wall_s"),
                                "source": f"run here ({'reused' if r.get('reused') else 'fresh'}), servalcat "
                                          f"{peers.versions.get('servalcat')}"}
    else:
        serval = servalcat_from_json(args.servalcat_json.split(","))

    runs = load_runs(cases, list(CANDIDATES))
    mat = matrix(cases, analyse, runs, serval)
    rows = loo(cases, analyse, mat)
    rows_alt = loo(cases, analyse, mat, exclude=PEPTIDES + NO_TEST_SET)
    nfree = {c: n_free(c) for c in cases}
    rows_c = loo(cases, analyse, mat, weights=nfree)
    in_sample, in_scores, in_used = choose(cases, [c for c in analyse if all(
        mat[t]["kickref"][c] is not None for t in cases)] or ["default"], mat)
    rmat, rules = rule_matrix(cases, analyse, mat)
    rrows = loo(cases, list(rules), rmat)
    rrows_alt = loo(cases, list(rules), rmat, exclude=PEPTIDES + NO_TEST_SET)
    rrows_c = loo(cases, list(rules), rmat, weights=nfree)
    text = tables(cases, analyse, mat, rows, rows_alt)
    text += ("\n\nrule C: training mean weighted by test-set size (inverse variance of R-free; n_free "
             + ", ".join(f"{c} {n}" for c, n in nfree.items()) + "):\n\n"
             + "\n".join(f"{r['held_out']:<8} {r.get('chosen') or '–':<17} {fmt(r.get('held_out_kickref'))} "
                         f"{fmt(r.get('minus_servalcat'), '.4f', True)} "
                         f"{ {None: 'n.a.', True: 'met', False: 'not met'}[r.get('criterion_met')]}"
                         for r in rows_c)
             + "\n\nrules by data, rule C: " + ", ".join(
                 f"{r['held_out']} {r.get('chosen')} {fmt(r.get('minus_servalcat'), '.4f', True)}" for r in rrows_c))
    text += ("\n\ndata-driven rules (bond target by reflections per non-H atom, thresholds "
             f"{', '.join(f'{t:g}' for t in RULE_THRESHOLDS)}; {len(rules)} rules incl. the constant "
             "candidates), same leave-one-case-out choice:\n\n" + rule_table(rrows, rrows_alt))
    print("\n" + text)
    print(f"\nin-sample choice over all cases: {in_sample} (mean Δ: "
          + ", ".join(f"{c} {v:+.4f}" for c, v in in_scores.items()) + ")")
    def n_met(rs):
        ok = [r for r in rs if r.get("criterion_met") is not None]
        return f"{sum(r['criterion_met'] for r in ok)} of {len(ok)}"
    default_met = [m["kickref"]["default"] <= m["servalcat"] for m in mat.values()
                   if m["kickref"]["default"] is not None and m["servalcat"] is not None]
    summary = {"current_default": f"{sum(default_met)} of {len(default_met)}", "rule_A": n_met(rows),
               "rule_B": n_met(rows_alt), "rule_C": n_met(rows_c), "rules_by_data_A": n_met(rrows),
               "rules_by_data_B": n_met(rrows_alt), "rules_by_data_C": n_met(rrows_c)}
    print("held-out R-free <= servalcat's (cases): " + ", ".join(f"{k} {v}" for k, v in summary.items()))

    result = {
        "benchmark": "leave-one-case-out validation of kickref refine defaults (rerefine start)",
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": rb.machine_info(), "kickref_rev": git_rev(),
        "versions": {"peers": peers.versions},
        "judge": "cctbx mmtbx.model_vs_data (baz2b: kickref.rfactor, refine_bench.OWN_JUDGE)" if mvd
                 else "kickref.rfactor",
        "candidates": {c: CANDIDATES[c] for c in analyse},
        "candidate_scope": f"options applied at d_min >= {ATOMIC_D_MIN} Å; below (6mw0) every candidate "
                           "is the default run",
        "rule": "for each held-out case: the candidate with the lowest unweighted mean of (metric − "
                "servalcat's metric) over the other cases that have every candidate; metric R-free, "
                "R-work for 6mw0 (no test set); ties within 1e-4 to the default",
        "rule_alt": "the same with the peptides (5e5z, 5wkd) and 6mw0 left out of the training mean",
        "servalcat": serval,
        "matrix": mat,
        "loo": rows, "loo_alt": rows_alt, "loo_weighted": rows_c, "n_free": nfree,
        "rule_weighted": "the same with each training case weighted by its test-set size n_free "
                         "(inverse variance of R-free; 6mw0 weight 0)",
        "rules": rules, "rule_thresholds_refl_per_atom": RULE_THRESHOLDS,
        "rule_columns": {c: rmat[c]["column"] for c in cases},
        "loo_rules": rrows, "loo_rules_alt": rrows_alt, "loo_rules_weighted": rrows_c,
        "criterion_met": summary,
        "in_sample": {"chosen": in_sample, "scores": in_scores, "cases": in_used},
        "runs": {f"{c}/{k}": {kk: v for kk, v in r.items() if kk != "judge"} | {"judge": {
            kk: r["judge"].get(kk) for kk in ("r_work", "r_free", "bond_rmsd", "angle_rmsd", "xyz_rmsd",
                                              "judge", "r_error")}} for (c, k), r in runs.items()},
        "table": text,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rb._json_safe(result), indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
