"""kickref refine MODEL DATA -o PREFIX: restrained refinement against X-ray data."""
from __future__ import annotations

import sys
import time

from .. import api
from ..core.errors import KickrefError
from ..io.files import write_text_atomic
from ..io.maps import combined_phase_columns, write_map_coefficients
from ..io.outputs import OutputSet, lock_path, output_paths
from ..refinement.minimize import StopFlag
from ..refinement.protocol import RefineOptions
from ..refinement.weighting import BOND_RMSD_ATOMIC, BOND_RMSD_MAP, BOND_RMSD_REFINE
from ..api import fmt_r
from .common import (add_input_arguments, add_scaling_arguments, count, input_paths, integer,
                     kick_range_arg, load_options, map_coeffs_arg, map_hl_arg, non_negative, number,
                     parse_map_coefficients_argument, parse_map_hl_argument, positive, scale_shells_value,
                     seed_value, selection_arg, show_warnings, twin_law_arg, write_json)

D = RefineOptions()          # the defaults shown and used by the command line


def add_parser(sub):
    p = sub.add_parser("refine", help="refine coordinates, ADPs and occupancies against X-ray data",
                       description="Restrained refinement (after MAIN): macro-cycles of coordinate, ADP and "
                                   "occupancy minimization against an ML or LS amplitude target, with the "
                                   "X-ray weight set from a bond-RMSD target.")
    add_input_arguments(p)
    for a in p._actions:
        if a.dest == "data":                 # optional for real-space refinement toward a map
            a.nargs = "?"
            a.help = "reflections (MTZ or SF-mmCIF); optional with --map/--map-coeffs/--map-hl"
    p.set_defaults(hydrogens="add")
    for a in p._actions:
        if a.dest == "hydrogens":
            a.choices = ["keep", "remove", "add"]
            a.help = ("add: place riding hydrogens from the library, as REFMAC and servalcat do (default); "
                      "keep: only the model's own hydrogens; remove: none")
    add_scaling_arguments(p)
    p.add_argument("-o", "--output", default="refined", metavar="PREFIX",
                   help="output prefix: PREFIX.pdb .cif .mtz .json .log .png (default 'refined')")
    g = p.add_argument_group("library")
    g.add_argument("--monlib", metavar="DIR", help="CCP4 monomer library (default $CLIBD_MON, else built-in)")
    g.add_argument("--ligand", action="append", default=[], metavar="CIF", help="extra dictionary (repeatable)")
    g.add_argument("--allow-unknown", action="store_true",
                   help="restrain residues with no dictionary by non-bonded terms only")
    g = p.add_argument_group("target and weights")
    g.add_argument("--target", choices=["ml-free-kick", "ml", "ls", "difference-map", "mli"], default=D.target,
                   help="ml-free-kick: likelihood with D, S estimated on the work set with a kicked model "
                        "(MAIN's default); ml: D, S from the test set (kickref's default; free kick when the test set has < 50 reflections); ls: least squares; "
                        "mli: intensity likelihood (intensity data: the measured I, SIGI with the error integrated out; D, S fitted by it); "
                        "difference-map: follow the Fo-Fc map, re-phased every --rephase-every steps")
    g.add_argument("--twin", action="store_const", const="auto", default=None,
                   help="twin refinement: twin laws from the lattice, L-test and H-test reported, twin "
                        "fractions refined with the twinned intensity likelihood, laws whose fraction stays "
                        "below 0.03 dropped; R factors on twinned amplitudes")
    g.add_argument("--twin-law", action="append", default=[], metavar="LAW", type=twin_law_arg,
                   help="force a twin law in h,k,l (e.g. 'k,h,-l'; repeatable); implies twin refinement")
    g.add_argument("--free-kick", type=positive, default=D.free_kick, metavar="Å",
                   help=f"kick amplitude for ml-free-kick, > 0 (default {D.free_kick})")
    g.add_argument("--bond-rmsd", type=positive, metavar="Å",
                   help=f"bond RMSD (non-H) target, > 0, of the automatic data weight (default "
                        f"{BOND_RMSD_REFINE} against X-ray data (MAIN's 0.02 gave higher R-free on the shared cases), "
                        f"rising to {BOND_RMSD_ATOMIC} at atomic resolution (d_min 1.2 → 0.9 Å); {BOND_RMSD_MAP} for "
                        "--map/--map-coeffs/--dens-comb, MAIN's dens_comb value)")
    g.add_argument("--weight", type=positive, help="fixed X-ray weight, > 0 (no automatic adjustment)")
    g.add_argument("--weight-every", type=count, default=D.weight_every, metavar="N",
                   help=f"re-adjust the weight every N ≥ 1 minimizer steps (default {D.weight_every}) "
                        "and each cycle")
    g.add_argument("--adp-weight", type=non_negative, default=D.adp_weight,
                   help=f"scale of the ADP restraints, ≥ 0 (0: off; default {D.adp_weight})")
    g.add_argument("--adp-restraints", choices=["auto", "kl", "simple"], default=D.adp_restraints,
                   help="kl: KL-divergence similarity of neighbouring atoms; simple: B similarity "
                        "of bonded atoms and U similarity/rigid bond; auto (default): kl at d_min ≥ 1.2 Å, "
                        "simple at atomic resolution below (the relative KL measure is tightest for the "
                        "low-B atoms those data determine best)")
    g.add_argument("--overall-b", choices=["atoms", "scale"], default="atoms" if D.overall_b_to_atoms else "scale",
                   help="atoms (default): at each full re-phase the isotropic B of the overall scale moves "
                        "into the atoms' B (F_model unchanged); scale: it stays in the scale")
    g = p.add_argument_group("NCS (non-crystallographic symmetry)")
    g.add_argument("--ncs", choices=["auto", "on", "off"], default=D.ncs,
                   help="local NCS distance and NCS B restraints between copies found by 'kickref ncs'; "
                        "auto (default) and on: restrained when NCS groups are found (auto: measured on 4iid, "
                        "R-free lower at 3.5 and 2.3 Å)")
    g.add_argument("--ncs-groups", metavar="'A,B;C,D'|FILE.json",
                   help="NCS groups (first chain of each: the reference) instead of detection")
    g.add_argument("--ncs-sigma", type=positive, default=D.ncs_sigma, metavar="Å",
                   help=f"sigma of local NCS distance differences, > 0 (default {D.ncs_sigma})")
    g.add_argument("--ncs-b-sigma", type=positive, default=D.ncs_b_sigma, metavar="Å²",
                   help=f"sigma of NCS B differences after the per-copy offset, > 0 (default {D.ncs_b_sigma})")
    g = p.add_argument_group("what is refined")
    g.add_argument("--adp", choices=["auto", "keep", "iso", "aniso"], default=D.adp,
                   help="ADP model: keep each atom's kind, all isotropic, all anisotropic, or auto "
                        "(default: all non-H atoms anisotropic when at least half of them come "
                        "anisotropic, else keep)")
    g.add_argument("--refine-occupancy", action="store_true",
                   help="also refine occupancies of partial single-conformer ligands and waters")
    g.add_argument("--occupancy-group", action="append", default=[], metavar="ID:SEL",
                   help="an occupancy group: the atoms of selection SEL share one refined occupancy "
                        "(repeatable; a repeated ID adds atoms), e.g. '1://A/*/*:A'")
    g.add_argument("--occupancy-complete", action="append", default=[], metavar="ID,ID,...",
                   help="occupancy groups whose occupancies sum to exactly 1 (repeatable)")
    g.add_argument("--occupancy-incomplete", action="append", default=[], metavar="ID,ID,...",
                   help="occupancy groups whose occupancies sum to at most 1 (repeatable)")
    g.add_argument("--occupancy-file", metavar="FILE",
                   help="occupancy groups from a file: lines 'group ID SEL', 'complete ID ID', "
                        "'incomplete ID ...' (added to the options above)")
    g.add_argument("--tls", metavar="chain|auto|FILE",
                   help="TLS groups, U = U_TLS + residual isotropic B: chain (one group per chain), auto "
                        "(chains with >= 10 polymer residues) or a file of selections, one group a line "
                        "('SEL' or 'ID: SEL'); each cycle refines T, L, S first, then the residual B")
    g.add_argument("--tls-steps", type=count, default=D.tls_steps,
                   help=f"L-BFGS steps per cycle for the TLS tensors, ≥ 1 (default {D.tls_steps})")
    g.add_argument("--fix-xyz", action="store_true", help="do not refine coordinates")
    g.add_argument("--fix-b", action="store_true", help="do not refine ADPs")
    g.add_argument("--select", metavar="SEL", type=selection_arg,
                   help="gemmi selection of the atoms that move (MINIMIZE); default all (REFINE)")
    g = p.add_argument_group("cycles")
    g.add_argument("--cycles", type=count, default=D.cycles,
                   help=f"macro-cycles at most, ≥ 1 (default {D.cycles}; stops earlier when R-work settles)")
    g.add_argument("--convergence", type=number(0.0, 1.0), default=D.convergence, metavar="DR",
                   help=f"stop once R-work changes by less than DR over a cycle, after at least "
                        f"{D.min_cycles} cycles, 0 ≤ DR ≤ 1 (default {D.convergence}; 0: always run --cycles)")
    g.add_argument("--xyz-steps", type=count, default=D.xyz_steps,
                   help=f"L-BFGS steps per cycle for coordinates and ADPs, ≥ 1 (default {D.xyz_steps})")
    g.add_argument("--adp-steps", type=count, default=D.adp_steps,
                   help=f"ADP steps per cycle with --strategy alternate, ≥ 1 (default {D.adp_steps})")
    g.add_argument("--strategy", choices=["auto", "combined", "alternate"], default=D.strategy,
                   help="combined: coordinates and ADPs in one minimization; alternate: in turn; "
                        f"auto (default): alternate for a cycle that starts with R-work > {D.far_r_work} "
                        "(far from the data), combined otherwise")
    g.add_argument("--rephase-every", type=count, default=D.rephase_every, metavar="N",
                   help=f"re-phase (Fc, scale, D/S) every N ≥ 1 steps (default {D.rephase_every})")
    g.add_argument("--seed", type=seed_value, default=D.seed, help="random seed (free kick, kicks), ≥ 0")
    g = p.add_argument_group("kicking (MAIN fast cooling)")
    g.add_argument("--cool", type=integer(0), default=D.cool, metavar="N",
                   help="N ≥ 0 cooling cycles of kick -> minimize -> re-phase instead of plain cycles")
    g.add_argument("--kick", default="0.8:0", metavar="START[:END]", type=kick_range_arg,
                   help="coordinate kick amplitude in Å, ≥ 0, decreasing over the cycles (default 0.8:0)")
    g.add_argument("--kick-b", default="5:0", metavar="START[:END]", type=kick_range_arg,
                   help="B-value kick amplitude in Å², ≥ 0 (default 5:0)")
    g.add_argument("--kick-law", choices=["linear", "square", "exponential"], default="linear",
                   help="how the kick amplitudes decrease (default linear)")
    g = p.add_argument_group("multi-start (kicked trajectories on a Dask cluster; needs dask[distributed])")
    g.add_argument("--starts", type=count, default=1, metavar="N",
                   help="N ≥ 1 kicked trajectories (needs --cool), seeds --seed … --seed+N-1, run in parallel; "
                        "the one with the lowest X-ray target on the work set (never R-free) is written to "
                        "PREFIX.*, all of them to PREFIX_starts/ (default 1)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="--starts: address of a running Dask scheduler (default: a local cluster)")
    g.add_argument("--workers", type=count, metavar="N",
                   help="--starts: local cluster of N single-threaded workers (default: one per core)")
    g = p.add_argument_group("maps (real-space refinement, density combination)")
    g.add_argument("--map", metavar="FILE", help="CCP4/MRC map: refine toward it (no data needed)")
    g.add_argument("--map-coeffs", metavar="FILE:F,PHI", type=map_coeffs_arg, help="map coefficients (MTZ) to refine toward")
    g.add_argument("--map-hl", metavar="FILE:HLA,HLB,HLC,HLD", type=map_hl_arg,
                   help="Hendrickson-Lattman coefficients (experimental phases): refine toward the best map "
                        "m|Fo|exp(i phi_best); |Fo| from DATA when given, else from FILE's own F column")
    g.add_argument("--map-mode", choices=["interpolation", "convolution"], default="interpolation",
                   help="density target by tricubic interpolation at atoms or by model-density convolution")
    g.add_argument("--steps", type=count, default=100,
                   help="minimizer steps for map targets, ≥ 1 (default 100)")
    g.add_argument("--dens-comb", action="store_true",
                   help="partial-model refinement by density combination with the --map (MAIN dens_comb)")
    g.add_argument("--part", metavar="SEL", type=selection_arg,
                   help="dens-comb: atoms refined and combined (default all)")
    g.add_argument("--envelope", metavar="SEL", type=selection_arg,
                   help="dens-comb: atoms defining the model envelope")
    g.add_argument("--rad-mask", type=positive, default=4.5, help="dens-comb: envelope radius, Å, > 0 (4.5)")
    g.add_argument("--rad-comb", type=positive, default=2.8,
                   help="dens-comb: radius of model density replacing the map, Å, > 0 (2.8)")
    g.add_argument("--weight-fc", type=positive, default=1.1,
                   help="dens-comb: weight of the Fc map, > 0 (1.1)")
    g.add_argument("--dens-scale", type=positive, default=1.0, help="dens-comb: density scale, > 0 (1)")
    g.add_argument("--recombine-every", type=count, default=15,
                   help="dens-comb: steps between combinations, ≥ 1 (15)")
    g.add_argument("--combination", choices=["real-space", "phase"], default="real-space",
                   help="dens-comb: real-space (MAIN's density pasting, default) or phase (combine the "
                        "--map-hl phase probabilities with the model's sigmaA phases; needs DATA)")
    g.add_argument("--no-calibrate-hl", dest="calibrate_hl", action="store_false",
                   help="dens-comb --combination phase: use the --map-hl coefficients as they are (default: "
                        "scaled per resolution shell by the maximum-likelihood factor judged by the model's "
                        "sigmaA phases)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar, less output")
    return p


class ProgressBar:
    """A one-line progress bar on stderr, only when stderr is a terminal. Called with the
    evaluations so far and the macro-cycle under way; the total is re-estimated at the start of
    each cycle (evaluations so far + the mean per finished cycle × the cycles still possible),
    since the run may stop early on convergence; :meth:`close` draws 100 %. Called with cycle 0
    only, it counts ``cycles`` × ``per_cycle`` items (``unit``: what they are)."""

    def __init__(self, cycles: int, per_cycle: int, enabled: bool, unit: str = "evaluations"):
        self.unit = unit
        self.cycles = max(1, cycles)
        self.per_cycle = max(1, per_cycle)
        self.total = self.cycles * self.per_cycle
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.n = 0
        self.cycle = 0
        self.first = None                    # evaluations when cycle 1 began

    def __call__(self, n, cycle: int = 0):
        self.n = n
        if cycle != self.cycle:
            self.cycle = cycle
            if cycle == 1:
                self.first = n
            elif cycle > 1 and self.first is not None:
                self.per_cycle = max(1, (n - self.first) / (cycle - 1))
            self.total = n + self.per_cycle * max(1, self.cycles - cycle + 1)
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < 0.2:
            return
        self.last = now
        self._draw(min(1.0, n / self.total), now)

    def _draw(self, f, now):
        bar = "#" * int(30 * f) + "-" * (30 - int(30 * f))
        sys.stderr.write(f"\r[{bar}] {100 * f:5.1f}%  {self.n} {self.unit}  {now - self.t0:6.1f}s")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            self._draw(1.0, time.perf_counter())
            sys.stderr.write("\n")
            sys.stderr.flush()


def run(args):
    lines = []                               # the log file's lines
    show_warnings(lines)
    if args.combination == "phase" and not (args.dens_comb and args.map_hl and args.data):
        raise KickrefError("--combination phase needs --dens-comb, --map-hl and DATA")
    if args.map or args.map_coeffs or args.map_hl:
        return run_map(args, lines)
    if not args.data:
        raise KickrefError("refine needs DATA (reflections), or --map/--map-coeffs/--map-hl for a map target")
    if args.starts > 1:
        return run_starts(args)
    stop = StopFlag()
    if args.cool:
        bar = ProgressBar(args.cool, args.xyz_steps * 6 // 5, not args.quiet)
    else:
        bar = ProgressBar(args.cycles, (args.xyz_steps + args.adp_steps) * 6 // 5, not args.quiet)

    def log(s):
        if not args.quiet or s.startswith(" cycle") or s.lstrip()[:1].isdigit():
            bar.enabled and sys.stderr.write("\r" + " " * 80 + "\r")
            print(s, flush=True)

    _, written = api.refine_to_files(args.model, args.data, args.output, command=args.command_line, lines=lines,
                                     log=log, progress=bar, stop=stop, **refine_arguments(args))
    print("wrote " + ", ".join(written.values()))
    return stop.exit_code


def run_starts(args):
    """--starts N: N kicked trajectories on Dask, the best by the work-set target to PREFIX.*."""
    from ..batch.multistart import run_starts as run
    if not args.cool:
        raise KickrefError("--starts needs kicked trajectories: give --cool N (e.g. --cool 5 --kick 0.3:0)")
    res = run(args.model, args.data, args.output, args.starts, refine_arguments(args), command=args.command_line,
              scheduler=args.scheduler, workers=args.workers)
    for r in res["rows"]:
        mark = "*" if r["candidate"] == res["best"] else " "
        if r.get("status") == "ok":
            print(f"{mark} {r['candidate']:<8} {r['target_kind']} {r['work_target']:.1f}  R-work {fmt_r(r['r_work'])}  "
                  f"R-free {fmt_r(r['r_free'])}  bonds {r['rmsd_bond']:.4f} Å")
        else:
            print(f"  {r['candidate']:<8} error: {r.get('error')}")
    print(f"best by the work-set target: {res['best']}; wrote " + ", ".join(res["files"].values()))
    return 0


def refine_arguments(args) -> dict:
    """The keyword arguments of :func:`kickref.api.refine` (library, data columns, options) that
    parsed ``kickref refine`` arguments stand for."""
    opts = dict(target=args.target, cycles=args.cycles, xyz_steps=args.xyz_steps, adp_steps=args.adp_steps,
                rephase_every=args.rephase_every, weight_every=args.weight_every,
                bond_rmsd=args.bond_rmsd,
                weight=args.weight, adp_weight=args.adp_weight, adp=args.adp,
                adp_restraints=args.adp_restraints, strategy=args.strategy,
                refine_occupancy=args.refine_occupancy, fix_xyz=args.fix_xyz, fix_b=args.fix_b,
                selection=args.select, free_kick=args.free_kick, seed=args.seed,
                scale_shells=scale_shells_value(args.scale_shells), bulk_solvent=not args.no_bulk_solvent,
                cool=args.cool, kick=args.kick, kick_b=args.kick_b,
                kick_law=args.kick_law, convergence=args.convergence,
                overall_b_to_atoms=args.overall_b == "atoms", tls=_tls_option(args.tls),
                tls_steps=args.tls_steps, twin=args.twin, twin_laws=tuple(args.twin_law),
                **_occupancy_options(args))
    return dict(monlib=args.monlib, ligands=list(args.ligand), allow_unknown=args.allow_unknown,
                **load_options(args), **opts)


def _tls_option(value):
    """--tls: None, 'chain', 'auto', or the (id, selection) groups of a file."""
    if value in (None, "chain", "auto"):
        return value
    from ..io.groups import read_tls_groups
    return tuple(read_tls_groups(value))


def _occupancy_options(args) -> dict:
    """RefineOptions' occupancy groups and sets from --occupancy-* (file first, then options)."""
    groups, complete, incomplete = [], [], []
    if args.occupancy_file:
        from ..io.groups import read_occupancy_groups
        f = read_occupancy_groups(args.occupancy_file)
        groups, complete, incomplete = f["groups"], f["complete"], f["incomplete"]
    return {"occupancy_groups": tuple(groups + args.occupancy_group),
            "occupancy_complete": tuple(complete + args.occupancy_complete),
            "occupancy_incomplete": tuple(incomplete + args.occupancy_incomplete)}


def run_map(args, lines):
    """Real-space refinement toward a map, or density combination (--dens-comb)."""
    from ..io.outputs import write_model_files

    def log(s):
        lines.append(s)
        if not args.quiet:
            print(s, flush=True)

    map_coeffs = None
    if args.map_coeffs:
        try:
            map_coeffs = parse_map_coefficients_argument(args.map_coeffs)
        except ValueError as e:
            raise KickrefError(str(e)) from None
    hl = None
    if args.map_hl:
        if args.map or args.map_coeffs:
            raise KickrefError("give one map: --map, --map-coeffs or --map-hl")
        path, labels = parse_map_hl_argument(args.map_hl)
        hl = (path, labels)                 # |Fo|: the loaded DATA (dens-comb), else read below
    full = output_paths(args.output)
    paths = {k: full[k] for k in ("pdb", "cif", "json", "log")}
    if args.dens_comb:
        paths["combined"] = full["pdb"].removesuffix(".pdb") + "_combined.ccp4"
        if args.combination == "phase":
            paths["mtz"] = full["mtz"]
    stop = StopFlag()
    with OutputSet(paths, input_paths(args), lock_path(full["pdb"])) as out, stop:
        lines.append(f"command: {args.command_line}")
        common = dict(map_coeffs=map_coeffs, hl=hl, monlib=args.monlib, ligands=args.ligand,
                      allow_unknown=args.allow_unknown, weight=args.weight, bond_rmsd=args.bond_rmsd,
                      hydrogens=args.hydrogens, log=log, stop=stop)
        if args.dens_comb:
            res = api.density_combination(args.model, args.map, args.data, part=args.part, envelope=args.envelope,
                                          rad_mask=args.rad_mask, rad_comb=args.rad_comb, weight_fc=args.weight_fc,
                                          dens_scale=args.dens_scale, steps=args.steps,
                                          recombine_every=args.recombine_every, output_map=out.temp("combined"),
                                          combination=args.combination, calibrate_hl=args.calibrate_hl,
                                          **common, **({k: v for k, v in load_options(args).items() if k != "hydrogens"}
                                                       if args.data else {}))
            model, info = res.model, {"history": res.history, "weight": res.weight, "interrupted": res.interrupted,
                                      "files": [paths["combined"]] + ([paths["mtz"]] if "mtz" in paths else [])}
        else:
            if hl is not None and args.data:
                common["hl"] = hl + (args.data,)
            res = api.refine_map(args.model, args.map, mode=args.map_mode, selection=args.select,
                                 steps=args.steps, **common)
            model, info = res.model, res.as_dict()
        summary = {"program": "kickref", "mode": "density combination" if args.dens_comb else "real-space",
                   "map": args.map or args.map_coeffs or args.map_hl, **info}
        with stop.deferred():
            write_model_files(model, out)
            if args.dens_comb and res.map_coefficients is not None:
                write_map_coefficients(res.map_coefficients, out.temp("mtz"), combined_phase_columns(res.phases))
            write_text_atomic(out.temp("log"), "\n".join(lines) + "\n")
            write_json(out.temp("json"), summary)
            written = out.commit()
        print("wrote " + ", ".join(written.values()))
    return stop.exit_code
