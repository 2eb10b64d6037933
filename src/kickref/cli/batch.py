"""kickref batch ENTRIES -o DIR: re-refine many entries, several candidates each, on Dask."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading

from ..batch import DEFAULT_CANDIDATES, ChoiceRule, parse_candidate, plan_batch, run_batch
from ..core.errors import KickrefError, Terminated
from ..io.entries import read_entries
from .common import count, positive, show_warnings
from .refine import ProgressBar, refine_arguments


def add_parser(sub):
    p = sub.add_parser("batch", help="re-refine many entries (candidates each) on a Dask cluster",
                       description="Runs kickref refine for every entry and candidate as Dask tasks, "
                                   "chooses per entry by R-free with a geometry requirement (never worse "
                                   "than the start model), and writes DIR/summary.csv, summary.json, "
                                   "index.html. Entries done by an earlier run are skipped.")
    p.add_argument("entries", metavar="ENTRIES",
                   help="CSV/TSV table (columns model, data; optional name, labin, ligands, options) or a "
                        "folder of case folders with case.json")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler (e.g. tcp://host:8786); default: a local "
                        "cluster")
    p.add_argument("--workers", type=count, metavar="N",
                   help="local cluster: N single-threaded worker processes (default: one per core)")
    p.add_argument("--candidates", nargs="+", metavar="C",
                   help="candidates: NAME=OPTIONS (kickref refine options, e.g. 'tight=--bond-rmsd 0.005') "
                        "or default names; default: " + ", ".join(
                            f"{c.name} ({c.flags or 'no option'})" for c in DEFAULT_CANDIDATES))
    p.add_argument("--options", default="", metavar="'OPTIONS'",
                   help="kickref refine options for every entry (e.g. '--cycles 4'; one option alone "
                        "as --options=--fix-b); an entry's own options and then the candidate's come "
                        "after them")
    p.add_argument("--monlib", metavar="DIR", help="CCP4 monomer library (default $CLIBD_MON, else built-in)")
    p.add_argument("--max-bond-rmsd", type=positive, default=ChoiceRule.max_bond_rmsd, metavar="Å",
                   help=f"an acceptable candidate's bond RMSD (non-H) at most this (default "
                        f"{ChoiceRule.max_bond_rmsd})")
    p.add_argument("--max-gap-increase", type=positive, default=ChoiceRule.max_gap_increase, metavar="DR",
                   help="an acceptable candidate's R-free - R-work at most the start's + DR (default "
                        f"{ChoiceRule.max_gap_increase})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no line per entry")
    return p


class _RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise KickrefError (an entry's options checked in advance)."""

    def error(self, message):
        raise KickrefError(" ".join(str(message).split()))


def refine_parser() -> argparse.ArgumentParser:
    from . import refine
    sub = _RaisingParser(prog="kickref").add_subparsers()
    return refine.add_parser(sub)


def resolver(common: str = "", monlib: str | None = None):
    """``resolve(entry, candidate, prefix)`` → (keyword arguments of :func:`kickref.api.refine_to_files`,
    the equivalent ``kickref refine`` command line), from the refine command's own parser: the
    batch runs exactly what that command line would."""
    parser = refine_parser()

    def resolve(entry, candidate, prefix):
        argv = [entry.model, entry.data, "-o", str(prefix)]
        if entry.labin:
            argv += ["--labin", entry.labin]
        for lig in entry.ligands:
            argv += ["--ligand", lig]
        if monlib:
            argv += ["--monlib", monlib]
        argv += shlex.split(common) + shlex.split(entry.options) + candidate.argv()
        try:
            args = parser.parse_args(argv)
        except KickrefError as e:
            raise KickrefError(f"entry {entry.name}, candidate {candidate.name}: {e}") from None
        if args.map or args.map_coeffs or args.map_hl or args.dens_comb:
            raise KickrefError(f"entry {entry.name}: batch refines against DATA only (no --map, --dens-comb)")
        return refine_arguments(args), shlex.join(["kickref", "refine", *argv])
    return resolve


def run(args):
    show_warnings()
    entries = read_entries(args.entries)
    candidates = [parse_candidate(c) for c in args.candidates] if args.candidates else list(DEFAULT_CANDIDATES)
    if len({c.name for c in candidates}) != len(candidates):
        raise KickrefError("--candidates: two candidates with one name")
    rule = ChoiceRule(args.max_bond_rmsd, args.max_gap_increase)
    plans = plan_batch(entries, candidates, args.output, resolver(args.options, args.monlib))
    bar = ProgressBar(len(entries), 1, not args.quiet, unit="entries")

    def log(s):
        if not args.quiet:
            bar.enabled and sys.stderr.write("\r" + " " * 80 + "\r")
            print(s, flush=True)

    try:
        with sigterm_as_interrupt():
            rows = run_batch(plans, args.output, scheduler=args.scheduler, workers=args.workers, rule=rule,
                             progress=lambda done, total: bar(done), log=log)
    except KeyboardInterrupt:
        bar.enabled and sys.stderr.write("\n")
        raise
    bar.close()
    failed = [r["entry"] for r in rows if r.get("status") != "ok"]
    print(f"wrote {args.output}/summary.csv, summary.json, index.html"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (SLURM's scancel, a pipeline's timeout) raises :class:`Terminated`, so the batch
    ends as after Ctrl-C: finished entries and the report kept (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
