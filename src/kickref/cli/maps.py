"""kickref maps MODEL DATA -o maps.mtz: σA-weighted 2mFo-DFc and mFo-DFc map coefficients."""
from __future__ import annotations

import sys

from .. import api
from ..io.maps import ccp4_map_paths, write_ccp4_maps, write_map_coefficients
from ..io.models import read_model
from ..io.outputs import OutputSet, lock_path
from ..refinement.minimize import StopFlag
from ..api import fmt_r
from .common import (add_input_arguments, add_scaling_arguments, count, input_paths, load_options,
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
    paths = {"mtz": args.output, "json": args.json}
    if args.ccp4:
        paths.update(ccp4_map_paths(args.ccp4))
    stop = StopFlag()
    with OutputSet(paths, input_paths(args), lock_path(args.output)) as out, stop:   # see StopFlag
        kick_opts = {"n_models": args.kick_models, "max_amplitude": args.kick_max, "seed": args.seed}
        res = api.compute_maps(args.model, args.data, include_free=args.include_free,
                               bulk_solvent=not args.no_bulk_solvent,
                               scale_shells=scale_shells_value(args.scale_shells),
                               kick=args.kick, kick_options=kick_opts, **load_options(args))
        mc, stats = res.map_coefficients, res.statistics
        for w in stats.warnings:
            print(f"warning: {w}", file=sys.stderr)
        st = read_model(args.model).structure if args.ccp4 else None
        with stop.deferred():                # a second Ctrl-C/SIGTERM now: the writes finish first
            write_map_coefficients(mc, out.temp("mtz"))
            if args.ccp4:
                write_ccp4_maps(mc, {k: out.temp(k) for k in ("2fofc", "fofc")}, st)
            if args.json:
                write_json(out.temp("json"), res.as_dict())
            written = out.commit()
    print(f"R-work {fmt_r(stats.r_work)}  R-free {fmt_r(stats.r_free)}")
    print(f"wrote {args.output}: FWT/PHWT, DELFWT/PHDELWT, FC_ALL/PHIC_ALL, FOM ({len(mc.hkl)} reflections, "
          f"{mc.info.get('n_missing_filled', 0)} missing filled with DFc; D, S from "
          f"{mc.info['sigmaa_from']} set in {mc.info['n_bins']} bins)")
    for k, f in written.items():
        if k != "mtz":
            print(f"wrote {f}")
    return stop.exit_code
