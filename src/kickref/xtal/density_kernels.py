"""Numba kernels that spread atomic Gaussians on a grid and gather map values back at atoms.

Each atom is a sum of G Gaussians  ρ_g(n) = A_g · exp(-(n - c)ᵀ Q_g (n - c)),  where n is an
integer grid point, c the atom centre in grid units (fractional × N), and Q_g a symmetric
3×3 matrix in grid units (6 numbers: Q00 Q11 Q22 Q01 Q02 Q12). Isotropic and anisotropic
atoms use the same form. Points are visited inside a Cartesian sphere of radius R per atom.

No exponential is evaluated per grid point or per grid row: exp(-q) of a quadratic q is
advanced from point to point by multiplying with a ratio that itself changes by a constant
factor (Gaussian recurrence), along all three grid axes; only ten exponentials per atom and
Gaussian are needed.

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
def _box(c, rad, recip_len):
    lo0 = int(math.ceil(c[0] - rad * recip_len[0]))
    hi0 = int(math.floor(c[0] + rad * recip_len[0]))
    lo1 = int(math.ceil(c[1] - rad * recip_len[1]))
    hi1 = int(math.floor(c[1] + rad * recip_len[1]))
    lo2 = int(math.ceil(c[2] - rad * recip_len[2]))
    hi2 = int(math.floor(c[2] + rad * recip_len[2]))
    return lo0, hi0, lo1, hi1, lo2, hi2


@nb.njit(cache=True, inline="always")
def _init_recurrences(amp_row, quad_row, du0, dv0, dw0, Ei, Ru, Rv_i, Rw_i, fu, fv, fw, guv, guw, gvw):
    """Values at the box corner and the ratios for the three-level recurrence."""
    for k in range(amp_row.shape[0]):
        q = quad_row[k]
        Q00 = q[0]
        Q11 = q[1]
        Q22 = q[2]
        Q01 = q[3]
        Q02 = q[4]
        Q12 = q[5]
        qq = (Q00 * du0 * du0 + Q11 * dv0 * dv0 + Q22 * dw0 * dw0
              + 2.0 * (Q01 * du0 * dv0 + Q02 * du0 * dw0 + Q12 * dv0 * dw0))
        Ei[k] = amp_row[k] * math.exp(-qq)
        Ru[k] = math.exp(-(Q00 * (2.0 * du0 + 1.0) + 2.0 * (Q01 * dv0 + Q02 * dw0)))
        Rv_i[k] = math.exp(-(Q11 * (2.0 * dv0 + 1.0) + 2.0 * (Q01 * du0 + Q12 * dw0)))
        Rw_i[k] = math.exp(-(Q22 * (2.0 * dw0 + 1.0) + 2.0 * (Q02 * du0 + Q12 * dv0)))
        fu[k] = math.exp(-2.0 * Q00)
        fv[k] = math.exp(-2.0 * Q11)
        fw[k] = math.exp(-2.0 * Q22)
        guv[k] = math.exp(-2.0 * Q01)
        guw[k] = math.exp(-2.0 * Q02)
        gvw[k] = math.exp(-2.0 * Q12)


@nb.njit(cache=True, inline="always")
def _row_range(du, dv, g, r2, c2, lo2, hi2):
    """Grid w-range of the sphere on row (du, dv), clipped to the box; w1 < w0 when empty."""
    A = g[2, 2]
    B = 2.0 * (g[0, 2] * du + g[1, 2] * dv)
    C = g[0, 0] * du * du + g[1, 1] * dv * dv + 2.0 * g[0, 1] * du * dv - r2
    disc = B * B - 4.0 * A * C
    if disc < 0.0:
        return 1, 0
    sq = math.sqrt(disc)
    w0 = max(lo2, int(math.ceil((-B - sq) / (2.0 * A) + c2)))
    w1 = min(hi2, int(math.floor((-B + sq) / (2.0 * A) + c2)))
    return w0, w1


@nb.njit(cache=True)
def spread(grid, centers, amp, quad, radius, g, recip_len):
    """Add the density of every atom to ``grid`` (3-D, periodic).

    centers (n,3) grid units; amp (n,G); quad (n,G,6); radius (n,) Å;
    g (3,3) metric of one grid step (Å²); recip_len (3,) |a*_i|·N_i (grid steps per Å).
    """
    n0, n1, n2 = grid.shape
    n_atoms, n_g = amp.shape
    Ei = np.empty(n_g)
    Ru = np.empty(n_g)
    Rv_i = np.empty(n_g)
    Rw_i = np.empty(n_g)
    Ej = np.empty(n_g)
    Rv = np.empty(n_g)
    Rw_j = np.empty(n_g)
    e = np.empty(n_g)
    r = np.empty(n_g)
    fu = np.empty(n_g)
    fv = np.empty(n_g)
    fw = np.empty(n_g)
    guv = np.empty(n_g)
    guw = np.empty(n_g)
    gvw = np.empty(n_g)
    for a in range(n_atoms):
        c = centers[a]
        rad = radius[a]
        r2 = rad * rad
        lo0, hi0, lo1, hi1, lo2, hi2 = _box(c, rad, recip_len)
        _init_recurrences(amp[a], quad[a], lo0 - c[0], lo1 - c[1], lo2 - c[2],
                          Ei, Ru, Rv_i, Rw_i, fu, fv, fw, guv, guw, gvw)
        for u in range(lo0, hi0 + 1):
            du = u - c[0]
            iu = u % n0
            for k in range(n_g):
                Ej[k] = Ei[k]
                Rv[k] = Rv_i[k]
                Rw_j[k] = Rw_i[k]
            for v in range(lo1, hi1 + 1):
                w0, w1 = _row_range(du, v - c[1], g, r2, c[2], lo2, hi2)
                if w1 >= w0:
                    skip = w0 - lo2
                    for k in range(n_g):
                        ee = Ej[k]
                        rr = Rw_j[k]
                        ff = fw[k]
                        for s in range(skip):
                            ee *= rr
                            rr *= ff
                        e[k] = ee
                        r[k] = rr
                    row = grid[iu, v % n1]
                    iw = w0 % n2
                    for w in range(w0, w1 + 1):
                        s = 0.0
                        for k in range(n_g):
                            s += e[k]
                            e[k] *= r[k]
                            r[k] *= fw[k]
                        row[iw] += s
                        iw += 1
                        if iw == n2:
                            iw = 0
                for k in range(n_g):
                    Ej[k] *= Rv[k]
                    Rv[k] *= fv[k]
                    Rw_j[k] *= gvw[k]
            for k in range(n_g):
                Ei[k] *= Ru[k]
                Ru[k] *= fu[k]
                Rv_i[k] *= guv[k]
                Rw_i[k] *= guw[k]


@nb.njit(cache=True, parallel=True)
def spread_parallel(grid, centers, amp, quad, radius, g, recip_len, n_threads):
    """As :func:`spread`, with atoms split over ``n_threads`` chunks: the first spread into
    ``grid`` itself (which must be zero on entry), the others into private grids that are then
    added in order (n_threads − 1 extra grids)."""
    n_atoms = centers.shape[0]
    parts = np.zeros((max(n_threads - 1, 0),) + grid.shape, dtype=grid.dtype)
    chunk = (n_atoms + n_threads - 1) // n_threads
    for t in nb.prange(n_threads):
        a = t * chunk
        b = min(n_atoms, a + chunk)
        if a < b:
            if t == 0:
                spread(grid, centers[a:b], amp[a:b], quad[a:b], radius[a:b], g, recip_len)
            else:
                spread(parts[t - 1], centers[a:b], amp[a:b], quad[a:b], radius[a:b], g, recip_len)
    for t in range(n_threads - 1):
        grid += parts[t]


@nb.njit(cache=True, parallel=True)
def gather(grid, centers, amp, quad, radius, g, recip_len, step, aniso, want_xyz=True, want_adp=True):
    """Moments of map × atom Gaussians (see module docstring).

    step (3,3): Cartesian offset (Å) of one grid step along each axis (columns).
    aniso (n,) bool: store the full d dᵀ moment (6) instead of |d|² in S2.
    want_xyz / want_adp: skip S1 / S2 when not needed (they stay zero).
    Returns S0 (n,G), S1 (n,G,3), S2 (n,G,6).
    """
    n0, n1, n2 = grid.shape
    n_atoms, n_g = amp.shape
    S0 = np.zeros((n_atoms, n_g))
    S1 = np.zeros((n_atoms, n_g, 3))
    S2 = np.zeros((n_atoms, n_g, 6))
    for a in nb.prange(n_atoms):
        Ei = np.empty(n_g)
        Ru = np.empty(n_g)
        Rv_i = np.empty(n_g)
        Rw_i = np.empty(n_g)
        Ej = np.empty(n_g)
        Rv = np.empty(n_g)
        Rw_j = np.empty(n_g)
        e = np.empty(n_g)
        r = np.empty(n_g)
        fu = np.empty(n_g)
        fv = np.empty(n_g)
        fw = np.empty(n_g)
        guv = np.empty(n_g)
        guw = np.empty(n_g)
        gvw = np.empty(n_g)
        s0 = np.zeros(n_g)
        s1 = np.zeros((n_g, 3))
        s2 = np.zeros((n_g, 6))
        c = centers[a]
        rad = radius[a]
        r2 = rad * rad
        an = aniso[a]
        lo0, hi0, lo1, hi1, lo2, hi2 = _box(c, rad, recip_len)
        _init_recurrences(amp[a], quad[a], lo0 - c[0], lo1 - c[1], lo2 - c[2],
                          Ei, Ru, Rv_i, Rw_i, fu, fv, fw, guv, guw, gvw)
        sx = step[0, 2]
        sy = step[1, 2]
        sz = step[2, 2]
        for u in range(lo0, hi0 + 1):
            du = u - c[0]
            iu = u % n0
            for k in range(n_g):
                Ej[k] = Ei[k]
                Rv[k] = Rv_i[k]
                Rw_j[k] = Rw_i[k]
            for v in range(lo1, hi1 + 1):
                dv = v - c[1]
                w0, w1 = _row_range(du, dv, g, r2, c[2], lo2, hi2)
                if w1 >= w0:
                    skip = w0 - lo2
                    for k in range(n_g):
                        ee = Ej[k]
                        rr = Rw_j[k]
                        ff = fw[k]
                        for s in range(skip):
                            ee *= rr
                            rr *= ff
                        e[k] = ee
                        r[k] = rr
                    dw0 = w0 - c[2]
                    dx = step[0, 0] * du + step[0, 1] * dv + step[0, 2] * dw0
                    dy = step[1, 0] * du + step[1, 1] * dv + step[1, 2] * dw0
                    dz = step[2, 0] * du + step[2, 1] * dv + step[2, 2] * dw0
                    row = grid[iu, v % n1]
                    iw = w0 % n2
                    for w in range(w0, w1 + 1):
                        m = row[iw]
                        if want_adp and an:
                            dxx = dx * dx
                            dyy = dy * dy
                            dzz = dz * dz
                            dxy = dx * dy
                            dxz = dx * dz
                            dyz = dy * dz
                            for k in range(n_g):
                                t = m * e[k]
                                s0[k] += t
                                if want_xyz:
                                    s1[k, 0] += t * dx
                                    s1[k, 1] += t * dy
                                    s1[k, 2] += t * dz
                                s2[k, 0] += t * dxx
                                s2[k, 1] += t * dyy
                                s2[k, 2] += t * dzz
                                s2[k, 3] += t * dxy
                                s2[k, 4] += t * dxz
                                s2[k, 5] += t * dyz
                                e[k] *= r[k]
                                r[k] *= fw[k]
                        elif want_adp:
                            d2 = dx * dx + dy * dy + dz * dz
                            for k in range(n_g):
                                t = m * e[k]
                                s0[k] += t
                                if want_xyz:
                                    s1[k, 0] += t * dx
                                    s1[k, 1] += t * dy
                                    s1[k, 2] += t * dz
                                s2[k, 0] += t * d2
                                e[k] *= r[k]
                                r[k] *= fw[k]
                        elif want_xyz:
                            for k in range(n_g):
                                t = m * e[k]
                                s0[k] += t
                                s1[k, 0] += t * dx
                                s1[k, 1] += t * dy
                                s1[k, 2] += t * dz
                                e[k] *= r[k]
                                r[k] *= fw[k]
                        else:
                            for k in range(n_g):
                                s0[k] += m * e[k]
                                e[k] *= r[k]
                                r[k] *= fw[k]
                        dx += sx
                        dy += sy
                        dz += sz
                        iw += 1
                        if iw == n2:
                            iw = 0
                for k in range(n_g):
                    Ej[k] *= Rv[k]
                    Rv[k] *= fv[k]
                    Rw_j[k] *= gvw[k]
            for k in range(n_g):
                Ei[k] *= Ru[k]
                Ru[k] *= fu[k]
                Rv_i[k] *= guv[k]
                Rw_i[k] *= guw[k]
        for k in range(n_g):
            S0[a, k] = s0[k]
            for j in range(3):
                S1[a, k, j] = s1[k, j]
            for j in range(6):
                S2[a, k, j] = s2[k, j]
    return S0, S1, S2


@nb.njit(cache=True)
def scatter_half(out, index, stored, boundary, index_neg, coef, phase):
    """Accumulate ½·v (v = conj(coef_h)·phase_hj) into a flat half-complex array (see
    ``ReciprocalLookup.scatter``): at k where stored, else conj at −k; boundary planes get both."""
    nref, nops = index.shape
    for h in range(nref):
        ch = np.conj(coef[h])
        for j in range(nops):
            v = 0.5 * ch * phase[h, j]
            if stored[h, j]:
                out[index[h, j]] += v
                if boundary[h, j]:
                    out[index_neg[h, j]] += np.conj(v)
            else:
                out[index[h, j]] += np.conj(v)


@nb.njit(cache=True, parallel=True)
def gather_iso(grid, centers, amp, quad, radius, g, recip_len, step, wx, wb0, wb2):
    """Gradient sums for isotropic atoms, Gaussians combined by per-Gaussian weights.

    With e_g the Gaussian values and m the map, accumulates per atom
      O  = Σ m Σ_g e_g,   X = Σ m (Σ_g wx_g e_g) d,   B = Σ m Σ_g e_g (wb0_g + wb2_g |d|²),
    i.e. the occupancy, position and B derivatives when wx = 2p_g, wb0 = −3/(2b'_g),
    wb2 = p_g/b'_g (p_g = 4π²/b'_g). Returns O (n,), X (n,3), B (n,).
    """
    n0, n1, n2 = grid.shape
    n_atoms, n_g = amp.shape
    O = np.zeros(n_atoms)
    X = np.zeros((n_atoms, 3))
    B = np.zeros(n_atoms)
    for a in nb.prange(n_atoms):
        Ei = np.empty(n_g)
        Ru = np.empty(n_g)
        Rv_i = np.empty(n_g)
        Rw_i = np.empty(n_g)
        Ej = np.empty(n_g)
        Rv = np.empty(n_g)
        Rw_j = np.empty(n_g)
        e = np.empty(n_g)
        r = np.empty(n_g)
        fu = np.empty(n_g)
        fv = np.empty(n_g)
        fw = np.empty(n_g)
        guv = np.empty(n_g)
        guw = np.empty(n_g)
        gvw = np.empty(n_g)
        c = centers[a]
        rad = radius[a]
        r2 = rad * rad
        lo0, hi0, lo1, hi1, lo2, hi2 = _box(c, rad, recip_len)
        _init_recurrences(amp[a], quad[a], lo0 - c[0], lo1 - c[1], lo2 - c[2],
                          Ei, Ru, Rv_i, Rw_i, fu, fv, fw, guv, guw, gvw)
        o = 0.0
        x0 = 0.0
        x1 = 0.0
        x2 = 0.0
        bb = 0.0
        sx = step[0, 2]
        sy = step[1, 2]
        sz = step[2, 2]
        for u in range(lo0, hi0 + 1):
            du = u - c[0]
            iu = u % n0
            for k in range(n_g):
                Ej[k] = Ei[k]
                Rv[k] = Rv_i[k]
                Rw_j[k] = Rw_i[k]
            for v in range(lo1, hi1 + 1):
                dv = v - c[1]
                w0, w1 = _row_range(du, dv, g, r2, c[2], lo2, hi2)
                if w1 >= w0:
                    skip = w0 - lo2
                    for k in range(n_g):
                        ee = Ej[k]
                        rr = Rw_j[k]
                        ff = fw[k]
                        for s in range(skip):
                            ee *= rr
                            rr *= ff
                        e[k] = ee
                        r[k] = rr
                    dw0 = w0 - c[2]
                    dx = step[0, 0] * du + step[0, 1] * dv + step[0, 2] * dw0
                    dy = step[1, 0] * du + step[1, 1] * dv + step[1, 2] * dw0
                    dz = step[2, 0] * du + step[2, 1] * dv + step[2, 2] * dw0
                    row = grid[iu, v % n1]
                    iw = w0 % n2
                    for w in range(w0, w1 + 1):
                        m = row[iw]
                        e0 = 0.0
                        ex = 0.0
                        eb0 = 0.0
                        eb2 = 0.0
                        for k in range(n_g):
                            ek = e[k]
                            e0 += ek
                            ex += wx[a, k] * ek
                            eb0 += wb0[a, k] * ek
                            eb2 += wb2[a, k] * ek
                            e[k] = ek * r[k]
                            r[k] *= fw[k]
                        o += m * e0
                        t = m * ex
                        x0 += t * dx
                        x1 += t * dy
                        x2 += t * dz
                        bb += m * (eb0 + eb2 * (dx * dx + dy * dy + dz * dz))
                        dx += sx
                        dy += sy
                        dz += sz
                        iw += 1
                        if iw == n2:
                            iw = 0
                for k in range(n_g):
                    Ej[k] *= Rv[k]
                    Rv[k] *= fv[k]
                    Rw_j[k] *= gvw[k]
            for k in range(n_g):
                Ei[k] *= Ru[k]
                Ru[k] *= fu[k]
                Rv_i[k] *= guv[k]
                Rw_i[k] *= guw[k]
        O[a] = o
        X[a, 0] = x0
        X[a, 1] = x1
        X[a, 2] = x2
        B[a] = bb
    return O, X, B
