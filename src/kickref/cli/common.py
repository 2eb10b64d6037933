"""Options shared by the subcommands that read a model and diffraction data."""
from __future__ import annotations

import math
import sys
import warnings

from ..io.files import check_output_paths
from ..io.files import write_json_atomic as write_json  # noqa: F401  (used by the subcommands)


def add_input_arguments(p, data: bool = True):
    p.add_argument("model", help="model: PDB or mmCIF (gzipped or not)")
    if data:
        p.add_argument("data", help="reflections: MTZ or SF-mmCIF (.cif, .ent, gzipped or not)")
        p.add_argument("--labin", metavar="F,SIGF[,FREE]", type=labin_arg,
                       help="columns to use (amplitudes or intensities; FREE optional)")
        p.add_argument("--free-value", type=integer(0), metavar="N",
                       help="flag value marking the test set, ≥ 0 (default: detected)")
        p.add_argument("--d-min", type=positive, metavar="Å", help="high-resolution limit, > 0 and < --d-max")
        p.add_argument("--d-max", type=positive, metavar="Å", help="low-resolution limit, > 0")
    p.add_argument("--hydrogens", choices=["keep", "remove"], default="keep",
                   help="keep hydrogens of the input model (default) or remove them")


def add_scaling_arguments(p):
    p.add_argument("--scale-shells", default="auto", metavar="N|auto|0", type=scale_shells_arg,
                   help="scale factors per resolution shell on top of k·aniso·solvent "
                        "(MAIN 'refl shel N', N ≤ 50; 0 or 1: none); auto: one per ~2000 work "
                        "reflections, max 10")
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
    for mc in (getattr(args, "map_coeffs", None), getattr(args, "map_hl", None)):
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


def parse_range(text, name: str = "kick") -> tuple:
    """'0.8:0' → (0.8, 0.0); '0.5' → (0.5, 0.5). For CLI options like ``--kick 0.8:0``."""
    parts = str(text).split(":")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--{name} takes START[:END] in numbers, not {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(math.isfinite(v) and v >= 0 for v in vals):
        raise ValueError(f"--{name} takes START[:END] with values ≥ 0, not {text!r}")
    return vals[0], vals[1]


def parse_map_coefficients_argument(text: str) -> tuple:
    """'FILE:F,PHI' (``--map-coeffs``) → (FILE, F, PHI); the last ':' separates the labels."""
    path, sep, labels = str(text).rpartition(":")
    parts = [x.strip() for x in labels.split(",")] if sep else []
    if not path or len(parts) != 2 or not all(parts):
        raise ValueError(f"--map-coeffs takes FILE:F,PHI (e.g. maps.mtz:FWT,PHWT), not {text!r}")
    return path, parts[0], parts[1]


def parse_map_hl_argument(text: str) -> tuple:
    """'FILE:HLA,HLB,HLC,HLD' (``--map-hl``) → (FILE, (HLA, HLB, HLC, HLD)); the last ':'
    separates the labels."""
    path, sep, labels = str(text).rpartition(":")
    parts = [x.strip() for x in labels.split(",")] if sep else []
    if not path or len(parts) != 4 or not all(parts):
        raise ValueError(f"--map-hl takes FILE:HLA,HLB,HLC,HLD (e.g. phases.mtz:HLA,HLB,HLC,HLD), not {text!r}")
    return path, tuple(parts)


# --- option validators (argparse ``type=``): a bad value becomes one 'argument --x: ...' line ---

def _argument_error(what: str, text) -> Exception:
    import argparse
    return argparse.ArgumentTypeError(f"must be {what}, not {text}")


def _describe(kind: str, low, high, low_open: bool) -> str:
    if high is None:
        return f"{kind} {'>' if low_open else '≥'} {low:g}"
    return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}]"


def integer(low: int, high: int | None = None):
    """argparse type: an integer in [low, high] (no upper bound when high is None)."""
    what = _describe("an integer", low, high, False)

    def conv(text):
        try:
            v = int(str(text).strip())
        except ValueError:
            raise _argument_error(what, repr(text)) from None
        if v < low or (high is not None and v > high):
            raise _argument_error(what, text)
        return v
    conv.__name__ = "integer"
    return conv


def number(low: float, high: float | None = None, low_open: bool = False):
    """argparse type: a finite number ≥ low (> low with low_open), ≤ high when given."""
    what = _describe("a number", low, high, low_open)

    def conv(text):
        try:
            v = float(str(text).strip())
        except ValueError:
            raise _argument_error(what, repr(text)) from None
        if not math.isfinite(v) or v < low or (low_open and v == low) or (high is not None and v > high):
            raise _argument_error(what, text)
        return v
    conv.__name__ = "number"
    return conv


positive = number(0.0, low_open=True)          # lengths, weights, scales > 0
non_negative = number(0.0)                     # amplitudes, weights where 0 switches off
count = integer(1)                             # steps, cycles, models, rows ≥ 1
seed_value = integer(0)                        # numpy's generators take seeds ≥ 0

SCALE_SHELLS_MAX = 50


def scale_shells_arg(text):
    """--scale-shells: 'auto' or an integer 0…50 (0 or 1: no shell scales)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        v = int(str(text).strip())
    except ValueError:
        v = None
    if v is None or not 0 <= v <= SCALE_SHELLS_MAX:
        raise _argument_error(f"'auto' or an integer in [0, {SCALE_SHELLS_MAX}]",
                              repr(text) if v is None else text)
    return v


def checked_by(parse, what: str, result: bool = False):
    """argparse type: ``text`` accepted when ``parse(text)`` raises nothing (a bad value: 'must
    be ``what``'); returns parse's result when ``result``, else the text as given."""
    def conv(text):
        try:
            parsed = parse(text)
        except Exception:
            raise _argument_error(what, repr(text)) from None
        return parsed if result else text
    conv.__name__ = getattr(parse, "__name__", "value")
    return conv


def _labin_items(text):
    items = [x.strip() for x in str(text).split(",")]
    if len(items) not in (2, 3) or not all(items):
        raise ValueError(text)


def _gemmi_selection(text):
    import gemmi
    gemmi.Selection(text)


# START[:END] in numbers ≥ 0, as parse_range (--kick, --kick-b)
kick_range_arg = checked_by(parse_range, "START[:END] with numbers ≥ 0 (e.g. 0.8:0)", result=True)
# F,SIGF[,FREE] (--labin)
labin_arg = checked_by(_labin_items, "F,SIGF[,FREE] or I,SIGI[,FREE] (comma-separated column labels)")
# FILE:F,PHI (--map-coeffs)
map_coeffs_arg = checked_by(parse_map_coefficients_argument, "FILE:F,PHI (e.g. maps.mtz:FWT,PHWT)")
# FILE:HLA,HLB,HLC,HLD (--map-hl)
map_hl_arg = checked_by(parse_map_hl_argument, "FILE:HLA,HLB,HLC,HLD (e.g. phases.mtz:HLA,HLB,HLC,HLD)")
# a gemmi selection string (--select, --part, --envelope)
selection_arg = checked_by(_gemmi_selection, "a gemmi selection (e.g. //A/10-20)")


def _twin_law(text):
    from ..xtal.twin import parse_twin_law
    parse_twin_law(text)


twin_law_arg = checked_by(_twin_law, "a twin law in h,k,l (e.g. k,h,-l)")


def check_resolution(args):
    """Cross-option check after parsing: message if d_min ≥ d_max, else None."""
    d_min, d_max = getattr(args, "d_min", None), getattr(args, "d_max", None)
    if d_min is not None and d_max is not None and d_min >= d_max:
        return f"argument --d-min: must be smaller than --d-max ({d_min:g} ≥ {d_max:g})"
    return None
