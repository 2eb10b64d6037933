"""σA-type likelihood parameters: D and S per resolution bin, figures of merit, outliers.

Model of the error (Luzzati/Read): Fo = |D·Fm + Δ|, Δ complex Gaussian with E|Δ|² = ε·S.
With the measurement error σ of Fo folded in, the variance is V = ε·S + σ².
- acentric (Rice):   ln P = ln(2Fo/V) − (Fo² + D²Fm²)/V + ln I0(2·Fo·D·Fm/V)
- centric (Woolfson): ln P = ½ ln(2/(πV)) − (Fo² + D²Fm²)/(2V) + ln cosh(Fo·D·Fm/V)
Fm is the scaled model amplitude |Fmodel| (same scale as Fo); D is dimensionless, S in Fo² units.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats


def log_i0(x):
    x = np.abs(x)
    return np.log(scipy.special.i0e(x)) + x


def log_cosh(x):
    x = np.abs(x)
    return x + np.log1p(np.exp(-2.0 * x)) - np.log(2.0)


def log_likelihood(fo, sig, fm, centric, eps, D, S):
    """Per-reflection ln P(Fo | Fm) (arrays broadcast); see module docstring."""
    V = eps * S + sig * sig
    x2 = fo * fo + D * D * fm * fm
    X = fo * D * fm / V
    la = np.log(2.0 * np.maximum(fo, 1e-30) / V) - x2 / V + log_i0(2.0 * X)
    lc = 0.5 * np.log(2.0 / (np.pi * V)) - x2 / (2.0 * V) + log_cosh(X)
    return np.where(centric, lc, la)


def figure_of_merit(fo, sig, fm, centric, eps, D, S):
    """m = I1(X)/I0(X) with X = 2·Fo·D·Fm/V (acentric); tanh(Fo·D·Fm/V) (centric)."""
    V = eps * S + sig * sig
    X = fo * D * fm / V
    ma = scipy.special.i1e(2.0 * X) / np.maximum(scipy.special.i0e(2.0 * X), 1e-300)
    mc = np.tanh(X)
    return np.where(centric, mc, ma)


@dataclass
class SigmaA:
    """Per-bin D and S with the bin index of every reflection."""
    bins: np.ndarray          # (n,) bin of each reflection
    D_bin: np.ndarray
    S_bin: np.ndarray
    used: str                 # 'test', 'work' or 'all'
    edges: np.ndarray         # s² boundaries between bins (len = n_bins − 1)

    @property
    def D(self) -> np.ndarray:
        return self.D_bin[self.bins]

    @property
    def S(self) -> np.ndarray:
        return self.S_bin[self.bins]

    def bin_of(self, s2) -> np.ndarray:
        """Bin index for arbitrary s² (= 1/d²), e.g. of reflections missing from the data."""
        return np.searchsorted(self.edges, np.asarray(s2), side="right")


def _fit_bin(fo, sig, fm, centric, eps, D0=None, S0=None):
    """ML estimate of (D, S) in one bin."""
    if len(fo) == 0:
        return 1.0, 1.0
    # starting values from moments: D ~ <Fo Fm>/<Fm²>, S ~ <Fo² − D²Fm²>/ε
    if D0 is None:
        D0 = float(np.sum(fo * fm) / max(np.sum(fm * fm), 1e-30))
        D0 = min(max(D0, 0.05), 1.5)
    if S0 is None:
        S0 = float(np.mean(np.maximum(fo * fo - D0 * D0 * fm * fm, 0.0) / eps))
        S0 = max(S0, 1e-3 * float(np.mean(fo * fo / eps)) + 1e-12)
    scale = max(S0, 1e-12)

    def f(p):
        D, S = p[0], np.exp(p[1]) * scale
        return -np.sum(log_likelihood(fo, sig, fm, centric, eps, D, S))

    res = scipy.optimize.minimize(f, [D0, 0.0], method="L-BFGS-B",
                                  bounds=[(1e-3, 3.0), (-20.0, 10.0)])
    return float(res.x[0]), float(np.exp(res.x[1]) * scale)


def estimate_sigmaa(fo, sig, fm, centric, eps, s2, use, n_bins: int | None = None,
                    min_per_bin: int = 100, used: str = "test") -> SigmaA:
    """D and S per resolution bin from the reflections selected by ``use`` (bool mask).

    Bins have about equal numbers of *used* reflections (≥ ``min_per_bin``); every reflection
    (used or not) gets the parameters of the bin its resolution falls in.
    """
    use = np.asarray(use, dtype=bool)
    nu = int(use.sum())
    if n_bins is None:
        n_bins = int(np.clip(nu // min_per_bin, 1, 20))
    if nu == 0:
        n_bins = 1
    edges = np.quantile(s2[use], np.linspace(0, 1, n_bins + 1)[1:-1]) if n_bins > 1 else np.zeros(0)
    bins = np.searchsorted(edges, s2, side="right").astype(np.int64)
    D_bin = np.ones(n_bins)
    S_bin = np.ones(n_bins)
    for b in range(n_bins):       # loop over bins (≤ 20), vectorized inside
        sel = use & (bins == b)
        D_bin[b], S_bin[b] = _fit_bin(fo[sel], sig[sel], fm[sel], centric[sel], eps[sel])
    return SigmaA(bins, D_bin, S_bin, used, edges)


def outlier_flags(fo, sig, fm, centric, eps, D, S, p_cut: float = 1e-6) -> np.ndarray:
    """Model-based outliers (after Read 1999): Fo improbably far from D·Fm under the error model.

    Two-sided tail probability of Fo given D·Fm (Rice for acentric, folded normal for centric)
    below ``p_cut``.
    """
    V = eps * S + sig * sig
    nu = D * fm
    sa = np.sqrt(V / 2.0)
    with np.errstate(all="ignore"):
        pa_hi = scipy.stats.rice.sf(fo, nu / sa, scale=sa)
        pa_lo = scipy.stats.rice.cdf(fo, nu / sa, scale=sa)
        sc = np.sqrt(V)
        pc_hi = scipy.stats.foldnorm.sf(fo, nu / sc, scale=sc)
        pc_lo = scipy.stats.foldnorm.cdf(fo, nu / sc, scale=sc)
    p = np.where(centric, 2 * np.minimum(pc_hi, pc_lo), 2 * np.minimum(pa_hi, pa_lo))
    return np.nan_to_num(p, nan=1.0) < p_cut
