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
import scipy.special

from ..core.lbfgs import lbfgs
from ..core.reflections import bins_from_edges, equal_count_bins
from .intensity_likelihood import mli_sigmaa_terms


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


def ml_value_and_derivative(fo, sig, fm, centric, eps, D, S):
    """−ln P and ∂(−ln P)/∂|Fm| per reflection (see :mod:`kickref.xtal.sigmaa`)."""
    V = eps * S + sig * sig
    X = fo * D * fm / V
    nll = -log_likelihood(fo, sig, fm, centric, eps, D, S)
    ma = scipy.special.i1e(2.0 * X) / np.maximum(scipy.special.i0e(2.0 * X), 1e-300)
    da = 2.0 * D * D * fm / V - 2.0 * fo * D / V * ma
    dc = D * D * fm / V - fo * D / V * np.tanh(X)
    return nll, np.where(centric, dc, da)


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
        return bins_from_edges(s2, self.edges)


def _amplitude_terms(fo, sig, fm, centric, eps):
    """(D, S) per reflection → (Σ −ln P, ∂(−ln P)/∂D, ∂(−ln P)/∂S per reflection) of the
    amplitude likelihood."""
    def terms(Dr, Sr):
        V = eps * Sr + sig * sig
        x2 = fo * fo + Dr * Dr * fm * fm
        X = fo * Dr * fm / V
        ma = scipy.special.i1e(2.0 * X) / np.maximum(scipy.special.i0e(2.0 * X), 1e-300)
        tc = np.tanh(X)
        lp = log_likelihood(fo, sig, fm, centric, eps, Dr, Sr)
        dD = np.where(centric, -Dr * fm * fm / V + tc * fo * fm / V,
                      -2.0 * Dr * fm * fm / V + ma * 2.0 * fo * fm / V)
        dV = np.where(centric, -0.5 / V + x2 / (2.0 * V * V) - tc * X / V,
                      -1.0 / V + x2 / (V * V) - ma * 2.0 * X / V)
        return -float(np.sum(lp)), -dD, -dV * eps
    return terms


def fit_bins(fo, sig, fm, centric, eps, bins, n_bins, D0=None, S0=None, terms=None, max_iter: int = 200):
    """ML estimates of D and S for all bins at once (independent problems, one bounded L-BFGS run).

    S is optimized as log(S/S0) so that bins of very different intensity are equally scaled.
    ``terms``: the likelihood as (D, S) per reflection → (Σ −ln P, ∂/∂D, ∂/∂S per reflection);
    default the amplitude likelihood of ``fo``, ``sig`` (the starting values always use ``fo``).
    """
    if terms is None:
        terms = _amplitude_terms(fo, sig, fm, centric, eps)
    cnt = np.bincount(bins, minlength=n_bins).astype(float)
    if D0 is None:
        num = np.bincount(bins, weights=fo * fm, minlength=n_bins)
        den = np.bincount(bins, weights=fm * fm, minlength=n_bins)
        D0 = np.clip(num / np.maximum(den, 1e-30), 0.05, 1.5)
    if S0 is None:
        r = np.maximum(fo * fo - D0[bins] ** 2 * fm * fm, 0.0) / eps
        S0 = np.bincount(bins, weights=r, minlength=n_bins) / np.maximum(cnt, 1)
        mean_i = np.bincount(bins, weights=fo * fo / eps, minlength=n_bins) / np.maximum(cnt, 1)
        S0 = np.maximum(S0, 1e-3 * mean_i + 1e-12)
    S0 = np.maximum(np.asarray(S0, dtype=float), 1e-12)

    def f(p):
        D, t = p[:n_bins], p[n_bins:]
        S = S0 * np.exp(t)
        v, dD, dS = terms(D[bins], S[bins])
        gD = np.bincount(bins, weights=dD, minlength=n_bins)
        gS = np.bincount(bins, weights=dS, minlength=n_bins)
        return v, np.concatenate([gD, gS * S])

    p0 = np.concatenate([np.clip(D0, 1e-3, 3.0), np.zeros(n_bins)])
    lower = np.array([1e-3] * n_bins + [-20.0] * n_bins)
    upper = np.array([3.0] * n_bins + [10.0] * n_bins)
    scale = max(float(len(fo)), 1.0)
    res = lbfgs(lambda p: tuple(v / scale for v in f(p)), p0, max_iter, lower, upper, gtol=1e-10,
                ftol=1e-13, max_shift=np.full(2 * n_bins, 0.2))
    D = res.x[:n_bins].copy()
    S = S0 * np.exp(res.x[n_bins:])
    empty = cnt == 0
    D[empty], S[empty] = 1.0, 1.0
    return D, S


def estimate_sigmaa(fo, sig, fm, centric, eps, s2, use, n_bins: int | None = None,
                    min_per_bin: int = 100, used: str = "test", start: "SigmaA | None" = None,
                    intensities=None) -> SigmaA:
    """D and S per resolution bin from the reflections selected by ``use`` (bool mask).

    Bins have about equal numbers of *used* reflections (≥ ``min_per_bin``); every reflection
    (used or not) gets the parameters of the bin its resolution falls in. ``start``: previous
    estimate with the same bins, used as starting point. ``intensities``: (I, σ_I) to fit by the
    intensity likelihood (MLI) instead of the amplitudes (which then only start the fit).
    """
    use = np.asarray(use, dtype=bool)
    nu = int(use.sum())
    if start is not None and start.used == used:
        edges, n_bins = start.edges, len(start.D_bin)
        D0, S0 = start.D_bin, start.S_bin
    else:
        if n_bins is None:
            n_bins = int(np.clip(nu // min_per_bin, 1, 20))
        if nu == 0:
            n_bins = 1
        edges = equal_count_bins(s2, n_bins, used=use)[1]
        D0 = S0 = None
    bins = bins_from_edges(s2, edges)
    if nu == 0:
        return SigmaA(bins, np.ones(n_bins), np.ones(n_bins), used, edges)
    args = (fo[use], sig[use], fm[use], centric[use], eps[use], bins[use], n_bins)
    if intensities is None:
        D_bin, S_bin = fit_bins(*args, D0, S0)
    else:
        # MLI costs ~100× the amplitude likelihood per evaluation: start from the amplitude fit
        # (when there is no previous estimate) and take at most 30 steps from there, 10 from a
        # previous estimate (6mw0: −ln P within 1.3 of the 200-step optimum after 30 steps)
        warm = D0 is not None
        if not warm:
            D0, S0 = fit_bins(*args)
        terms = mli_sigmaa_terms(intensities[0][use], intensities[1][use], fm[use], centric[use], eps[use])
        D_bin, S_bin = fit_bins(*args, D0, S0, terms, max_iter=10 if warm else 30)
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
        pa_lo, pa_hi = _rice_cdf_sf(fo, nu / sa, sa)
        sc = np.sqrt(V)
        pc_lo, pc_hi = _foldnorm_cdf_sf(fo, nu / sc, sc)
    p = np.where(centric, 2 * np.minimum(pc_hi, pc_lo), 2 * np.minimum(pa_hi, pa_lo))
    return np.nan_to_num(p, nan=1.0) < p_cut


def _outside_support(x, shape, scale):
    """(bad, below, above, x/scale) for a distribution on [0, ∞) with shape ≥ 0, scale > 0,
    as ``scipy.stats.rv_continuous.cdf``/``sf`` treat them: bad (NaN) where the shape or scale is
    invalid or x is NaN; cdf = 0, sf = 1 at or below 0; cdf = 1, sf = 0 at +∞."""
    x, shape, scale = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, shape, scale)))
    xs = x / scale
    bad = ~((shape >= 0) & (scale > 0)) | np.isnan(xs)
    return bad, xs <= 0, xs >= np.inf, xs


def _rice_cdf_sf(x, b, scale):
    """CDF and survival function of the Rice distribution (shape b, scale ``scale``) at x, with
    the formulas and edge cases of ``scipy.stats.rice`` (cdf = chndtr(x², 2, b²), sf = 1 − cdf;
    identical results) without importing scipy.stats (~25 MB)."""
    bad, below, above, xs = _outside_support(x, b, scale)
    bb = np.broadcast_to(np.asarray(b, dtype=np.float64), xs.shape)
    inside = ~(bad | below | above)
    cdf = np.where(above, 1.0, 0.0)
    cdf[inside] = scipy.special.chndtr(np.square(xs[inside]), 2, np.square(bb[inside]))
    sf = np.where(below, 1.0, 0.0)
    sf[inside] = 1.0 - cdf[inside]
    cdf[bad] = np.nan
    sf[bad] = np.nan
    return cdf, sf


def _foldnorm_cdf_sf(x, c, scale):
    """CDF and survival function of the folded normal distribution (shape c, scale ``scale``)
    at x, with the formulas and edge cases of ``scipy.stats.foldnorm`` (identical results)."""
    bad, below, above, xs = _outside_support(x, c, scale)
    cc = np.broadcast_to(np.asarray(c, dtype=np.float64), xs.shape)
    inside = ~(bad | below | above)
    xi, ci = xs[inside], cc[inside]
    cdf = np.where(above, 1.0, 0.0)
    cdf[inside] = 0.5 * (scipy.special.erf((xi - ci) / np.sqrt(2)) + scipy.special.erf((xi + ci) / np.sqrt(2)))
    sf = np.where(below, 1.0, 0.0)
    sf[inside] = scipy.special.ndtr(-(xi - ci)) + scipy.special.ndtr(-(xi + ci))
    cdf[bad] = np.nan
    sf[bad] = np.nan
    return cdf, sf
