"""Options shared by the subcommands that read a model and diffraction data."""
from __future__ import annotations

import sys
import warnings

from ..io.files import refuse_overwrite_inputs
from ..io.files import write_json_atomic as write_json  # noqa: F401  (used by the subcommands)


def add_input_arguments(p, data: bool = True):
    p.add_argument("model", help="model: PDB or mmCIF (gzipped or not)")
    if data:
        p.add_argument("data", help="reflections: MTZ or SF-mmCIF (.cif, .ent, gzipped or not)")
        p.add_argument("--labin", metavar="F,SIGF[,FREE]",
                       help="columns to use (amplitudes or intensities; FREE optional)")
        p.add_argument("--free-value", type=int, metavar="N",
                       help="flag value marking the test set (default: detected)")
        p.add_argument("--d-min", type=float, metavar="Å", help="high-resolution limit")
        p.add_argument("--d-max", type=float, metavar="Å", help="low-resolution limit")
    p.add_argument("--hydrogens", choices=["keep", "remove"], default="keep",
                   help="keep hydrogens of the input model (default) or remove them")


def add_scaling_arguments(p):
    p.add_argument("--scale-shells", default="auto", metavar="N|auto|0",
                   help="scale factors per resolution shell on top of k·aniso·solvent "
                        "(MAIN 'refl shel N'); auto: one per ~2000 work reflections, max 10")
    p.add_argument("--no-bulk-solvent", action="store_true", help="switch the flat bulk-solvent model off")


def scale_shells_value(v):
    if v in (None, "auto"):
        return "auto"
    n = int(v)
    return n if n > 1 else None


def load_options(args) -> dict:
    return {"labin": args.labin, "free_value": args.free_value, "d_min": args.d_min,
            "d_max": args.d_max, "hydrogens": args.hydrogens}


def check_outputs(outputs, args):
    refuse_overwrite_inputs(outputs, [getattr(args, "model", None), getattr(args, "data", None)])


def show_warnings():
    """Print Python warnings as one 'warning:' line each on stderr."""
    def fmt(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)
    warnings.showwarning = fmt


def fmt_r(v):
    return "   -  " if v is None else f"{v:.4f}"
