"""kickref maps MODEL DATA -o maps.mtz: σA-weighted 2mFo-DFc and mFo-DFc map coefficients."""
from __future__ import annotations

from .. import api
from ..io.maps import write_ccp4_maps, write_map_coefficients
from .common import (add_input_arguments, add_scaling_arguments, check_outputs, count, fmt_r, load_options,
                     non_negative, scale_shells_value, seed_value, show_warnings, write_json)


def add_parser(sub):
    p = sub.add_parser("maps", help="σA-weighted map coefficients (FWT/PHWT, DELFWT/PHDELWT) as MTZ",
                       description="Write 2mFo-DFc (FWT/PHWT) and mFo-DFc (DELFWT/PHDELWT) map "
                                   "coefficients, Fmodel (FC_ALL/PHIC_ALL) and FOM, with D and S estimated per "
                                   "resolution bin on the test set.")
    add_input_arguments(p)
    add_scaling_arguments(p)
    p.add_argument("-o", "--output", default="maps.mtz", help="output MTZ (default maps.mtz)")
    p.add_argument("--ccp4", metavar="PREFIX", help="also write PREFIX_2fofc.ccp4 and PREFIX_fofc.ccp4 "
                                                    "covering the model")
    p.add_argument("--include-free", action="store_true",
                   help="use test-set reflections in the maps (default: filled with DFc)")
    p.add_argument("--kick", action="store_true", help="average the maps over an ensemble of kicked models")
    p.add_argument("--kick-models", type=count, default=50,
                   help="kicked models to average, ≥ 1 (default 50)")
    p.add_argument("--kick-max", type=non_negative, default=0.8,
                   help="largest kick amplitude in Å, ≥ 0 (default 0.8)")
    p.add_argument("--seed", type=seed_value, default=1, help="random seed for --kick, ≥ 0 (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write statistics as JSON")
    return p


def run(args):
    show_warnings()
    outs = [args.output, args.json]
    if args.ccp4:
        outs += [f"{args.ccp4}_2fofc.ccp4", f"{args.ccp4}_fofc.ccp4"]
    check_outputs(outs, args)
    kick_opts = {"n_models": args.kick_models, "max_amplitude": args.kick_max, "seed": args.seed}
    res = api.compute_maps(args.model, args.data, include_free=args.include_free,
                                 bulk_solvent=not args.no_bulk_solvent,
                                 scale_shells=scale_shells_value(args.scale_shells),
                                 kick=args.kick, kick_options=kick_opts, **load_options(args))
    mc, stats = res.map_coefficients, res.statistics
    write_map_coefficients(mc, args.output)
    print(f"R-work {fmt_r(stats.r_work)}  R-free {fmt_r(stats.r_free)}")
    print(f"wrote {args.output}: FWT/PHWT, DELFWT/PHDELWT, FC_ALL/PHIC_ALL, FOM ({len(mc.hkl)} reflections, "
          f"{mc.info.get('n_missing_filled', 0)} missing filled with DFc; D, S from "
          f"{mc.info['sigmaa_from']} set in {mc.info['n_bins']} bins)")
    for w in stats.warnings:
        print(f"warning: {w}")
    if args.ccp4:
        from ..io.models import read_model
        st = read_model(args.model).structure
        for f in write_ccp4_maps(mc, args.ccp4, st):
            print(f"wrote {f}")
    if args.json:
        write_json(args.json, res.as_dict())
    return 0
