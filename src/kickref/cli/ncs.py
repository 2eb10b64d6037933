"""``kickref ncs MODEL``: the NCS groups of a model (chains, operators, RMSD, identity)."""
from __future__ import annotations

import json
import sys

from .. import api
from ..io.files import check_output_paths, json_ready, write_text_atomic
from ..xtal.ncs import format_groups


def add_parser(subparsers):
    p = subparsers.add_parser(
        "ncs", help="NCS groups of a model: equivalent chains and their operators",
        description="Groups of equivalent polymer chains found by sequence alignment and superposition "
                    "(gemmi), or built for --ncs-groups; per copy: aligned residues, identity, main-chain "
                    "RMSD, mean local RMS (5-residue windows) and the operator reference -> copy.")
    p.add_argument("model", help="coordinate file (PDB or mmCIF, may be gzipped)")
    p.add_argument("--ncs-groups", metavar="'A,B;C,D'|FILE.json",
                   help="given groups (first chain of each: the reference) instead of detection")
    p.add_argument("--json", metavar="FILE", help="also write the groups as JSON ('-': stdout)")
    return p


def run(args) -> int:
    if args.json and args.json != "-":
        check_output_paths([args.json], [args.model])
    groups = api.ncs_groups(args.model, args.ncs_groups)
    out = sys.stderr if args.json == "-" else sys.stdout
    for line in format_groups(groups):
        print(line, file=out)
    if args.json:
        text = json.dumps(json_ready({"model": args.model, "groups": [g.as_dict() for g in groups]}), indent=1)
        if args.json == "-":
            print(text)
        else:
            write_text_atomic(args.json, text + "\n")
    return 0
