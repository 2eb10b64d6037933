"""Fmodel: model structure factors scaled to the data, with bulk solvent (the data flow's hub).

``fm = FModel(model, data)``; ``fm.update_all(state)`` computes Fc (FFT), Fmask (flat solvent),
fits the scale on the work set, flags outliers; ``fm.f_model`` is the complex scaled model and
``fm.statistics()`` the R factors. Targets use ``fm.sf`` (the structure-factor calculator) and the
current scale to get gradients.

Defaults chosen on the shared cases: shell scale factors ('auto': one per ~2000 work
reflections, at most 10, none below 4000) on top of the flat solvent + anisotropic model, and
model-based outliers (σA likelihood tail p < 1e-6) left out of scaling and R factors.
"""
from __future__ import annotations

import numpy as np

from ..core.profile import phase
from ..core.state import AtomState
from ..core.reflections import Reflections
from . import sigmaa as _sigmaa
from .bulk_solvent import SolventMask
from .scaling import ScaleModel, aniso_basis, cartesian_s, fit_ls, fit_ml, fit_shells, quad_forms
from .statistics import r_factor_table, r_factors
from .structure_factors import StructureFactorCalculator


def auto_shells(n_work: int) -> int | None:
    n = min(10, n_work // 2000)
    return n if n >= 2 else None


class FModel:
    def __init__(self, model, data: Reflections, *, bulk_solvent: bool = True,
                 scale_shells: int | str | None = "auto", rate: float = 1.5,
                 reject_outliers: bool = True):
        self.model = model
        self.data = data
        cell, sg = model.cell, data.spacegroup
        self.cell = cell
        self.elements = model.element
        self.sf = StructureFactorCalculator(cell, sg, data.hkl, data.d_min, rate=rate)
        self.bulk_solvent = bulk_solvent
        self.mask = SolventMask(cell, sg, data.hkl, data.d_min) if bulk_solvent else None
        self.s2 = np.asarray(cell.calculate_1_d2_array(data.hkl), dtype=float)
        self.q6 = quad_forms(cartesian_s(cell, data.hkl))
        self.basis = aniso_basis(cell, sg)
        if scale_shells == "auto":
            scale_shells = auto_shells(int(data.work.sum()))
        self.scale_shells = scale_shells or None
        self.reject_outliers = reject_outliers
        self.outliers = np.zeros(data.n, dtype=bool)
        self.scale = ScaleModel()
        self._scale_fitted = False
        self.fc = None
        self.fmask = np.zeros(data.n, dtype=complex)

    # -------------------------------------------------------------------
    @property
    def work(self) -> np.ndarray:
        """Work reflections used for fitting (outliers excluded)."""
        return self.data.work & ~self.outliers

    @property
    def free(self) -> np.ndarray:
        return self.data.free & ~self.outliers if self.data.has_free else np.zeros(self.data.n, bool)

    def update_fc(self, state: AtomState) -> np.ndarray:
        self.fc = self.sf.calculate(state, self.elements)
        return self.fc

    def update_mask(self, state: AtomState | None = None) -> np.ndarray:
        """Recompute Fmask from the model's current coordinates (``state`` if given)."""
        if not self.bulk_solvent:
            return self.fmask
        with phase("mask"):
            if state is not None:
                self.model.xyz[:] = state.xyz
                self.model.occ[:] = state.occ
            st = self.model.sync_structure()
            self.fmask = self.mask.fmask(st)
            return self.fmask

    def fit_scale(self, fitter=None, full: bool = True) -> ScaleModel:
        """Fit k, aniso B, k_sol, B_sol (and shell factors) on the work set; LS unless ``fitter``.

        ``full=False`` starts from the current scale instead of a (k_sol, B_sol) grid search.
        """
        with phase("scale"):
            w = self.work
            fo = self.data.f_obs
            if fitter is not None:
                self.scale = fitter(self)
            else:
                self.scale = fit_ls(fo[w], self.fc[w], self.fmask[w], self.s2[w], self.q6[w], self.basis,
                                    self.scale, fit_solvent=self.bulk_solvent,
                                    grid_search=not self._scale_fitted or full)
                self._scale_fitted = True
            if self.scale_shells:
                fit_shells(fo[w], self.fc[w], self.fmask[w], self.s2[w], self.q6[w], self.scale,
                           self.scale_shells)
            return self.scale

    def fit_scale_ml(self, sigmaa) -> ScaleModel:
        """Refit k, aniso B, k_sol, B_sol by maximum likelihood on the work set, D and S fixed."""
        with phase("scale"):
            w = self.work
            d = self.data
            self.scale = fit_ml(d.f_obs[w], d.sigma[w], self.fc[w], self.fmask[w], self.s2[w], self.q6[w],
                                self.basis, d.centric[w], d.epsilon[w], sigmaa.D[w], sigmaa.S[w], self.scale,
                                fit_solvent=self.bulk_solvent)
            return self.scale

    def sigmaa(self, use: str = "auto", start=None, intensities: bool = False) -> _sigmaa.SigmaA:
        """D and S per bin from the test set (all reflections when there is none).

        ``start``: a previous estimate (same bins) to start from. ``intensities``: fitted by the
        intensity likelihood to the data's I, σ_I (MLI) instead of the amplitudes.
        """
        d = self.data
        if use == "auto":
            use = "test" if d.has_free and d.free.sum() >= 10 else "all"
        sel = {"test": self.free, "work": self.work, "all": ~self.outliers}[use]
        with phase("scale"):
            return _sigmaa.estimate_sigmaa(d.f_obs, d.sigma, np.abs(self.f_model), d.centric, d.epsilon,
                                           d.s2, sel, used=use, start=start,
                                           intensities=(d.i_obs, d.sigma_i) if intensities else None)

    def update_outliers(self, p_cut: float = 1e-6) -> int:
        d = self.data
        sa = self.sigmaa()
        with phase("scale"):
            self.outliers = _sigmaa.outlier_flags(d.f_obs, d.sigma, np.abs(self.f_model), d.centric,
                                                  d.epsilon, sa.D, sa.S, p_cut)
            return int(self.outliers.sum())

    def update_all(self, state: AtomState, mask: bool = True, scale: bool = True, fitter=None,
                   full: bool = True):
        """Fc; then the mask (``mask``), the scale (``scale``); ``full`` also redoes the
        (k_sol, B_sol) grid search and the outlier flags; otherwise the scale is refined from its
        current values (cheap, for re-phasing inside a minimization)."""
        self.update_fc(state)
        if mask:
            self.update_mask(state)
        if scale:
            self.fit_scale(fitter=fitter, full=full)
            if self.reject_outliers and full:
                before = self.outliers.copy()
                self.update_outliers()
                if (self.outliers != before).any():
                    self.fit_scale(fitter=fitter, full=False)
        return self

    # -------------------------------------------------------------------
    @property
    def scale_factor(self) -> np.ndarray:
        """Real per-reflection factor multiplying (Fc + solvent)."""
        return self.scale.total_factor(self.s2, self.q6)

    @property
    def f_model(self) -> np.ndarray:
        return self.scale.fmodel(self.fc, self.fmask, self.s2, self.q6)

    def statistics(self, n_shells: int = 10) -> dict:
        """R factors (outliers excluded), scale parameters and a per-shell table.

        ``r_work``/``r_free`` use the fitted scale for both sets (the usual definition);
        ``r_work_cctbx``/``r_free_cctbx`` rescale each set by its own least-squares factor,
        as cctbx's ``r1_factor`` does (mmtbx.model_vs_data, phenix.refine).
        """
        d = self.data
        keep = ~self.outliers
        fo, fm = d.f_obs[keep], np.abs(self.f_model)[keep]
        free = d.free[keep] if d.has_free else None
        out = r_factors(fo, fm, free)
        out.update({k + "_cctbx": v for k, v in r_factors(fo, fm, free, per_set_scale=True).items()})
        out["n_outliers"] = int(self.outliers.sum())
        out["scale"] = self.scale.as_dict()
        out["shells"] = r_factor_table(fo, fm, free, d.s2[keep], n_shells)
        out["n_refl"] = int(d.n)
        out["n_work"] = int(self.work.sum())
        out["n_free"] = int(self.free.sum())
        out["d_min"] = d.d_min
        out["d_max"] = d.d_max
        if self.mask is not None and self.mask.solvent_fraction is not None:
            out["solvent_fraction"] = self.mask.solvent_fraction
        return out
