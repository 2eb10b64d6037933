"""Partial-model refinement by density combination (MAIN's ``dens_comb`` procedure).

Given an external map (MIR, solvent-flattened, averaged, 2Fo−Fc, ...) and a partial model, the
model's structure-factor errors are reduced by filling the model density with the external map:

1. combination (every ``recombine_every`` steps), on the full-cell grid, maps band-limited to d_min:
   - ρ_ext: the external map on σ scale (zero mean, unit RMS over the cell);
   - ρ_calc: the density of the refined atoms ("model_part") synthesized from their Fc to d_min,
     scaled by k_c (least squares of ρ_calc onto ρ_ext inside the combination region) and by
     ``weight_fc`` (MAIN WEIGHT_FC, 1.1: the model map a little stronger than the best fit);
   - ρ_comb = weight_fc·k_c·ρ_calc within ``rad_comb`` (RAD_COMB, 2.8 Å) of the refined atoms
     (the model density replaces the map there), ρ_ext elsewhere inside the envelope within
     ``rad_mask`` (RAD_MASK/RAD_SOLV, 4.5 Å) of the envelope atoms ("model_mask", default the
     refined atoms), and the mean of ρ_ext over the rest (solvent flattening). Symmetry mates
     count for both regions.
2. structure factors F_comb of ρ_comb; scaled to the observed amplitudes in resolution shells
   (k per shell, MAIN ``refl shel 15``); with Fobs the "observed" amplitudes are |Fo| on the
   work set, without Fobs they are the external map's own amplitudes |F_ext| (so the procedure
   then acts as density modification of the external map's phases).
3. difference coefficients ΔF = (|Fo| − k|F_comb|)·e^{iφ_comb}/k (Fobs − Fcalc with Fcalc from the
   combined map, put on the σ scale of ρ_comb) and the map MAP_FO = |Fo|·e^{iφ_comb}/k (missing
   reflections: F_comb).
4. the refined atoms minimize T = −Σ_x Δρ(x)·ρ_model(x)·ΔV (a
   :class:`~kickref.targets.difference_map.MapConvolutionTerm`, ``kind = 'density'``, scaled by
   ``dens_scale``) plus the geometry restraints, weight from the bond RMSD as in refinement.

Phase combination (``combination='phase'``, needs Fobs and the external map's Hendrickson–Lattman
coefficients): instead of pasting densities, the phase probabilities are combined per reflection
(Read 1986, as SIGMAA and MR-SAD programs do). At each re-combination the model's FModel (all atoms
of the model, bulk solvent, scale; :class:`~kickref.xtal.fmodel.FModel`) gives σA's D and S (test
set) and the model HL A + iB = X·e^{iφ_model}, X = 2D|Fo||Fm|/V acentric, D|Fo||Fm|/V centric
(:func:`~kickref.xtal.phase_probability.model_hl`), on work reflections (not outliers); test-set
reflections keep the experimental probability only. Experimental + model HL (added) give the
centroid phase φ_comb and FOM m_comb; the combined map has coefficients m_comb·|Fo|·e^{iφ_comb}
(reflections without |Fo| left out, as in the experimental best map), on σ scale. The refined atoms
minimize, with ``target='difference'`` (default, MAIN's scheme) the map of
ΔF = m_comb|Fo|e^{iφ_comb} − D·Fm (model Fm, all atoms), with ``target='map'`` the combined map
itself (T = −Σ ρ_comb·ρ_model·ΔV: real-space convolution target), both from work reflections
only (test set, outliers left out). MAP_FO is |Fo|·e^{iφ_comb}.
Calibration of the experimental HL (``calibrate_hl``, default): the file's figures of merit are not
trusted; at each re-combination the HL are scaled, per resolution bin (equal-count bins of the work
reflections), by the factor k (A, B, C, D → k·(A, B, C, D), clipped to [0.25, 4], log k smoothed over
neighbouring bins) that maximizes the likelihood of the model phases under the scaled experimental
distribution convolved with the model's σA phase error:
L(k) = Σ_work log ∫ P_exp,k(φ)·exp(X cos(φ_model − φ)) dφ + const
(:func:`~kickref.xtal.phase_probability.calibrate_hl_scale`; σA's D, S come from the test set, so the
model's phase probability is calibrated by construction and serves as the yardstick). k per bin is
reported in the stats (``hl_scale_bins``, ``hl_scale_d_min``).
``rad_mask``, ``rad_comb``, ``weight_fc`` are not used there (``rad_comb`` only for the reported
CC of the model density with the combined map).

Reading of MAIN's text: "combining partial model density map with MIR density map into a map used
for structure factor calculation. From these Fcalc-s a difference (Fobs−Fcalc) map is calculated
and later on used for model positional derivatives" — the Fcalc of step 3 are those of the combined
map; MAP_FO (step 3), the map to look at afterwards, and the combined map are written at the end.

The weight against the restraints is set and adjusted as for every driver (:mod:`.weighting`;
default bond-RMSD target :data:`~.weighting.BOND_RMSD_MAP`, 0.02 Å). Plain real-space refinement
toward a map is in :mod:`.real_space`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import gemmi
import numba as nb
import numpy as np

from ..core.reflections import equal_count_bins, hkl_keys
from ..core.selection import resolve_selection
from ..core.state import AtomState
from ..io.maps import write_ccp4_map
from ..targets.difference_map import MapConvolutionTerm
from ..xtal.density_map import DensityMap
from ..xtal.fmodel import FModel
from ..xtal.fourier import coefficients_to_grid, grid_to_coefficients
from ..xtal.maps import MapCoefficients
from ..xtal.phase_probability import (calibrate_hl_scale, centric_phases, combine_hl, hl_centroid,
                                      hl_on_hkl, model_hl, scale_hl)
from ..xtal.structure_factors import StructureFactorCalculator, ops_arrays
from .energy import Energy
from .minimize import StopFlag
from .weighting import (BOND_RMSD_MAP, BondWeight, heavy_rmsd, initial_weight, minimize_in_chunks,
                        restraint_terms, xyz_parameters)


# ------------------------------------------------------------------------------- masks
@nb.njit(cache=True)
def _label_spheres(best, dist2, overlap, frac, code, radius, orth, ext, nearest):
    """For each grid point within ``radius`` (Å) of the fractional centres ``frac`` (periodic):
    ``best`` = index of the nearest centre (``nearest``; else of the first that reaches it),
    ``dist2`` its squared distance (Å²); ``overlap`` set where centres of two different ``code``
    values reach the point (``nearest`` only)."""
    n0, n1, n2 = best.shape
    r2 = radius * radius
    for a in range(frac.shape[0]):
        c0 = frac[a, 0] * n0
        c1 = frac[a, 1] * n1
        c2 = frac[a, 2] * n2
        for i in range(int(math.ceil(c0 - ext[0])), int(math.floor(c0 + ext[0])) + 1):
            f0 = i / n0 - frac[a, 0]
            for j in range(int(math.ceil(c1 - ext[1])), int(math.floor(c1 + ext[1])) + 1):
                f1 = j / n1 - frac[a, 1]
                x0 = orth[0, 0] * f0 + orth[0, 1] * f1
                x1 = orth[1, 0] * f0 + orth[1, 1] * f1
                x2 = orth[2, 0] * f0 + orth[2, 1] * f1
                for k in range(int(math.ceil(c2 - ext[2])), int(math.floor(c2 + ext[2])) + 1):
                    f2 = k / n2 - frac[a, 2]
                    d0 = x0 + orth[0, 2] * f2
                    d1 = x1 + orth[1, 2] * f2
                    d2 = x2 + orth[2, 2] * f2
                    r = d0 * d0 + d1 * d1 + d2 * d2
                    if r <= r2:
                        p, q, s = i % n0, j % n1, k % n2
                        b = best[p, q, s]
                        if not nearest:
                            if b < 0:
                                best[p, q, s] = a
                            continue
                        if b >= 0 and code[b] != code[a]:
                            overlap[p, q, s] = True
                        if b < 0 or r < dist2[p, q, s]:
                            best[p, q, s] = a
                            dist2[p, q, s] = r


def labelled_sphere_mask(shape, cell, spacegroup, xyz, radius: float, code=None):
    """Full-cell labelling by the nearest atom image within ``radius`` Å (symmetry mates
    included). Returns (nearest, overlap): ``nearest`` int32 grid, −1 outside, else the index
    op·n + atom of the image (op: index into :func:`~kickref.xtal.structure_factors.ops_arrays`,
    n = len(xyz)); ``overlap`` bool grid, where images of different ``code`` (per atom and op,
    shape (n_ops, n)) reach the point. Without ``code`` the index is of any image within reach
    (cheaper) and ``overlap`` stays False."""
    best = np.full(tuple(shape), -1, dtype=np.int32)
    overlap = np.zeros(tuple(shape), dtype=np.bool_)
    if len(xyz) == 0 or radius <= 0:
        return best, overlap
    frac_m = np.array(cell.frac.mat.tolist())
    orth = np.array(cell.orth.mat.tolist())
    R, t = ops_arrays(spacegroup)
    f = np.asarray(xyz, dtype=np.float64) @ frac_m.T
    mates = (np.einsum("oij,nj->oni", R, f) + t[:, None, :]).reshape(-1, 3)
    mates -= np.floor(mates)
    recip_len = np.sqrt((frac_m ** 2).sum(axis=1))
    ext = radius * recip_len * np.asarray(shape, dtype=np.float64)
    nearest = code is not None
    code = np.asarray(code, np.int64).reshape(-1) if nearest else np.zeros(1, np.int64)
    dist2 = np.zeros(tuple(shape) if nearest else (1, 1, 1), np.float32)
    _label_spheres(best, dist2, overlap, np.ascontiguousarray(mates), code, float(radius), orth, ext, nearest)
    return best, overlap


def sphere_mask(shape, cell, spacegroup, xyz, radius: float) -> np.ndarray:
    """Boolean full-cell grid: points within ``radius`` Å of any atom or symmetry mate."""
    return labelled_sphere_mask(shape, cell, spacegroup, xyz, radius)[0] >= 0


# ---------------------------------------------------------------------- combination
def shell_bins(s2: np.ndarray, used: np.ndarray, n_shells: int) -> np.ndarray:
    """Resolution shell of each reflection: shells of about equal numbers of used reflections,
    at least 20 used reflections a shell."""
    n_shells = max(1, min(int(n_shells), int(used.sum()) // 20 or 1))
    return equal_count_bins(s2, n_shells, used=used)[0]


class DensityCombination:
    """Combines an external map with the density of a partial model (see the module docstring).

    ``DensityCombination(model, external_map, data=None, part=None, envelope=None, ...)``;
    ``part``/``envelope``: selections (None: all atoms; masks, indices or gemmi selection
    strings) of the refined atoms (MAIN ``model_part``) and of the atoms defining the envelope
    (``model_mask``; the refined atoms are always included). :meth:`update` re-combines and
    refreshes :attr:`term`, the energy term the refined atoms minimize.
    ``combination``: 'real-space' (MAIN's) or 'phase' (needs ``data`` and ``hl`` = (hkl (n, 3),
    HL A, B, C, D (n, 4)) of the external map's phases, any symmetry equivalents); ``target``
    ('difference' | 'map') chooses what the atoms minimize in 'phase' mode; ``calibrate_hl``
    (phase mode, default True): the experimental HL are scaled per resolution bin by the
    maximum-likelihood factor judged by the model's σA phases, recomputed at each re-combination
    (:func:`~kickref.xtal.phase_probability.calibrate_hl_scale`).
    """

    def __init__(self, model, external_map: DensityMap, data=None, part=None, envelope=None,
                 rad_mask: float = 4.5, rad_comb: float = 2.8, weight_fc: float = 1.1,
                 dens_scale: float = 1.0, d_min: float | None = None, n_shells: int = 15,
                 combination: str = "real-space", hl=None, target: str = "difference",
                 calibrate_hl: bool = True):
        if combination not in ("real-space", "phase"):
            raise ValueError(f"combination must be 'real-space' or 'phase', not {combination!r}")
        if target not in ("difference", "map"):
            raise ValueError(f"target must be 'difference' or 'map', not {target!r}")
        if combination == "phase" and (data is None or hl is None):
            raise ValueError("phase combination needs the observed data and the map's HL coefficients")
        self.combination, self.target = combination, target
        self.calibrate_hl = bool(calibrate_hl)
        self.n_shells = int(n_shells)
        self.model = model
        n = model.n_atoms
        self.part = resolve_selection(part, n, model)
        self.envelope = self.part | (resolve_selection(envelope, n, model) if envelope is not None
                                     else self.part)
        self.rad_mask, self.rad_comb = float(rad_mask), float(rad_comb)
        self.weight_fc = float(weight_fc)
        cell, sg = model.cell, model.spacegroup
        self.cell, self.spacegroup = cell, sg
        if data is not None:
            d_min = max(d_min or 0.0, data.d_min)
        d_min = float(d_min or external_map.resolution)
        self.d_min = d_min
        hkl = np.asarray(gemmi.make_miller_array(cell, sg, d_min * (1 - 1e-6)), dtype=np.int32)
        self.hkl = hkl
        self.calc = StructureFactorCalculator(cell, sg, hkl, d_min)
        self.shape = self.calc.shape
        ext = external_map.normalized()
        self.ext = ext.resampled(self.shape, d_min)
        self.s2 = np.asarray(cell.calculate_1_d2_array(hkl), dtype=np.float64)
        self.f_ext = grid_to_coefficients(self.ext, cell, hkl)
        if data is not None:
            pos = {k: i for i, k in enumerate(hkl_keys(hkl).tolist())}
            idx = np.array([pos.get(k, -1) for k in hkl_keys(data.hkl).tolist()], dtype=np.int64)
            ok = idx >= 0
            self.f_obs = np.full(len(hkl), np.nan)
            self.f_obs[idx[ok]] = data.f_obs[ok]
            self.used = np.zeros(len(hkl), bool)
            self.used[idx[ok]] = data.work[ok]
            self.observed = np.isfinite(self.f_obs)
            self.amplitudes_from = "Fobs (work set)"
        else:
            self.f_obs = np.abs(self.f_ext)
            self.used = self.f_obs > 0
            self.observed = self.used.copy()
            self.amplitudes_from = "external map"
        self.bins = shell_bins(self.s2, self.used, n_shells)
        self.term = MapConvolutionTerm(self.calc, model.element, self.part, None, dens_scale,
                                       name="density_combination")
        self.term.kind = "density"
        self.combined = None
        self.phases = None                                         # phase mode: last combination
        self.f_comb = None
        self.k_shell = None
        self.stats = {}
        if combination == "phase":
            self._init_phase(data, hl, idx, ok)

    def _init_phase(self, data, hl, idx, ok):
        """Phase mode: the data-indexed experimental HL, centric phases, FModel, index into hkl."""
        self.data = data
        self.data_index = np.where(ok, idx, -1)                     # data row → row of self.hkl
        self.in_set = self.data_index >= 0
        self.hl_exp = hl_on_hkl(hl[0], hl[1], data.hkl, data.spacegroup)
        self.data_centric, self.data_phic = centric_phases(data.hkl, data.spacegroup)
        self.fmodel = FModel(self.model, data)
        self._fmodel_fitted = False
        self.amplitudes_from = "Fobs (phase combination)"
        self.stats["n_hl_matched"] = int(np.isfinite(self.hl_exp).all(axis=1).sum())

    def _on_hkl(self, values):
        """Data-indexed complex values → one per self.hkl (0 where the data have none)."""
        out = np.zeros(len(self.hkl), dtype=np.complex128)
        out[self.data_index[self.in_set]] = values[self.in_set]
        return out

    # ----------------------------------------------------------------------------
    def masks(self, state: AtomState):
        """(envelope mask, combination mask) on the grid for the current coordinates."""
        env = sphere_mask(self.shape, self.cell, self.spacegroup, state.xyz[self.envelope], self.rad_mask)
        comb = sphere_mask(self.shape, self.cell, self.spacegroup, state.xyz[self.part], self.rad_comb)
        return env | comb, comb

    def model_map(self, state: AtomState) -> np.ndarray:
        """Density of the refined atoms to d_min (from their Fc), e/Å³, on the grid."""
        sub = state.subset(np.flatnonzero(self.part))
        fc = self.calc.calculate(sub, self.term._el_sel)
        return coefficients_to_grid(self.cell, self.spacegroup, self.hkl, fc, self.shape)

    def combine(self, state: AtomState) -> np.ndarray:
        """The combined map ρ_comb (σ units of the external map) for the current model."""
        env, comb = self.masks(state)
        rho_c = self.model_map(state)
        ext = self.ext
        den = float(np.sum(rho_c[comb] ** 2))
        k_c = float(np.sum(ext[comb] * rho_c[comb]) / den) if den > 0 else 0.0
        flat = float(np.mean(ext[~env])) if (~env).any() else 0.0
        out = np.where(env, ext, flat)
        out[comb] = self.weight_fc * k_c * rho_c[comb]
        cc = float(np.corrcoef(ext[comb], rho_c[comb])[0, 1]) if comb.sum() > 2 else float("nan")
        self.stats.update({"k_model_map": k_c, "cc_model_map": cc, "solvent_level": flat,
                           "envelope_fraction": float(env.mean()), "combination_fraction": float(comb.mean())})
        self.combined = out
        return out

    def update_phase(self, state: AtomState) -> dict:
        """Phase mode: FModel, σA, model HL + experimental HL → φ_comb, m_comb; the combined map,
        MAP_FO and the term's coefficients (see the module docstring)."""
        fm_ = self.fmodel
        fm_.update_all(state, full=not self._fmodel_fitted)
        self._fmodel_fitted = True
        d = self.data
        sa = fm_.sigmaa()
        fm = fm_.f_model
        use = fm_.work                                             # work set, outliers excluded
        hl_m = model_hl(d.f_obs, d.sigma, fm, d.centric, d.epsilon, sa.D, sa.S)
        hl_m[~use] = 0.0
        has_exp = np.isfinite(self.hl_exp).all(axis=1)
        hl_e = self.hl_exp
        cal = {}
        if self.calibrate_hl:
            hl_e, cal = self.calibrated_hl(hl_m, use & has_exp)
        hl_c = combine_hl(hl_e, hl_m)
        phi, m = hl_centroid(hl_c, self.data_centric, self.data_phic)
        _, m_model = hl_centroid(hl_m, self.data_centric, self.data_phic)
        _, m_exp = hl_centroid(np.where(has_exp[:, None], self.hl_exp, 0.0), self.data_centric, self.data_phic)
        if self.calibrate_hl:
            _, m_cal = hl_centroid(np.where(has_exp[:, None], hl_e, 0.0), self.data_centric, self.data_phic)
            cal["mean_fom_experimental_calibrated"] = float(m_cal[has_exp].mean()) if has_exp.any() else 0.0
        e = np.exp(1j * phi)
        self.phases = {"phi": phi, "fom": m, "hl_combined": hl_c, "hl_experimental": hl_e, "hl_model": hl_m,
                       "f_model": fm, "D": np.asarray(sa.D), "model_used": use}
        f_best = self._on_hkl(m * d.f_obs * e)
        grid = coefficients_to_grid(self.cell, self.spacegroup, self.hkl, f_best, self.shape)
        mean, rms = float(grid.mean()), float(grid.std())
        k = 1.0 / rms if rms > 0 else 1.0                         # σ scale of the combined map
        self.combined = (grid - mean) * k
        self.f_comb = f_best * k
        self.f_fo = self._on_hkl(d.f_obs * e) * k
        # the atoms' target uses work reflections only (test set and outliers left out)
        if self.target == "map":
            coef = self._on_hkl(np.where(use, m * d.f_obs * e, 0.0)) * k
        else:
            coef = self._on_hkl(np.where(use, m * d.f_obs * e - sa.D * fm, 0.0)) * k
        self.term.set_coefficients(coef, state)
        env, comb = self.masks(state)
        rho_c = self.model_map(state)
        cc = float(np.corrcoef(self.combined[comb], rho_c[comb])[0, 1]) if comb.sum() > 2 else float("nan")
        r = fm_.statistics(n_shells=1)
        self.stats.update({"r_combined": r["r_work"], "r_free": r.get("r_free"), "cc_model_map": cc,
                           "mean_fom_combined": float(m.mean()), "mean_fom_model": float(m_model[use].mean()),
                           "mean_fom_experimental": float(m_exp[has_exp].mean()) if has_exp.any() else 0.0,
                           "amplitudes_from": self.amplitudes_from, **cal})
        return dict(self.stats)

    def calibrated_hl(self, hl_m, sel):
        """Experimental HL scaled per resolution bin by the maximum-likelihood factor k judged by
        the model's σA HL ``hl_m`` on the reflections ``sel`` (work set with both estimates):
        equal-count bins (``n_shells``, at least 200 reflections a bin), k in [0.25, 4], smoothed
        over neighbouring bins (:func:`~kickref.xtal.phase_probability.calibrate_hl_scale`);
        reflections outside ``sel`` (test set) get the k of their resolution bin. Returns (scaled
        HL, stats: k per bin and its bins' upper resolution, mean k)."""
        d = self.data
        sel = sel & np.any(hl_m[:, :2] != 0, axis=1)
        n_bins = max(1, min(self.n_shells, int(sel.sum()) // 200))
        bins, edges = equal_count_bins(d.s2, n_bins, used=sel)
        res = calibrate_hl_scale(self.hl_exp, hl_m, self.data_centric, self.data_phic, np.where(sel, bins, -1))
        k_bin = res["k_bin"] if len(res["k_bin"]) == n_bins else np.ones(n_bins)
        hl_e = scale_hl(self.hl_exp, k_bin[bins])
        d_hi = [float(1.0 / np.sqrt(e)) for e in edges] + [float(d.d_min)]
        stats = {"hl_scale_mean": float(np.exp(np.mean(np.log(k_bin)))),
                 "hl_scale_bins": [round(float(k), 4) for k in k_bin],
                 "hl_scale_raw": [round(float(k), 4) for k in res["k_raw"]],
                 "hl_scale_d_min": [round(x, 3) for x in d_hi],
                 "hl_scale_log_lik_gain": float(np.sum(res["gain"]))}
        return hl_e, stats

    def update(self, state: AtomState) -> dict:
        """Re-combine, compute F_comb, the shell scales, ΔF and MAP_FO; refresh :attr:`term`."""
        if self.combination == "phase":
            return self.update_phase(state)
        rho = self.combine(state)
        f = grid_to_coefficients(rho, self.cell, self.hkl)
        a = np.abs(f)
        u = self.used
        fo = np.where(self.observed, self.f_obs, 0.0)
        nb_ = int(self.bins.max()) + 1
        num = np.bincount(self.bins[u], weights=fo[u] * a[u], minlength=nb_)
        den = np.bincount(self.bins[u], weights=a[u] ** 2, minlength=nb_)
        k_bin = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
        k_bin = np.where(k_bin > 0, k_bin, 1.0)
        k = k_bin[self.bins]
        phase = np.where(a > 0, f / np.maximum(a, 1e-300), 0)
        delta = np.where(u, (fo - k * a) * phase / k, 0)
        self.f_comb = f
        self.k_shell = k_bin
        self.f_fo = np.where(self.observed, fo * phase / k, f)
        self.term.set_coefficients(delta, state)
        r = float(np.sum(np.abs(fo[u] - k[u] * a[u])) / max(np.sum(fo[u]), 1e-300))
        self.stats.update({"r_combined": r, "amplitudes_from": self.amplitudes_from})
        return dict(self.stats)

    def map_coefficients(self) -> MapCoefficients | None:
        """Phase mode: the last combination as map coefficients on the data's reflections (None in
        real-space mode): FWT = m_comb|Fo|e^{iφ_comb} (the combined map), DELFWT = FWT − D·Fm on
        the reflections whose model phases were used (work set, not outliers; 0 elsewhere), FC_ALL
        = Fm (all atoms), FOM = m_comb; ``phases`` holds φ_comb and the HL (combined, experimental
        as used, model)."""
        if self.combination != "phase" or self.phases is None:
            return None
        d, p = self.data, self.phases
        fwt = p["fom"] * d.f_obs * np.exp(1j * p["phi"])
        delfwt = np.where(p["model_used"], fwt - p["D"] * p["f_model"], 0.0)
        return MapCoefficients(d.cell, d.spacegroup, d.hkl, fwt, delfwt, p["f_model"], p["fom"], d.f_obs,
                               d.sigma, np.asarray(d.free, bool) if d.has_free else np.zeros(len(d.hkl), bool),
                               np.ones(len(d.hkl), bool), {"phases": "combined (experimental HL + model σA HL)"})

    def combined_map(self) -> DensityMap:
        return DensityMap(self.combined.copy(), self.cell, self.spacegroup, self.d_min, "combined map")

    def fo_map(self) -> DensityMap:
        """MAP_FO: observed amplitudes with the combined map's phases (σ scale of ρ_comb)."""
        g = coefficients_to_grid(self.cell, self.spacegroup, self.hkl, self.f_fo, self.shape)
        return DensityMap(g, self.cell, self.spacegroup, self.d_min, "MAP_FO")


# ----------------------------------------------------------------------------- driver
@dataclass
class DensityCombinationResult:
    model: object
    state: AtomState
    combined_map: DensityMap
    fo_map: DensityMap
    history: list = field(default_factory=list)
    files: list = field(default_factory=list)
    weight: float = 0.0
    interrupted: bool = False
    map_coefficients: MapCoefficients | None = None     # phase mode: the last combination
    phases: dict | None = None                          # phase mode: φ_comb, FOM, HL (data order)


def run_density_combination(model, external_map: DensityMap, restraints, data=None, part=None,
                            envelope=None, rad_mask: float = 4.5, rad_comb: float = 2.8,
                            weight_fc: float = 1.1, dens_scale: float = 1.0, steps: int = 120,
                            recombine_every: int = 15, weight: float | None = None,
                            bond_rmsd: float = BOND_RMSD_MAP, weight_every: int = 100, output_map=None,
                            output_fo_map=None, log=None, stop=None, recombine=None,
                            n_shells: int = 15, combination: str = "real-space", hl=None,
                            target: str = "difference", calibrate_hl: bool = True) -> DensityCombinationResult:
    """Refine the ``part`` atoms of ``model`` (in place) by density combination.

    ``steps`` L-BFGS steps on the coordinates in chunks of ``recombine_every`` (MAIN MIN_STEP 120,
    RE_PHASE 15), re-combining after each; the density weight starts from the gradient ratio
    (as the X-ray weight) and is adjusted toward ``bond_rmsd`` (Å) every ``weight_every`` steps
    unless ``weight`` is given. At the end the combined map (``output_map``) and MAP_FO
    (``output_fo_map``) are written as CCP4 maps when paths are given. ``recombine(dc, state)``,
    when given, is called instead of ``dc.update(state)`` at the start and at each re-combination
    (the macro interpreter runs MINIMIZE's phase macro there); it returns ``dc.update``'s stats.
    ``n_shells``: resolution shells of the amplitude scaling (MAIN ``refl shel``).
    ``combination``/``hl``/``target``: see :class:`DensityCombination` ('phase': reciprocal-space
    phase combination with the HL coefficients ``hl`` = (hkl, abcd); needs ``data``);
    ``calibrate_hl``: scale the HL per resolution bin by the maximum-likelihood factor (phase mode).
    """
    log = log or (lambda s: None)
    stop = stop if stop is not None else StopFlag()
    t0 = time.perf_counter()
    state = AtomState.from_model(model)
    dc = DensityCombination(model, external_map, data, part, envelope, rad_mask, rad_comb, weight_fc,
                            dens_scale, n_shells=n_shells, combination=combination, hl=hl, target=target,
                            calibrate_hl=calibrate_hl)
    geometry = [t for t in restraint_terms(restraints) if t.kind == "geometry"]
    energy = Energy([dc.term] + geometry, weights={"density": 1.0})
    params = xyz_parameters(state, restraints, dc.part)
    recombine = recombine or (lambda d, s: d.update(s))
    st = recombine(dc, state)
    w0 = initial_weight(dc.term, state, params.atoms, bond_rmsd) if weight is None else float(weight)
    w = BondWeight(w0, bond_rmsd, fixed=weight is not None)
    history = [{"step": 0, "weight": w.value, "rmsd_bond": heavy_rmsd(restraints, state), **st}]
    log(f"density combination: {int(dc.part.sum())} refined atoms, envelope {int(dc.envelope.sum())} "
        f"atoms, d_min {dc.d_min:.2f} Å, amplitudes from {dc.amplitudes_from}"
        + (f", target {dc.target}, {st['n_hl_matched']} reflections with HL" if combination == "phase" else ""))
    log(f"  step {0:5d}  R(comb) {st['r_combined']:.4f}  CC(model map) {st['cc_model_map']:.3f}  "
        f"weight {w.value:.3g}" + (f"  HL scale {st['hl_scale_mean']:.2f}" if "hl_scale_mean" in st else ""))

    def report(done, used):
        st = dc.stats
        rb = heavy_rmsd(restraints, state)
        history.append({"step": done, "weight": w.value, "rmsd_bond": rb, **st})
        log(f"  step {done:5d}  R(comb) {st['r_combined']:.4f}  CC(model map) {st['cc_model_map']:.3f}"
            f"  rmsBOND {rb:.4f}  weight {w.value:.3g}")

    with stop:
        # the target changes at each re-combination: no stop at a chunk's convergence
        minimize_in_chunks(energy, params, state, steps, recombine_every, "density", lambda: w.value, stop,
                           rephase=lambda: recombine(dc, state),
                           adjust=lambda: w.adjust(heavy_rmsd(restraints, state)),
                           weight_every=weight_every, report=report, stop_at_convergence=False)
    model.xyz[:] = state.xyz
    cmap, fomap = dc.combined_map(), dc.fo_map()
    files = []
    if output_map:
        files.append(write_ccp4_map(cmap, output_map))
    if output_fo_map:
        files.append(write_ccp4_map(fomap, output_fo_map))
    for f in files:
        log(f"wrote {f}")
    history[-1]["time"] = time.perf_counter() - t0
    return DensityCombinationResult(model, state, cmap, fomap, history, files, w.value, bool(stop),
                                    dc.map_coefficients(), dc.phases)
