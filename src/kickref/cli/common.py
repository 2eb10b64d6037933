"""Options shared by the subcommands that read a model and diffraction data."""
from __future__ import annotations

import sys
import warnings

from ..io.files import check_output_paths
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


def input_paths(args) -> list:
    """The files named as inputs on the command line (outputs must not overwrite them)."""
    paths = [getattr(args, a, None) for a in ("model", "data", "map")]
    mc = getattr(args, "map_coeffs", None)
    if mc:
        paths.append(str(mc).rpartition(":")[0] or mc)
    return paths + list(getattr(args, "ligand", None) or [])


def check_outputs(outputs, args):
    """InputError unless every path of ``outputs`` can be written (see check_output_paths)."""
    check_output_paths(outputs, input_paths(args))


def show_warnings(log_lines: list | None = None):
    """Print Python warnings as one 'warning:' line each on stderr (never stdout), also appended
    to ``log_lines`` (the log file's lines)."""
    def fmt(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr, flush=True)
        if log_lines is not None:
            log_lines.append(f"warning: {message}")
    warnings.showwarning = fmt


def fmt_r(v):
    return "   -  " if v is None else f"{v:.4f}"


def parse_range(text, name: str = "kick") -> tuple:
    """'0.8:0' → (0.8, 0.0); '0.5' → (0.5, 0.5). For CLI options like ``--kick 0.8:0``."""
    parts = str(text).split(":")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--{name} takes START[:END] in numbers, not {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 0:
        raise ValueError(f"--{name} takes START[:END] with values ≥ 0, not {text!r}")
    return vals[0], vals[1]


def parse_map_coefficients_argument(text: str) -> tuple:
    """'FILE:F,PHI' (``--map-coeffs``) → (FILE, F, PHI); the last ':' separates the labels."""
    path, sep, labels = str(text).rpartition(":")
    parts = [x.strip() for x in labels.split(",")] if sep else []
    if not path or len(parts) != 2 or not all(parts):
        raise ValueError(f"--map-coeffs takes FILE:F,PHI (e.g. maps.mtz:FWT,PHWT), not {text!r}")
    return path, parts[0], parts[1]
