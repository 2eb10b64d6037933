"""``python -m kickref.demo`` (``make demo``): kickref on an example it builds itself.

1. Builds a decapeptide crystal with simulated data into ``demo_out/`` (relative to the current
   directory; see :mod:`kickref.examples.peptide`).
2. Runs the ``kickref`` command on it, printing each command first: ``rfactor`` on the true and
   the start model, ``geometry``, ``maps`` and, when that subcommand exists, ``refine``.
3. When the shared test data are there (``../shared/data`` from the current directory or from
   the repository root), also ``rfactor`` on 1cbs and a short ``refine`` of 5e5z.

Exit status 0 when every step that ran succeeded, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# refinement length for the demo: option names a refine subcommand may have → value
REFINE_SHORT = (("--cycles", "5"), ("--ncycles", "5"), ("--macro-cycles", "5"), ("-n", "5"))


def available_subcommands() -> dict:
    """{name: argparse subparser} of the subcommands the ``kickref`` command has now."""
    import argparse as _ap
    from .cli import build_parser
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, _ap._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(subparser) -> set:
    return {s for a in subparser._actions for s in a.option_strings}


def refine_command(subparser, model, data, output, cycles=None) -> list:
    """Arguments for ``kickref refine`` built from the options that subcommand offers."""
    opts = _options(subparser)
    args = ["refine", str(model), str(data)]
    for name in ("-o", "--output", "--out", "--prefix"):
        if name in opts:
            args += [name, str(output)]
            break
    for name, value in REFINE_SHORT:
        if name in opts:
            args += [name, str(cycles or value)]
            break
    return args


def find_shared_data() -> Path | None:
    """``../shared/data`` from the current directory, else from the repository root."""
    for base in (Path.cwd(), REPO_ROOT):
        d = (base / ".." / "shared" / "data").resolve()
        if d.is_dir():
            return d
    return None


def _show(path) -> str:
    """A path as the user would type it: relative to the current directory when shorter."""
    p = Path(path)
    try:
        rel = os.path.relpath(p)
    except ValueError:
        return str(p)
    return rel if len(rel) <= len(str(p)) else str(p)


class Demo:
    def __init__(self):
        self.steps = []          # (title, status, seconds)
        self.written = []        # (path, what)

    def run(self, title: str, argv: list) -> int:
        """Print and run one ``kickref`` command through the CLI entry point."""
        from .cli import main
        print(f"\n== {title}")
        print("$ kickref " + shlex.join(argv), flush=True)
        t0 = time.perf_counter()
        try:
            rc = main(argv)
        except SystemExit as e:      # argparse errors
            rc = e.code if isinstance(e.code, int) else 2
        except Exception as e:       # a bug: report it, go on with the other steps
            print(f"demo: '{argv[0]}' failed: {type(e).__name__}: {e}", file=sys.stderr)
            rc = 1
        sys.stdout.flush()
        sys.stderr.flush()
        dt = time.perf_counter() - t0
        self.steps.append((title, "ok" if rc == 0 else f"FAILED (exit {rc})", dt))
        return rc

    def skip(self, title: str, why: str):
        print(f"\n== {title}\n(skipped: {why})")
        self.steps.append((title, f"skipped: {why}", 0.0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kickref.demo", description=__doc__.split("\n")[0])
    p.add_argument("--outdir", default="demo_out", help="where to write (default demo_out)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the example (default 0)")
    p.add_argument("--no-shared", action="store_true", help="skip the cases from ../shared/data")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    from .examples.peptide import build_example
    out = Path(args.outdir)
    print(f"== Building the example (seed {args.seed}) into {_show(out)}/")
    t0 = time.perf_counter()
    paths = build_example(out, seed=args.seed)
    demo = Demo()
    demo.steps.append(("build the example", "ok", time.perf_counter() - t0))
    _describe_example(paths)
    model, start, mtz = (_show(paths[k]) for k in ("model", "start_model", "mtz"))
    demo.written += [(model, "true model"), (start, "start model (shaken 0.3 Å, B 20 Å²)"),
                     (mtz, "simulated data FP/SIGFP/FREE")]

    subs = available_subcommands()
    demo.run("R factors of the true model (noise level expected)", ["rfactor", model, mtz])
    demo.run("R factors of the start model", ["rfactor", start, mtz])
    if "geometry" in subs:
        demo.run("Geometry of the start model", ["geometry", start, "--outliers", "5"])
    else:
        demo.skip("Geometry of the start model", "no 'geometry' subcommand in this build")
    maps_out = _show(out / "maps_start.mtz")
    demo.run("σA-weighted maps of the start model", ["maps", start, mtz, "-o", maps_out])
    demo.written.append((maps_out, "map coefficients of the start model"))
    if "refine" in subs:
        refined = _show(out / "example_refined.pdb")
        cmd = refine_command(subs["refine"], start, mtz, refined)
        if demo.run("Refinement of the start model", cmd) == 0:
            demo.written.append((refined, "refined model (if the refine command wrote it there)"))
            if Path(refined).exists():
                demo.run("R factors of the refined model", ["rfactor", refined, mtz])
    else:
        demo.skip("Refinement of the start model", "no 'refine' subcommand in this build yet")

    shared = None if args.no_shared else find_shared_data()
    if shared is None:
        why = "--no-shared given" if args.no_shared else "../shared/data not found"
        print(f"\n({why}: the real-data part of the demo is skipped)")
    else:
        cbs = shared / "1cbs"
        if (cbs / "1cbs.cif.gz").exists() and (cbs / "1cbs_map.mtz").exists():
            demo.run("Real data: CRABP-II (1cbs), 1.8 Å",
                     ["rfactor", _show(cbs / "1cbs.cif.gz"), _show(cbs / "1cbs_map.mtz")])
        z = shared / "5e5z"
        if "refine" in subs and (z / "5e5z.pdb").exists():
            refined = _show(out / "5e5z_refined.pdb")
            if demo.run("Real data: short refinement of the peptide 5e5z",
                        refine_command(subs["refine"], _show(z / "5e5z.pdb"), _show(z / "5e5z.mtz"),
                                       refined, cycles=3)) == 0:
                demo.written.append((refined, "5e5z after a short refinement"))
        elif "refine" not in subs:
            demo.skip("Real data: short refinement of 5e5z", "no 'refine' subcommand yet")

    print("\n== Summary")
    width = max(len(t) for t, _, _ in demo.steps)
    for title, status, dt in demo.steps:
        print(f"  {title:<{width}}  {dt:5.1f} s  {status}")
    print("written:")
    for path, what in demo.written:
        if Path(path).exists():
            print(f"  {path:<34} {what}")
    print(f"total {time.perf_counter() - t_start:.1f} s")
    failed = [t for t, s, _ in demo.steps if s.startswith("FAILED")]
    return 1 if failed else 0


def _describe_example(paths):
    import gemmi
    from .io.models import read_model
    from .io.reflections import read_reflections
    model = read_model(paths["model"])
    data = read_reflections(paths["mtz"])
    st = model.structure
    seq = "-".join(r.name for r in st[0][0] if r.entity_type == gemmi.EntityType.Polymer)
    n_wat = sum(1 for r in st[0][0] if r.is_water())
    c = st.cell
    print(f"peptide {seq} + {n_wat} waters ({model.n_atoms} atoms), "
          f"{st.spacegroup_hm}, cell {c.a:.2f} {c.b:.2f} {c.c:.2f} Å; "
          f"{data.n} reflections to {data.d_min:.2f} Å")


if __name__ == "__main__":
    sys.exit(main())
