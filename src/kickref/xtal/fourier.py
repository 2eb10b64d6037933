"""Fourier helpers for full-cell maps: reflection orbits, coefficients ↔ grid, resampling.

Map coefficients F(h) (one per reflection orbit, any representative) give the map
ρ(x) = (1/V) Σ_{all h} F(h) e^{−2πi h·x}, symmetry-expanded with F(Rᵀh) = F(h)·e^{−2πi h·t}.
Grids cover the whole unit cell, axes along a, b, c; ``grid[i, j, k]`` is at (i/n0, j/n1, k/n2).
"""
from __future__ import annotations

import math

import gemmi
import numpy as np
import scipy.fft

from ..core.reflections import hkl_keys
from .structure_factors import N_THREADS, ReciprocalLookup, StructureFactorCalculator, fft_size, ops_arrays


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
    key = hkl_keys(np.concatenate([k, -k], axis=1))                  # orbit incl. Friedel mates
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


def calculator_for(cell, spacegroup, d_min: float, dtype=np.float32, **kw) -> StructureFactorCalculator:
    """A structure-factor calculator for all reflections to ``d_min`` (used for its P1 grid)."""
    hkl = np.asarray(gemmi.make_miller_array(cell, spacegroup, d_min), dtype=np.int32)
    return StructureFactorCalculator(cell, spacegroup, hkl, d_min, dtype=dtype, **kw)
