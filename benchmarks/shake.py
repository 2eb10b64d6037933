"""Shaken start for the refinement benchmark: a copy of a model with coordinate errors.

Every non-hydrogen atom is displaced by an isotropic Gaussian vector (fixed seed); the
displacements are then rescaled so that their RMS over all non-H atoms is exactly ``rms`` Å.
Hydrogen atoms ride: each H gets the displacement of its parent (the nearest non-H atom
with a compatible altloc, within 1.3 Å), so X–H geometry is kept. B-factors, ANISOU,
occupancies and everything else are left as deposited. The copy is written as mmCIF.

Polymer links are kept detectable (``keep_links``, default): programs that find peptide
(C–N) and phosphodiester (O3'–P) links by distance (gemmi, hence servalcat: C–N < 2.01 Å)
would otherwise see chain breaks — about 7 % of the peptide links at 0.5 Å RMS — and refine
without those restraints. Atoms of a linked pair (≤ 2.0 Å in the deposited model) that end up
more than 2.0 Å apart get new Gaussian displacements (same seed stream) until none does; the
RMS is then rescaled to exactly ``rms`` again.

Run: ``python benchmarks/shake.py MODEL OUT.cif [--rms 0.5] [--seed 2024] [--break-links]``
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gemmi
import numpy as np

DEFAULT_RMS = 0.5       # Å
DEFAULT_SEED = 2024
H_PARENT_MAX = 1.3      # Å: farthest an H may be from its parent
LINK_MAX = 2.0          # Å: polymer-link atoms kept closer than this (gemmi: 1.5 × 1.341 Å)
LINK_ATOMS = {"peptide": ("C", "N"), "nucleic": ("O3'", "P")}


def _atom_table(st: gemmi.Structure):
    """Flat (xyz (n,3) Å, is_h (n,), altloc (n,) str) in gemmi's iteration order of model 0."""
    atoms = [a for ch in st[0] for res in ch for a in res]
    xyz = np.array([a.pos.tolist() for a in atoms], dtype=float).reshape(-1, 3)
    is_h = np.array([a.is_hydrogen() for a in atoms], dtype=bool)
    altloc = np.array([a.altloc if a.altloc != "\0" else "" for a in atoms], dtype=object)
    return atoms, xyz, is_h, altloc


def _h_parents(xyz, is_h, altloc) -> np.ndarray:
    """Index of the parent (non-H) atom of every H atom; -1 where none lies within 1.3 Å."""
    from scipy.spatial import cKDTree
    heavy = np.flatnonzero(~is_h)
    hyd = np.flatnonzero(is_h)
    parents = np.full(hyd.size, -1, dtype=np.int64)
    if hyd.size == 0 or heavy.size == 0:
        return parents
    k = min(6, heavy.size)
    dist, idx = cKDTree(xyz[heavy]).query(xyz[hyd], k=k)
    dist = dist.reshape(hyd.size, k)
    cand = heavy[idx.reshape(hyd.size, k)]
    alt_h = altloc[hyd][:, None]
    alt_c = altloc[cand]
    ok = (dist <= H_PARENT_MAX) & ((alt_c == alt_h) | (alt_c == "") | (alt_h == ""))
    first = np.argmax(ok, axis=1)                   # nearest compatible candidate
    has = ok[np.arange(hyd.size), first]
    parents[has] = cand[np.arange(hyd.size), first][has]
    return parents


def _link_pairs(st: gemmi.Structure, xyz, altloc) -> np.ndarray:
    """(m, 2) atom indices of linked polymer atom pairs (C–N, O3'–P of consecutive residues of
    a chain, compatible altlocs) that lie within LINK_MAX Å of each other in ``st``."""
    pairs = []
    start = 0
    for ch in st[0]:
        offsets = []
        for res in ch:
            offsets.append(start)
            start += len(res)
        for k in range(len(ch) - 1):
            r1, r2 = ch[k], ch[k + 1]
            for name1, name2 in LINK_ATOMS.values():
                i1 = [offsets[k] + n for n, a in enumerate(r1) if a.name == name1]
                i2 = [offsets[k + 1] + n for n, a in enumerate(r2) if a.name == name2]
                pairs += [(i, j) for i in i1 for j in i2
                          if altloc[i] == altloc[j] or "" in (altloc[i], altloc[j])]
    pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    close = np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1) <= LINK_MAX
    return pairs[close]


def shake_structure(st: gemmi.Structure, rms: float = DEFAULT_RMS,
                    seed: int = DEFAULT_SEED, keep_links: bool = True) -> dict:
    """Displace the atoms of ``st`` (model 0) in place; returns a summary dict.

    Non-H atoms: Gaussian displacements rescaled to an RMS of exactly ``rms`` Å; with
    ``keep_links`` no linked polymer pair (C–N, O3'–P) ends up beyond 2.0 Å (see module doc).
    H atoms: displaced with their parent atom (orphans — no parent within 1.3 Å — get their
    own Gaussian displacement of the same RMS).
    """
    atoms, xyz, is_h, altloc = _atom_table(st)
    rng = np.random.default_rng(seed)
    shift = rng.normal(0.0, 1.0, size=xyz.shape)
    heavy = ~is_h
    n_heavy = int(heavy.sum())
    if n_heavy == 0:
        raise ValueError("model has no non-hydrogen atoms")
    shift[heavy] *= rms / np.sqrt(np.mean(np.sum(shift[heavy] ** 2, axis=1)))
    pairs = _link_pairs(st, xyz, altloc) if keep_links else np.zeros((0, 2), dtype=np.int64)
    n_redrawn, n_rounds = 0, 0
    while pairs.size:
        moved = xyz + shift
        far = np.linalg.norm(moved[pairs[:, 0]] - moved[pairs[:, 1]], axis=1) > LINK_MAX
        if not far.any():
            break
        n_rounds += 1
        if n_rounds > 1000:
            raise RuntimeError("could not keep polymer links within 2.0 Å")
        redo = np.unique(pairs[far])
        n_redrawn += redo.size
        shift[redo] = rng.normal(0.0, rms / np.sqrt(3.0), size=(redo.size, 3))
        shift[heavy] *= rms / np.sqrt(np.mean(np.sum(shift[heavy] ** 2, axis=1)))
    hyd = np.flatnonzero(is_h)
    parents = _h_parents(xyz, is_h, altloc)
    riding = parents >= 0
    shift[hyd[riding]] = shift[parents[riding]]
    orphans = hyd[~riding]
    if orphans.size:
        shift[orphans] *= rms / np.sqrt(3.0)
    new = xyz + shift
    for atom, p in zip(atoms, new):
        atom.pos = gemmi.Position(*p)
    actual = float(np.sqrt(np.mean(np.sum(shift[heavy] ** 2, axis=1))))
    return {"rms_target": rms, "rms_non_h": actual, "seed": seed, "n_non_h": n_heavy,
            "keep_links": keep_links, "n_link_pairs": int(pairs.shape[0]),
            "n_link_redraws": int(n_redrawn), "link_redraw_rounds": int(n_rounds),
            "n_h": int(is_h.sum()), "n_h_riding": int(riding.sum()), "n_h_orphan": int(orphans.size),
            "hydrogens": "moved with their parent atom"}


def shake_file(model_path, out_path, rms: float = DEFAULT_RMS, seed: int = DEFAULT_SEED,
               keep_links: bool = True) -> dict:
    """Read ``model_path`` (PDB/mmCIF, gzipped or not), shake it, write mmCIF to ``out_path``."""
    st = gemmi.read_structure(str(model_path))
    st.setup_entities()
    info = shake_structure(st, rms=rms, seed=seed, keep_links=keep_links)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    doc = st.make_mmcif_document()
    doc.write_file(str(tmp))
    tmp.replace(out_path)
    info.update(model=str(model_path), output=str(out_path))
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("output", help="shaken copy (mmCIF)")
    ap.add_argument("--rms", type=float, default=DEFAULT_RMS, help="RMS displacement of non-H atoms, Å")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--break-links", action="store_true",
                    help="plain Gaussian: do not keep polymer links within 2.0 Å")
    args = ap.parse_args(argv)
    if Path(args.output).resolve() == Path(args.model).resolve():
        print("output would overwrite the input model", file=sys.stderr)
        return 2
    info = shake_file(args.model, args.output, rms=args.rms, seed=args.seed,
                      keep_links=not args.break_links)
    print(f"{args.output}: {info['n_non_h']} non-H atoms shaken by {info['rms_non_h']:.3f} Å RMS "
          f"(seed {info['seed']}); {info['n_h_riding']} H moved with their parent, "
          f"{info['n_h_orphan']} H without parent shaken on their own; "
          f"{info['n_link_pairs']} polymer links kept within {LINK_MAX} Å "
          f"({info['n_link_redraws']} atom displacements redrawn)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
