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

from ..core.linalg import matvec


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
        z[i] = matvec(p, eiphi) / p.sum(axis=1)

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


def shift_hl(abcd, delta, friedel=None) -> np.ndarray:
    """HL coefficients of the phase φ' = s·φ + δ given those of φ (``delta`` (n,) radians;
    ``friedel`` (n,) bool: s = −1, else s = +1). Used to move coefficients between symmetry
    equivalents: φ(hR) = φ(h) − 2π h·t, φ(−h) = −φ(h)."""
    abcd = np.array(abcd, dtype=np.float64).reshape(-1, 4)
    if friedel is not None:
        abcd[np.asarray(friedel, bool), 1] *= -1.0
        abcd[np.asarray(friedel, bool), 3] *= -1.0
    delta = np.asarray(delta, dtype=np.float64)
    out = np.empty_like(abcd)
    for k, mult in ((0, 1.0), (2, 2.0)):          # (A, B) rotate by δ, (C, D) by 2δ
        c, s = np.cos(mult * delta), np.sin(mult * delta)
        out[:, k] = abcd[:, k] * c - abcd[:, k + 1] * s
        out[:, k + 1] = abcd[:, k] * s + abcd[:, k + 1] * c
    return out


def hl_on_hkl(hkl_from, abcd, hkl_to, spacegroup: gemmi.SpaceGroup) -> np.ndarray:
    """HL coefficients ``abcd`` given at ``hkl_from`` moved onto ``hkl_to`` (either may hold any
    symmetry or Friedel equivalents; the coefficients are phase-shifted accordingly).
    Returns (len(hkl_to), 4); NaN rows where ``hkl_to`` has no equivalent in ``hkl_from``."""
    hf = np.asarray(hkl_from, dtype=np.int64).reshape(-1, 3)
    ht = np.asarray(hkl_to, dtype=np.int64).reshape(-1, 3)
    abcd = np.asarray(abcd, dtype=np.float64).reshape(-1, 4)

    def keys(h):
        return ((h[:, 0] + 1024) << 22) | ((h[:, 1] + 1024) << 11) | (h[:, 2] + 1024)

    kf = keys(hf)
    order = np.argsort(kf, kind="stable")
    ks = kf[order]
    out = np.full((len(ht), 4), np.nan)
    todo = np.ones(len(ht), dtype=bool)
    for op in spacegroup.operations():
        rot = np.asarray(op.rot, dtype=np.int64) // gemmi.Op.DEN
        tran = np.asarray(op.tran, dtype=np.float64) / gemmi.Op.DEN
        hr = ht @ rot                                  # φ(h_to) = φ(h_to R) + 2π h_to·t
        delta = 2.0 * np.pi * (ht @ tran)
        for sign in (1, -1):
            if not todo.any() or not len(ks):
                break
            kk = keys(sign * hr)
            pos = np.clip(np.searchsorted(ks, kk), 0, len(ks) - 1)
            hit = todo & (ks[pos] == kk)
            if hit.any():
                out[hit] = shift_hl(abcd[order[pos[hit]]], delta[hit],
                                    np.full(int(hit.sum()), sign < 0))
                todo &= ~hit
    return out


def model_hl(f_obs, sigma, f_model, centric, epsilon, D, S) -> np.ndarray:
    """HL coefficients (n, 4) of the σA phase probability of a model (Read 1986; Rice form).

    A + iB = X·e^{iφ_model} with X = 2·D·|Fo|·|Fm|/V (acentric) or D·|Fo|·|Fm|/V (centric),
    V = ε·S + σ² (the variance of :mod:`kickref.xtal.sigmaa`); C = D = 0. Its centroid is
    m = I1(X)/I0(X) (acentric), tanh(X) (centric) along φ_model. Non-finite inputs give 0 rows
    (no information).
    """
    fo = np.asarray(f_obs, dtype=np.float64)
    fm = np.asarray(f_model)
    sig = np.nan_to_num(np.asarray(sigma, dtype=np.float64), nan=0.0)
    V = np.asarray(epsilon, dtype=np.float64) * np.asarray(S, dtype=np.float64) + sig * sig
    x = np.where(np.asarray(centric, bool), 1.0, 2.0) * D * fo * np.abs(fm) / V
    x = np.where(np.isfinite(x), x, 0.0)
    ph = np.angle(fm)
    return np.column_stack([x * np.cos(ph), x * np.sin(ph), np.zeros_like(x), np.zeros_like(x)])


def combine_hl(*sets) -> np.ndarray:
    """Sum of independent phase probabilities' HL coefficients (product of the P(φ)); non-finite
    rows of a set count as no information (zero)."""
    out = None
    for s in sets:
        s = np.nan_to_num(np.asarray(s, dtype=np.float64).reshape(-1, 4), nan=0.0, posinf=0.0, neginf=0.0)
        out = s.copy() if out is None else out + s
    return out


# ------------------------------------------------------------ calibration of HL coefficients
def _phase_projections(abcd, centric, phic, n_steps):
    """(n, S) values of A cos φ + B sin φ + C cos 2φ + D sin 2φ: S = ``n_steps`` equally spaced
    phases for acentric rows; centric rows hold their two allowed phases (φ_c, φ_c + π) and −inf
    (no weight) in the other columns."""
    abcd = np.asarray(abcd, dtype=np.float64).reshape(-1, 4)
    phi = 2.0 * np.pi * np.arange(n_steps) / n_steps
    basis = np.stack([np.cos(phi), np.sin(phi), np.cos(2 * phi), np.sin(2 * phi)])
    out = abcd @ basis
    cen = np.flatnonzero(centric)
    if len(cen):
        pc = np.asarray(phic, dtype=np.float64)[cen]
        x = abcd[cen, 0] * np.cos(pc) + abcd[cen, 1] * np.sin(pc)
        c2 = abcd[cen, 2] * np.cos(2 * pc) + abcd[cen, 3] * np.sin(2 * pc)
        out[cen] = -np.inf
        out[cen, 0] = x + c2
        out[cen, 1] = -x + c2
    return out


def _log_mean_exp(v):
    """log of the mean of exp(v) over the finite columns of each row (v (n, S), −inf = absent)."""
    mx = v.max(axis=1, keepdims=True)
    e = np.exp(v - mx)
    cnt = np.isfinite(v).sum(axis=1)
    return mx[:, 0] + np.log(e.sum(axis=1) / cnt)


def hl_scale_log_likelihood(k, e_proj, m_proj):
    """Per-reflection log-likelihood of the model phases when the experimental HL are scaled by
    ``k`` (per row): log ∫ P_exp,k(φ) e^{M(φ)} dφ = log⟨e^{k·E + M}⟩_φ − log⟨e^{k·E}⟩_φ, E and M the
    experimental and model HL exponents (the model term's own normalization, free of k, is left
    out; see :func:`calibrate_hl_scale`). ``e_proj``/``m_proj``: :func:`_phase_projections` of both HL sets."""
    k = np.asarray(k, dtype=np.float64).reshape(-1, 1)
    return _log_mean_exp(k * e_proj + m_proj) - _log_mean_exp(k * e_proj)


def calibrate_hl_scale(hl_exp, hl_model, centric, phic, bins, k_range=(0.25, 4.0),
                       smooth: bool = True, n_steps: int = 120, iterations: int = 40) -> dict:
    """Maximum-likelihood scale k per resolution bin of experimental HL coefficients, judged by an
    independent, calibrated phase estimate (the model's σA phase probability).

    For each reflection the model phase φ_m given the true phase φ is distributed (σA, Read 1986;
    the joint distribution of the two phases depends only on cos(φ − φ_m)) as
    P(φ_m | φ) = exp(X cos(φ_m − φ)) / (2π I0(X)) (acentric; centric: the two allowed phases with
    weights e^{±X}/2cosh X), where A + iB = X e^{iφ_m} of ``hl_model``. If the experimental
    probability of the true phase were P_exp,k(φ) ∝ exp(k (A cos φ + B sin φ + C cos 2φ + D sin 2φ)),
    the likelihood of the observed model phase is ∫ P_exp,k(φ) P(φ_m | φ) dφ, hence up to terms
    free of k

        L_bin(k) = Σ_{h in bin} [ log ∫ e^{k·E_h(φ) + M_h(φ)} dφ − log ∫ e^{k·E_h(φ)} dφ ],

    E_h, M_h the experimental and model HL exponents. k is the argument of the maximum of L_bin over
    ``k_range`` (golden-section search in log k, all bins at once; the integrals by summation over
    ``n_steps`` phases, spectrally accurate for a periodic integrand). k > 1: the experimental
    figures of merit are too low (under-confident HL), k < 1: too high. A row of ``hl_model`` of
    zero (no model information, e.g. the test set) contributes nothing. With ``smooth``, log k is
    averaged over each bin and its neighbours (3 bins), then clipped again to ``k_range``.

    ``bins`` (n,) int bin of each reflection, −1 to leave a reflection out of the calibration.
    Returns {'k_bin': (n_bins,), 'k_raw': unsmoothed, 'n': reflections a bin,
    'gain': L(k) − L(1) per bin (log-likelihood gain, nats)}.
    """
    bins = np.asarray(bins, dtype=np.int64)
    centric = np.asarray(centric, dtype=bool)
    ok = (bins >= 0) & np.all(np.isfinite(hl_exp), axis=1) & np.all(np.isfinite(hl_model), axis=1)
    ok &= np.any(np.asarray(hl_model)[:, :2] != 0, axis=1) & np.any(np.asarray(hl_exp) != 0, axis=1)
    n_bins = int(bins.max()) + 1 if len(bins) and bins.max() >= 0 else 0
    idx = np.flatnonzero(ok)
    b = bins[idx]
    e_proj = _phase_projections(np.asarray(hl_exp)[idx], centric[idx], np.asarray(phic)[idx], n_steps)
    m_proj = _phase_projections(np.asarray(hl_model)[idx], centric[idx], np.asarray(phic)[idx], n_steps)
    count = np.bincount(b, minlength=n_bins)

    def total(logk):                                 # L_bin at log k (n_bins,)
        return np.bincount(b, weights=hl_scale_log_likelihood(np.exp(logk[b]), e_proj, m_proj),
                           minlength=n_bins)

    lo = np.full(n_bins, np.log(k_range[0]))
    hi = np.full(n_bins, np.log(k_range[1]))
    g = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = total(x1), total(x2)
    for _ in range(iterations):                      # maximize: keep the better inner point
        left = f1 >= f2
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x2n = np.where(left, x1, lo + g * (hi - lo))
        x1n = np.where(left, hi - g * (hi - lo), x2)
        f2n = np.where(left, f1, np.nan)
        f1n = np.where(left, np.nan, f2)
        new = np.where(left, x1n, x2n)
        fnew = total(new)
        x1, x2 = x1n, x2n
        f1 = np.where(left, fnew, f1n)
        f2 = np.where(left, f2n, fnew)
    logk = np.where(count > 0, 0.5 * (lo + hi), 0.0)
    gain = total(logk) - total(np.zeros(n_bins))
    raw = np.exp(logk)
    if smooth and n_bins > 2:
        has = count > 0
        s = np.zeros(n_bins)
        for i in range(n_bins):
            j = [t for t in (i - 1, i, i + 1) if 0 <= t < n_bins and has[t]]
            s[i] = np.mean(logk[j]) if j else 0.0
        logk = np.clip(s, np.log(k_range[0]), np.log(k_range[1]))
    return {"k_bin": np.exp(logk), "k_raw": raw, "n": count, "gain": gain}


def scale_hl(abcd, k) -> np.ndarray:
    """HL coefficients times a scale per row (k (n,) or scalar): P(φ) → P(φ)^k / norm."""
    return np.asarray(abcd, dtype=np.float64).reshape(-1, 4) * np.asarray(k, dtype=np.float64).reshape(-1, 1)
