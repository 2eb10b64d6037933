"""Riding hydrogens: each H is fixed in a local frame of its parent heavy atom.

Frame of H with parent P: e1 along P→N1 (N1 a heavy neighbour of P), e2 the part of P→N2
orthogonal to e1 (N2 another neighbour of P, else a neighbour of N1), e3 = e1 × e2.
The H's coordinates in that frame come from ideal geometry: gemmi re-places the model's
hydrogens from the dictionary (``HydrogenChange.ReAddKnown``) on a copy of the model, and
each model H takes the nearest ideal position of its parent's H (within 0.5 Å, so that
methyl and hydroxyl rotamers of the model are kept); any other H keeps its own position,
with the bond set to the ideal length.
An H whose parent has no heavy neighbour (water) keeps its offset from the parent.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import gemmi
import numpy as np


@dataclass
class Riding:
    h: np.ndarray        # (m,) H atom indices
    parent: np.ndarray   # (m,)
    n1: np.ndarray       # (m,) -1 where no frame
    n2: np.ndarray       # (m,)
    local: np.ndarray    # (m, 3) coordinates in the frame (or the offset when no frame)
    source: str = ""


def _frames(xyz, p, n1, n2):
    e1 = xyz[n1] - xyz[p]
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    v = xyz[n2] - xyz[p]
    e2 = v - (v * e1).sum(axis=1, keepdims=True) * e1
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=1)     # (m, 3 axes, 3 xyz)


def _ideal_h_positions(model, monlib):
    """{(chain, seqid, resname, atom, altloc): xyz} of H re-placed by gemmi, or {}."""
    try:
        st = model.structure.clone()
        gemmi.prepare_topology(st, monlib, h_change=gemmi.HydrogenChange.ReAddKnown,
                               warnings=io.StringIO(), reorder=False, ignore_unknown_links=True)
    except Exception:
        return {}
    out = {}
    for ch in st[0]:
        for res in ch:
            sid = str(res.seqid.num) + res.seqid.icode.strip()
            for at in res:
                if at.is_hydrogen():
                    alt = at.altloc if at.altloc != "\0" else ""
                    out[(ch.name, sid, res.name, at.name, alt)] = at.pos.tolist()
    return out


def riding_setup(R, model) -> Riding:
    parents = R.hydrogen_parents
    h = np.flatnonzero(parents >= 0)
    empty = Riding(h, parents[h], np.full(len(h), -1), np.full(len(h), -1), np.zeros((len(h), 3)))
    if len(h) == 0:
        return empty
    n = R.n_atoms
    heavy = ~model.is_hydrogen
    # heavy neighbours of each atom from the bond list
    b = R.bonds.idx
    bb = b[heavy[b[:, 0]] & heavy[b[:, 1]]]
    nb = [[] for _ in range(n)]
    for i, j in bb.tolist():
        nb[i].append(j)
        nb[j].append(i)
    n1 = np.full(len(h), -1, np.int64)
    n2 = np.full(len(h), -1, np.int64)
    for k, (hh, p) in enumerate(zip(h.tolist(), parents[h].tolist())):
        if not nb[p]:
            continue
        a = nb[p][0]
        n1[k] = a
        if len(nb[p]) > 1:
            n2[k] = nb[p][1]
        else:
            others = [x for x in nb[a] if x != p]
            n2[k] = others[0] if others else -1
        if n2[k] < 0:
            n1[k] = -1
    # ideal positions (gemmi), else the model's own
    xyz = np.array(model.xyz, dtype=np.float64)
    ideal = _ideal_h_positions(model, R.library.monlib)
    ref = xyz.copy()
    found = 0
    # H of one parent may be named in another order than gemmi's (methyl rotation): match
    # the model's H of each parent to the nearest ideal positions of that parent's H
    order = np.argsort(parents[h], kind="stable")
    hs, ps = h[order], parents[h][order]
    cut = np.flatnonzero(np.diff(ps)) + 1
    for group in np.split(hs, cut):
        pos = []
        for hh in group.tolist():
            key = (model.chain[hh], model.seqid[hh], model.resname[hh], model.atom_name[hh],
                   model.altloc[hh])
            if key in ideal:
                pos.append(ideal[key])
        if not pos:
            continue
        pos = np.array(pos)
        dist = np.linalg.norm(xyz[group][:, None, :] - pos[None, :, :], axis=2)
        from scipy.optimize import linear_sum_assignment   # not imported with kickref (~13 MB)
        rows, cols = linear_sum_assignment(dist)
        for r, c in zip(rows, cols):
            if dist[r, c] < 0.5:
                ref[group[r]] = pos[c]
                found += 1
    # bond lengths to ideal for H not placed by gemmi
    ideal_len = {}
    for (i, j), d0 in zip(R.bonds.idx.tolist(), R.bonds.ideal.tolist()):
        ideal_len[(i, j)] = d0
        ideal_len[(j, i)] = d0
    p = parents[h]
    off = ref[h] - ref[p]
    for k, hh in enumerate(h.tolist()):
        d0 = ideal_len.get((hh, int(p[k])))
        length = np.linalg.norm(off[k])
        if d0 and length > 1e-6:
            off[k] *= d0 / length
    local = off.copy()
    f = n1 >= 0
    if f.any():
        E = _frames(ref, p[f], n1[f], n2[f])
        local[f] = np.einsum("kab,kb->ka", E, off[f])
    src = f"ideal positions from gemmi for {found} of {len(h)} H"
    return Riding(h, p, n1, n2, local, src)


def place_riding(xyz, riding: Riding) -> np.ndarray:
    """New coordinates with every riding H put back on its parent (vectorized)."""
    out = xyz.copy()
    if len(riding.h) == 0:
        return out
    f = riding.n1 >= 0
    p = riding.parent
    out[riding.h[~f]] = xyz[p[~f]] + riding.local[~f]
    if f.any():
        E = _frames(xyz, p[f], riding.n1[f], riding.n2[f])
        out[riding.h[f]] = xyz[p[f]] + np.einsum("kab,ka->kb", E, riding.local[f])
    return out
