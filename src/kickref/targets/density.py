"""The real-space target toward a map (2Fo−Fc, 3Fo−2Fc, MIR, phase-combined, averaged, ...).

The map is a :class:`~kickref.xtal.density_map.DensityMap` over the whole unit cell (read by
:func:`kickref.io.maps.load_density_map` or :func:`kickref.io.maps.map_from_coefficients`, or
synthesized by :func:`kickref.xtal.density_map.density_map_from_coefficients`). No Fobs are needed.

:class:`DensityTarget` is an energy term (``kind = 'density'``) in one of two modes:

- ``'interpolation'``:  T = −Σ_a w_a · ρ(x_a),  w_a = occ_a · Z_a (atomic number), with ρ the
  map interpolated by a periodic cubic B-spline (interpolating: the spline passes through the
  grid values; C² smooth, so L-BFGS sees a smooth target). Gradient with respect to x_a
  (analytic) and occ_a; B has no say.
- ``'convolution'``:  T = −Σ_x ρ_map(x) · ρ_model(x) · ΔV  (ΔV = V/N, one grid cell), i.e.
  −∫ρ_map ρ_model dV with the map band-limited to d_min. ρ_model is the density of the (selected)
  asymmetric-unit atoms spread on the P1 grid of a
  :class:`~kickref.xtal.structure_factors.StructureFactorCalculator`, blurred by its extra B
  (``blur``); the map is resampled onto that grid through its Fourier coefficients and
  sharpened by exp(+blur·s²/4) so that the blur cancels exactly within the resolution sphere.
  The map covers the whole cell, so symmetry mates need no special treatment. Gradient with
  respect to x, B (or U) and occ by the gather kernel of the structure-factor calculator.

Map scale: with ``normalize=True`` (default) the map is put on zero mean and unit RMS over the
unit cell ("σ units"), so T is in electrons·σ for both modes; the weight against the restraints
is set like the X-ray weight (bond-RMSD adjustment) or by ``scale``.
"""
from __future__ import annotations

import numpy as np

from ..core.selection import resolve_selection
from ..core.state import AtomGradient, AtomState
from ..core.term import EnergyTerm
from ..xtal.bspline import bspline_coefficients, bspline_eval, grid_coordinates
from ..xtal.density_map import DensityMap
from ..xtal.form_factors import atomic_numbers
from ..xtal.fourier import calculator_for
from ..xtal.structure_factors import StructureFactorCalculator


class DensityTarget(EnergyTerm):
    """Real-space target toward a map; see the module docstring for both modes.

    ``DensityTarget(dmap, model_or_elements, mode='interpolation'|'convolution', selection=None)``.
    ``selection``: atoms that feel the map (None: all; mask, indices, or a gemmi selection string
    when a Model is given). For 'convolution', ``calculator`` (default: one for the map's
    resolution, or ``d_min``) provides the grid and the Gaussian kernels; call :meth:`update`
    (alias :meth:`rephase`) after large B changes to refresh the blur.
    """

    kind = "density"

    def __init__(self, density_map: DensityMap, model_or_elements, mode: str = "interpolation",
                 selection=None, normalize: bool = True, calculator: StructureFactorCalculator | None = None,
                 d_min: float | None = None, scale: float = 1.0, enabled: bool = True,
                 name: str = "density"):
        super().__init__(scale, enabled)
        if mode not in ("interpolation", "convolution"):
            raise ValueError(f"density target mode must be 'interpolation' or 'convolution', not {mode!r}")
        model = None
        if hasattr(model_or_elements, "element") and hasattr(model_or_elements, "structure"):
            model = model_or_elements
            elements = model.element
        else:
            elements = np.asarray(model_or_elements)
        self.elements = np.asarray(elements)
        self.n_atoms = len(self.elements)
        self.selection = resolve_selection(selection, self.n_atoms, model)
        self.index = np.flatnonzero(self.selection)
        self.map = density_map.normalized() if normalize else density_map
        self.mode = mode
        self.name = name
        self.z = atomic_numbers(self.elements)
        self.want = ("xyz", "adp", "occ")
        self.d_min = float(d_min) if d_min else self.map.resolution
        if mode == "interpolation":
            self._coef = bspline_coefficients(self.map.grid)
        else:
            self.calc = calculator or calculator_for(self.map.cell, self.map.spacegroup, self.d_min)
            self.blur = None
            self._sharp = None               # (blur, map on the calculator grid)
            self._el_sel = self.elements[self.index]

    # ------------------------------------------------------------------------------
    def update(self, state: AtomState) -> None:
        """Re-choose the blur of the model density for the current B values (convolution)."""
        if self.mode == "convolution":
            self.blur = self.calc.blur_for(state.subset(self.index))

    rephase = update

    def _grid_map(self, blur: float) -> np.ndarray:
        if self._sharp is None or self._sharp[0] != blur:
            g = self.map.resampled(self.calc.shape, self.d_min, blur, dtype=self.calc.dtype)
            self._sharp = (blur, g)
        return self._sharp[1]

    def density_at_atoms(self, state: AtomState) -> np.ndarray:
        """Map values (σ units when normalized) at the atom positions, all atoms."""
        coef = self._coef if self.mode == "interpolation" else bspline_coefficients(self.map.grid)
        u = grid_coordinates(state.xyz, self.map.cell, self.map.shape)
        return bspline_eval(coef, u, False)[0]

    def compute(self, state: AtomState, gradient: bool = True):
        if self.mode == "interpolation":
            return self._compute_interpolation(state, gradient)
        return self._compute_convolution(state, gradient)

    def _compute_interpolation(self, state, gradient):
        idx = self.index
        u = grid_coordinates(state.xyz[idx], self.map.cell, self.map.shape)
        rho, du = bspline_eval(self._coef, u, gradient)
        w = state.occ[idx] * self.z[idx]
        value = -float(np.dot(w, rho))
        if not gradient:
            return value, None
        g = AtomGradient(state.n_atoms)
        frac = np.array(self.map.cell.frac.mat.tolist())
        n = np.asarray(self.map.shape, dtype=np.float64)
        g.xyz[idx] = -w[:, None] * ((du * n[None, :]) @ frac)
        g.occ[idx] = -self.z[idx] * rho
        return value, g

    def _compute_convolution(self, state, gradient):
        sub = state.subset(self.index)
        if self.blur is None:
            self.update(state)
        blur = self.blur
        calc = self.calc
        rho = calc.density(sub, self._el_sel, blur)
        m = self._grid_map(blur)
        dv = calc.volume / calc.n_points
        value = -dv * float(np.dot(m.ravel().astype(np.float64), rho.ravel().astype(np.float64)))
        if not gradient:
            return value, None
        gmap = (m * m.dtype.type(-dv)).astype(calc.dtype, copy=False)
        gs = calc.gather_gradient(sub, self._el_sel, gmap, blur, self.want)
        return value, gs.expanded(state.n_atoms, self.index)
