"""Real-space refinement toward a map (2Fo−Fc, 3Fo−2Fc, MIR, phase-combined, averaged, ...).

A :class:`DensityMap` is a map over the whole unit cell (grid axes along a, b, c), read from a
CCP4/MRC file (:func:`load_density_map`) or synthesized from map coefficients
(:func:`map_from_coefficients`, :func:`density_map_from_coefficients`). No Fobs are needed.

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

Map coefficients F(h) (one per reflection orbit, any representative) give the map
ρ(x) = (1/V) Σ_{all h} F(h) e^{−2πi h·x}, symmetry-expanded with F(Rᵀh) = F(h)·e^{−2πi h·t}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import gemmi
import numba as nb
import numpy as np
import scipy.fft

from ..core.selection import resolve_selection
from ..core.state import AtomGradient, AtomState

from ..core.term import EnergyTerm
from ..xtal.structure_factors import (N_THREADS, ReciprocalLookup, StructureFactorCalculator, fft_size,
                                      ops_arrays)


# ------------------------------------------------------------------------------ reflections
def orbit_factors(hkl, spacegroup):
    """(epsilon, centric) per reflection, counting all operations (centring included) as
    :class:`ReciprocalLookup` iterates them. ε = #{j : R_jᵀh = h}; centric: some R_jᵀh = −h."""
    R, _ = ops_arrays(spacegroup)
    Ri = np.rint(R).astype(np.int64)
    h = np.asarray(hkl, dtype=np.int64)
    k = np.einsum("ni,oij->noj", h, Ri)
    eps = np.all(k == h[:, None, :], axis=2).sum(axis=1)
    centric = np.any(np.all(k == -h[:, None, :], axis=2), axis=1)
    return eps.astype(np.float64), centric


def unique_reflections(hkl, spacegroup) -> np.ndarray:
    """Indices of the first row of each symmetry/Friedel orbit (drops duplicate equivalents)."""
    R, _ = ops_arrays(spacegroup)
    Ri = np.rint(R).astype(np.int64)
    h = np.asarray(hkl, dtype=np.int64)
    k = np.einsum("ni,oij->noj", h, Ri)
    k = np.concatenate([k, -k], axis=1) + 1024                       # orbit incl. Friedel mates
    key = (k[..., 0] << 22) | (k[..., 1] << 11) | k[..., 2]
    _, first = np.unique(key.max(axis=1), return_index=True)
    return np.sort(first)


def coefficients_to_grid(cell, spacegroup, hkl, values, shape, b_sharpen: float = 0.0,
                         dtype=np.float64) -> np.ndarray:
    """Map ρ(x) = (1/V) Σ_{all h} F(h) e^{−2πi h·x} on a full-cell grid of ``shape``.

    ``hkl``/``values``: one coefficient per reflection orbit (duplicates must be removed first,
    see :func:`unique_reflections`); symmetry mates and Friedel mates are generated here.
    ``b_sharpen`` (Å²) multiplies F(h) by exp(b·s²/4) (negative blurs). The grid may have any
    size with |h_i| < n_i/2 (no symmetry compatibility needed).
    """
    hkl = np.asarray(hkl, dtype=np.int64)
    shape = tuple(int(n) for n in shape)
    if len(hkl) and np.any(2 * np.abs(hkl).max(axis=0) >= np.array(shape)):
        raise ValueError(f"grid {shape} too small for reflections up to {np.abs(hkl).max(axis=0)}")
    R, t = ops_arrays(spacegroup)
    eps, centric = orbit_factors(hkl, spacegroup)
    w = np.where(centric, 1.0, 2.0)
    s2 = np.asarray(cell.calculate_1_d2_array(hkl.astype(np.int32)), dtype=np.float64)
    coef = np.asarray(values, dtype=np.complex128) * w / (eps * cell.volume)
    if b_sharpen:
        coef = coef * np.exp(b_sharpen * s2 / 4.0)
    lookup = ReciprocalLookup(hkl, shape, R, t)
    Y = lookup.scatter(coef)
    n = float(np.prod(shape))
    grid = scipy.fft.irfftn(Y, s=shape, workers=N_THREADS) * n
    return np.ascontiguousarray(grid, dtype=dtype)


def grid_to_coefficients(grid, cell, hkl) -> np.ndarray:
    """F(h) = ΔV Σ_x ρ(x) e^{2πi h·x} of a full-cell map (P1 view: no symmetry assumed)."""
    grid = np.asarray(grid)
    hkl = np.asarray(hkl, dtype=np.int64)
    X = scipy.fft.rfftn(grid, workers=N_THREADS)
    lookup = ReciprocalLookup(hkl, grid.shape, np.eye(3)[None], np.zeros((1, 3)))
    return lookup.gather(X) * (cell.volume / grid.size)


def fourier_resample(grid, cell, shape, d_min: float | None = None, b_sharpen: float = 0.0,
                     dtype=np.float64) -> np.ndarray:
    """The full-cell map ``grid`` on a grid of another ``shape``, through its Fourier coefficients.

    Frequencies beyond ``d_min`` (Å, if given) and those either grid cannot hold (|h_i| ≥ n_i/2)
    are dropped; the others are multiplied by exp(b_sharpen·s²/4). Exact for band-limited maps.
    """
    grid = np.asarray(grid, dtype=np.float64)
    shape = tuple(int(n) for n in shape)
    X = scipy.fft.rfftn(grid, workers=N_THREADS)
    n_in, n_out = grid.shape, shape
    L = [(min(a, b) - 1) // 2 for a, b in zip(n_in, n_out)]
    i0 = np.r_[0:L[0] + 1, -L[0]:0]
    i1 = np.r_[0:L[1] + 1, -L[1]:0]
    i2 = np.arange(L[2] + 1)
    block = X[np.ix_(i0 % n_in[0], i1 % n_in[1], i2)]
    hh0, hh1, hh2 = np.meshgrid(i0, i1, i2, indexing="ij")
    frac = np.array(cell.frac.mat.tolist())
    Gs = frac @ frac.T
    s2 = (Gs[0, 0] * hh0 ** 2 + Gs[1, 1] * hh1 ** 2 + Gs[2, 2] * hh2 ** 2
          + 2 * (Gs[0, 1] * hh0 * hh1 + Gs[0, 2] * hh0 * hh2 + Gs[1, 2] * hh1 * hh2))
    factor = np.full(s2.shape, float(np.prod(n_out)) / float(np.prod(n_in)))
    if b_sharpen:
        factor *= np.exp(b_sharpen * s2 / 4.0)
    if d_min:
        factor[s2 > 1.0 / (d_min * d_min) * (1 + 1e-9)] = 0.0
    Y = np.zeros((n_out[0], n_out[1], n_out[2] // 2 + 1), dtype=np.complex128)
    Y[np.ix_(i0 % n_out[0], i1 % n_out[1], i2)] = block * factor
    out = scipy.fft.irfftn(Y, s=n_out, workers=N_THREADS)
    return np.ascontiguousarray(out, dtype=dtype)


def grid_shape_for(cell, d_min: float, rate: float = 2.0, hkl=None) -> tuple:
    """FFT-friendly full-cell grid with spacing ≤ d_min/(2·rate) (and room for ``hkl``)."""
    edges = (cell.a, cell.b, cell.c)
    hmax = np.abs(np.asarray(hkl)).max(axis=0) if hkl is not None and len(hkl) else np.zeros(3)
    return tuple(fft_size(max(2 * int(h) + 1, math.ceil(2.0 * rate * e / d_min)))
                 for e, h in zip(edges, hmax))


# ---------------------------------------------------------------------------------- maps
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
        u = _grid_coordinates(np.asarray(xyz, dtype=np.float64).reshape(-1, 3), self.cell, self.shape)
        v, _ = _bspline_eval(coef, u, False)
        return v


def load_density_map(path) -> DensityMap:
    """A CCP4/MRC map file, expanded to the whole unit cell with its symmetry.

    Points the file does not cover (a boxed map) are set to the mean of the covered points.
    """
    from ..core.errors import InputError
    from ..io.maps import read_ccp4_map
    g = read_ccp4_map(path)
    arr = np.array(g, copy=True, dtype=np.float64)
    if arr.ndim != 3 or min(arr.shape) < 2:
        raise InputError(path, f"map grid {arr.shape} is not a 3-D unit-cell grid")
    bad = ~np.isfinite(arr)
    info = {"n_points_not_covered": int(bad.sum())}
    if bad.all():
        raise InputError(path, "map holds no finite values")
    if bad.any():
        arr[bad] = float(np.mean(arr[~bad]))
    sg = g.spacegroup if g.spacegroup is not None else gemmi.SpaceGroup("P 1")
    cell = gemmi.UnitCell(*g.unit_cell.parameters)
    return DensityMap(arr, cell, sg, None, str(path), info)


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


def parse_map_coefficients_argument(text: str) -> tuple:
    """'FILE:F,PHI' (``--map-coeffs``) → (FILE, F, PHI); the last ':' separates the labels."""
    path, sep, labels = str(text).rpartition(":")
    parts = [x.strip() for x in labels.split(",")] if sep else []
    if not path or len(parts) != 2 or not all(parts):
        raise ValueError(f"--map-coeffs takes FILE:F,PHI (e.g. maps.mtz:FWT,PHWT), not {text!r}")
    return path, parts[0], parts[1]


def map_from_coefficients(path, f_label: str, phi_label: str, cell=None, spacegroup=None,
                          d_min: float | None = None, rate: float = 2.0) -> DensityMap:
    """Map from coefficients in an MTZ/SF-mmCIF file (``--map-coeffs FILE:F,PHI``).

    ``cell``/``spacegroup``: the model's (default: the file's, MTZ only).
    """
    from ..core.errors import InputError
    from ..io.reflections import read_map_coefficients
    hkl, values = read_map_coefficients(path, f_label, phi_label)
    if cell is None or spacegroup is None:
        try:
            mtz = gemmi.read_mtz_file(str(path))
            cell = cell or mtz.cell
            spacegroup = spacegroup or mtz.spacegroup
        except Exception:
            raise InputError(path, "give the cell and space group (from the model) for these map "
                                   "coefficients") from None
    if isinstance(spacegroup, str):
        spacegroup = gemmi.SpaceGroup(spacegroup)
    return density_map_from_coefficients(cell, spacegroup, hkl, values, d_min, rate,
                                         source=f"{path}:{f_label},{phi_label}")


# ---------------------------------------------------------------- B-spline interpolation
def bspline_coefficients(grid) -> np.ndarray:
    """Periodic cubic B-spline coefficients c such that Σ c·β³ passes through the grid values
    (prefilter by division in Fourier space by (4 + 2cos(2πk/n))/6 per axis)."""
    g = np.asarray(grid, dtype=np.float64)
    n0, n1, n2 = g.shape
    X = scipy.fft.rfftn(g, workers=N_THREADS)
    b0 = (4.0 + 2.0 * np.cos(2 * np.pi * np.arange(n0) / n0)) / 6.0
    b1 = (4.0 + 2.0 * np.cos(2 * np.pi * np.arange(n1) / n1)) / 6.0
    b2 = (4.0 + 2.0 * np.cos(2 * np.pi * np.arange(n2 // 2 + 1) / n2)) / 6.0
    X /= b0[:, None, None] * b1[None, :, None] * b2[None, None, :]
    return np.ascontiguousarray(scipy.fft.irfftn(X, s=g.shape, workers=N_THREADS))


def _grid_coordinates(xyz, cell, shape) -> np.ndarray:
    frac = np.array(cell.frac.mat.tolist())
    return (xyz @ frac.T) * np.asarray(shape, dtype=np.float64)[None, :]


@nb.njit(cache=True, inline="always")
def _weights(t, w, d):
    s = 1.0 - t
    w[0] = s * s * s / 6.0
    w[1] = (3.0 * t * t * t - 6.0 * t * t + 4.0) / 6.0
    w[2] = (-3.0 * t * t * t + 3.0 * t * t + 3.0 * t + 1.0) / 6.0
    w[3] = t * t * t / 6.0
    d[0] = -0.5 * s * s
    d[1] = 1.5 * t * t - 2.0 * t
    d[2] = -1.5 * t * t + t + 0.5
    d[3] = 0.5 * t * t


@nb.njit(cache=True)
def _bspline_eval(coef, u, want_grad):
    """Values and gradients (per grid unit) of the periodic cubic B-spline at grid coordinates u."""
    n0, n1, n2 = coef.shape
    n = u.shape[0]
    val = np.empty(n)
    grad = np.zeros((n, 3))
    w0 = np.empty(4)
    w1 = np.empty(4)
    w2 = np.empty(4)
    d0 = np.empty(4)
    d1 = np.empty(4)
    d2 = np.empty(4)
    for a in range(n):
        f0 = math.floor(u[a, 0])
        f1 = math.floor(u[a, 1])
        f2 = math.floor(u[a, 2])
        _weights(u[a, 0] - f0, w0, d0)
        _weights(u[a, 1] - f1, w1, d1)
        _weights(u[a, 2] - f2, w2, d2)
        b0 = int(f0) - 1
        b1 = int(f1) - 1
        b2 = int(f2) - 1
        v = 0.0
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        for p in range(4):
            i = (b0 + p) % n0
            for q in range(4):
                j = (b1 + q) % n1
                v_q = 0.0
                dv_q = 0.0
                for r in range(4):
                    c = coef[i, j, (b2 + r) % n2]
                    v_q += w2[r] * c
                    dv_q += d2[r] * c
                v += w0[p] * w1[q] * v_q
                if want_grad:
                    g0 += d0[p] * w1[q] * v_q
                    g1 += w0[p] * d1[q] * v_q
                    g2 += w0[p] * w1[q] * dv_q
        val[a] = v
        grad[a, 0] = g0
        grad[a, 1] = g1
        grad[a, 2] = g2
    return val, grad


# ------------------------------------------------------------------------------ helpers
def atomic_numbers(elements) -> np.ndarray:
    """Z per atom from element symbols (unknown symbols count as carbon)."""
    uniq, inv = np.unique(np.asarray(elements, dtype=str), return_inverse=True)
    z = []
    for e in uniq:
        el = gemmi.Element(e)
        z.append(el.atomic_number if el.atomic_number > 0 else 6)
    return np.asarray(z, dtype=np.float64)[inv]


def calculator_for(cell, spacegroup, d_min: float, dtype=np.float32, **kw) -> StructureFactorCalculator:
    """A structure-factor calculator for all reflections to ``d_min`` (used for its P1 grid)."""
    hkl = np.asarray(gemmi.make_miller_array(cell, spacegroup, d_min), dtype=np.int32)
    return StructureFactorCalculator(cell, spacegroup, hkl, d_min, dtype=dtype, **kw)


# ------------------------------------------------------------------------------- target
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
        u = _grid_coordinates(state.xyz, self.map.cell, self.map.shape)
        return _bspline_eval(coef, u, False)[0]

    def compute(self, state: AtomState, gradient: bool = True):
        if self.mode == "interpolation":
            return self._compute_interpolation(state, gradient)
        return self._compute_convolution(state, gradient)

    def _compute_interpolation(self, state, gradient):
        idx = self.index
        u = _grid_coordinates(state.xyz[idx], self.map.cell, self.map.shape)
        rho, du = _bspline_eval(self._coef, u, gradient)
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


def write_density_map(dmap: DensityMap, path, structure=None, margin: float = 5.0) -> str:
    """Write a :class:`DensityMap` as a CCP4 map (atomically): the whole cell on a grid that fits
    the space group (Fourier-resampled when needed), boxed around ``structure`` when given."""
    from ..io.files import atomic_path
    g = gemmi.FloatGrid()
    g.spacegroup = dmap.spacegroup
    g.set_unit_cell(dmap.cell)
    g.set_size_from_spacing(dmap.spacing, gemmi.GridSizeRounding.Up)
    shape = (g.nu, g.nv, g.nw)
    arr = dmap.grid if shape == dmap.shape else dmap.resampled(shape, dmap.d_min)
    grid = gemmi.FloatGrid(np.ascontiguousarray(arr, dtype=np.float32), dmap.cell, dmap.spacegroup)
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = grid
    ccp4.update_ccp4_header()
    if structure is not None:
        ccp4.set_extent(structure.calculate_fractional_box(margin=margin))
    with atomic_path(path) as tmp:
        ccp4.write_ccp4_map(tmp)
    return str(path)
