"""Non-bonded repulsion: neighbour list with crystal symmetry, contact distances d0.

Contact distances follow REFMAC/servalcat (VDWR keywords): d0 = r_i + r_j with radii from
the energy library (``vdw_radius`` when the model has hydrogens, else the united-atom
``vdwh_radius``); pairs 1-4 apart in the bond graph get d0 + Δ_i + Δ_j (Δ: O −0.1, N −0.1,
C −0.15, other −0.15); H-bond donor–acceptor pairs d0 − 0.3; acceptor–polar-H pairs
r_acceptor + 0.1; pairs with a metal ion the sum of ionic radii. σ = 0.2 Å throughout.
1-2 and 1-3 pairs, 1-4 pairs inside one plane restraint, pairs of different alternative
conformers (A vs B), pairs joined by an explicit connection record (LINK, metal
coordination) and symmetry contacts whose occupancies sum to 1 or less are excluded.

Symmetry mates: pair k is atom ``i`` with the image R_s·x_j + t_k of atom ``j``. Contacts
inside the asymmetric unit are listed once (i < j) with weight 1; contacts with symmetry
images are listed from both sides with weight 1/2, so the energy is that of the crystal
per asymmetric unit. An atom's own images are never contacts (an atom on a special position
sits on them; see :mod:`kickref.xtal.site_symmetry`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from . import kernels


@dataclass
class NonbondedParameters:
    sigma: float = 0.2
    hbond_dinc_ad: float = -0.3
    hbond_dinc_ah: float = 0.1
    dinc_14: dict = None
    dinc_14_other: float = -0.15
    margin: float = 1.0            # Å added to d0 when listing neighbours

    def __post_init__(self):
        if self.dinc_14 is None:
            self.dinc_14 = {"O": -0.1, "N": -0.1, "C": -0.15}


HB_CODES = {"N": 0, "D": 1, "A": 2, "B": 3, "H": 4}


class SymmetryOps:
    """Cartesian rotations and translations of the space-group operations."""

    def __init__(self, cell, spacegroup, use_symmetry=True):
        self.orth = np.array(cell.orth.mat.tolist(), dtype=np.float64)
        self.frac = np.array(cell.frac.mat.tolist(), dtype=np.float64)
        self.use_symmetry = bool(use_symmetry)
        rots, trans = [], []
        ops = list(spacegroup.operations()) if use_symmetry else []
        if not ops:
            rots, trans = [np.eye(3)], [np.zeros(3)]
        for op in ops:
            rots.append(np.array(op.rot, dtype=np.float64) / op.DEN)
            trans.append(np.array(op.tran, dtype=np.float64) / op.DEN)
        self.frac_rot = np.array(rots)
        self.frac_tran = np.array(trans)
        # identity first (gemmi lists it first; check)
        assert np.allclose(self.frac_rot[0], np.eye(3)) and np.allclose(self.frac_tran[0], 0)
        self.cart_rot = np.einsum("ab,sbc,cd->sad", self.orth, self.frac_rot, self.frac)
        self.recip_len = np.sqrt((self.frac ** 2).sum(axis=1))  # |a*|, |b*|, |c*| in 1/Å

    @property
    def n_ops(self):
        return len(self.frac_rot)


def find_pairs(xyz, symops: SymmetryOps, cutoff: float):
    """All atom pairs closer than ``cutoff`` (Å), with symmetry images.

    Returns (i, j, op, translation (m,3) Å, distance, is_asu) where the image of j is
    cart_rot[op] @ x_j + translation; asu pairs have i < j.
    """
    tree = cKDTree(xyz)
    asu = tree.query_pairs(cutoff, output_type="ndarray")
    ai, aj = asu[:, 0].astype(np.int64), asu[:, 1].astype(np.int64)
    a_d = np.sqrt(((xyz[ai] - xyz[aj]) ** 2).sum(axis=1))
    out_i, out_j, out_op, out_t, out_d = [ai], [aj], [np.zeros(len(ai), np.int64)], \
        [np.zeros((len(ai), 3))], [a_d]
    is_asu = [np.ones(len(ai), bool)]
    if symops.use_symmetry:
        f = xyz @ symops.frac.T
        e = cutoff * symops.recip_len
        lo, hi = f.min(axis=0) - e, f.max(axis=0) + e
        img_j, img_op, img_shift = [], [], []
        for s in range(symops.n_ops):
            g = f @ symops.frac_rot[s].T + symops.frac_tran[s]
            gmin, gmax = g.min(axis=0), g.max(axis=0)
            ranges = [range(int(np.floor(lo[k] - gmax[k])), int(np.ceil(hi[k] - gmin[k])) + 1)
                      for k in range(3)]
            for shift in itertools.product(*ranges):
                if s == 0 and shift == (0, 0, 0):
                    continue
                gs = g + np.array(shift, dtype=np.float64)
                inside = np.all((gs >= lo) & (gs <= hi), axis=1)
                if inside.any():
                    idx = np.flatnonzero(inside)
                    img_j.append(idx)
                    img_op.append(np.full(len(idx), s, np.int64))
                    img_shift.append(np.broadcast_to(np.array(shift, np.float64), (len(idx), 3)))
        if img_j:
            img_j = np.concatenate(img_j)
            img_op = np.concatenate(img_op)
            img_shift = np.concatenate(img_shift)
            trans = (symops.frac_tran[img_op] + img_shift) @ symops.orth.T
            pos = np.einsum("kab,kb->ka", symops.cart_rot[img_op], xyz[img_j]) + trans
            sdm = tree.sparse_distance_matrix(cKDTree(pos), cutoff, output_type="ndarray")
            si = sdm["i"].astype(np.int64)
            sk = sdm["j"].astype(np.int64)
            out_i.append(si)
            out_j.append(img_j[sk])
            out_op.append(img_op[sk])
            out_t.append(trans[sk])
            out_d.append(sdm["v"])
            is_asu.append(np.zeros(len(si), bool))
    return (np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_op),
            np.concatenate(out_t), np.concatenate(out_d), np.concatenate(is_asu))


def _pair_keys(i, j, n):
    lo = np.minimum(i, j)
    hi = np.maximum(i, j)
    return lo.astype(np.int64) * n + hi


def _in_sorted(keys, sorted_keys):
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


class NonbondedList:
    """Neighbour list for the repulsion term, rebuilt when an atom moved > margin/2."""

    def __init__(self, n_atoms, symops, radius, hb_code, dinc14, is_metal, ion_radius,
                 conformer, excluded_keys, keys_14, params: NonbondedParameters,
                 active=None, occupancy=None):
        self.n = n_atoms
        self.symops = symops
        self.radius = radius            # (n,) Å
        self.hb_code = hb_code          # (n,) int
        self.dinc14 = dinc14            # (n,) Å
        self.is_metal = is_metal
        self.ion_radius = ion_radius
        self.conformer = conformer      # (n,) int, 0 = shared, k>0 = altloc k
        self.excluded_keys = np.unique(excluded_keys)
        self.keys_14 = np.unique(keys_14)
        self.params = params
        self.active = np.ones(n_atoms, bool) if active is None else active
        self.occupancy = np.ones(n_atoms) if occupancy is None else occupancy
        self.max_d0 = 2.0 * float(np.nanmax(np.append(radius[self.active], 0.0)))
        self.xyz_built = None
        self.n_builds = 0

    # ------------------------------------------------------------------ build
    def build(self, xyz):
        p = self.params
        i, j, op, t, d, is_asu = find_pairs(xyz, self.symops, self.max_d0 + p.margin)
        act = self.active[i] & self.active[j]
        self_img = (i == j) & ~is_asu          # an atom and its own image
        keep = act & ~self_img
        ci, cj = self.conformer[i], self.conformer[j]
        keep &= (ci == 0) | (cj == 0) | (ci == cj)
        # an image of a partly occupied group may overlap it (e.g. on a symmetry axis)
        keep &= is_asu | (self.occupancy[i] + self.occupancy[j] > 1.0001)
        keys = _pair_keys(i, j, self.n)
        keep &= ~(is_asu & _in_sorted(keys, self.excluded_keys))
        i, j, op, t, d, is_asu, keys = (a[keep] for a in (i, j, op, t, d, is_asu, keys))
        is14 = is_asu & _in_sorted(keys, self.keys_14)
        d0 = self.contact_distance(i, j, is14)
        close = d < d0 + p.margin
        self.pi, self.pj, self.pop = i[close], j[close], op[close]
        self.ptr = np.ascontiguousarray(t[close])
        self.d0 = d0[close]
        self.is14 = is14[close]
        self.weight = np.where(is_asu[close], 1.0, 0.5)
        self.sigma = np.full(len(self.pi), p.sigma)
        self.actual = np.zeros(len(self.pi))
        self.xyz_built = xyz.copy()
        self.n_builds += 1

    def contact_distance(self, i, j, is14):
        p = self.params
        ri, rj = self.radius[i], self.radius[j]
        d0 = ri + rj
        hi, hj = self.hb_code[i], self.hb_code[j]
        don_i, acc_i = (hi == 1) | (hi == 3), (hi == 2) | (hi == 3)
        don_j, acc_j = (hj == 1) | (hj == 3), (hj == 2) | (hj == 3)
        hb_ad = (don_i & acc_j) | (acc_i & don_j)
        d0 = np.where(hb_ad, ri + rj + p.hbond_dinc_ad, d0)
        ah_i = acc_i & (hj == 4)
        ah_j = acc_j & (hi == 4)
        d0 = np.where(ah_i, ri + p.hbond_dinc_ah, d0)
        d0 = np.where(ah_j & ~ah_i, rj + p.hbond_dinc_ah, d0)
        hb = hb_ad | ah_i | ah_j
        metal = (self.is_metal[i] | self.is_metal[j]) & ~hb
        ion = self.ion_radius[i] + self.ion_radius[j]
        d0 = np.where(metal & np.isfinite(ion), ion, d0)
        d0 = np.where(is14, ri + rj + self.dinc14[i] + self.dinc14[j], d0)
        return d0

    def ensure(self, xyz):
        if (self.xyz_built is None or self.xyz_built.shape != xyz.shape
                or kernels.max_displacement(xyz, self.xyz_built) > 0.5 * self.params.margin):
            self.build(xyz)

    def compute(self, xyz, grad, g):
        self.ensure(xyz)
        return kernels.nonbonded(xyz, self.pi, self.pj, self.pop, self.ptr,
                                 self.symops.cart_rot, self.d0, self.sigma, self.weight,
                                 self.actual, grad, g)
