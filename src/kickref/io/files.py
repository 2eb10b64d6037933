"""Small file helpers: existence checks with clear errors, atomic writes."""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

from ..core.errors import InputError


def short_message(e: Exception) -> str:
    """First line of an exception's message (its type name if empty), for one-line errors."""
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def check_readable(path) -> Path:
    """Return ``path`` as a Path, or raise InputError if it is missing or unreadable."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise InputError(p, "file is not readable (permission denied)")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty")
    return p


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    A reader never sees a half-written file, and an error leaves any earlier file untouched.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(p.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=suffix, dir=str(p.parent))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)           # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def json_ready(o):
    """``o`` with numpy arrays/scalars as lists/numbers, NaN/inf as None, dict keys as strings."""
    if isinstance(o, dict):
        return {str(k): json_ready(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_ready(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "tolist"):
        return json_ready(o.tolist())
    return o


def write_json_atomic(path, obj) -> None:
    """``obj`` (through :func:`json_ready`) as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(json_ready(obj), indent=1) + "\n")


def refuse_overwrite_inputs(outputs, inputs) -> None:
    """Raise InputError if an output path would overwrite one of the input files."""
    ins = {Path(i).resolve() for i in inputs if i is not None}
    for o in outputs:
        if o is not None and Path(o).resolve() in ins:
            raise InputError(o, "output would overwrite an input file; choose another output name")
