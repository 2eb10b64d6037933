"""ADP similarity by Kullback–Leibler divergence between neighbouring atoms' displacement Gaussians.

For atoms i, j with displacement covariances U_i, U_j (Å², 3×3; U = B/8π²·I for isotropic atoms)
the symmetric KL divergence of the two zero-mean Gaussians is
    KL(i, j) = ½ [tr(U_j⁻¹U_i) + tr(U_i⁻¹U_j)] − 3,
which for isotropic atoms is 3/2·(B_i − B_j)²/(B_i·B_j): a *relative* difference, loose for
smeared atoms and tight for well-ordered ones. The restraint energy is Σ_pairs w·KL/σ² with σ
by the pair's distance along the bond graph (1-2, 1-3, 1-4) and a weaker σ for any other pair
closer than ``max_dist`` (waters and side chains packed against each other), after the
KL-divergence ADP restraints of REFMAC/servalcat. Hydrogens (riding) take no part.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from scipy.spatial import cKDTree

from ..core.adp import EIGHT_PI2, sym6_to_mat
from .graph import neighbour_keys, pair_keys

SIGMAS = (0.10, 0.15, 0.30, 1.0)          # 1-2, 1-3, 1-4, other pairs within max_dist


def kl_pairs(model, bond_pairs, max_dist: float = 4.0, sigmas=SIGMAS):
    """Pairs (m,2) and σ (m,) for the KL restraint: bond-graph neighbours and spatial ones."""
    n = model.n_atoms
    heavy = ~np.asarray(model.is_hydrogen, bool)
    b = np.asarray(bond_pairs, dtype=np.int64).reshape(-1, 2)
    b = b[heavy[b[:, 0]] & heavy[b[:, 1]]]
    k1, k2, k3 = neighbour_keys(b, n, 3)
    k2 = np.setdiff1d(k2, k1)
    k3 = np.setdiff1d(k3, np.union1d(k1, k2))
    # spatial neighbours (same asymmetric unit) closer than max_dist
    hi = np.flatnonzero(heavy)
    tree = cKDTree(model.xyz[hi])
    close = tree.query_pairs(max_dist, output_type="ndarray")
    if len(close):
        a, c = hi[close[:, 0]], hi[close[:, 1]]
        kl = np.unique(pair_keys(a, c, n))
        kl = np.setdiff1d(kl, np.concatenate([k1, k2, k3]))
    else:
        kl = np.zeros(0, np.int64)
    allk = [k1, k2, k3, kl]
    pairs = np.concatenate([np.stack([k // n, k % n], axis=1) for k in allk]).astype(np.int64)
    sigma = np.concatenate([np.full(len(k), s) for k, s in zip(allk, sigmas)])
    return pairs, sigma


def u_matrices(b_iso, u_aniso, is_aniso):
    """(n,3,3) displacement covariances (Å²) from B (isotropic atoms) or U."""
    n = len(b_iso)
    U = np.zeros((n, 3, 3))
    iso = ~is_aniso
    u = np.maximum(b_iso[iso], 0.1) / EIGHT_PI2
    U[iso, 0, 0] = U[iso, 1, 1] = U[iso, 2, 2] = u
    U[is_aniso] = sym6_to_mat(u_aniso[is_aniso])
    return U


@njit(cache=True)
def kl_energy(U, Uinv, pairs, wsig, actual, grad, gU):
    """Σ w·KL(i,j); KL values into ``actual``; dE/dU (3×3, symmetric) into gU when ``grad``."""
    v = 0.0
    for k in range(pairs.shape[0]):
        i = pairs[k, 0]
        j = pairs[k, 1]
        t1 = 0.0
        t2 = 0.0
        for a in range(3):
            for b in range(3):
                t1 += Uinv[j, a, b] * U[i, b, a]
                t2 += Uinv[i, a, b] * U[j, b, a]
        kl = 0.5 * (t1 + t2) - 3.0
        actual[k] = kl
        w = wsig[k]
        v += w * kl
        if grad:
            # ∂KL/∂U_i = ½(U_j⁻¹ − U_i⁻¹U_jU_i⁻¹), ∂KL/∂U_j symmetric
            for a in range(3):
                for b in range(3):
                    mi = 0.0
                    mj = 0.0
                    for c in range(3):
                        for d in range(3):
                            mi += Uinv[i, a, c] * U[j, c, d] * Uinv[i, d, b]
                            mj += Uinv[j, a, c] * U[i, c, d] * Uinv[j, d, b]
                    gU[i, a, b] += 0.5 * w * (Uinv[j, a, b] - mi)
                    gU[j, a, b] += 0.5 * w * (Uinv[i, a, b] - mj)
    return v


def kl_value_and_gradient(pairs, sigma, b_iso, u_aniso, is_aniso, grad=True):
    """(value, dE/dB (n,), dE/dU6 (n,6), KL per pair)."""
    U = u_matrices(np.asarray(b_iso, float), np.asarray(u_aniso, float), np.asarray(is_aniso, bool))
    Uinv = np.linalg.inv(U)
    n = len(b_iso)
    gU = np.zeros((n, 3, 3))
    act = np.zeros(len(pairs))
    v = kl_energy(U, Uinv, pairs, 1.0 / sigma ** 2, act, grad, gU)
    gb = np.zeros(n)
    gu = np.zeros((n, 6))
    if grad:
        iso = ~np.asarray(is_aniso, bool)
        gb[iso] = np.trace(gU[iso], axis1=1, axis2=2) / EIGHT_PI2
        ani = ~iso
        g = gU[ani]
        gu[ani] = np.stack([g[:, 0, 0], g[:, 1, 1], g[:, 2, 2],
                            g[:, 0, 1] + g[:, 1, 0], g[:, 0, 2] + g[:, 2, 0], g[:, 1, 2] + g[:, 2, 1]], axis=1)
    return v, gb, gu, act
