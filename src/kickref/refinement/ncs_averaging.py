"""NCS density averaging with labelled masks over the whole cell (MAIN, after Bricogne).

Each copy j of each NCS group (:mod:`kickref.xtal.ncs`) gets a mask: the grid points within
``mask_radius`` Å of its matched atoms and of every crystal-symmetry image of them, over the full
cell (so any space group and any choice of asymmetric unit work). A point reached by several
copies or images goes to the nearest atom's (``overlap='nearest'``) or is left unaveraged
(``'exclude'``, as MAPAVG's "non-molecule" points); the overlap fraction is reported.

A point z labelled (copy j, symmetry op s) is first brought into copy j's own frame,
z₀ = S_s⁻¹ z (with the lattice shift that puts it next to the labelling atom), and averaged over
the copies of the group: ρ̄(z) = (1/N) Σ_k ρ(T_k T_j⁻¹ z₀), T_k the reference → copy k operator.
The map is crystallographically symmetric, so ρ(S_s y) = ρ(y); values off the grid come from the
periodic cubic B-spline (:mod:`kickref.xtal.bspline`), the own copy's value (k = j) is the grid
value. Points outside every mask are kept (``outside='keep'``) or set to their mean ('flatten').

The same averaging runs across crystal forms (:func:`average_maps`, MAIN's multi-crystal
averaging): the copies of a group then live in several maps, each form with its own cell, space
group and labelled mask, the operators sharing one reference frame; values taken from another
form's map are put on this form's scale (mean and RMS over the masks) and the forms can be
weighted. :func:`average_map` is its one-form case.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..xtal.bspline import bspline_coefficients, bspline_eval, grid_coordinates
from ..xtal.density_map import DensityMap
from ..xtal.structure_factors import ops_arrays
from .density_combination import labelled_sphere_mask


@dataclass
class NcsMask:
    """Labelled full-cell mask: ``nearest`` (grid, int32) index op·n + i of the nearest atom image
    (−1 outside; i indexes ``atoms``), ``overlap`` (bool grid), ``atoms`` (model atom indices of
    all copies), ``copy`` (per entry of ``atoms``: index into ``copies``), ``copies`` [(group, k)]."""
    nearest: np.ndarray
    overlap: np.ndarray
    atoms: np.ndarray
    copy: np.ndarray
    copies: list


def ncs_mask(shape, cell, spacegroup, xyz, groups, mask_radius: float = 3.0) -> NcsMask:
    """The labelled mask of the groups' copies (matched atoms at ``xyz``) on a full-cell grid."""
    atoms, copy, copies = [], [], []
    for g, grp in enumerate(groups):
        for k in range(len(grp.copies)):
            a = grp.atoms[k][grp.atoms[k] >= 0]
            atoms.append(a)
            copy.append(np.full(len(a), len(copies)))
            copies.append((g, k))
    atoms, copy = np.concatenate(atoms), np.concatenate(copy)
    n_ops = len(ops_arrays(spacegroup)[0])
    code = np.arange(n_ops)[:, None] * len(copies) + copy[None, :]      # (copy, image) label
    nearest, overlap = labelled_sphere_mask(shape, cell, spacegroup, np.asarray(xyz)[atoms], mask_radius, code)
    return NcsMask(nearest, overlap, atoms, copy, copies)


def own_frame(m: NcsMask, pts, xyz, dmap: DensityMap):
    """(z₀ (n, 3) Å, copy index) of the flat grid points ``pts`` of the mask: each point mapped by
    the inverse of its labelling symmetry op, with the lattice shift that puts it next to the
    labelling atom (so that the NCS operators, which are not lattice-periodic, apply)."""
    shape, cell = dmap.shape, dmap.cell
    c = m.nearest.ravel()[pts].astype(np.int64)
    n = len(m.atoms)
    op, atom = c // n, c % n
    R, t = ops_arrays(dmap.spacegroup)
    frac_m = np.array(cell.frac.mat.tolist())
    orth = np.array(cell.orth.mat.tolist())
    f = np.stack(np.unravel_index(pts, shape), axis=1) / np.asarray(shape, dtype=np.float64)
    f0 = np.einsum("nij,nj->ni", np.linalg.inv(R)[op], f - t[op])
    f0 -= np.round(f0 - np.asarray(xyz)[m.atoms[atom]] @ frac_m.T)
    return f0 @ orth.T, m.copy[atom]


def _relative(cj, ck):
    """(R, t) of T_k T_j⁻¹: copy j's frame onto copy k's (Cartesian, Å; the two copies may live
    in different crystals, their operators sharing one reference frame)."""
    R = ck.rotation @ cj.rotation.T
    return R, ck.translation - R @ cj.translation


@dataclass
class AveragingResult:
    map: DensityMap
    stats: dict = field(default_factory=dict)


def average_map(dmap: DensityMap, xyz, groups, mask_radius: float = 3.0, overlap: str = "nearest",
                outside: str = "keep", mask: NcsMask | None = None) -> AveragingResult:
    """NCS-averaged copy of ``dmap`` (module docstring). ``xyz``: model coordinates (Å) of the
    atoms the groups index. Stats: fractions of the cell in the masks and in overlaps, and per
    group the correlation of each copy's density with the reference copy's over the reference
    mask ('ncs_cc', before averaging). The one-crystal case of :func:`average_maps`."""
    return average_maps([dmap], [xyz], [groups], mask_radius, overlap, outside, [mask])[0]


def average_maps(dmaps, xyzs, form_groups, mask_radius: float = 3.0, overlap: str = "nearest",
                 outside: str = "keep", masks=None, weights=None) -> list:
    """Averaging across crystal forms (MAIN's multi-crystal averaging; one form: NCS averaging).

    Form f has the map ``dmaps[f]``, the model coordinates ``xyzs[f]`` and the groups
    ``form_groups[f]``; group g of every form holds copies of the same molecule, their operators
    mapping one common reference frame into that form's Cartesian frame and their ``atoms``
    indexing that form's model (:func:`kickref.xtal.ncs.cross_crystal_groups`). Each form gets its
    labelled mask (its copies and their symmetry images over its cell); a masked point of form f
    labelled copy j is replaced by the weighted mean over all copies k of the group in all forms,
    ρ̄(z) = Σ_k w_k ρ'_k(T_k T_j⁻¹ z₀) / Σ_k w_k, where ρ'_k is form(k)'s map put on form f's
    scale (its mean and RMS over its masked points matched to form f's: maps of different crystals
    are on different absolute scales) and w_k the form's weight (``weights``, one per form;
    default equal). Returns one :class:`AveragingResult` per form; 'ncs_cc' (per group, from the
    form's first copy) lists the correlation with every copy of every form, in form order."""
    if overlap not in ("nearest", "exclude") or outside not in ("keep", "flatten"):
        raise ValueError("overlap must be nearest|exclude and outside keep|flatten")
    n = len(dmaps)
    if not (len(xyzs) == len(form_groups) == n) or len({len(g) for g in form_groups}) != 1:
        raise ValueError("average_maps: one map, coordinate set and group list per form, the same groups in each")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not (w >= 0).all() or not w.sum() > 0:
        raise ValueError("weights: one non-negative weight per form, not all zero")
    masks = list(masks) if masks is not None else [None] * n
    forms = []
    for f, (dmap, xyz, groups) in enumerate(zip(dmaps, xyzs, form_groups)):
        m = masks[f] or ncs_mask(dmap.shape, dmap.cell, dmap.spacegroup, xyz, groups, mask_radius)
        grid = np.asarray(dmap.grid, dtype=np.float64)
        use = m.nearest >= 0
        if overlap == "exclude":
            use &= ~m.overlap
        pts = np.flatnonzero(use)
        z0, copy = own_frame(m, pts, xyz, dmap)
        values = grid.ravel()[pts]
        mu, sd = (float(values.mean()), float(values.std())) if len(values) else (0.0, 1.0)
        forms.append({"m": m, "grid": grid, "use": use, "pts": pts, "z0": z0, "copy": copy,
                      "values": values, "coef": bspline_coefficients(grid), "mu": mu, "sd": sd or 1.0})
    results = []
    for f, F in enumerate(forms):
        dmap, avg = dmaps[f], np.zeros(len(F["pts"]))
        stats = {"mask_fraction": float(F["use"].mean()), "overlap_fraction": float(F["m"].overlap.mean()),
                 "mask_radius": mask_radius, "overlap": overlap, "groups": []}
        if n > 1:
            stats["weights"] = w.tolist()
        for g in range(len(form_groups[0])):
            cc = []
            for j, cj in enumerate(form_groups[f][g].copies):
                sel = F["copy"] == F["m"].copies.index((g, j))
                acc, wsum = w[f] * F["values"][sel], w[f]
                for f2, F2 in enumerate(forms):
                    for k, ck in enumerate(form_groups[f2][g].copies):
                        if (f2, k) == (f, j):
                            if j == 0:
                                cc.append(1.0)
                            continue
                        Rk, tk = _relative(cj, ck)
                        u = grid_coordinates(F["z0"][sel] @ Rk.T + tk, dmaps[f2].cell, dmaps[f2].shape)
                        v, _ = bspline_eval(F2["coef"], u, False)
                        if f2 != f:
                            v = (v - F2["mu"]) * (F["sd"] / F2["sd"]) + F["mu"]
                        acc += w[f2] * v
                        wsum += w[f2]
                        if j == 0:
                            cc.append(float(np.corrcoef(F["values"][sel], v)[0, 1]) if sel.sum() > 2 else 0.0)
                avg[sel] = acc / wsum
            stats["groups"].append({"chains": form_groups[f][g].chains, "ncs_cc": cc})
        out = F["grid"].copy()
        out.ravel()[F["pts"]] = avg
        use = F["use"]
        if outside == "flatten" and (~use).any():
            out[~use] = out[~use].mean()
        label = " NCS-averaged" if n == 1 else f" averaged over {n} crystal forms"
        res = DensityMap(out, dmap.cell, dmap.spacegroup, dmap.d_min, (dmap.source + label).strip(),
                         {**dmap.info, "ncs_averaging": stats})
        results.append(AveragingResult(res, stats))
    return results


def cyclic_average(dmap: DensityMap, xyz, groups, hkl, f_obs, cycles: int = 3, n_shells: int = 15,
                   mask_radius: float = 3.0, overlap: str = "nearest", outside: str = "flatten") -> AveragingResult:
    """MAIN's cyclic averaging against observed amplitudes: ``cycles`` times average the map,
    Fourier-transform it (F_avg on ``hkl``, one reflection per orbit), scale |F_avg| to ``f_obs``
    per resolution shell (least squares, k per shell), and make the next map from
    |Fo|·e^{iφ_avg} (k·F_avg where |Fo| is missing, NaN); outside the masks the map is flattened
    (``outside='flatten'``, default: solvent flattening, what makes the cycles improve phases)
    or kept. The result is the last averaged map;
    ``stats['groups']`` the NCS correlation of the input map, ``stats['cycles']`` the averaging R = Σ||Fo| − k|F_avg|| / Σ|Fo| of each cycle.
    (No figure-of-merit weighting: observed amplitudes enter with weight 1.)"""
    from ..xtal.fourier import coefficients_to_grid, grid_to_coefficients
    from .density_combination import shell_bins
    cell, sg, shape = dmap.cell, dmap.spacegroup, dmap.shape
    hkl = np.asarray(hkl)
    f_obs = np.asarray(f_obs, dtype=np.float64)
    obs = np.isfinite(f_obs)
    s2 = np.asarray(cell.calculate_1_d2_array(hkl.astype(np.int32)), dtype=np.float64)
    bins = shell_bins(s2, obs, n_shells)
    m = ncs_mask(shape, cell, sg, xyz, groups, mask_radius)
    current, r_per_cycle, first = dmap, [], None
    for _ in range(max(1, int(cycles))):
        res = average_map(current, xyz, groups, mask_radius, overlap, outside, mask=m)
        first = first or res.stats["groups"]            # NCS correlation of the input map
        f = grid_to_coefficients(res.map.grid, cell, hkl)
        a = np.abs(f)
        k = np.ones(int(bins.max()) + 1)
        for b in range(len(k)):
            sel = obs & (bins == b)
            den = float(np.sum(a[sel] ** 2))
            k[b] = float(np.sum(f_obs[sel] * a[sel]) / den) if den > 0 else 1.0
        ka = k[bins] * a
        r_per_cycle.append(float(np.sum(np.abs(f_obs[obs] - ka[obs])) / np.sum(f_obs[obs])))
        coef = np.where(obs, np.nan_to_num(f_obs) * np.exp(1j * np.angle(f)), k[bins] * f)
        current = DensityMap(coefficients_to_grid(cell, sg, hkl, coef, shape), cell, sg, dmap.d_min, dmap.source)
    res.stats["groups"] = first
    res.stats["cycles"] = [{"cycle": c + 1, "r_averaging": r} for c, r in enumerate(r_per_cycle)]
    return res
