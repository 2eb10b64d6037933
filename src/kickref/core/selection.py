"""Atom selections: boolean masks over the model's atoms (gemmi selection strings, masks, indices)."""
from __future__ import annotations

import gemmi
import numpy as np

from .errors import InputError


def select_atoms(model, selection: str | None) -> np.ndarray:
    """Boolean mask of the atoms matched by a gemmi selection string (all atoms when None),
    e.g. '//A/2-30', 'A/10-20', '//A/*/CA,N', '[C]'. InputError if malformed or matching nothing."""
    if not selection:
        return np.ones(model.n_atoms, bool)
    try:
        sel = gemmi.Selection(selection)
    except Exception as e:
        raise InputError(None, f"bad selection {selection!r}: {e}") from None
    st = model.structure.clone()
    if len(st) > 1:
        del st[1:]
    k = 0
    for ch in st[0]:
        for res in ch:
            for at in res:
                at.serial = k
                k += 1
    mask = np.zeros(model.n_atoms, bool)
    idx = [at.serial for m in sel.models(st) for ch in sel.chains(m) for res in sel.residues(ch)
           for at in sel.atoms(res)]
    mask[np.asarray(idx, dtype=np.int64)] = True
    if not mask.any():
        raise InputError(None, f"selection {selection!r} matches no atoms")
    return mask


def resolve_selection(selection, n_atoms: int, model=None) -> np.ndarray:
    """Boolean mask from None (all), a bool mask, atom indices or a gemmi selection string."""
    if selection is None:
        return np.ones(n_atoms, bool)
    if isinstance(selection, str):
        if model is None:
            raise ValueError("a selection string needs the model")
        return select_atoms(model, selection)
    sel = np.asarray(selection)
    if sel.dtype == bool:
        if sel.shape != (n_atoms,):
            raise ValueError(f"selection mask has {sel.shape} entries for {n_atoms} atoms")
        return sel.copy()
    mask = np.zeros(n_atoms, bool)
    mask[sel.astype(np.int64)] = True
    return mask
