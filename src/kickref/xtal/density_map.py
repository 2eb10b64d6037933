"""A map over the whole unit cell (:class:`DensityMap`), and maps synthesized from coefficients.

Files: :func:`kickref.io.maps.load_density_map`, :func:`kickref.io.maps.map_from_coefficients`
and :func:`kickref.io.maps.write_ccp4_map`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import gemmi
import numpy as np

from .bspline import bspline_coefficients, bspline_eval, grid_coordinates
from .fourier import coefficients_to_grid, fourier_resample, grid_shape_for, unique_reflections


@dataclass
class DensityMap:
    """A map over the whole unit cell: ``grid[i, j, k]`` at fractional (i/n0, j/n1, k/n2).

    ``d_min``: resolution of the map's content when known (from coefficients), else None.
    """
    grid: np.ndarray
    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    d_min: float | None = None
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.grid.shape)

    @property
    def spacing(self) -> float:
        """Largest grid spacing along a cell edge (Å)."""
        return float(max(e / n for e, n in zip((self.cell.a, self.cell.b, self.cell.c), self.shape)))

    @property
    def resolution(self) -> float:
        """d_min if known, else 3 × the grid spacing (a map sampled at d/3, as usual)."""
        return float(self.d_min) if self.d_min else 3.0 * self.spacing

    def mean_rms(self) -> tuple:
        g = self.grid
        mean = float(np.mean(g, dtype=np.float64))
        rms = float(np.sqrt(np.mean((g - mean) ** 2, dtype=np.float64)))
        return mean, rms

    def normalized(self) -> "DensityMap":
        """Copy on zero mean and unit RMS over the cell (σ units)."""
        mean, rms = self.mean_rms()
        if not rms > 0:
            raise ValueError(f"map {self.source or ''} is flat (RMS 0)".replace("  ", " "))
        return DensityMap((self.grid - mean) / rms, self.cell, self.spacegroup, self.d_min, self.source,
                          {**self.info, "mean": mean, "rms": rms})

    def resampled(self, shape, d_min: float | None = None, b_sharpen: float = 0.0, dtype=np.float64):
        """Grid array on another full-cell grid (see :func:`fourier_resample`)."""
        return fourier_resample(self.grid, self.cell, shape, d_min, b_sharpen, dtype)

    def value_at(self, xyz) -> np.ndarray:
        """Map values at Cartesian positions (Å), cubic B-spline interpolation."""
        coef = bspline_coefficients(self.grid)
        u = grid_coordinates(np.asarray(xyz, dtype=np.float64).reshape(-1, 3), self.cell, self.shape)
        v, _ = bspline_eval(coef, u, False)
        return v

    def to_gemmi_grid(self) -> gemmi.FloatGrid:
        """The map as a float32 gemmi grid of a size that fits the space group (Fourier-resampled
        when the own grid does not; spacing no coarser than the own)."""
        g = gemmi.FloatGrid()
        g.spacegroup = self.spacegroup
        g.set_unit_cell(self.cell)
        g.set_size_from_spacing(self.spacing, gemmi.GridSizeRounding.Up)
        shape = (g.nu, g.nv, g.nw)
        arr = self.grid if shape == self.shape else self.resampled(shape, self.d_min)
        return gemmi.FloatGrid(np.ascontiguousarray(arr, dtype=np.float32), self.cell, self.spacegroup)


def density_map_from_coefficients(cell, spacegroup, hkl, values, d_min: float | None = None,
                                  rate: float = 2.0, shape=None, source: str = "") -> DensityMap:
    """A :class:`DensityMap` synthesized from map coefficients (complex F, any ASU representative).

    ``d_min`` cuts the coefficients (default: their own resolution); the grid spacing is
    ≤ d_min/(2·rate) unless ``shape`` is given. Duplicate symmetry equivalents are dropped.
    """
    hkl = np.asarray(hkl, dtype=np.int64)
    values = np.asarray(values, dtype=np.complex128)
    keep = np.isfinite(values)
    hkl, values = hkl[keep], values[keep]
    u = unique_reflections(hkl, spacegroup)
    hkl, values = hkl[u], values[u]
    s2 = np.asarray(cell.calculate_1_d2_array(hkl.astype(np.int32)), dtype=np.float64)
    d_file = float(1.0 / math.sqrt(s2.max())) if len(s2) and s2.max() > 0 else None
    if d_min is not None:
        sel = s2 <= 1.0 / (d_min * d_min) * (1 + 1e-9)
        hkl, values = hkl[sel], values[sel]
    d_use = max(d_min or 0.0, d_file or 0.0) or None
    if shape is None:
        if d_use is None:
            raise ValueError("no reflections to make a map from")
        shape = grid_shape_for(cell, d_use, rate, hkl)
    grid = coefficients_to_grid(cell, spacegroup, hkl, values, shape)
    return DensityMap(grid, cell, spacegroup, d_use, source, {"n_coefficients": int(len(hkl))})
