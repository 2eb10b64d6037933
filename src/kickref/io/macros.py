"""Macro files (``.cmds``): finding and reading them, and kickref's built-in macros.

A name resolves to the first existing file among NAME, NAME.cmds and name.cmds (lower case) in
each search directory in turn (the including macro's directory, the working directory, then
``$KICKREF_MACRO_PATH``, colon-separated), else to a built-in macro
(``src/kickref/data/macros``: ``def_all.cmds`` and ``dens_comb.cmds``, stand-ins for MAIN's own,
which were not available) — so a user's file of the same name always wins.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..core.errors import InputError

BUILTIN_PREFIX = "<built-in>/"


def _candidates(name: str) -> list:
    out = [name]
    if not name.lower().endswith(".cmds"):
        out += [name + ".cmds", name.lower() + ".cmds"]
    return list(dict.fromkeys(out))


def builtin_names() -> list:
    return sorted(p.name for p in resources.files("kickref").joinpath("data", "macros").iterdir()
                  if p.name.endswith(".cmds"))


def find_macro(name: str, directories=()) -> str | None:
    """Path of the macro ``name`` (see the module docstring): a file, ``<built-in>/NAME.cmds``
    for a built-in macro, or None."""
    dirs = [Path(d) for d in directories] + [Path.cwd()]
    dirs += [Path(d) for d in os.environ.get("KICKREF_MACRO_PATH", "").split(":") if d]
    cands = _candidates(name)
    if not Path(name).is_absolute():
        for d in dirs:
            for c in cands:
                if (d / c).is_file():
                    return str(d / c)
    elif Path(name).is_file():
        return name
    builtins = builtin_names()
    for c in cands:
        if c.lower() in builtins:
            return BUILTIN_PREFIX + c.lower()
    return None


def read_macro(path: str) -> str:
    """The text of a macro file or of a built-in macro (``<built-in>/NAME.cmds``)."""
    if path.startswith(BUILTIN_PREFIX):
        return resources.files("kickref").joinpath("data", "macros", path[len(BUILTIN_PREFIX):]).read_text()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read the macro: {e}") from None
