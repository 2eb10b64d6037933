"""Numba kernels: value and analytic gradient of each restraint kind, over all restraints.

Every kernel adds Σ ((actual − ideal)/σ)² to its return value, writes the actual value of
each restraint into ``actual`` and, when ``grad`` is true, adds the gradient into ``g``
(same shape as the coordinate/parameter array it differentiates). Units: Å, degrees, Å³, Å².
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

RAD2DEG = 180.0 / math.pi


@njit(cache=True)
def bonds(xyz, idx, ideal, sigma, actual, grad, g):
    v = 0.0
    for k in range(idx.shape[0]):
        i = idx[k, 0]
        j = idx[k, 1]
        dx = xyz[i, 0] - xyz[j, 0]
        dy = xyz[i, 1] - xyz[j, 1]
        dz = xyz[i, 2] - xyz[j, 2]
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
        actual[k] = d
        w = 1.0 / (sigma[k] * sigma[k])
        dev = d - ideal[k]
        v += w * dev * dev
        if grad:
            f = 2.0 * w * dev / max(d, 1e-8)
            g[i, 0] += f * dx
            g[i, 1] += f * dy
            g[i, 2] += f * dz
            g[j, 0] -= f * dx
            g[j, 1] -= f * dy
            g[j, 2] -= f * dz
    return v


@njit(cache=True)
def angles(xyz, idx, ideal, sigma, actual, grad, g):
    """Angle i-j-k at j, in degrees."""
    v = 0.0
    u = np.empty(3)
    w3 = np.empty(3)
    for k in range(idx.shape[0]):
        a = idx[k, 0]
        b = idx[k, 1]
        c = idx[k, 2]
        for m in range(3):
            u[m] = xyz[a, m] - xyz[b, m]
            w3[m] = xyz[c, m] - xyz[b, m]
        lu = math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
        lw = math.sqrt(w3[0] * w3[0] + w3[1] * w3[1] + w3[2] * w3[2])
        lu = max(lu, 1e-8)
        lw = max(lw, 1e-8)
        dot = u[0] * w3[0] + u[1] * w3[1] + u[2] * w3[2]
        cx = u[1] * w3[2] - u[2] * w3[1]
        cy = u[2] * w3[0] - u[0] * w3[2]
        cz = u[0] * w3[1] - u[1] * w3[0]
        cr = math.sqrt(cx * cx + cy * cy + cz * cz)
        theta = math.atan2(cr, dot)
        ang = theta * RAD2DEG
        actual[k] = ang
        wt = 1.0 / (sigma[k] * sigma[k])
        dev = ang - ideal[k]
        v += wt * dev * dev
        if grad:
            cosv = dot / (lu * lw)
            sinv = max(math.sin(theta), 1e-8)
            f = 2.0 * wt * dev * RAD2DEG * (-1.0 / sinv)
            for m in range(3):
                ga = f * (w3[m] / (lu * lw) - cosv * u[m] / (lu * lu))
                gc = f * (u[m] / (lu * lw) - cosv * w3[m] / (lw * lw))
                g[a, m] += ga
                g[c, m] += gc
                g[b, m] -= ga + gc
    return v


@njit(cache=True)
def torsions(xyz, idx, ideal, sigma, period, actual, grad, g):
    """Dihedral angle (IUPAC sign) in degrees; deviation wrapped to ±180/period."""
    v = 0.0
    b1 = np.empty(3)
    b2 = np.empty(3)
    b3 = np.empty(3)
    for k in range(idx.shape[0]):
        p0 = idx[k, 0]
        p1 = idx[k, 1]
        p2 = idx[k, 2]
        p3 = idx[k, 3]
        for m in range(3):
            b1[m] = xyz[p1, m] - xyz[p0, m]
            b2[m] = xyz[p2, m] - xyz[p1, m]
            b3[m] = xyz[p3, m] - xyz[p2, m]
        n1x = b1[1] * b2[2] - b1[2] * b2[1]
        n1y = b1[2] * b2[0] - b1[0] * b2[2]
        n1z = b1[0] * b2[1] - b1[1] * b2[0]
        n2x = b2[1] * b3[2] - b2[2] * b3[1]
        n2y = b2[2] * b3[0] - b2[0] * b3[2]
        n2z = b2[0] * b3[1] - b2[1] * b3[0]
        lb2 = math.sqrt(b2[0] * b2[0] + b2[1] * b2[1] + b2[2] * b2[2])
        lb2 = max(lb2, 1e-8)
        y = lb2 * (b1[0] * n2x + b1[1] * n2y + b1[2] * n2z)
        x = n1x * n2x + n1y * n2y + n1z * n2z
        phi = math.atan2(y, x) * RAD2DEG
        actual[k] = phi
        per = period[k]
        half = 180.0 / per
        dev = (phi - ideal[k] + half) % (2.0 * half)
        if dev < 0.0:
            dev += 2.0 * half
        dev -= half
        wt = 1.0 / (sigma[k] * sigma[k])
        v += wt * dev * dev
        if grad:
            f = 2.0 * wt * dev * RAD2DEG
            nn1 = max(n1x * n1x + n1y * n1y + n1z * n1z, 1e-16)
            nn2 = max(n2x * n2x + n2y * n2y + n2z * n2z, 1e-16)
            g0x = -lb2 / nn1 * n1x
            g0y = -lb2 / nn1 * n1y
            g0z = -lb2 / nn1 * n1z
            g3x = lb2 / nn2 * n2x
            g3y = lb2 / nn2 * n2y
            g3z = lb2 / nn2 * n2z
            s1 = (b1[0] * b2[0] + b1[1] * b2[1] + b1[2] * b2[2]) / (lb2 * lb2)
            s3 = (b3[0] * b2[0] + b3[1] * b2[1] + b3[2] * b2[2]) / (lb2 * lb2)
            g1x = -(1.0 + s1) * g0x + s3 * g3x
            g1y = -(1.0 + s1) * g0y + s3 * g3y
            g1z = -(1.0 + s1) * g0z + s3 * g3z
            g[p0, 0] += f * g0x
            g[p0, 1] += f * g0y
            g[p0, 2] += f * g0z
            g[p3, 0] += f * g3x
            g[p3, 1] += f * g3y
            g[p3, 2] += f * g3z
            g[p1, 0] += f * g1x
            g[p1, 1] += f * g1y
            g[p1, 2] += f * g1z
            g[p2, 0] -= f * (g0x + g1x + g3x)
            g[p2, 1] -= f * (g0y + g1y + g3y)
            g[p2, 2] -= f * (g0z + g1z + g3z)
    return v


@njit(cache=True)
def chirals(xyz, idx, ideal, sigma, both, actual, grad, g):
    """Chiral volume (a1−c)·((a2−c)×(a3−c)), idx columns (centre, a1, a2, a3).

    ``ideal`` is signed; where ``both`` the deviation is |V| − ideal.
    """
    v = 0.0
    a = np.empty(3)
    b = np.empty(3)
    c = np.empty(3)
    for k in range(idx.shape[0]):
        ic = idx[k, 0]
        i1 = idx[k, 1]
        i2 = idx[k, 2]
        i3 = idx[k, 3]
        for m in range(3):
            a[m] = xyz[i1, m] - xyz[ic, m]
            b[m] = xyz[i2, m] - xyz[ic, m]
            c[m] = xyz[i3, m] - xyz[ic, m]
        bcx = b[1] * c[2] - b[2] * c[1]
        bcy = b[2] * c[0] - b[0] * c[2]
        bcz = b[0] * c[1] - b[1] * c[0]
        vol = a[0] * bcx + a[1] * bcy + a[2] * bcz
        actual[k] = vol
        sgn = 1.0
        if both[k]:
            sgn = 1.0 if vol >= 0.0 else -1.0
            dev = abs(vol) - ideal[k]
        else:
            dev = vol - ideal[k]
        wt = 1.0 / (sigma[k] * sigma[k])
        v += wt * dev * dev
        if grad:
            f = 2.0 * wt * dev * sgn
            cax = c[1] * a[2] - c[2] * a[1]
            cay = c[2] * a[0] - c[0] * a[2]
            caz = c[0] * a[1] - c[1] * a[0]
            abx = a[1] * b[2] - a[2] * b[1]
            aby = a[2] * b[0] - a[0] * b[2]
            abz = a[0] * b[1] - a[1] * b[0]
            g[i1, 0] += f * bcx
            g[i1, 1] += f * bcy
            g[i1, 2] += f * bcz
            g[i2, 0] += f * cax
            g[i2, 1] += f * cay
            g[i2, 2] += f * caz
            g[i3, 0] += f * abx
            g[i3, 1] += f * aby
            g[i3, 2] += f * abz
            g[ic, 0] -= f * (bcx + cax + abx)
            g[ic, 1] -= f * (bcy + cay + aby)
            g[ic, 2] -= f * (bcz + caz + abz)
    return v


@njit(cache=True)
def planes(xyz, atoms, start, sigma, actual, grad, g):
    """Distances of atoms from the least-squares plane of their group.

    ``atoms[start[p]:start[p+1]]`` are the atoms of plane p; ``actual`` gets the signed
    distance of each listed atom. The gradient 2·d·n/σ² is exact because the plane
    (centroid and normal) minimises the sum of squares (envelope theorem).
    """
    v = 0.0
    cov = np.empty((3, 3))
    cen = np.empty(3)
    for p in range(start.shape[0] - 1):
        s0 = start[p]
        s1 = start[p + 1]
        na = s1 - s0
        for m in range(3):
            cen[m] = 0.0
        for q in range(s0, s1):
            for m in range(3):
                cen[m] += xyz[atoms[q], m]
        for m in range(3):
            cen[m] /= na
        for m in range(3):
            for l in range(3):
                cov[m, l] = 0.0
        for q in range(s0, s1):
            i = atoms[q]
            for m in range(3):
                dm = xyz[i, m] - cen[m]
                for l in range(3):
                    cov[m, l] += dm * (xyz[i, l] - cen[l])
        w, vec = np.linalg.eigh(cov)
        nx = vec[0, 0]
        ny = vec[1, 0]
        nz = vec[2, 0]
        wt = 1.0 / (sigma[p] * sigma[p])
        for q in range(s0, s1):
            i = atoms[q]
            d = (xyz[i, 0] - cen[0]) * nx + (xyz[i, 1] - cen[1]) * ny + (xyz[i, 2] - cen[2]) * nz
            actual[q] = d
            v += wt * d * d
            if grad:
                f = 2.0 * wt * d
                g[i, 0] += f * nx
                g[i, 1] += f * ny
                g[i, 2] += f * nz
    return v


@njit(cache=True)
def nonbonded(xyz, pi, pj, pop, ptr, rot, d0, sigma, weight, actual, grad, g):
    """Repulsion Σ w·((d0 − d)/σ)² over pairs closer than d0.

    Pair k: atom ``pi`` and the image ``rot[pop] @ x[pj] + ptr`` of atom ``pj``.
    """
    v = 0.0
    xj = np.empty(3)
    for k in range(pi.shape[0]):
        i = pi[k]
        j = pj[k]
        s = pop[k]
        for m in range(3):
            xj[m] = (rot[s, m, 0] * xyz[j, 0] + rot[s, m, 1] * xyz[j, 1]
                     + rot[s, m, 2] * xyz[j, 2] + ptr[k, m])
        dx = xyz[i, 0] - xj[0]
        dy = xyz[i, 1] - xj[1]
        dz = xyz[i, 2] - xj[2]
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
        actual[k] = d
        if d >= d0[k]:
            continue
        wt = weight[k] / (sigma[k] * sigma[k])
        dev = d0[k] - d
        v += wt * dev * dev
        if grad:
            f = -2.0 * wt * dev / max(d, 1e-8)
            gx = f * dx
            gy = f * dy
            gz = f * dz
            g[i, 0] += gx
            g[i, 1] += gy
            g[i, 2] += gz
            # d/dx_j through the image: −Rᵀ·(gx, gy, gz)
            for m in range(3):
                g[j, m] -= rot[s, 0, m] * gx + rot[s, 1, m] * gy + rot[s, 2, m] * gz
    return v


@njit(cache=True)
def max_displacement(a, b):
    m = 0.0
    for i in range(a.shape[0]):
        dx = a[i, 0] - b[i, 0]
        dy = a[i, 1] - b[i, 1]
        dz = a[i, 2] - b[i, 2]
        d = dx * dx + dy * dy + dz * dz
        if d > m:
            m = d
    return math.sqrt(m)


@njit(cache=True)
def b_similarity(b, pairs, sigma, active, actual, grad, gb):
    """Σ ((B_i − B_j)/σ)² over active pairs (B in Å²)."""
    v = 0.0
    for k in range(pairs.shape[0]):
        i = pairs[k, 0]
        j = pairs[k, 1]
        dev = b[i] - b[j]
        actual[k] = dev
        if not active[k]:
            continue
        wt = 1.0 / (sigma[k] * sigma[k])
        v += wt * dev * dev
        if grad:
            f = 2.0 * wt * dev
            gb[i] += f
            gb[j] -= f
    return v


@njit(cache=True)
def rigid_bond(xyz, u, pairs, sigma, active, actual, grad, gx, gu):
    """Hirshfeld rigid bond: z = nᵀU_i n − nᵀU_j n along the unit bond vector n."""
    v = 0.0
    n = np.empty(3)
    dn = np.empty(3)
    for k in range(pairs.shape[0]):
        if not active[k]:
            actual[k] = 0.0
            continue
        i = pairs[k, 0]
        j = pairs[k, 1]
        for m in range(3):
            n[m] = xyz[j, m] - xyz[i, m]
        r = math.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
        r = max(r, 1e-8)
        for m in range(3):
            n[m] /= r
        d11 = u[i, 0] - u[j, 0]
        d22 = u[i, 1] - u[j, 1]
        d33 = u[i, 2] - u[j, 2]
        d12 = u[i, 3] - u[j, 3]
        d13 = u[i, 4] - u[j, 4]
        d23 = u[i, 5] - u[j, 5]
        dn[0] = d11 * n[0] + d12 * n[1] + d13 * n[2]
        dn[1] = d12 * n[0] + d22 * n[1] + d23 * n[2]
        dn[2] = d13 * n[0] + d23 * n[1] + d33 * n[2]
        z = n[0] * dn[0] + n[1] * dn[1] + n[2] * dn[2]
        actual[k] = z
        wt = 1.0 / (sigma[k] * sigma[k])
        v += wt * z * z
        if grad:
            f = 2.0 * wt * z
            q = (n[0] * n[0], n[1] * n[1], n[2] * n[2],
                 2.0 * n[0] * n[1], 2.0 * n[0] * n[2], 2.0 * n[1] * n[2])
            for m in range(6):
                gu[i, m] += f * q[m]
                gu[j, m] -= f * q[m]
            for m in range(3):
                dzdr = 2.0 / r * (dn[m] - z * n[m])
                gx[j, m] += f * dzdr
                gx[i, m] -= f * dzdr
    return v


@njit(cache=True)
def adp_similarity(u, pairs, sigma, active, actual, grad, gu):
    """Σ over U components ((U_i − U_j)/σ)², off-diagonal counted twice (Frobenius norm)."""
    v = 0.0
    for k in range(pairs.shape[0]):
        if not active[k]:
            actual[k] = 0.0
            continue
        i = pairs[k, 0]
        j = pairs[k, 1]
        wt = 1.0 / (sigma[k] * sigma[k])
        s = 0.0
        for m in range(6):
            c = 1.0 if m < 3 else 2.0
            dev = u[i, m] - u[j, m]
            s += c * dev * dev
            if grad:
                f = 2.0 * wt * c * dev
                gu[i, m] += f
                gu[j, m] -= f
        actual[k] = math.sqrt(s)
        v += wt * s
    return v
