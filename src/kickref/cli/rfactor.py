"""kickref rfactor MODEL DATA: R-work/R-free with bulk solvent and anisotropic scaling."""
from __future__ import annotations

from .. import api
from ..api import fmt_r
from .common import (add_input_arguments, add_scaling_arguments, check_outputs, count, load_options,
                     scale_shells_value, show_warnings, write_json)


def add_parser(sub):
    p = sub.add_parser("rfactor", help="R-work, R-free, bulk solvent and scaling of a model against data",
                       description="Compute structure factors of MODEL, scale them to DATA with a flat "
                                   "bulk-solvent model and anisotropic scaling, print R factors.")
    add_input_arguments(p)
    add_scaling_arguments(p)
    p.add_argument("--shells", type=count, default=10,
                   help="rows in the per-shell table, ≥ 1 (default 10)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p


def run(args):
    show_warnings()
    check_outputs([args.json], args)
    res = api.rfactor(args.model, args.data, bulk_solvent=not args.no_bulk_solvent,
                      scale_shells=scale_shells_value(args.scale_shells), n_shells=args.shells,
                      **load_options(args))
    print(report(res.as_dict()))
    if args.json:
        write_json(args.json, res.as_dict())
    return 0


def report(res: dict) -> str:
    sc = res["scale"]
    b = sc["b_aniso"]
    lines = [
        f"model: {res['model']}",
        f"data:  {res['data']}  ({res['n_refl']} reflections, {res['n_free']} free, "
        f"{res['d_max']:.2f}-{res['d_min']:.2f} Å, {res['n_outliers']} outliers excluded)",
        f"R-work {fmt_r(res['r_work'])}  R-free {fmt_r(res['r_free'])}  R-all {fmt_r(res['r_all'])}",
        f"  (each set rescaled on its own, as cctbx does: R-work {fmt_r(res['r_work_cctbx'])}  "
        f"R-free {fmt_r(res['r_free_cctbx'])})",
        f"k_overall {sc['k_overall']:.4f}   k_sol {sc['k_sol']:.3f}   B_sol {sc['b_sol']:.1f} Å²",
        "aniso B (Å²): B11 {:.2f} B22 {:.2f} B33 {:.2f} B12 {:.2f} B13 {:.2f} B23 {:.2f}".format(*b),
    ]
    if sc.get("k_shell"):
        lines.append("shell scales: " + " ".join(f"{k:.3f}" for k in sc["k_shell"]))
    lines.append("")
    lines.append("   d_max   d_min      n  n_free  R-work  R-free")
    for r in res["shells"]:
        lines.append(f"{r['d_max']:8.2f}{r['d_min']:8.2f}{r['n']:7d}{r['n_free']:8d}  "
                     f"{fmt_r(r['r_work'])}  {fmt_r(r['r_free'])}")
    for w in res.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
