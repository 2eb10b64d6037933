"""``kickref geometry MODEL``: validate the model's stereochemistry against its restraints.

Prints RMSD and RMSZ per restraint kind and the worst outliers (atoms, ideal, actual, Z);
``--json FILE`` also writes them as JSON (``-`` for standard output).
"""
from __future__ import annotations

import json
import sys

from ..io.files import check_output_paths, json_ready, write_text_atomic
from ..io.models import read_model
from .common import integer

FORMATS = {"bond": "{:.4f}", "angle": "{:.3f}", "torsion": "{:.2f}", "plane": "{:.4f}",
           "chiral": "{:.3f}", "nonbonded": "{:.3f}", "b_similarity": "{:.2f}",
           "adp_rigid_bond": "{:.4f}", "adp_similarity": "{:.4f}", "adp_kl": "{:.4f}"}


def add_parser(subparsers):
    p = subparsers.add_parser(
        "geometry", help="restraint statistics and worst outliers of a model",
        description="RMSD and RMSZ per restraint kind and the worst outliers. Library: "
                    "--monlib, else $CLIBD_MON, else kickref's built-in set.")
    p.add_argument("model", help="coordinate file (PDB or mmCIF, may be gzipped)")
    p.add_argument("--monlib", metavar="DIR", help="CCP4 monomer library directory")
    p.add_argument("--ligand", metavar="FILE.cif", action="append", default=[],
                   help="restraint dictionary for a ligand (repeatable; overrides the library)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="restrain residues with no dictionary by non-bonded terms only")
    p.add_argument("--hydrogens", choices=["keep", "remove"], default="keep",
                   help="keep the model's hydrogens or remove them (default keep)")
    p.add_argument("--outliers", type=integer(0), default=20, metavar="N",
                   help="number of worst outliers to list, ≥ 0 (default 20)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    return p


def run(args) -> int:
    from ..restraints import KINDS, build_restraints
    if args.json and args.json != "-":
        check_output_paths([args.json], [args.model] + list(args.ligand))
    model = read_model(args.model, hydrogens=args.hydrogens)
    R = build_restraints(model, monlib_dir=args.monlib, ligands=args.ligand,
                         allow_unknown=args.allow_unknown, hydrogens=args.hydrogens)
    stats = R.statistics()
    outliers = R.outliers(n=args.outliers)
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    print(f"model: {args.model} ({model.n_atoms} atoms)", file=out)
    for line in R.log:
        print(line, file=out)
    if R.links:
        n = {o: sum(1 for l in R.links if l["origin"] == o)
             for o in ("record", "polymer", "distance")}
        print(f"links: {n['record']} from records, {n['polymer']} stretched polymer links, "
              f"{n['distance']} found by distance; "
              + ", ".join(f"{k} {v}" for k, v in sorted(R.link_counts.items())), file=out)
    print("", file=out)
    has_h = bool(model.is_hydrogen.any())
    head = f"{'restraint':<16}{'n':>8}{'rmsd':>12}  {'unit':<4}{'rmsz':>8}"
    if has_h:
        head = (f"{'':<16}{'all atoms':^28}  {'':<4}{'non-H atoms':^28}\n"
                f"{'restraint':<16}{'n':>8}{'rmsd':>12}{'rmsz':>8}  {'unit':<4}{'n':>8}{'rmsd':>12}{'rmsz':>8}")
    print(head, file=out)
    for kind in KINDS:
        s = stats[kind]
        if s["n"] == 0 and kind.startswith("adp"):
            continue
        rmsd = FORMATS[kind].format(s["rmsd"])
        if has_h:
            rmsd_h = FORMATS[kind].format(s["rmsd_non_h"])
            print(f"{kind:<16}{s['n']:>8}{rmsd:>12}{s['rmsz']:>8.3f}  {s['unit']:<4}"
                  f"{s['n_non_h']:>8}{rmsd_h:>12}{s['rmsz_non_h']:>8.3f}", file=out)
        else:
            print(f"{kind:<16}{s['n']:>8}{rmsd:>12}  {s['unit']:<4}{s['rmsz']:>8.3f}", file=out)
    print(f"(nonbonded: over the {stats['nonbonded']['n']} contacts closer than d0 among "
          f"{stats['nonbonded']['n_pairs']} listed pairs)", file=out)
    print("", file=out)
    print(f"{len(outliers)} worst outliers:", file=out)
    print(f"{'kind':<10}{'ideal':>10}{'actual':>10}{'Z':>8}  atoms", file=out)
    for o in outliers:
        note = f"  ({o['note']})" if o["note"] else ""
        print(f"{o['kind']:<10}{o['ideal']:>10.3f}{o['actual']:>10.3f}{o['z']:>8.2f}  "
              f"{' - '.join(o['atoms'])}{note}", file=out)
    if args.json:
        doc = {"model": str(args.model), "n_atoms": model.n_atoms,
               "library": R.library.source, "log": R.log,
               "statistics": stats, "outliers": outliers,
               "links": [{"link_id": l["link_id"], "origin": l["origin"],
                          "atoms": [model.atom_label(i) for i in l["atoms"]]} for l in R.links],
               "link_counts": R.link_counts,
               "unknown_residues": R.unknown_residues}
        text = json.dumps(json_ready(doc), indent=1, ensure_ascii=False) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            write_text_atomic(args.json, text)
    return 0
