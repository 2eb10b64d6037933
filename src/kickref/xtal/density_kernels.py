"""Numba kernels that spread atomic Gaussians on a grid and gather map values back at atoms.

Each atom is a sum of G Gaussians  ρ_g(n) = A_g · exp(-(n - c)ᵀ Q_g (n - c)),  where n is an
integer grid point, c the atom centre in grid units (fractional × N), and Q_g a symmetric
3×3 matrix in grid units (6 numbers: Q00 Q11 Q22 Q01 Q02 Q12). Isotropic and anisotropic
atoms use the same form. Points are visited inside a Cartesian sphere of radius R per atom;
along the fastest grid axis the exponentials are advanced by the Gaussian recurrence
(two multiplications per point instead of an exp).

``gather`` evaluates, for a map m(n), per atom and Gaussian:
  S0 = Σ m ρ_g,  S1 = Σ m ρ_g d  (d = Cartesian offset point − atom, Å),
  S2 = Σ m ρ_g |d|²  (isotropic) or Σ m ρ_g d dᵀ (6 components, anisotropic),
from which the derivatives with respect to position, B/U and occupancy follow.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def _row_limits(du, dv, g, r2, c2):
    """w-range [lo, hi] (float offsets from the centre) of the sphere on the row (du, dv)."""
    # |M (du, dv, dw)|² = g00 du² + g11 dv² + g22 dw² + 2 g01 du dv + 2 g02 du dw + 2 g12 dv dw
    a = g[2, 2]
    b = 2.0 * (g[0, 2] * du + g[1, 2] * dv)
    c = g[0, 0] * du * du + g[1, 1] * dv * dv + 2.0 * g[0, 1] * du * dv - r2
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        return 1.0, -1.0
    sq = math.sqrt(disc)
    return (-b - sq) / (2.0 * a) + c2, (-b + sq) / (2.0 * a) + c2


@nb.njit(cache=True)
def _atom_box(c, ext):
    lo0 = int(math.ceil(c[0] - ext[0]))
    hi0 = int(math.floor(c[0] + ext[0]))
    lo1 = int(math.ceil(c[1] - ext[1]))
    hi1 = int(math.floor(c[1] + ext[1]))
    return lo0, hi0, lo1, hi1


@nb.njit(cache=True)
def spread(grid, centers, amp, quad, radius, g, recip_len):
    """Add the density of every atom to ``grid`` (3-D, periodic).

    centers (n,3) grid units; amp (n,G); quad (n,G,6); radius (n,) Å;
    g (3,3) metric of one grid step (Å²); recip_len (3,) |a*_i|·N_i (grid steps per Å).
    """
    n0, n1, n2 = grid.shape
    n_atoms, n_g = amp.shape
    ext = np.empty(3)
    e = np.empty(n_g)
    r = np.empty(n_g)
    f = np.empty(n_g)
    for i in range(n_atoms):
        c = centers[i]
        rad = radius[i]
        r2 = rad * rad
        for k in range(3):
            ext[k] = rad * recip_len[k]
        lo0, hi0, lo1, hi1 = _atom_box(c, ext)
        for u in range(lo0, hi0 + 1):
            du = u - c[0]
            iu = u % n0
            for v in range(lo1, hi1 + 1):
                dv = v - c[1]
                iv = v % n1
                wlo, whi = _row_limits(du, dv, g, r2, c[2])
                w0 = int(math.ceil(wlo))
                w1 = int(math.floor(whi))
                if w1 < w0:
                    continue
                dw0 = w0 - c[2]
                for k in range(n_g):
                    q = quad[i, k]
                    alpha = q[2]
                    beta = 2.0 * (q[4] * du + q[5] * dv)
                    gam = q[0] * du * du + q[1] * dv * dv + 2.0 * q[3] * du * dv
                    e[k] = amp[i, k] * math.exp(-(alpha * dw0 * dw0 + beta * dw0 + gam))
                    r[k] = math.exp(-(alpha * (2.0 * dw0 + 1.0) + beta))
                    f[k] = math.exp(-2.0 * alpha)
                row = grid[iu, iv]
                iw = w0 % n2
                for w in range(w0, w1 + 1):
                    s = 0.0
                    for k in range(n_g):
                        s += e[k]
                        e[k] *= r[k]
                        r[k] *= f[k]
                    row[iw] += s
                    iw += 1
                    if iw == n2:
                        iw = 0


@nb.njit(cache=True, parallel=True)
def gather(grid, centers, amp, quad, radius, g, recip_len, step, aniso):
    """Moments of map × atom Gaussians (see module docstring).

    step (3,3): Cartesian offset (Å) of one grid step along each axis (columns).
    aniso (n,) bool: store the full d dᵀ moment (6) instead of |d|² in S2.
    Returns S0 (n,G), S1 (n,G,3), S2 (n,G,6).
    """
    n0, n1, n2 = grid.shape
    n_atoms, n_g = amp.shape
    S0 = np.zeros((n_atoms, n_g))
    S1 = np.zeros((n_atoms, n_g, 3))
    S2 = np.zeros((n_atoms, n_g, 6))
    for i in nb.prange(n_atoms):
        ext = np.empty(3)
        e = np.empty(n_g)
        r = np.empty(n_g)
        f = np.empty(n_g)
        c = centers[i]
        rad = radius[i]
        r2 = rad * rad
        an = aniso[i]
        for k in range(3):
            ext[k] = rad * recip_len[k]
        lo0, hi0, lo1, hi1 = _atom_box(c, ext)
        for u in range(lo0, hi0 + 1):
            du = u - c[0]
            iu = u % n0
            for v in range(lo1, hi1 + 1):
                dv = v - c[1]
                iv = v % n1
                wlo, whi = _row_limits(du, dv, g, r2, c[2])
                w0 = int(math.ceil(wlo))
                w1 = int(math.floor(whi))
                if w1 < w0:
                    continue
                dw0 = w0 - c[2]
                for k in range(n_g):
                    q = quad[i, k]
                    alpha = q[2]
                    beta = 2.0 * (q[4] * du + q[5] * dv)
                    gam = q[0] * du * du + q[1] * dv * dv + 2.0 * q[3] * du * dv
                    e[k] = amp[i, k] * math.exp(-(alpha * dw0 * dw0 + beta * dw0 + gam))
                    r[k] = math.exp(-(alpha * (2.0 * dw0 + 1.0) + beta))
                    f[k] = math.exp(-2.0 * alpha)
                # Cartesian offset at w0, and per step along w
                dx = step[0, 0] * du + step[0, 1] * dv + step[0, 2] * dw0
                dy = step[1, 0] * du + step[1, 1] * dv + step[1, 2] * dw0
                dz = step[2, 0] * du + step[2, 1] * dv + step[2, 2] * dw0
                sx = step[0, 2]
                sy = step[1, 2]
                sz = step[2, 2]
                row = grid[iu, iv]
                iw = w0 % n2
                for w in range(w0, w1 + 1):
                    m = row[iw]
                    if an:
                        for k in range(n_g):
                            t = m * e[k]
                            S0[i, k] += t
                            S1[i, k, 0] += t * dx
                            S1[i, k, 1] += t * dy
                            S1[i, k, 2] += t * dz
                            S2[i, k, 0] += t * dx * dx
                            S2[i, k, 1] += t * dy * dy
                            S2[i, k, 2] += t * dz * dz
                            S2[i, k, 3] += t * dx * dy
                            S2[i, k, 4] += t * dx * dz
                            S2[i, k, 5] += t * dy * dz
                            e[k] *= r[k]
                            r[k] *= f[k]
                    else:
                        d2 = dx * dx + dy * dy + dz * dz
                        for k in range(n_g):
                            t = m * e[k]
                            S0[i, k] += t
                            S1[i, k, 0] += t * dx
                            S1[i, k, 1] += t * dy
                            S1[i, k, 2] += t * dz
                            S2[i, k, 0] += t * d2
                            e[k] *= r[k]
                            r[k] *= f[k]
                    dx += sx
                    dy += sy
                    dz += sz
                    iw += 1
                    if iw == n2:
                        iw = 0
    return S0, S1, S2


@nb.njit(cache=True, parallel=True)
def spread_parallel(grid, centers, amp, quad, radius, g, recip_len, n_threads):
    """As :func:`spread`, with atoms split over ``n_threads`` private grids that are summed."""
    n_atoms = centers.shape[0]
    parts = np.zeros((n_threads,) + grid.shape)
    chunk = (n_atoms + n_threads - 1) // n_threads
    for t in nb.prange(n_threads):
        a = t * chunk
        b = min(n_atoms, a + chunk)
        if a < b:
            spread(parts[t], centers[a:b], amp[a:b], quad[a:b], radius[a:b], g, recip_len)
    for t in range(n_threads):
        grid += parts[t]
