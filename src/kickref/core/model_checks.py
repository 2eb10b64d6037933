"""Sanity checks of a model before refinement: what would make the run meaningless is an error,
what has an obvious repair is repaired with a warning.

Errors (:class:`~kickref.core.errors.InputError`, the CLI's one line and exit 2): no non-hydrogen
atom; every occupancy zero; the same atom twice (chain, residue number, insertion code, residue
name, atom name and altloc all equal); the same residue twice in a chain; atoms that coincide
(closer than ``COINCIDENT`` Å, not alternative conformers of one another).

Repairs (each a warning naming the atoms): occupancy above 1 → 1, below 0 → 0; B ≤ 0, not finite
or absurd (above ``B_ABSURD`` Å², or above ``B_OUTLIER_FACTOR`` × the median B of the non-H atoms
and above ``B_OUTLIER_FLOOR`` Å²) → the median B of the atom's non-H neighbours within 4.5 Å
(the model's median where it has none), an anisotropic atom becoming isotropic with that B.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .adp import b_equivalent
from .errors import InputError

COINCIDENT = 0.1          # Å
B_ABSURD = 999.0          # Å², the largest B a PDB file can hold
B_OUTLIER_FACTOR = 10.0
B_OUTLIER_FLOOR = 200.0   # Å²
NEIGHBOUR_RADIUS = 4.5    # Å


def _labels(model, idx, n: int = 3) -> str:
    idx = list(idx)
    out = ", ".join(model.atom_label(int(i)) for i in idx[:n])
    return out + (f" and {len(idx) - n} more" if len(idx) > n else "")


def check_model(model, path=None) -> list[str]:
    """Check ``model`` (in place: repairs change its arrays); return the warnings. Raises
    InputError naming ``path`` (default ``model.path``) for what cannot be repaired."""
    where = path if path is not None else model.path
    warnings: list[str] = []
    heavy = ~np.asarray(model.is_hydrogen, bool)
    if not heavy.any():
        raise InputError(where, f"model has no non-hydrogen atoms ({model.n_atoms} hydrogens only)")
    occ = model.occ
    if not np.any(occ[heavy] > 0):
        raise InputError(where, "every atom has occupancy 0: nothing to refine against the data")
    _check_duplicates(model, where)
    _check_coincident(model, where)
    bad = np.flatnonzero(~np.isfinite(occ) | (occ > 1.0) | (occ < 0.0))
    if len(bad):
        warnings.append(f"{len(bad)} atom(s) with occupancy outside 0–1 set to the nearest bound: "
                        f"{_labels(model, bad)}")
        occ[bad] = np.clip(np.nan_to_num(occ[bad], nan=1.0), 0.0, 1.0)
    warnings += _repair_b(model)
    return warnings


def _check_duplicates(model, where) -> None:
    res_twice = _duplicated_residues(model)
    if res_twice:
        raise InputError(where, f"residue {res_twice[0]} appears twice in its chain "
                                f"({len(res_twice)} duplicated residue(s))")
    keys = np.array([f"{c}|{s}|{r}|{a}|{l}" for c, s, r, a, l in
                     zip(model.chain, model.seqid, model.resname, model.atom_name, model.altloc)])
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    dup = np.flatnonzero(counts > 1)
    if len(dup):
        raise InputError(where, f"atom {model.atom_label(int(first[dup[0]]))} appears "
                                f"{int(counts[dup[0]])} times ({len(dup)} duplicated atom(s))")


def _duplicated_residues(model) -> list[str]:
    """Residues (chain/name number) that occur as two separate residues of one chain."""
    ri = np.asarray(model.residue_index)
    first = np.r_[0, np.flatnonzero(np.diff(ri)) + 1]
    seen, out = set(), []
    for i in first:
        key = (model.chain[i], model.seqid[i], model.resname[i])
        if key in seen:
            out.append(f"{key[0]}/{key[2]} {key[1]}")
        seen.add(key)
    return out


def _check_coincident(model, where) -> None:
    if model.n_atoms < 2:
        return
    pairs = cKDTree(model.xyz).query_pairs(COINCIDENT, output_type="ndarray")
    if len(pairs) == 0:
        return
    alt = np.asarray(model.altloc, dtype=object)
    a, b = pairs[:, 0], pairs[:, 1]
    # alternative conformers of one atom may coincide
    conformers = (alt[a] != "") & (alt[b] != "") & (alt[a] != alt[b])
    pairs = pairs[~conformers]
    if len(pairs) == 0:
        return
    i, j = int(pairs[0, 0]), int(pairs[0, 1])
    d = float(np.linalg.norm(model.xyz[i] - model.xyz[j]))
    raise InputError(where, f"{len(pairs)} pair(s) of atoms closer than {COINCIDENT} Å, e.g. "
                            f"{model.atom_label(i)} and {model.atom_label(j)} ({d:.2f} Å apart)")


def _repair_b(model) -> list[str]:
    heavy = ~np.asarray(model.is_hydrogen, bool)
    b = b_equivalent(model.b_iso, model.u_aniso, model.is_aniso)
    ok = np.isfinite(b) & (b > 0)
    med = float(np.median(b[heavy & ok])) if (heavy & ok).any() else 20.0
    absurd = (b > B_ABSURD) | ((b > B_OUTLIER_FACTOR * med) & (b > B_OUTLIER_FLOOR))
    bad = np.flatnonzero(~ok | absurd)
    if len(bad) == 0:
        return []
    good = heavy & ok & ~absurd
    tree = cKDTree(model.xyz[good]) if good.any() else None
    b_good = b[good]
    new = np.full(len(bad), med)
    if tree is not None:
        for k, nbrs in enumerate(tree.query_ball_point(model.xyz[bad], NEIGHBOUR_RADIUS)):
            if nbrs:
                new[k] = float(np.median(b_good[nbrs]))
    model.b_iso[bad] = new
    ani = bad[model.is_aniso[bad]]
    if len(ani):
        model.is_aniso[ani] = False
        model.u_aniso[ani] = 0.0
    shown = ", ".join(f"{model.atom_label(int(i))} {b[i]:.4g}" for i in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return [f"{len(bad)} atom(s) with B ≤ 0, not finite or absurd (B Å²: {shown}{more}) reset to the "
            f"median B of their neighbours" + (", made isotropic" if len(ani) else "")]
