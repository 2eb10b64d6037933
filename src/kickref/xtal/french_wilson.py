"""French–Wilson conversion of measured intensities to amplitudes.

French & Wilson (1978), Acta Cryst. A34, 517: with a Wilson prior on the true intensity J
(acentric: exponential, p(J) ∝ exp(-J/(εΣ)); centric: p(J) ∝ J^(-1/2) exp(-J/(2εΣ))) and a
Gaussian likelihood N(I_obs; J, σ_I²), the posterior of J is (centric: J^(-1/2) times) a
Gaussian in J of mean μ and width σ_I truncated at J = 0, with

    acentric: μ = I_obs - σ_I² / (εΣ)        centric: μ = I_obs - σ_I² / (2εΣ).

The amplitude is the posterior mean F = <J^(1/2)> and its sigma sqrt(<J> - <J^(1/2)>²).
The moments are ratios of parabolic cylinder functions D_-v(-μ/σ_I) (closed form, no quadrature);
where those overflow (|μ/σ_I| > 30) asymptotic series are used instead.

Σ (the mean intensity per unit ε) is estimated as <I/ε> in equal-count resolution bins and
interpolated (log-linear in s² = 1/d²) between bin centres. Intensities and Σ share the file's
arbitrary scale; F comes out on the square-root scale of I.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gamma, pbdv

# |z| = |μ/σ| beyond which D_-v overflows/underflows in double precision; asymptotic series there.
_Z_SWITCH = 30.0
_SQRT_PI = np.sqrt(np.pi)


@dataclass
class FrenchWilsonResult:
    f: np.ndarray               # posterior mean amplitude <F> (square-root scale of I)
    sigma_f: np.ndarray         # posterior standard deviation of F
    sigma_wilson: np.ndarray    # Σ used for each reflection (intensity per unit ε)
    n_bins: int


def french_wilson(i_obs, sigma_i, s2, centric, epsilon, n_bins: int | None = None) -> FrenchWilsonResult:
    """Amplitudes from intensities by French–Wilson.

    ``i_obs``, ``sigma_i``: measured intensities and sigmas (σ_I > 0 required);
    ``s2``: 1/d² (Å⁻²); ``centric``: bool per reflection; ``epsilon``: multiplicity factor ε.
    ``n_bins``: resolution bins for the Wilson prior (default: about 150 reflections per bin, 1–60).
    """
    i_obs = np.asarray(i_obs, dtype=np.float64)
    sigma_i = np.asarray(sigma_i, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    centric = np.asarray(centric, dtype=bool)
    epsilon = np.asarray(epsilon, dtype=np.float64)
    if not (len(i_obs) == len(sigma_i) == len(s2) == len(centric) == len(epsilon)):
        raise ValueError("french_wilson: arrays differ in length")
    if len(i_obs) == 0:
        raise ValueError("french_wilson: no reflections")
    if not np.all(np.isfinite(i_obs)) or not np.all(np.isfinite(sigma_i)):
        raise ValueError("french_wilson: non-finite intensity or sigma")
    if np.any(sigma_i <= 0):
        raise ValueError("french_wilson: sigma(I) must be positive")
    sigma_wilson, nb = wilson_sigma(i_obs / epsilon, s2, sigma_i / epsilon, n_bins)
    f, sig_f = posterior_amplitude(i_obs, sigma_i, epsilon * sigma_wilson, centric)
    return FrenchWilsonResult(f, sig_f, sigma_wilson, nb)


def wilson_sigma(i_over_eps, s2, sigma_over_eps, n_bins: int | None = None):
    """Σ(s²) = <I/ε> in equal-count bins of s², interpolated log-linearly between bin centres.

    Bins whose mean is not clearly positive (weak, noise-dominated shells) are floored at
    max(0.1 × bin mean σ_I/ε, 1e-6 × largest bin mean), so the prior stays proper.
    Returns (Σ per reflection, number of bins).
    """
    n = len(s2)
    if n_bins is None:
        n_bins = int(np.clip(n // 150, 1, 60))
    n_bins = max(1, min(int(n_bins), n))
    order = np.argsort(s2, kind="stable")
    bin_of_sorted = (np.arange(n) * n_bins) // n
    bins = np.empty(n, dtype=np.int64)
    bins[order] = bin_of_sorted
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    mean_i = np.bincount(bins, weights=i_over_eps, minlength=n_bins) / count
    mean_sig = np.bincount(bins, weights=sigma_over_eps, minlength=n_bins) / count
    centre = np.bincount(bins, weights=s2, minlength=n_bins) / count
    top = max(float(np.max(mean_i)), float(np.max(mean_sig)), 1e-300)
    floor = np.maximum(0.1 * mean_sig, 1e-6 * top)
    bin_sigma = np.maximum(mean_i, floor)
    if n_bins == 1:
        return np.full(n, bin_sigma[0]), 1
    return np.exp(np.interp(s2, centre, np.log(bin_sigma))), n_bins


def posterior_amplitude(i_obs, sigma_i, eps_sigma, centric):
    """Posterior mean and sd of F = J^(1/2) given I_obs, σ_I, the prior mean intensity εΣ and centricity.

    Vectorized over reflections; returns (f, sigma_f).
    """
    i_obs = np.asarray(i_obs, dtype=np.float64)
    sigma_i = np.asarray(sigma_i, dtype=np.float64)
    eps_sigma = np.asarray(eps_sigma, dtype=np.float64)
    centric = np.asarray(centric, dtype=bool)
    mu = i_obs - np.where(centric, 0.5, 1.0) * sigma_i**2 / eps_sigma
    z = mu / sigma_i
    f = np.empty_like(z)
    f2 = np.empty_like(z)
    mid = np.abs(z) <= _Z_SWITCH
    hi = z > _Z_SWITCH
    lo = z < -_Z_SWITCH
    for is_centric in (False, True):
        sel = centric == is_centric
        for region, fn in ((mid, _moments_pbdv), (hi, _moments_large_z), (lo, _moments_negative_z)):
            m = sel & region
            if np.any(m):
                f[m], f2[m] = fn(z[m], is_centric)
    root_sigma = np.sqrt(sigma_i)
    f = f * root_sigma
    f2 = f2 * sigma_i
    sigma_f = np.sqrt(np.maximum(f2 - f * f, 0.0))
    return f, sigma_f


# Moments in units of σ_I (F in σ_I^(1/2), F² in σ_I) as functions of z = μ/σ_I.
# With x = -z, ∫_0^∞ J^k exp(-(J-μ)²/2σ²) dJ ∝ σ^(k+1) Γ(k+1) D_-(k+1)(x).

def _moments_pbdv(z, centric):
    x = -z
    if centric:   # posterior ∝ J^(-1/2) N(J; μ, σ²), J ≥ 0
        d_half = pbdv(-0.5, x)[0]
        f = pbdv(-1.0, x)[0] / (_SQRT_PI * d_half)
        f2 = 0.5 * pbdv(-1.5, x)[0] / d_half
    else:         # posterior ∝ N(J; μ, σ²), J ≥ 0
        d_one = pbdv(-1.0, x)[0]
        f = gamma(1.5) * pbdv(-1.5, x)[0] / d_one
        f2 = pbdv(-2.0, x)[0] / d_one
    return f, f2


def _normal_power_moment(a, z, n_terms=6):
    """E[X^a] / μ^a for X ~ N(μ, σ²) with z = μ/σ ≫ 1 (asymptotic series in 1/z²)."""
    total = np.ones_like(z)
    coeff = 1.0   # binomial(a, 2k) * (2k-1)!!
    inv_z2 = 1.0 / (z * z)
    power = np.ones_like(z)
    for k in range(1, n_terms + 1):
        coeff *= (a - 2 * k + 2) * (a - 2 * k + 1) / ((2 * k - 1) * (2 * k)) * (2 * k - 1)
        power = power * inv_z2
        total = total + coeff * power
    return total


def _moments_large_z(z, centric):
    """Strong reflections: truncation at J = 0 is negligible; moments of the untruncated Gaussian."""
    if centric:
        m_mhalf = _normal_power_moment(-0.5, z)
        f = np.sqrt(z) / m_mhalf
        f2 = z * _normal_power_moment(0.5, z) / m_mhalf
    else:
        f = np.sqrt(z) * _normal_power_moment(0.5, z)
        f2 = z.copy()
    return f, f2


def _scaled_d_series(v, x, n_terms=6):
    """x^v e^(x²/4) D_-v(x) for large positive x (asymptotic series)."""
    total = np.ones_like(x)
    term = np.ones_like(x)
    inv_x2 = 1.0 / (x * x)
    for k in range(1, n_terms + 1):
        term = -term * (v + 2 * k - 2) * (v + 2 * k - 1) / (2.0 * k) * inv_x2
        total = total + term
    return total


def _moments_negative_z(z, centric):
    """Very negative μ/σ: posterior concentrated near J = 0 (asymptotic series of D_-v)."""
    x = -z
    if centric:
        s_half = _scaled_d_series(0.5, x)
        f = _scaled_d_series(1.0, x) / (_SQRT_PI * s_half) / np.sqrt(x)
        f2 = 0.5 * _scaled_d_series(1.5, x) / s_half / x
    else:
        s_one = _scaled_d_series(1.0, x)
        f = gamma(1.5) * _scaled_d_series(1.5, x) / s_one / np.sqrt(x)
        f2 = _scaled_d_series(2.0, x) / s_one / x
    return f, f2
