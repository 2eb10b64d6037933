"""Refinement against a difference map (Fo−Fc): atoms move along the gradient of the difference
synthesis of the current model, the map being re-computed ("re-phased") every N steps.

:class:`MapConvolutionTerm` is the common machinery: for a map Δρ held fixed between updates,
  T = −Σ_x Δρ(x) · ρ_model(x) · ΔV        (ΔV = V/N, one grid cell; ≈ −∫Δρ ρ_model dV)
with ρ_model the density of the (selected) asymmetric-unit atoms on the P1 grid of a
:class:`~kickref.xtal.structure_factors.StructureFactorCalculator`, blurred by its extra B. The
map is built from coefficients ΔF(h) on the calculator's reflections, symmetry-expanded and
sharpened by exp(+blur·s²/4) (so the blur cancels within the resolution sphere), directly as the
calculator's gradient map: M(x) = −Δρ_sharp(x)·ΔV. Gradients (xyz, B/U, occ) come from the
calculator's gather kernel. Units: electrons × (map units); Δρ in e/Å³ gives electrons².

:class:`DifferenceMapTarget` (``kind = 'xray'``: it is an X-ray data term, weighted like one)
takes ΔF = (m|Fo| − D|Fm|)·e^{iφm} / k_total, the σA-weighted mFo−DFc coefficients (test-set
reflections left out) put back on the absolute scale of Fc by the scale factor k_total (overall,
anisotropic, shells), so that Δρ is in e/Å³ like ρ_model.
"""
from __future__ import annotations

import numpy as np

from ..core.state import AtomState

from ..core.term import EnergyTerm
from ..xtal.structure_factors import StructureFactorCalculator
from ..core.selection import resolve_selection
from ..xtal.fourier import orbit_factors


class MapConvolutionTerm(EnergyTerm):
    """T = −Σ_x Δρ(x)·ρ_model(x)·ΔV for a map given by coefficients on ``calc.hkl``.

    ``set_coefficients(delta_f, state)`` fixes the map (and the blur, chosen for ``state``).
    """

    kind = "xray"

    def __init__(self, calc: StructureFactorCalculator, elements, selection=None, model=None,
                 scale: float = 1.0, enabled: bool = True, name: str = "map_convolution"):
        super().__init__(scale, enabled)
        self.calc = calc
        self.elements = np.asarray(elements) if not isinstance(elements, np.ndarray) else elements
        self.selection = resolve_selection(selection, len(self.elements), model)
        self.index = np.flatnonzero(self.selection)
        self.all_atoms = bool(self.selection.all())
        self._el_sel = self.elements if self.all_atoms else self.elements[self.index]
        eps, centric = orbit_factors(calc.hkl, calc.spacegroup)
        self._weight_h = np.where(centric, 1.0, 2.0) / (eps * calc.volume)
        self.name = name
        self.blur = None
        self.gmap = None
        self.want = ("xyz", "adp", "occ")

    def _sub(self, state: AtomState) -> AtomState:
        return state if self.all_atoms else state.subset(self.index)

    def set_coefficients(self, delta_f: np.ndarray, state: AtomState, blur: float | None = None) -> None:
        """Fix the map Δρ(x) = (1/V) Σ_{all h} ΔF(h) e^{−2πi h·x} (ΔF one value per ``calc.hkl``)."""
        delta_f = np.asarray(delta_f, dtype=np.complex128)
        if delta_f.shape != (len(self.calc.hkl),):
            raise ValueError(f"{len(delta_f)} coefficients for {len(self.calc.hkl)} reflections")
        self.blur = self.calc.blur_for(self._sub(state)) if blur is None else float(blur)
        # gradient_map(D, blur)(x) = (V/N)·Σ_h Σ_j Re(D_h e^{-2πi h·t_j} e^{-2πi (R_jᵀh)·x})·e^{blur s²/4}
        # so D = −ΔF·w/(ε·V) gives −Δρ_sharp(x)·ΔV (w = 2 acentric, 1 centric)
        self.gmap = self.calc.gradient_map(-delta_f * self._weight_h, self.blur)

    def map_values(self) -> np.ndarray:
        """The sharpened Δρ on the calculator's grid (map units)."""
        dv = self.calc.volume / self.calc.n_points
        return -self.gmap / dv

    def compute(self, state: AtomState, gradient: bool = True):
        if self.gmap is None:
            raise RuntimeError(f"{self.name}: no map yet (set_coefficients / update_map first)")
        sub = self._sub(state)
        rho = self.calc.density(sub, self._el_sel, self.blur)
        value = float(np.dot(self.gmap.ravel().astype(np.float64), rho.ravel().astype(np.float64)))
        if not gradient:
            return value, None
        gs = self.calc.gather_gradient(sub, self._el_sel, self.gmap, self.blur, self.want)
        if self.all_atoms:
            return value, gs
        return value, gs.expanded(state.n_atoms, self.index)


class DifferenceMapTarget(MapConvolutionTerm):
    """Fo−Fc difference-map target on an :class:`~kickref.xtal.fmodel.FModel`.

    ``DifferenceMapTarget(fmodel, selection=None)``; call :meth:`rephase` (Fc, scale, σA and the
    map) or, when the FModel and σA are already up to date, :meth:`update_map`, every N steps.
    With a selection the term gets its own calculator (same grid) so that the X-ray target's
    form-factor cache is not disturbed.
    """

    def __init__(self, fmodel, selection=None, scale: float = 1.0, enabled: bool = True,
                 include_free: bool = False):
        sf = fmodel.sf
        elements = fmodel.elements
        sel = resolve_selection(selection, len(elements), fmodel.model)
        if not sel.all():
            sf = StructureFactorCalculator(sf.cell, sf.spacegroup, sf.hkl, sf.d_min, rate=sf.rate,
                                           cutoff=sf.cutoff, blur_factor=sf.blur_factor, dtype=sf.dtype)
        super().__init__(sf, elements, sel, None, scale, enabled, name="difference_map")
        self.fmodel = fmodel
        self.include_free = include_free
        self.sigmaa = None
        self.stats = {}

    def rephase(self, state: AtomState, full: bool = False) -> None:
        """Fc of ``state``, scale (and mask, grid search and outliers when ``full``), σA, map."""
        fm = self.fmodel
        fm.update_all(state, mask=full, scale=True, full=full)
        self.sigmaa = fm.sigmaa(start=None if full else self.sigmaa)
        self.update_map(state, self.sigmaa)

    def update_map(self, state: AtomState, sigmaa=None) -> None:
        """mFo−DFc from the FModel as it is (Fc, scale, σA), on the absolute scale of Fc."""
        from ..xtal.maps import compute_map_coefficients
        fm = self.fmodel
        if fm.fc is None:
            fm.update_all(state)
        mc = compute_map_coefficients(fm, state, include_free=self.include_free, fill_missing=False,
                                      sigmaa=sigmaa)
        if sigmaa is None:
            self.sigmaa = None
        k = fm.scale_factor
        delta = np.where(k > 0, mc.delfwt / np.maximum(k, 1e-30), 0)
        self.set_coefficients(delta, state)
        st = fm.statistics()
        self.stats = {"r_work": st["r_work"], "r_free": st["r_free"],
                      "rms_difference_map": float(np.sqrt(np.mean(self.map_values() ** 2)))}
