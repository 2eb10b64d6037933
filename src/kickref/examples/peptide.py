"""A self-made test case: an α-helical decapeptide with waters in P 2₁2₁2₁, and data simulated from it.

``build_example(outdir, seed=0)`` writes

- ``example.pdb``: the true model (heavy atoms, B 10–25 Å², occupancies 1);
- ``example_start.pdb``: the true model shaken by ``SHAKE_RMS`` Å (3-D RMS) with B flat 20 Å²,
  the starting point for refinement;
- ``example.mtz``: FP (type F), SIGFP (Q), FREE (I; CCP4 convention 0..19, 0 = test set).

How the model is made
- Backbone by NeRF placement (Parsons et al. 2005, J. Comput. Chem. 26:1063) from internal
  coordinates: Engh & Huber (1991, Acta Cryst. A47:392) bond lengths and angles, α-helical
  φ/ψ = −60°/−45°, ω = 180°.
- Side chains: the ideal coordinates of each residue in kickref's built-in restraint library
  (CCP4 monomer library 5.60, AceDRG geometry, see :mod:`kickref.restraints.builtin`) are
  superposed on the residue's N, CA, C; then the χ angles are set to the modal values of
  common helix rotamers of the penultimate rotamer library (Lovell et al. 2000, Proteins 40:389)
  by rotating the atoms beyond each χ bond.
- Crystal: the helix, its principal axes along x, y, z and turned by each of ``ORIENTATIONS``
  about its axis, sits at fractional (¼, ¼, ¼); the cell edges are shrunk in turn until the
  closest symmetry contact reaches ``CONTACT_MIN`` Å, and the smallest cell is kept. Then
  waters are put where they hydrogen-bond polar atoms without clashes (also with symmetry mates).

How the data are made
  |F| = k · exp(−¼ sᵀB s) · |Fc + k_sol · exp(−B_sol s²/4) · Fmask|, Fc from
  :class:`~kickref.xtal.structure_factors.StructureFactorCalculator`, Fmask from
  :class:`~kickref.xtal.bulk_solvent.SolventMask`; Gaussian noise with
  σ = √((``NOISE_FRACTION``·F)² + (``SIGMA_FLOOR``·⟨F⟩)²), which is also SIGFP.
Everything is deterministic for a given ``seed`` (the seed drives noise, free flags and shake;
the model and cell do not depend on it).
"""
from __future__ import annotations

import functools
from pathlib import Path

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from ..io.files import atomic_path

# ------------------------------------------------------------------ the peptide
SEQUENCE = ("SER", "GLU", "TYR", "LEU", "LYS", "TRP", "ALA", "GLU", "PHE", "ARG")
PHI, PSI, OMEGA = -60.0, -45.0, 180.0          # α-helix, degrees

# Engh & Huber (1991) backbone geometry: lengths Å, angles degrees
BOND_N_CA, BOND_CA_C, BOND_C_N, BOND_C_O = 1.458, 1.525, 1.329, 1.231
ANGLE_N_CA_C, ANGLE_CA_C_N, ANGLE_C_N_CA, ANGLE_CA_C_O = 111.2, 116.2, 121.7, 120.1
BOND_C_OXT, ANGLE_CA_C_OXT = 1.249, 117.5     # carboxylate C-terminus

# the four atoms defining each χ (IUPAC-IUB 1970)
CHI_ATOMS = {
    "ARG": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "NE"),
            ("CG", "CD", "NE", "CZ")),
    "ASN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "ASP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "CYS": (("N", "CA", "CB", "SG"),),
    "GLN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "GLU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "HIS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "ND1")),
    "ILE": (("N", "CA", "CB", "CG1"), ("CA", "CB", "CG1", "CD1")),
    "LEU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "LYS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "CE"),
            ("CG", "CD", "CE", "NZ")),
    "MET": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SD"), ("CB", "CG", "SD", "CE")),
    "PHE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "SER": (("N", "CA", "CB", "OG"),),
    "THR": (("N", "CA", "CB", "OG1"),),
    "TRP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "TYR": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "VAL": (("N", "CA", "CB", "CG1"),),
}

# modal χ (degrees) of common rotamers (Lovell et al. 2000, names in comments), most common in
# α-helices first; build_peptide takes the first one that clashes with nothing built before it
HELIX_ROTAMERS = {
    "ARG": ((-67.0, 180.0, 180.0, 180.0), (-177.0, 180.0, 180.0, 180.0)),   # mtt180, ttt180
    "ASN": ((-65.0, -20.0), (-177.0, 30.0)),                                 # m-20, t30
    "ASP": ((-70.0, -15.0), (-177.0, 0.0)),                                  # m-20, t0
    "CYS": ((-65.0,), (-177.0,)),                                            # m, t
    "GLN": ((-65.0, 180.0, -25.0), (-177.0, 65.0, -100.0)),                  # mt-30, tp-100
    "GLU": ((-65.0, 180.0, -10.0), (-177.0, 65.0, 10.0), (-65.0, -65.0, -40.0)),  # mt-10, tp10, mm-40
    "HIS": ((-65.0, -70.0), (-177.0, 80.0)),                                 # m-70, t60
    "ILE": ((-65.0, 170.0), (-57.0, -60.0)),                                 # mt, mm
    "LEU": ((-65.0, 175.0), (-177.0, 65.0)),                                 # mt, tp
    "LYS": ((-67.0, 180.0, 180.0, 180.0), (-177.0, 180.0, 180.0, 180.0)),   # mttt, tttt
    "MET": ((-65.0, 180.0, -70.0), (-65.0, -65.0, -70.0)),                  # mtm, mmm
    "PHE": ((-65.0, -85.0), (177.0, 80.0), (62.0, 90.0)),                    # m-85, t80, p90
    "SER": ((-65.0,), (64.0,), (-177.0,)),                                   # m, p, t
    "THR": ((-65.0,), (62.0,)),                                              # m, p
    "TRP": ((-65.0, 95.0), (-65.0, -90.0), (177.0, -105.0), (177.0, 90.0), (-65.0, -5.0)),
    #       m95, m-90, t-105, t90, m0
    "TYR": ((-65.0, -85.0), (177.0, 80.0), (62.0, 90.0)),                    # m-85, t80, p90
    "VAL": ((175.0,), (-60.0,)),                                             # t, m
}
CLASH_POLAR, CLASH_OTHER = 2.6, 3.0   # Å, closest allowed non-bonded distance (N/O pairs; others)

# ------------------------------------------------------------------ crystal and data
SPACEGROUP = "P 21 21 21"
CONTACT_MIN = 3.4          # Å, closest heavy-atom contact between symmetry mates when packing
ORIENTATIONS = tuple(range(0, 180, 15))   # degrees about the helix axis; the densest packing wins
N_WATERS = 6
D_MIN_CHOICES = (1.6, 1.5, 1.4)   # Å; the first giving MIN_REFLECTIONS is used
MIN_REFLECTIONS = 800
K_OVERALL = 0.8
B_ANISO = (2.5, 0.5, -1.5, 0.0, 0.0, 0.0)  # Å², B11 B22 B33 B12 B13 B23 (Cartesian)
K_SOL, B_SOL = 0.35, 46.0                  # flat bulk solvent, B in Å²
NOISE_FRACTION = 0.04                      # σ proportional to F ...
SIGMA_FLOOR = 0.02                         # ... plus this fraction of <F>, in quadrature
N_FREE_FLAGS = 20                          # CCP4 FREE 0..19; 0 = test set
SHAKE_RMS = 0.3                            # Å, 3-D RMS displacement of the start model
START_B = 20.0                             # Å²


# ------------------------------------------------------------------ geometry helpers
def place_atom(a, b, c, bond, angle, torsion):
    """NeRF: position d with |cd| = bond (Å), angle b-c-d and dihedral a-b-c-d (degrees).

    a, b, c: (..., 3) arrays; bond/angle/torsion broadcast against the leading dimensions.
    """
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    ang = np.radians(angle)
    tor = np.radians(torsion)
    bc = c - b
    bc /= np.linalg.norm(bc, axis=-1, keepdims=True)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    m = np.cross(n, bc)
    bond = np.asarray(bond, dtype=np.float64)[..., None]
    d2 = np.stack([-np.cos(ang) * np.ones_like(tor), np.sin(ang) * np.cos(tor),
                   np.sin(ang) * np.sin(tor)], axis=-1)
    return c + bond * (d2[..., 0:1] * bc + d2[..., 1:2] * m + d2[..., 2:3] * n)


def dihedral(a, b, c, d) -> np.ndarray:
    """Dihedral angle a-b-c-d in degrees, (-180, 180]; inputs (..., 3)."""
    b0, b1, b2 = a - b, c - b, d - c
    b1n = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - np.sum(b0 * b1n, axis=-1, keepdims=True) * b1n
    w = b2 - np.sum(b2 * b1n, axis=-1, keepdims=True) * b1n
    x = np.sum(v * w, axis=-1)
    y = np.sum(np.cross(b1n, v) * w, axis=-1)
    return np.degrees(np.arctan2(y, x))


def superpose(mobile: np.ndarray, target: np.ndarray):
    """Rotation R and translation t (least squares, Kabsch) with target ≈ mobile @ R.T + t."""
    mc, tc = mobile.mean(axis=0), target.mean(axis=0)
    H = (mobile - mc).T @ (target - tc)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    return R, tc - mc @ R.T


def rotate_about_axis(xyz, origin, axis, angle):
    """Rotate points (n, 3) by ``angle`` degrees (right hand) about the line origin + t·axis."""
    k = axis / np.linalg.norm(axis)
    th = np.radians(angle)
    p = xyz - origin
    rot = (p * np.cos(th) + np.cross(k, p) * np.sin(th)
           + np.outer(p @ k, k) * (1.0 - np.cos(th)))
    return rot + origin


@functools.lru_cache(maxsize=None)
def residue_template(code: str):
    """Ideal heavy-atom coordinates of monomer ``code`` from the built-in restraint library.

    Returns (names tuple, elements tuple, xyz (n,3) Å, bonds tuple of index pairs); OXT is left out.
    """
    from ..io.builtin_library import load_builtin
    doc = gemmi.cif.read_string(load_builtin().monomer_cif[code])
    block = doc.find_block(f"comp_{code}")
    names, elements, xyz = [], [], []
    for row in block.find("_chem_comp_atom.", ["atom_id", "type_symbol", "x", "y", "z"]):
        name, el = gemmi.cif.as_string(row[0]), gemmi.cif.as_string(row[1])
        if el in ("H", "D") or name == "OXT":
            continue
        names.append(name)
        elements.append(el.capitalize())
        xyz.append([gemmi.cif.as_number(row[k]) for k in (2, 3, 4)])
    index = {n: k for k, n in enumerate(names)}
    bonds = []
    for row in block.find("_chem_comp_bond.", ["atom_id_1", "atom_id_2"]):
        a, b = gemmi.cif.as_string(row[0]), gemmi.cif.as_string(row[1])
        if a in index and b in index:
            bonds.append((index[a], index[b]))
    return tuple(names), tuple(elements), np.array(xyz), tuple(bonds)


def _beyond(bonds, n: int, start: int, behind: int) -> np.ndarray:
    """Atoms reachable from ``start`` without passing ``behind`` (the side moved by a χ rotation)."""
    adj = [[] for _ in range(n)]
    for a, b in bonds:
        adj[a].append(b)
        adj[b].append(a)
    seen = {start, behind}
    todo = [start]
    while todo:
        k = todo.pop()
        for j in adj[k]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    seen.discard(behind)
    return np.array(sorted(seen), dtype=np.int64)


def build_peptide(sequence=SEQUENCE, phi=PHI, psi=PSI, omega=OMEGA, rotamers=None) -> list:
    """Heavy-atom model of a peptide with uniform φ/ψ/ω (degrees) and side-chain rotamers.

    ``rotamers``: {residue name: list of χ tuples (degrees)}, default HELIX_ROTAMERS; for each
    residue (in sequence order) the first choice whose side chain stays ≥ CLASH_POLAR (N/O
    pairs) / CLASH_OTHER Å from all backbone atoms and earlier side chains is used (the last
    choice if none does). Returns a list of residues, each a dict with 'name', 'atoms' (names),
    'elements', 'xyz' (n,3) Å, 'chi' (the χ used); the last residue has OXT.
    """
    rotamers = HELIX_ROTAMERS if rotamers is None else rotamers
    n_res = len(sequence)
    N, CA, C = np.zeros((n_res, 3)), np.zeros((n_res, 3)), np.zeros((n_res, 3))
    N[0] = [0.0, 0.0, 0.0]
    CA[0] = [BOND_N_CA, 0.0, 0.0]
    ang = np.radians(180.0 - ANGLE_N_CA_C)
    C[0] = CA[0] + BOND_CA_C * np.array([np.cos(ang), np.sin(ang), 0.0])
    for i in range(1, n_res):   # sequential by nature: three placements per residue
        N[i] = place_atom(N[i - 1], CA[i - 1], C[i - 1], BOND_C_N, ANGLE_CA_C_N, psi)
        CA[i] = place_atom(CA[i - 1], C[i - 1], N[i], BOND_N_CA, ANGLE_C_N_CA, omega)
        C[i] = place_atom(C[i - 1], N[i], CA[i], BOND_CA_C, ANGLE_N_CA_C, phi)
    # carbonyl O of residues 0..n-2 trans to the next N; carboxylate O/OXT on the last one
    O = np.empty((n_res, 3))
    O[:-1] = place_atom(N[1:], CA[:-1], C[:-1], BOND_C_O, ANGLE_CA_C_O, 180.0)
    O[-1] = place_atom(N[-1], CA[-1], C[-1], BOND_C_OXT, ANGLE_CA_C_OXT, psi + 180.0)
    OXT = place_atom(N[-1], CA[-1], C[-1], BOND_C_OXT, ANGLE_CA_C_OXT, psi)

    backbone = [np.vstack([N, CA, C, O, OXT[None]])]
    backbone_polar = [np.array([True] * n_res + [False] * (2 * n_res) + [True] * (n_res + 1))]
    backbone_res = [np.concatenate([np.tile(np.arange(n_res), 4), [n_res - 1]])]
    residues = []
    for i, code in enumerate(sequence):
        names, elements, txyz, bonds = residue_template(code)
        idx = {n: k for k, n in enumerate(names)}
        R, t = superpose(txyz[[idx["N"], idx["CA"], idx["C"]]], np.array([N[i], CA[i], C[i]]))
        base = txyz @ R.T + t
        for name, pos in (("N", N[i]), ("CA", CA[i]), ("C", C[i]), ("O", O[i])):
            base[idx[name]] = pos
        side = np.array([n not in ("N", "CA", "C", "O") for n in names])
        side_polar = np.isin(np.array(elements), ["N", "O"])[side]
        others = np.vstack(backbone)
        others_polar = np.concatenate(backbone_polar)
        not_own = np.concatenate(backbone_res) != i
        others, others_polar = others[not_own], others_polar[not_own]
        choices = rotamers.get(code, ((),)) or ((),)
        for chis in choices:
            xyz = _set_chis(base.copy(), code, chis, idx, bonds, len(names))
            if not side.any():
                break
            d = np.linalg.norm(xyz[side][:, None, :] - others[None], axis=2)
            limit = np.where(side_polar[:, None] & others_polar[None], CLASH_POLAR, CLASH_OTHER)
            if (d >= limit).all():
                break
        backbone.append(xyz[side])
        backbone_polar.append(side_polar)
        backbone_res.append(np.full(int(side.sum()), i))
        names, elements = list(names), list(elements)
        if i == n_res - 1:
            names.append("OXT")
            elements.append("O")
            xyz = np.vstack([xyz, OXT[None]])
        residues.append({"name": code, "atoms": names, "elements": elements, "xyz": xyz,
                         "chi": tuple(chis)})
    return residues


def _set_chis(xyz, code, chis, idx, bonds, n_atoms):
    """Rotate the atoms beyond each χ bond so that the χ take the given values (degrees)."""
    for (a, b, c, d), chi in zip(CHI_ATOMS.get(code, ()), chis):
        ib, ic = idx[b], idx[c]
        now = dihedral(xyz[idx[a]], xyz[ib], xyz[ic], xyz[idx[d]])
        moving = _beyond(bonds, n_atoms, ic, ib)
        moving = moving[moving != ic]
        xyz[moving] = rotate_about_axis(xyz[moving], xyz[ic], xyz[ic] - xyz[ib], chi - now)
    return xyz


def peptide_bonds(residues) -> np.ndarray:
    """Covalent bonds (pairs of indices into the concatenated atoms) of ``build_peptide`` output."""
    pairs, offset, prev_c = [], 0, None
    for res in residues:
        names, _, _, bonds = residue_template(res["name"])
        pairs += [(offset + a, offset + b) for a, b in bonds]
        if "OXT" in res["atoms"]:
            pairs.append((offset + names.index("C"), offset + res["atoms"].index("OXT")))
        if prev_c is not None:
            pairs.append((prev_c, offset + names.index("N")))
        prev_c = offset + names.index("C")
        offset += len(res["atoms"])
    return np.array(pairs, dtype=np.int64)


def separated_pairs(bonds: np.ndarray, n: int, max_sep: int = 3) -> set:
    """Pairs (i < j) joined by a path of ≤ max_sep bonds (1-2, 1-3, 1-4 for max_sep 3)."""
    A = np.zeros((n, n), dtype=bool)
    A[bonds[:, 0], bonds[:, 1]] = A[bonds[:, 1], bonds[:, 0]] = True
    reach = A.copy()
    step = A.copy()
    for _ in range(max_sep - 1):
        step = (step.astype(np.int64) @ A.astype(np.int64)) > 0
        reach |= step
    i, j = np.nonzero(np.triu(reach, 1))
    return set(zip(i.tolist(), j.tolist()))


# ------------------------------------------------------------------ crystal packing
def _ops(sg: gemmi.SpaceGroup):
    ops = list(sg.operations())
    den = float(gemmi.Op.DEN)
    R = np.array([op.rot for op in ops], dtype=np.float64) / den
    t = np.array([op.tran for op in ops], dtype=np.float64) / den
    return R, t


def symmetry_mates(xyz: np.ndarray, cell: gemmi.UnitCell, sg: gemmi.SpaceGroup, reach: int = 2,
                   within: float | None = None):
    """All symmetry copies of ``xyz`` (lattice translations within ±reach cells) except the
    identity copy, as Cartesian (m, 3) Å, with the source atom index of each.

    ``within``: keep only copies whose centroid lies within this distance (Å) of the
    original's centroid (default: the molecule's diameter plus 10 Å, enough for contacts < 5 Å).
    """
    orth = np.array(cell.orth.mat.tolist())
    frac = np.array(cell.frac.mat.tolist())
    f = xyz @ frac.T
    R, t = _ops(sg)
    shifts = np.array(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij")).reshape(3, -1).T
    images = np.einsum("oij,nj->oni", R, f) + t[:, None, :]            # (ops, n, 3)
    centre = images.mean(axis=1)                                        # (ops, 3)
    ctr = (centre[:, None, :] + shifts[None]) @ orth.T                  # (ops, shifts, 3) Å
    if within is None:
        radius = np.linalg.norm(xyz - xyz.mean(axis=0), axis=1).max() if len(xyz) else 0.0
        within = 2.0 * radius + 10.0
    keep = np.linalg.norm(ctr - xyz.mean(axis=0), axis=2) <= within
    keep[0, np.flatnonzero((shifts == 0).all(axis=1))[0]] = False
    o, s = np.nonzero(keep)
    pts = (images[o] + shifts[s][:, None, :]) @ orth.T                  # (kept, n, 3)
    src = np.broadcast_to(np.arange(len(xyz)), pts.shape[:2])
    return pts.reshape(-1, 3), src.reshape(-1)


def min_mate_distance(xyz, cell, sg) -> float:
    """Closest distance (Å) between the atoms and their symmetry mates (numpy/k-d tree)."""
    pts, _ = symmetry_mates(xyz, cell, sg)
    if not len(pts):
        return float("inf")
    d, _ = cKDTree(pts).query(xyz, k=1)
    return float(d.min())


def principal_frame(xyz: np.ndarray) -> np.ndarray:
    """Coordinates centred and rotated onto their principal axes (largest spread along z)."""
    c = xyz - xyz.mean(axis=0)
    w, v = np.linalg.eigh(c.T @ c)                 # ascending: smallest spread first
    v = v * np.where(v[np.abs(v).argmax(axis=0), range(3)] < 0, -1.0, 1.0)  # sign convention
    if np.linalg.det(v) < 0:
        v[:, 0] *= -1.0
    return c @ v


def pack_cell(xyz: np.ndarray, sg: gemmi.SpaceGroup, contact=CONTACT_MIN, center=(0.25, 0.25, 0.25)):
    """Orthorhombic cell for a molecule (xyz centred at 0) placed at fractional ``center``:
    edges shrunk in turn (0.5 Å, then 0.1 Å steps) while the closest symmetry contact ≥ ``contact``.

    Returns (gemmi.UnitCell, Cartesian coordinates in that cell).
    """
    edges = 2.0 * (np.ptp(xyz, axis=0) + contact) + 2.0

    def placed(e):
        return xyz + np.asarray(center) * e

    def ok(e):
        cell = gemmi.UnitCell(*e, 90, 90, 90)
        return min_mate_distance(placed(e), cell, sg) >= contact

    for step in (0.5, 0.1):
        moved = True
        while moved:
            moved = False
            for k in range(3):
                trial = edges.copy()
                trial[k] = round(trial[k] - step, 2)
                if trial[k] > 4.0 and ok(trial):
                    edges = trial
                    moved = True
    return gemmi.UnitCell(*[float(e) for e in edges], 90, 90, 90), placed(edges)


def _sphere_points(n: int) -> np.ndarray:
    """n roughly even unit vectors (Fibonacci sphere)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def place_waters(xyz, elements, cell, sg, n_waters=N_WATERS, hbond=2.85):
    """Greedy, deterministic water sites (Å) hydrogen-bonded to polar atoms of the molecule.

    A site is ``hbond`` Å from an N/O atom; ≥ 2.7 Å from every N/O and ≥ 3.3 Å from every other
    atom of the molecule; ≥ 3.0 Å from N/O and ≥ 3.3 Å from other atoms of symmetry mates
    (earlier waters and the site's own copies included). Sites with more N/O atoms within
    3.3 Å (mates included) are taken first.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    polar = np.isin(np.asarray(elements), ["N", "O"])
    dirs = _sphere_points(64)
    waters = np.zeros((0, 3))
    for _ in range(n_waters):
        atoms = np.vstack([xyz, waters])
        is_polar = np.concatenate([polar, np.ones(len(waters), dtype=bool)])
        cand = (atoms[is_polar][:, None, :] + hbond * dirs[None]).reshape(-1, 3)
        mates, src = symmetry_mates(atoms, cell, sg)
        mate_polar = is_polar[src]
        keep = _far_enough(cand, atoms[is_polar], 2.7) & _far_enough(cand, atoms[~is_polar], 3.3)
        keep &= _far_enough(cand, mates[mate_polar], 3.0) & _far_enough(cand, mates[~mate_polar], 3.3)
        cand = cand[keep]
        if len(cand):   # the site's own symmetry copies
            own, own_src = symmetry_mates(cand, cell, sg)
            d_own = np.linalg.norm(own - cand[own_src], axis=1)
            cand = cand[np.bincount(own_src[d_own < 3.0], minlength=len(cand)) == 0]
        if not len(cand):
            break
        pol = np.vstack([atoms[is_polar], mates[mate_polar]])
        n_hb = np.array([len(x) for x in cKDTree(pol).query_ball_point(cand, 3.3)])
        best = np.lexsort((np.arange(len(cand)), -n_hb))[0]
        waters = np.vstack([waters, cand[best][None]])
    return waters


def _far_enough(points, atoms, limit) -> np.ndarray:
    """True where a point is at least ``limit`` Å from all ``atoms``."""
    if not len(atoms):
        return np.ones(len(points), dtype=bool)
    return cKDTree(atoms).query(points, k=1)[0] >= limit - 1e-9


# ------------------------------------------------------------------ structure
def make_structure(residues, waters, cell, b_iso, chain_name="A") -> gemmi.Structure:
    """gemmi Structure (one chain: peptide then waters as HOH HETATM) with per-atom B (Å²)."""
    st = gemmi.Structure()
    st.name = "KICKREF_EXAMPLE"
    st.cell = cell
    st.spacegroup_hm = SPACEGROUP
    model = gemmi.Model("1")
    chain = gemmi.Chain(chain_name)
    k = 0
    for i, res in enumerate(residues):
        r = gemmi.Residue()
        r.name = res["name"]
        r.seqid = gemmi.SeqId(i + 1, " ")
        r.entity_type = gemmi.EntityType.Polymer
        for name, el, pos in zip(res["atoms"], res["elements"], res["xyz"]):
            r.add_atom(_atom(name, el, pos, b_iso[k]))
            k += 1
        chain.add_residue(r)
    for j, pos in enumerate(waters):
        r = gemmi.Residue()
        r.name = "HOH"
        r.seqid = gemmi.SeqId(101 + j, " ")
        r.het_flag = "H"
        r.entity_type = gemmi.EntityType.Water
        r.add_atom(_atom("O", "O", pos, b_iso[k]))
        k += 1
        chain.add_residue(r)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st


def _atom(name, element, pos, b):
    a = gemmi.Atom()
    a.name = name
    a.element = gemmi.Element(element)
    a.pos = gemmi.Position(*[float(v) for v in pos])
    a.occ = 1.0
    a.b_iso = float(b)
    return a


def example_b_factors(residues, n_waters: int) -> np.ndarray:
    """B (Å²) 10–25: lowest at the helix middle, rising towards its ends and along side chains;
    waters 24."""
    n_res = len(residues)
    out = []
    for i, res in enumerate(residues):
        end = abs(i - (n_res - 1) / 2.0) / ((n_res - 1) / 2.0)     # 0 middle, 1 ends
        for name in res["atoms"]:
            depth = 0 if name in ("N", "CA", "C", "O", "OXT") else _branch_depth(name)
            out.append(10.0 + 4.0 * end + 2.0 * depth)
    b = np.clip(np.array(out), 10.0, 23.0)
    return np.concatenate([b, np.full(n_waters, 24.0)])


def _branch_depth(name: str) -> int:
    """Side-chain depth from the atom's Greek letter (B=1, G=2, D=3, E=4, Z=5, H=6)."""
    return {"B": 1, "G": 2, "D": 3, "E": 4, "Z": 5, "H": 6}.get(name[1:2], 3)


# ------------------------------------------------------------------ data
def choose_d_min(cell, sg, choices=D_MIN_CHOICES, need=MIN_REFLECTIONS) -> float:
    for d in choices:
        if len(gemmi.make_miller_array(cell, sg, d)) >= need:
            return d
    return choices[-1]


def simulate_amplitudes(structure: gemmi.Structure, d_min: float, seed: int = 0):
    """Simulated FP, SIGFP and CCP4 free flags for ``structure``.

    Returns dict: hkl (n,3) int32, f_true, fp, sigfp (n,), free (n,) int32 0..19, d_min.
    """
    from ..core.model import Model
    from ..core.state import AtomState
    from ..xtal.bulk_solvent import SolventMask
    from ..core.adp import sym6_to_mat
    from ..xtal.structure_factors import StructureFactorCalculator
    cell, sg = structure.cell, structure.find_spacegroup()
    hkl = np.asarray(gemmi.make_miller_array(cell, sg, d_min), dtype=np.int32)
    model = Model.from_structure(structure)
    calc = StructureFactorCalculator(cell, sg, hkl, d_min)
    fc = calc.calculate(AtomState.from_model(model), model.element)
    fmask = SolventMask(cell, sg, hkl, d_min).fmask(structure)
    s2 = calc.s2
    frac = np.array(cell.frac.mat.tolist())
    s = hkl.astype(np.float64) @ frac                       # Cartesian reciprocal vectors, Å⁻¹
    sBs = np.einsum("ni,ij,nj->n", s, sym6_to_mat(np.array(B_ANISO)), s)
    f_true = K_OVERALL * np.exp(-0.25 * sBs) * np.abs(fc + K_SOL * np.exp(-0.25 * B_SOL * s2) * fmask)
    rng_noise = np.random.default_rng([seed, 1])
    sigma = np.sqrt((NOISE_FRACTION * f_true) ** 2 + (SIGMA_FLOOR * f_true.mean()) ** 2)
    fp = np.abs(f_true + sigma * rng_noise.standard_normal(len(hkl)))
    rng_free = np.random.default_rng([seed, 2])
    free = (rng_free.permutation(len(hkl)) % N_FREE_FLAGS).astype(np.int32)
    return {"hkl": hkl, "f_true": f_true, "fp": fp, "sigfp": sigma, "free": free, "d_min": d_min}


def write_mtz(path, cell, sg, hkl, fp, sigfp, free) -> None:
    """MTZ with H K L, FP (F), SIGFP (Q), FREE (I), written atomically."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.title = "kickref simulated example"
    mtz.spacegroup = sg
    mtz.set_cell_for_all(cell)
    ds = mtz.add_dataset("simulated")
    ds.project_name = "kickref"
    ds.crystal_name = "peptide"
    ds.wavelength = 1.0
    mtz.add_column("FP", "F")
    mtz.add_column("SIGFP", "Q")
    mtz.add_column("FREE", "I")
    data = np.column_stack([hkl, fp, sigfp, free]).astype(np.float32)
    mtz.set_data(data)
    mtz.update_reso()
    mtz.history = ["kickref.examples.peptide: simulated from a built model"]
    with atomic_path(path) as tmp:
        mtz.write_to_file(tmp)


# ------------------------------------------------------------------ the example
def rotation_z(degrees: float) -> np.ndarray:
    th = np.radians(degrees)
    return np.array([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0], [0.0, 0.0, 1.0]])


def densest_packing(xyz: np.ndarray, sg: gemmi.SpaceGroup, orientations=ORIENTATIONS):
    """``pack_cell`` for the molecule turned by each angle (degrees) about its longest principal
    axis; returns (cell, placed coordinates, angle) of the smallest cell volume."""
    frame = principal_frame(xyz)
    best = None
    for angle in orientations:
        turned = frame @ rotation_z(angle).T
        cell, placed = pack_cell(turned - turned.mean(axis=0), sg)
        if best is None or cell.volume < best[0].volume - 1e-6:
            best = (cell, placed, angle)
    return best


@functools.lru_cache(maxsize=1)
def build_true_structure_text() -> str:
    """PDB text of the true model (cached: it does not depend on the seed)."""
    sg = gemmi.SpaceGroup(SPACEGROUP)
    residues = build_peptide()
    elements = [e for r in residues for e in r["elements"]]
    cell, placed, _ = densest_packing(np.vstack([r["xyz"] for r in residues]), sg)
    waters = place_waters(placed, elements, cell, sg)
    offset = 0
    for r in residues:
        r["xyz"] = placed[offset:offset + len(r["atoms"])]
        offset += len(r["atoms"])
    b = example_b_factors(residues, len(waters))
    st = make_structure(residues, waters, cell, b)
    return st.make_pdb_string(gemmi.PdbWriteOptions())


def symmetry_contacts(structure: gemmi.Structure, cutoff: float = 4.0) -> list:
    """Contacts (Å) shorter than ``cutoff`` between atoms and symmetry mates (gemmi ContactSearch),
    as (distance, label 1, label 2) sorted by distance."""
    ns = gemmi.NeighborSearch(structure[0], structure.cell, max(5.0, cutoff)).populate()
    cs = gemmi.ContactSearch(cutoff)
    cs.ignore = gemmi.ContactSearch.Ignore.SameAsu
    out = []
    for r in cs.find_contacts(ns):
        lab = [f"{p.residue.name}{p.residue.seqid.num}:{p.atom.name}" for p in (r.partner1, r.partner2)]
        out.append((float(r.dist), lab[0], lab[1]))
    return sorted(out)


def true_structure() -> gemmi.Structure:
    """The true model of the example as a gemmi Structure (cell and space group set)."""
    st = gemmi.read_pdb_string(build_true_structure_text())
    st.setup_entities()
    return st


def build_example(outdir, seed: int = 0) -> dict:
    """Build the example into ``outdir`` (created if needed); deterministic for a given ``seed``.

    Returns {'model': example.pdb, 'start_model': example_start.pdb, 'mtz': example.mtz} as Paths.
    """
    from ..io.models import write_model
    from ..core.model import Model
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    st = true_structure()
    sg = st.find_spacegroup()
    d_min = choose_d_min(st.cell, sg)
    data = simulate_amplitudes(st, d_min, seed)

    paths = {"model": out / "example.pdb", "start_model": out / "example_start.pdb",
             "mtz": out / "example.mtz"}
    true_model = Model.from_structure(st)
    write_model(true_model, paths["model"])
    start = true_model.copy()
    rng = np.random.default_rng([seed, 3])
    start.xyz = start.xyz + rng.standard_normal(start.xyz.shape) * (SHAKE_RMS / np.sqrt(3.0))
    start.b_iso[:] = START_B
    write_model(start, paths["start_model"])
    write_mtz(paths["mtz"], st.cell, sg, data["hkl"], data["fp"], data["sigfp"], data["free"])
    return paths
