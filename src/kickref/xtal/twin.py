"""Merohedral twinning: twin laws, twin mates, twin tests and the twinned intensity likelihood.

Conventions
- A twin law is a reciprocal-space operator R (a ``gemmi.Op`` in h,k,l form, e.g. "k,h,-l"): the
  twin domain j contributes the intensity of R_j·h to the observation at h. Domain 0 is the
  identity. Fractions α_j ≥ 0, Σ α_j = 1.
- Twinned intensity: Io(h) = Σ_j α_j · J(R_j h), J the true intensity of the crystal.
- Laws come from the lattice (``gemmi.find_twin_laws``: operators of the lattice's holohedry
  that are not in the space group's point group, obliquity ≤ ``max_obliquity`` degrees).

Likelihood (Gaussian in Io, moments matched; the twinned analogue of the σA model): given the
scaled model amplitudes |Fm| at the mates, each J_j = |D·Fm_j + Δ_j|² with Δ_j independent
complex Gaussians of variance ε·S (acentric; real for centric), so

    μ = Σ_j α_j (D²|Fm_j|² + ε_j S)
    v = σ_I² + Σ_j α_j² k_j ε_j S (ε_j S + 2 D²|Fm_j|²)      k = 1 acentric, 2 centric
    −ln P(Io) = ½ ln(2πv) + (Io − μ)²/(2v)

exact in the first two moments of Io; it is not the full integral over the J_j (servalcat's
mltwin), a simplification accepted for speed. Units: Io, σ_I, S on the data's intensity scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from ..core.reflections import hkl_keys

TWIN_FRACTION_MIN = 0.03     # auto mode: laws whose refined fraction stays below this are dropped


def twin_laws(cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup, max_obliquity: float = 3.0) -> list:
    """Twin laws (reciprocal-space ``gemmi.Op``) allowed by the lattice metric (merohedral and
    pseudo-merohedral up to ``max_obliquity`` degrees), one per coset."""
    return [op.as_hkl() for op in gemmi.find_twin_laws(cell, spacegroup, float(max_obliquity), False)]


def parse_twin_law(text: str) -> gemmi.Op:
    """A twin law written in h,k,l ("k,h,-l"; "h=k,k=h,l=-l" also accepted) as a gemmi.Op."""
    t = text.replace(" ", "").lower()
    if "=" in t:
        parts = dict(p.split("=", 1) for p in t.split(","))
        t = ",".join(parts[c] for c in "hkl")
    try:
        op = gemmi.Op(t.replace("h", "x").replace("k", "y").replace("l", "z"))
    except RuntimeError as e:
        raise ValueError(f"not a twin law in h,k,l: {text!r} ({e})") from None
    if op.det_rot() not in (op.DEN ** 3, -op.DEN ** 3) or any(op.tran):
        raise ValueError(f"not a twin law (a unimodular rotation in h,k,l): {text!r}")
    return op.as_hkl()


def law_text(op: gemmi.Op) -> str:
    """The law as written in h,k,l ("k,h,-l")."""
    return op.triplet()


def apply_law(op: gemmi.Op, hkl: np.ndarray) -> np.ndarray:
    """R·h for every row of ``hkl`` (n, 3) int."""
    rot = np.asarray(op.rot, dtype=np.int64) // op.DEN
    return np.asarray(hkl, dtype=np.int64) @ rot


def twin_mates(hkl: np.ndarray, spacegroup: gemmi.SpaceGroup, laws) -> np.ndarray:
    """Index into ``hkl`` of R_j·h for every reflection and law: (n, 1 + n_laws) int64 with column
    0 the reflection itself; −1 where the mate (any symmetry or Friedel equivalent) is absent."""
    hkl = np.asarray(hkl, dtype=np.int64)
    n = len(hkl)
    rots = [np.asarray(op.rot, dtype=np.int64) // op.DEN for op in spacegroup.operations().sym_ops]
    equiv = np.concatenate([hkl @ r for r in rots] + [-(hkl @ r) for r in rots])
    keys = hkl_keys(equiv)
    owner = np.tile(np.arange(n), 2 * len(rots))
    order = np.argsort(keys, kind="stable")
    ks, ow = keys[order], owner[order]
    out = np.empty((n, 1 + len(laws)), dtype=np.int64)
    out[:, 0] = np.arange(n)
    for j, op in enumerate(laws):
        kt = hkl_keys(apply_law(op, hkl))
        pos = np.clip(np.searchsorted(ks, kt), 0, max(len(ks) - 1, 0))
        out[:, j + 1] = np.where(ks[pos] == kt, ow[pos], -1)
    return out


# ------------------------------------------------------------------ twin tests

def l_test(i_obs, hkl, centric, n_max: int = 20000, seed: int = 0) -> dict:
    """Padilla & Yeates (2003) L-test on acentric reflections: L = (I1 − I2)/(I1 + I2) for pairs
    differing by 2 in one or two indices (local pairs, insensitive to anisotropy and pseudo-
    translation). Untwinned: <|L|> = 0.5, <L²> = 1/3; perfect twin: 0.375, 0.2."""
    hkl = np.asarray(hkl, dtype=np.int64)
    acen = ~np.asarray(centric, dtype=bool)
    keys = hkl_keys(hkl)
    order = np.argsort(keys)
    ks = keys[order]
    ls = []
    for d in ((2, 0, 0), (0, 2, 0), (0, 0, 2), (2, 2, 0), (2, 0, 2), (0, 2, 2)):
        kt = hkl_keys(hkl + np.asarray(d))
        pos = np.clip(np.searchsorted(ks, kt), 0, len(ks) - 1)
        j = order[pos]
        ok = (ks[pos] == kt) & acen & acen[j]
        i1, i2 = np.asarray(i_obs)[ok], np.asarray(i_obs)[j[ok]]
        den = i1 + i2
        good = den > 0
        ls.append((i1[good] - i2[good]) / den[good])
    L = np.clip(np.concatenate(ls), -1, 1) if ls else np.zeros(0)
    if len(L) > n_max:
        L = np.random.default_rng(seed).choice(L, n_max, replace=False)
    if len(L) == 0:
        return {"n_pairs": 0, "mean_abs_L": None, "mean_L2": None}
    return {"n_pairs": int(len(L)), "mean_abs_L": float(np.mean(np.abs(L))), "mean_L2": float(np.mean(L * L)),
            "untwinned": [0.5, 1 / 3], "perfect_twin": [0.375, 0.2]}


def h_test(i_obs, sigma_i, centric, mates_j: np.ndarray, min_i_over_sigma: float = 1.0) -> dict:
    """Yeates (1997) H-test for one law: H = |I1 − I2|/(I1 + I2) over acentric twin pairs with
    I/σ > ``min_i_over_sigma``; for a twin fraction α, <H> = ½ − α, hence α_H = ½ − <H>
    (and Britton-like check: α from <H²> = (1 − 2α)²/3)."""
    i_obs = np.asarray(i_obs)
    ok = (mates_j >= 0) & ~np.asarray(centric)
    idx = np.nonzero(ok)[0]
    jdx = mates_j[idx]
    keep = (idx < jdx)                                    # each pair once, not with itself
    idx, jdx = idx[keep], jdx[keep]
    strong = (i_obs[idx] > min_i_over_sigma * sigma_i[idx]) & (i_obs[jdx] > min_i_over_sigma * sigma_i[jdx])
    i1, i2 = i_obs[idx[strong]], i_obs[jdx[strong]]
    if len(i1) == 0:
        return {"n_pairs": 0, "alpha_h": None, "alpha_h2": None}
    H = np.abs(i1 - i2) / (i1 + i2)
    return {"n_pairs": int(len(H)), "mean_H": float(H.mean()),
            "alpha_h": float(np.clip(0.5 - H.mean(), 0, 0.5)),
            "alpha_h2": float(np.clip(0.5 * (1 - np.sqrt(3 * np.mean(H * H))), 0, 0.5))}


# -------------------------------------------------------- twinned likelihood

@dataclass
class TwinLikelihoodTerms:
    value: float            # Σ −ln P
    d_a: np.ndarray         # ∂/∂|Fm_j|² (n, m)
    d_alpha: np.ndarray     # ∂/∂α_j (m,)
    d_D: np.ndarray         # ∂/∂D per observation (n,)
    d_S: np.ndarray         # ∂/∂S per observation (n,)


def twin_nll(io, sig_i, a, centric, eps, alpha, D, S) -> TwinLikelihoodTerms:
    """Gaussian twinned intensity likelihood (module docstring) for observations (n,) with model
    intensities ``a`` = |Fm|² at their mates (n, m), mates' ``centric``/``eps`` (n, m), fractions
    ``alpha`` (m,), D and S per observation (n,)."""
    k = np.where(centric, 2.0, 1.0)
    D2 = (D * D)[:, None]
    eS = eps * S[:, None]
    mu = (alpha * (D2 * a + eS)).sum(axis=1)
    var_j = k * eS * (eS + 2.0 * D2 * a)
    v = sig_i * sig_i + (alpha * alpha * var_j).sum(axis=1)
    r = io - mu
    value = float(np.sum(0.5 * np.log(2.0 * np.pi * v) + r * r / (2.0 * v)))
    g_mu = -r / v
    g_v = 0.5 / v - r * r / (2.0 * v * v)
    a2 = alpha * alpha
    d_a = g_mu[:, None] * alpha * D2 + g_v[:, None] * a2 * k * eS * 2.0 * D2
    d_alpha = (g_mu[:, None] * (D2 * a + eS) + g_v[:, None] * 2.0 * alpha * var_j).sum(axis=0)
    d_D = (g_mu * (alpha * 2.0 * D[:, None] * a).sum(axis=1)
           + g_v * (a2 * k * eS * 4.0 * D[:, None] * a).sum(axis=1))
    d_S = (g_mu * (alpha * eps).sum(axis=1)
           + g_v * (a2 * k * eps * (2.0 * eS + 2.0 * D2 * a)).sum(axis=1))
    return TwinLikelihoodTerms(value, d_a, d_alpha, d_D, d_S)


def twinned_amplitudes(a, alpha) -> np.ndarray:
    """Model twinned amplitude √(Σ_j α_j |Fm_j|²) per observation (a: (n, m) intensities)."""
    return np.sqrt(np.maximum((alpha * a).sum(axis=1), 0.0))
