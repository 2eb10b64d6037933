"""kickref macro FILE.cmds --model M -o PREFIX: run a MAIN command macro (a kickref.Session)."""
from __future__ import annotations

import re
import sys

from ..io.files import write_text_atomic
from ..io.outputs import OutputSet, lock_path, output_paths
from ..refinement.minimize import StopFlag
from .common import parse_map_coefficients_argument, seed_value, show_warnings, write_json


def _named(what: str, rest_check=None):
    """argparse type: NAME=VALUE with a macro-style NAME; ``rest_check(value)`` may raise ValueError."""
    import argparse

    def conv(text):
        name, sep, value = str(text).partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not value:
            raise argparse.ArgumentTypeError(f"must be NAME={what}, not {text!r}")
        if rest_check is not None:
            try:
                rest_check(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be NAME={what}, not {text!r}") from None
        return name, value
    conv.__name__ = "NAME=" + what
    return conv


def _hl_labels(value: str) -> tuple:
    path, sep, labels = value.rpartition(":")
    parts = [x.strip() for x in labels.split(",")] if sep else []
    if not path or len(parts) != 4 or not all(parts):
        raise ValueError(value)
    return path, parts


def add_parser(sub):
    p = sub.add_parser("macro", help="run a MAIN command macro (.cmds)",
                       description="Run a MAIN command macro: each sentence is echoed to the log with the "
                                   "kickref action taken (see README, 'kickref macro').")
    p.add_argument("macro_file", metavar="FILE.cmds", help="the macro")
    p.add_argument("--model", required=True, help="model: PDB or mmCIF")
    p.add_argument("--data", help="reflections (MTZ or SF-mmCIF), optional")
    p.add_argument("--hydrogens", choices=["add", "keep", "remove"], default="add",
                   help="riding hydrogens: add (default, as refine), keep the model's, or remove")
    p.add_argument("--map", action="append", default=[], metavar="NAME=FILE", type=_named("FILE"),
                   help="a CCP4/MRC map in slot NAME (repeatable), e.g. MAP_ORIG=mir.ccp4")
    p.add_argument("--map-coeffs", action="append", default=[], metavar="NAME=FILE:F,PHI",
                   type=_named("FILE:F,PHI", parse_map_coefficients_argument),
                   help="map coefficients in slot NAME (repeatable)")
    p.add_argument("--hl", action="append", default=[], metavar="NAME=FILE:HLA,HLB,HLC,HLD",
                   type=_named("FILE:HLA,HLB,HLC,HLD", _hl_labels),
                   help="experimental phases (Hendrickson-Lattman coefficients) as a map in slot NAME")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", type=_named("VALUE"),
                   help="a macro variable set before the macro runs (repeatable; a later 'set vari' wins)")
    p.add_argument("--monlib", metavar="DIR", help="CCP4 monomer library (default $CLIBD_MON, else built-in)")
    p.add_argument("--ligand", action="append", default=[], metavar="CIF", help="extra dictionary (repeatable)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="restrain residues with no dictionary by non-bonded terms only")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed of the kicks, ≥ 0 (default 0)")
    p.add_argument("--lenient", action="store_true",
                   help="recognised MAIN commands kickref does not do become warnings (default: errors)")
    p.add_argument("-o", "--output", default="macro", metavar="PREFIX",
                   help="output prefix: PREFIX.pdb .cif .json .log, PREFIX_<MAP>.ccp4 for maps made")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    return p


def _hl_map(value, model, data):
    """--hl: the experimental-phase map m·|Fo|·e^{iφ_best}; |Fo| from the HL file when it has
    them, else from ``data`` (--data)."""
    from ..io.maps import map_from_hendrickson_lattman
    path, labels = _hl_labels(value)
    return map_from_hendrickson_lattman(path, labels, model.cell, model.spacegroup, f_obs=data)


def run(args):
    from ..io.maps import write_ccp4_map
    from ..io.outputs import write_model_files
    from ..macro.interpreter import Interpreter
    from ..session import Session
    lines = []
    show_warnings(lines)

    def log(s):
        lines.append(s)
        if not args.quiet:
            print(s, flush=True)

    full = output_paths(args.output)
    paths = {k: full[k] for k in ("pdb", "cif", "json", "log")}
    prefix = full["pdb"].removesuffix(".pdb")
    inputs = ([args.model, args.data, args.macro_file] + [v for _, v in args.map] + list(args.ligand)
              + [v.rpartition(":")[0] for _, v in args.map_coeffs + args.hl])
    stop = StopFlag()
    with OutputSet(paths, inputs, lock_path(full["pdb"])) as out, stop:
        lines.append(f"command: {args.command_line}")
        maps = {name: value for name, value in args.map}
        maps.update({name: parse_map_coefficients_argument(value) for name, value in args.map_coeffs})
        session = Session(args.model, args.data, maps=maps, variables=dict(args.var), monlib=args.monlib,
                          ligands=args.ligand, allow_unknown=args.allow_unknown, hydrogens=args.hydrogens,
                          seed=args.seed, log=log, stop=stop, lenient=args.lenient)
        for name, value in args.hl:
            session.add_map(name, _hl_map(value, session.model, args.data))
        Interpreter(session).run_file(args.macro_file)
        made = list(session.made_maps) + (["MAP_COMBINED"] if "MAP_COMBINED" in session.maps else [])
        for name in made:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            out.add("map:" + name, f"{prefix}_{safe}.ccp4")
        summary = {"program": "kickref", "mode": "macro", "macro": args.macro_file, "variables": session.variables,
                   "keys": {k: int(m.sum()) for k, m in session.keys.items()}, "minimize": session.history,
                   "maps": {name: out.paths["map:" + name] for name in made}, "interrupted": bool(stop)}
        with stop.deferred():
            write_model_files(session.model, out)
            for name in made:
                write_ccp4_map(session.maps[name], out.temp("map:" + name))
            write_text_atomic(out.temp("log"), "\n".join(lines) + "\n")
            write_json(out.temp("json"), summary)
            written = out.commit()
        print("wrote " + ", ".join(written.values()), file=sys.stdout)
    return stop.exit_code
