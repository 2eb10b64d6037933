"""Small text files naming atom groups: occupancy groups and TLS groups (selections: gemmi syntax).

Occupancy-group file (REFMAC's ``occupancy group id … / occupancy group alts complete …`` in
kickref's selection syntax), one statement a line, ``#`` starts a comment::

    group 1 //A/*/*:A
    group 2 //A/*/*:B
    complete 1 2          # occupancies of groups 1 and 2 sum to 1
    incomplete 3 4        # ... sum to at most 1

TLS-group file: one group a line, ``SELECTION`` or ``ID: SELECTION`` (e.g. ``1: //A/1-80``).
"""
from __future__ import annotations

from ..core.errors import InputError
from .files import check_readable


def _statements(path):
    p = check_readable(path)
    with open(p) as f:
        for n, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if text:
                yield p, n, text


def read_occupancy_groups(path) -> dict:
    """{'groups': ['ID:SELECTION', …], 'complete': [(ids), …], 'incomplete': [(ids), …]}."""
    out = {"groups": [], "complete": [], "incomplete": []}
    for p, n, text in _statements(path):
        word, _, rest = text.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word == "group":
            gid, _, sel = rest.partition(" ")
            if not sel.strip():
                raise InputError(p, f"line {n}: expected 'group ID SELECTION'")
            out["groups"].append(f"{gid}:{sel.strip()}")
        elif word in ("complete", "incomplete"):
            ids = tuple(rest.replace(",", " ").split())
            if not ids:
                raise InputError(p, f"line {n}: expected '{word} ID ID …'")
            out[word].append(ids)
        else:
            raise InputError(p, f"line {n}: expected group, complete or incomplete, not {word!r}")
    return out


def read_tls_groups(path) -> list[tuple[str, str]]:
    """[(id, selection), …]; ids 1, 2, … where the file gives none."""
    groups = []
    for p, n, text in _statements(path):
        gid, sep, sel = text.partition(":")
        if sep and gid.strip().isalnum():
            groups.append((gid.strip(), sel.strip()))
        else:
            groups.append((str(len(groups) + 1), text))
    if not groups:
        raise InputError(path, "no TLS groups")
    return groups
