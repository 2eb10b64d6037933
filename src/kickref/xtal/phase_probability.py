"""Phase probabilities from Hendrickson–Lattman coefficients: centroid (best) phase and figure of merit.

Convention (CCP4, Hendrickson & Lattman 1970): for a reflection with coefficients A, B, C, D

    P(φ) ∝ exp(A cos φ + B sin φ + C cos 2φ + D sin 2φ),     φ in radians.

Acentric reflections: φ over the whole circle. Centric reflections: only the two phases
φ_c and φ_c + π allowed by the space group (φ_c = π h·t mod π for the operation (R, t) with
h R = −h). The centroid ⟨e^{iφ}⟩ = m e^{iφ_best}: m is the figure of merit, φ_best the
centroid ("best") phase; the best map has coefficients m |Fo| e^{iφ_best} (Blow & Crick 1959).
"""
from __future__ import annotations

import gemmi
import numpy as np


def centric_phases(hkl, spacegroup: gemmi.SpaceGroup) -> tuple:
    """(centric (n,) bool, φ_c (n,) radians in [0, π)): the centric flag and one of the two
    allowed phases of each centric reflection (0 for acentric ones)."""
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    centric = np.zeros(len(hkl), dtype=bool)
    phic = np.zeros(len(hkl), dtype=np.float64)
    for op in spacegroup.operations():
        rot = np.asarray(op.rot, dtype=np.int64) // gemmi.Op.DEN       # h' = h R (row vector)
        tran = np.asarray(op.tran, dtype=np.float64) / gemmi.Op.DEN
        hr = hkl @ rot
        hit = np.all(hr == -hkl, axis=1) & ~centric
        if hit.any():
            phic[hit] = np.mod(np.pi * (hkl[hit] @ tran), np.pi)
            centric |= hit
    return centric, phic


def hl_centroid(abcd, centric=None, phic=None, n_steps: int = 360) -> tuple:
    """Centroid phase and figure of merit from HL coefficients ``abcd`` (n, 4) = A, B, C, D.

    Acentric reflections: ⟨e^{iφ}⟩ by summing P(φ) over ``n_steps`` equally spaced phases
    (exact to rounding for a periodic integrand this smooth). Centric ones (``centric`` mask,
    ``phic`` allowed phase, radians): the two-point distribution over φ_c, φ_c + π.
    Returns (φ_best (n,) radians in (−π, π], m (n,) in [0, 1]); rows with a non-finite
    coefficient (or a flat distribution) give m = 0, φ = 0.
    """
    abcd = np.asarray(abcd, dtype=np.float64).reshape(-1, 4)
    n = len(abcd)
    ok = np.all(np.isfinite(abcd), axis=1)
    a, b, c, d = (np.where(ok, abcd[:, k], 0.0) for k in range(4))
    centric = np.zeros(n, dtype=bool) if centric is None else np.asarray(centric, dtype=bool)
    phic = np.zeros(n, dtype=np.float64) if phic is None else np.asarray(phic, dtype=np.float64)
    z = np.zeros(n, dtype=np.complex128)

    acen = np.flatnonzero(~centric)
    phi = 2.0 * np.pi * np.arange(n_steps) / n_steps
    cos1, sin1, cos2, sin2 = np.cos(phi), np.sin(phi), np.cos(2 * phi), np.sin(2 * phi)
    eiphi = np.exp(1j * phi)
    for start in range(0, len(acen), 4096):                  # chunks bound the memory only
        i = acen[start:start + 4096]
        logp = (a[i, None] * cos1 + b[i, None] * sin1 + c[i, None] * cos2 + d[i, None] * sin2)
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        z[i] = (p @ eiphi) / p.sum(axis=1)

    cen = np.flatnonzero(centric)
    if len(cen):
        pc = phic[cen]
        # log P(φc) − log P(φc + π) = 2 (A cos φc + B sin φc); the 2φ terms are equal at both
        x = a[cen] * np.cos(pc) + b[cen] * np.sin(pc)
        z[cen] = np.tanh(x) * np.exp(1j * pc)

    z[~ok | (np.abs(z) < 1e-12)] = 0.0                        # flat P(φ): no phase, m = 0
    fom = np.clip(np.abs(z), 0.0, 1.0)
    phase = np.where(fom > 0, np.angle(z), 0.0)
    return phase, fom
