"""NCS group definitions from a file (``--ncs-groups FILE.json``).

Accepted JSON: what ``kickref ncs MODEL --json`` writes ({"groups": [{"chains": ["A", "B"], ...}]}),
the ``ncs`` entry of a refinement summary (the same), or a plain list of chain lists
([["A", "B"], ["C", "D"]]). Only the chain lists are read; operators and atom matches are
recomputed from the model (:func:`kickref.xtal.ncs.groups_from_chains`).
"""
from __future__ import annotations

import json

from ..core.errors import InputError
from .files import check_readable


def read_ncs_groups(path) -> list:
    """Chain lists [[ref, copy, ...], ...] from a JSON file (see the module docstring)."""
    p = check_readable(path)
    try:
        obj = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(p, f"not JSON ({e})") from None
    if isinstance(obj, dict):
        obj = obj.get("ncs", obj)
        obj = obj.get("groups") if isinstance(obj, dict) else None
    groups = []
    for g in obj if isinstance(obj, list) else []:
        chains = g.get("chains") if isinstance(g, dict) else g
        if not isinstance(chains, list) or len(chains) < 2 or not all(isinstance(c, str) for c in chains):
            raise InputError(p, "each NCS group needs a list of ≥ 2 chain names")
        groups.append(chains)
    if not groups:
        raise InputError(p, "no NCS groups (expected {\"groups\": [{\"chains\": [\"A\", \"B\"]}]} or [[\"A\", \"B\"]])")
    return groups
