"""σA-weighted map coefficients: 2mFo−DFc (FWT/PHWT), mFo−DFc (DELFWT/PHDELWT), Fmodel, FOM.

- Phases are those of Fmodel (scaled Fc + bulk solvent).
- Acentric: FWT = 2m|Fo| − D|Fm|; centric: FWT = m|Fo|; DELFWT = m|Fo| − D|Fm| for both.
- Reflections without Fo inside the data's resolution range ("missing") get FWT = D·Fm and
  DELFWT = 0; test-set reflections are treated the same way by default, so the maps do not
  use them (``include_free=True`` uses them like work reflections).
- D and S per resolution bin come from the test set (all reflections without one, with a warning).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np

from ..core.reflections import hkl_keys
from . import sigmaa as _sigmaa
from .scaling import cartesian_s, quad_forms
from .structure_factors import StructureFactorCalculator


@dataclass
class MapCoefficients:
    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    hkl: np.ndarray                     # (n,3) complete set within the data's resolution range
    fwt: np.ndarray                     # complex 2mFo−DFc
    delfwt: np.ndarray                  # complex mFo−DFc
    fmodel: np.ndarray                  # complex Fmodel (scaled Fc + bulk solvent; MTZ FC_ALL/PHIC_ALL)
    fom: np.ndarray                     # m (0 where Fo missing)
    f_obs: np.ndarray                   # |Fo| (NaN where missing)
    sigma: np.ndarray
    free: np.ndarray                    # bool
    observed: np.ndarray                # bool: Fo present
    info: dict = field(default_factory=dict)

    @property
    def d_min(self) -> float:
        return float(1.0 / np.sqrt(self.cell.calculate_1_d2_array(self.hkl.astype(np.int32)).max()))


def missing_hkl(cell, spacegroup, hkl_obs, d_min, d_max) -> np.ndarray:
    """ASU reflections within [d_min, d_max] not present in ``hkl_obs``."""
    allh = np.asarray(gemmi.make_miller_array(cell, spacegroup, d_min * (1 - 1e-6), d_max * (1 + 1e-6)),
                      dtype=np.int64)
    present = np.isin(hkl_keys(allh), hkl_keys(hkl_obs))
    return allh[~present].astype(np.int32)


def sigmaa_map_coefficients(f_obs, sigma, f_model, centric, epsilon, D, S, use_fo):
    """σA-weighted coefficients for observed reflections: (FWT, DELFWT, FOM), complex/real arrays.

    m = figure of merit from D, S (:func:`kickref.xtal.sigmaa.figure_of_merit`); phases of
    ``f_model`` (complex, scaled). Where ``use_fo``: FWT = 2m|Fo| − D|Fm| (acentric), m|Fo|
    (centric), DELFWT = m|Fo| − D|Fm|; elsewhere (test set, outliers) FWT = D·Fm, DELFWT = 0, FOM 0.
    """
    afm = np.abs(f_model)
    phase = np.exp(1j * np.angle(f_model))
    m = _sigmaa.figure_of_merit(f_obs, sigma, afm, centric, epsilon, D, S)
    two = np.where(centric, m * f_obs, 2 * m * f_obs - D * afm)
    fwt = np.where(use_fo, two * phase, D * f_model)
    delfwt = np.where(use_fo, (m * f_obs - D * afm) * phase, 0)
    fom = np.where(use_fo, m, 0.0)
    return fwt, delfwt, fom


def compute_map_coefficients(fmodel, state=None, *, include_free: bool = False, fill_missing: bool = True,
                             sigmaa: "_sigmaa.SigmaA | None" = None) -> MapCoefficients:
    """Map coefficients from an up-to-date :class:`~kickref.xtal.fmodel.FModel`."""
    d = fmodel.data
    fm = fmodel.f_model
    sa = sigmaa or fmodel.sigmaa()
    use_fo = np.ones(d.n, bool) if include_free or not d.has_free else ~d.free
    use_fo &= ~fmodel.outliers
    fwt, delfwt, fom = sigmaa_map_coefficients(d.f_obs, d.sigma, fm, d.centric, d.epsilon, sa.D, sa.S,
                                               use_fo)
    info = {"sigmaa_from": sa.used, "D_bin": sa.D_bin.tolist(), "S_bin": sa.S_bin.tolist(),
            "n_bins": len(sa.D_bin), "include_free": include_free}
    hkl, obs = d.hkl, np.ones(d.n, bool)
    f_obs, sig, free = d.f_obs, d.sigma, d.free.copy() if d.has_free else np.zeros(d.n, bool)
    fmodel_all = fm
    if fill_missing:
        miss = missing_hkl(fmodel.cell, d.spacegroup, d.hkl, d.d_min, d.d_max)
        if len(miss):
            fm_miss = _fmodel_for(fmodel, miss, state)
            s2m = np.asarray(fmodel.cell.calculate_1_d2_array(miss), dtype=float)
            Dm = sa.D_bin[sa.bin_of(s2m)]
            hkl = np.vstack([hkl, miss])
            fwt = np.concatenate([fwt, Dm * fm_miss])
            delfwt = np.concatenate([delfwt, np.zeros(len(miss), complex)])
            fom = np.concatenate([fom, np.zeros(len(miss))])
            fmodel_all = np.concatenate([fm, fm_miss])
            nan = np.full(len(miss), np.nan)
            f_obs, sig = np.concatenate([f_obs, nan]), np.concatenate([sig, nan])
            free = np.concatenate([free, np.zeros(len(miss), bool)])
            obs = np.concatenate([obs, np.zeros(len(miss), bool)])
        info["n_missing_filled"] = int(len(miss))
    return MapCoefficients(fmodel.cell, d.spacegroup, hkl, fwt, delfwt, fmodel_all, fom, f_obs, sig, free,
                           obs, info)


def _fmodel_for(fmodel, hkl, state):
    """Scaled Fmodel (complex) of the current model at extra reflections ``hkl``."""
    from ..core.state import AtomState
    if state is None:
        state = AtomState.from_model(fmodel.model)
    calc = StructureFactorCalculator(fmodel.cell, fmodel.data.spacegroup, hkl, fmodel.data.d_min)
    fc = calc.calculate(state, fmodel.elements)
    s2 = np.asarray(fmodel.cell.calculate_1_d2_array(hkl), dtype=float)
    q6 = quad_forms(cartesian_s(fmodel.cell, hkl))
    fmask = np.zeros(len(hkl), complex)
    if fmodel.bulk_solvent and fmodel.mask is not None and fmodel.mask.computed:
        fmask = fmodel.mask.fmask_at(hkl)
    return fmodel.scale.fmodel(fc, fmask, s2, q6)
