"""``kickref ncs MODEL [DATA]``: the NCS groups of a model (chains, operators, RMSD, identity);
with ``--average PREFIX`` the NCS-averaged map (operators refined against the map first); with
``--other-form MODEL2 DATA2`` the molecule's density averaged across two crystal forms."""
from __future__ import annotations

import json
import sys

from .. import api
from ..core.errors import KickrefError
from ..io.files import check_output_paths, json_ready, write_text_atomic
from ..io.maps import write_ccp4_map, write_map_coefficients
from ..xtal.ncs import format_groups
from .common import integer, map_coeffs_arg, parse_map_coefficients_argument, positive


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
    g = p.add_argument_group("density averaging")
    g.add_argument("data", nargs="?", help="reflections: average the sigmaA 2mFo-DFc map of MODEL")
    g.add_argument("--map", metavar="FILE", help="CCP4/MRC map to average instead")
    g.add_argument("--map-coeffs", metavar="FILE:F,PHI", type=map_coeffs_arg, help="map coefficients to average instead")
    g.add_argument("--average", metavar="PREFIX",
                   help="write the NCS-averaged map: PREFIX.ccp4 (whole cell) and, with DATA, PREFIX.mtz "
                        "(FWT/PHWT: averaged; the other columns as 'kickref maps')")
    g.add_argument("--mask-radius", type=positive, default=3.0, metavar="Å",
                   help="radius of each copy's mask around its atoms, > 0 (default 3)")
    g.add_argument("--overlap", choices=["nearest", "exclude"], default="nearest",
                   help="mask points claimed by two copies: to the nearest atom's copy (default) or not averaged")
    g.add_argument("--flatten", action="store_true",
                   help="set points outside every mask to their mean (always with --cycles)")
    g.add_argument("--cycles", type=integer(0), default=0, metavar="N",
                   help="with DATA: N cycles of averaging, Fourier transform, |Fobs| with the averaged "
                        "phases, solvent flattening (MAIN's cyclic averaging; default 0: average once)")
    g.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="average with the superposition operators (default: refine them against the map first)")
    x = p.add_argument_group("two crystal forms (multi-crystal averaging)")
    x.add_argument("--other-form", nargs=2, metavar=("MODEL2", "DATA2|MAP2"),
                   help="average MODEL's molecule across its crystal and a second form (its model and its "
                        "reflections or CCP4/MRC map); with --average PREFIX writes PREFIX_1.ccp4 and "
                        "PREFIX_2.ccp4 (and PREFIX_N.mtz for forms given as data)")
    x.add_argument("--form-chains", metavar="CHAIN1,CHAIN2",
                   help="the molecule's chain in each form (default: each model's first polymer chain)")
    x.add_argument("--weights", default="equal", metavar="equal|fom|W1,W2",
                   help="weights of the two forms: equal (default), fom (mean figure of merit; data for both) or numbers")
    return p


def run_two_forms(args) -> int:
    """``--other-form``: multi-crystal averaging (:func:`kickref.api.multi_crystal_average`)."""
    if not args.average:
        raise KickrefError("--other-form needs --average PREFIX")
    if args.cycles or args.ncs_groups:
        raise KickrefError("--other-form averages one molecule across two forms: no --cycles or --ncs-groups")
    first = args.data or args.map or (parse_map_coefficients_argument(args.map_coeffs) if args.map_coeffs else None)
    if first is None:
        raise KickrefError("--other-form: the first form needs DATA, --map or --map-coeffs")
    model2, source2 = args.other_form
    is_map = lambda p: isinstance(p, str) and p.lower().endswith((".ccp4", ".map", ".mrc", ".ccp4.gz", ".map.gz", ".mrc.gz"))
    outputs = [f"{args.average}_{i}.ccp4" for i in (1, 2)]
    outputs += [f"{args.average}_{i}.mtz" for i, src in ((1, args.data), (2, source2)) if src and not is_map(src)]
    outputs += [args.json] if args.json and args.json != "-" else []
    inputs = [args.model, args.data, args.map, model2, source2, args.map_coeffs and args.map_coeffs.rpartition(":")[0]]
    check_output_paths(outputs, [p for p in inputs if p])
    chains = (None, None)
    if args.form_chains:
        chains = tuple(c.strip() or None for c in args.form_chains.split(","))
        if len(chains) != 2:
            raise KickrefError("--form-chains: two chain names, e.g. A,B")
    weights = args.weights
    if weights not in ("equal", "fom"):
        try:
            weights = [float(v) for v in weights.split(",")]
        except ValueError:
            raise KickrefError(f"--weights: equal, fom or two numbers, not {args.weights!r}") from None
    res = api.multi_crystal_average([args.model, model2], [first, source2], chains=chains,
                                    mask_radius=args.mask_radius, optimize=args.optimize, overlap=args.overlap,
                                    outside="flatten" if args.flatten else "keep", weights=weights)
    out = sys.stderr if args.json == "-" else sys.stdout
    op = res.operator
    print(f"forms: chain {op['chains'][0]} -> chain {op['chains'][1]}, {op['n_atoms_matched']} matched atoms, "
          f"superposition RMSD {op['superposition_rmsd']:.3f} Å", file=out)
    if "cc_end" in op:
        print(f"operator form 1 -> form 2: CC {op['cc_start']:.4f} -> {op['cc_end']:.4f}, rotation change "
              f"{op['rotation_change_deg']:.3f}°, shift {op['translation_change']:.3f} Å ({op['n_points']} points)",
              file=out)
    written = []
    for i, (m, mc, s) in enumerate(zip(res.maps, res.map_coefficients, res.stats), 1):
        print(f"form {i}: mask {100 * s['mask_fraction']:.1f}% of the cell, overlaps {100 * s['overlap_fraction']:.2f}%, "
              f"weight {res.weights[i - 1]:.3f}; CC with the other form's density "
              f"{s['groups'][0]['ncs_cc'][2 - i]:.3f} (before averaging)", file=out)
        written.append(write_ccp4_map(m, f"{args.average}_{i}.ccp4"))
        if mc is not None:
            write_map_coefficients(mc, f"{args.average}_{i}.mtz")
            written.append(f"{args.average}_{i}.mtz")
    print("wrote " + ", ".join(str(w) for w in written), file=out)
    if args.json:
        text = json.dumps(json_ready({"models": [args.model, model2], **res.as_dict()}), indent=1)
        if args.json == "-":
            print(text)
        else:
            write_text_atomic(args.json, text + "\n")
    return 0


def run(args) -> int:
    if args.other_form:
        return run_two_forms(args)
    inputs = [args.model, args.data, args.map, args.map_coeffs and args.map_coeffs.rpartition(":")[0]]
    outputs = [args.json] if args.json and args.json != "-" else []
    if args.average:
        outputs += [f"{args.average}.ccp4"] + ([f"{args.average}.mtz"] if args.data else [])
    elif args.data or args.map or args.map_coeffs:
        raise KickrefError("DATA, --map and --map-coeffs are for --average PREFIX")
    check_output_paths(outputs, [p for p in inputs if p])
    out = sys.stderr if args.json == "-" else sys.stdout
    summary = {"model": args.model}
    if args.average:
        map_coeffs = parse_map_coefficients_argument(args.map_coeffs) if args.map_coeffs else None
        res = api.ncs_average(args.model, args.data, map_path=args.map, map_coeffs=map_coeffs,
                              groups=args.ncs_groups, mask_radius=args.mask_radius, optimize=args.optimize,
                              overlap=args.overlap, outside="flatten" if args.flatten or args.cycles else "keep",
                              cycles=args.cycles)
        groups = res.groups
        summary.update(res.as_dict())
    else:
        groups = api.ncs_groups(args.model, args.ncs_groups)
    for line in format_groups(groups):
        print(line, file=out)
    if args.average:
        for r in res.operators:
            print(f"operator {groups[r['group']].chains[0]} -> {r['chain']}: CC {r['cc_start']:.4f} -> "
                  f"{r['cc_end']:.4f}, rotation change {r['rotation_change_deg']:.3f}°, shift "
                  f"{r['translation_change']:.3f} Å ({r['n_points']} points)", file=out)
        s = res.stats
        print(f"averaged: mask {100 * s['mask_fraction']:.1f}% of the cell, overlaps "
              f"{100 * s['overlap_fraction']:.2f}%; NCS CC " + "; ".join(
                  " ".join(f"{v:.3f}" for v in g["ncs_cc"][1:]) for g in s["groups"]), file=out)
        for c in s.get("cycles", []):
            print(f"cycle {c['cycle']}: averaging R {c['r_averaging']:.4f}", file=out)
        written = [write_ccp4_map(res.map, f"{args.average}.ccp4")]
        if res.map_coefficients is not None:
            write_map_coefficients(res.map_coefficients, f"{args.average}.mtz")
            written.append(f"{args.average}.mtz")
        print("wrote " + ", ".join(written), file=out)
    else:
        summary["groups"] = [g.as_dict() for g in groups]
    if args.json:
        text = json.dumps(json_ready(summary), indent=1)
        if args.json == "-":
            print(text)
        else:
            write_text_atomic(args.json, text + "\n")
    return 0
