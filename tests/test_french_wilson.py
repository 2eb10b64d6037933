"""French–Wilson: closed-form posterior moments against quadrature, limits, Wilson prior."""

import numpy as np
import pytest
from scipy.integrate import quad

from kickref.xtal.french_wilson import french_wilson, posterior_amplitude, wilson_sigma


def quadrature_moments(i_obs, sigma, eps_sigma, centric):
    """<F>, sd(F) by direct integration over F (J = F²) of the French–Wilson posterior."""
    mu = i_obs - (0.5 if centric else 1.0) * sigma**2 / eps_sigma
    shift = mu * mu / (2 * sigma**2) if mu > 0 else 0.0   # keeps the integrand O(1)

    def weight(f):
        g = np.exp(-(f**4 - 2 * f * f * mu) / (2 * sigma**2) - shift)
        return g if centric else 2 * f * g

    top = np.sqrt(max(mu, 0.0) + 12 * sigma)
    scale = np.sqrt(sigma / max(abs(mu / sigma), 1e-9))
    pts = sorted(x for x in {np.sqrt(max(mu, 0.0)), scale, 0.5 * scale} if 0 < x < top)
    kw = dict(points=pts or None, limit=500, epsabs=0, epsrel=1e-12)
    m0 = quad(weight, 0, top, **kw)[0]
    m1 = quad(lambda f: f * weight(f), 0, top, **kw)[0] / m0
    m2 = quad(lambda f: f * f * weight(f), 0, top, **kw)[0] / m0
    return m1, np.sqrt(m2 - m1 * m1)


@pytest.mark.parametrize("centric", [False, True])
@pytest.mark.parametrize("z", [-120.0, -31.0, -29.0, -8.0, -2.0, 0.0, 0.7, 4.0, 15.0, 29.0, 31.0, 90.0])
def test_posterior_moments_match_quadrature(z, centric):
    sigma, eps_sigma = 3.0, 40.0
    i_obs = z * sigma + (0.5 if centric else 1.0) * sigma**2 / eps_sigma   # so that μ/σ = z
    f, sf = posterior_amplitude([i_obs], [sigma], [eps_sigma], [centric])
    f_ref, sf_ref = quadrature_moments(i_obs, sigma, eps_sigma, centric)
    assert f[0] == pytest.approx(f_ref, rel=1e-8)
    assert sf[0] == pytest.approx(sf_ref, rel=1e-7)


@pytest.mark.parametrize("centric", [False, True])
def test_continuous_across_series_switch(centric):
    sigma, eps_sigma = 1.0, 1e9    # μ ≈ I
    i_obs = np.array([-30.0 - 1e-9, -30.0 + 1e-9, 30.0 - 1e-9, 30.0 + 1e-9])
    f, sf = posterior_amplitude(i_obs, np.full(4, sigma), np.full(4, eps_sigma), np.full(4, centric))
    assert f[0] == pytest.approx(f[1], rel=1e-9) and f[2] == pytest.approx(f[3], rel=1e-9)
    assert sf[0] == pytest.approx(sf[1], rel=1e-8) and sf[2] == pytest.approx(sf[3], rel=1e-8)


@pytest.mark.parametrize("centric", [False, True])
def test_strong_reflections_give_sqrt_i(centric):
    i_obs = np.array([1e4, 5e5, 3e7])
    sigma = np.sqrt(i_obs)          # I/σ = 100 .. 5500
    f, sf = posterior_amplitude(i_obs, sigma, np.full(3, 1e6), np.full(3, centric))
    np.testing.assert_allclose(f, np.sqrt(i_obs), rtol=2e-4)
    # delta method: σ_F = σ_I / (2 F)
    np.testing.assert_allclose(sf, sigma / (2 * np.sqrt(i_obs)), rtol=2e-3)


@pytest.mark.parametrize("centric", [False, True])
def test_negative_intensities_give_positive_monotonic_f(centric):
    i_obs = np.linspace(-40.0, 10.0, 51)
    n = len(i_obs)
    f, sf = posterior_amplitude(i_obs, np.full(n, 10.0), np.full(n, 200.0), np.full(n, centric))
    assert np.all(f > 0) and np.all(np.isfinite(f))
    assert np.all(sf > 0)
    assert np.all(np.diff(f) > 0)                   # F grows with I
    assert f[0] < 0.5 * np.sqrt(10.0 * 2)           # I = -4σ: F well below the noise level


def test_centric_and_acentric_priors_differ_for_weak_data():
    """At I = 0 the centric prior (more weight at J = 0) gives a smaller F; for strong data they agree."""
    sigma = np.full(2, 10.0)
    eps_sigma = np.full(2, 100.0)
    cen = np.array([False, True])
    f0, _ = posterior_amplitude(np.zeros(2), sigma, eps_sigma, cen)
    assert f0[1] < 0.85 * f0[0]
    f_ref = [quadrature_moments(0.0, 10.0, 100.0, c)[0] for c in (False, True)]
    np.testing.assert_allclose(f0, f_ref, rtol=1e-8)
    f_strong, _ = posterior_amplitude(np.full(2, 1e5), sigma, eps_sigma, cen)
    assert f_strong[0] == pytest.approx(f_strong[1], rel=1e-3)


def test_wilson_sigma_recovers_falloff():
    rng = np.random.default_rng(1)
    n = 30000
    s2 = rng.uniform(0.001, 0.3, n)
    true_sigma = 1000.0 * np.exp(-2 * 20.0 * s2 / 4)          # Wilson B = 20 Å²
    j = rng.exponential(true_sigma)
    est, n_bins = wilson_sigma(j, s2, np.zeros(n))
    assert n_bins == 60
    inner = (s2 > 0.02) & (s2 < 0.28)
    assert np.max(np.abs(est[inner] / true_sigma[inner] - 1)) < 0.2      # ~500 per bin: 4.5 % noise
    assert abs(np.median(est[inner] / true_sigma[inner]) - 1) < 0.03


def test_french_wilson_beats_sqrt_of_clipped_intensity():
    """The posterior mean has lower error against the true F than sqrt(max(I, 0)), most for weak data."""
    rng = np.random.default_rng(7)
    n = 20000
    s2 = rng.uniform(0.01, 0.25, n)
    sig_w = 400.0 * np.exp(-10.0 * s2)
    centric = rng.random(n) < 0.1
    eps = np.ones(n)
    j = np.where(centric, sig_w * rng.chisquare(1, n), rng.exponential(sig_w))
    sigma_i = 0.5 * sig_w + 2.0
    i_obs = j + rng.normal(0.0, sigma_i)
    res = french_wilson(i_obs, sigma_i, s2, centric, eps)
    f_true = np.sqrt(j)
    rms_fw = np.sqrt(np.mean((res.f - f_true) ** 2))
    rms_naive = np.sqrt(np.mean((np.sqrt(np.maximum(i_obs, 0)) - f_true) ** 2))
    assert rms_fw < 0.8 * rms_naive
    assert np.mean(res.f) == pytest.approx(np.mean(f_true), rel=0.02)      # nearly unbiased
    # posterior sd is calibrated: the mean squared error matches the mean posterior variance
    assert np.mean((res.f - f_true) ** 2) == pytest.approx(np.mean(res.sigma_f**2), rel=0.1)


def test_french_wilson_rejects_bad_sigma_and_handles_many():
    with pytest.raises(ValueError):
        french_wilson([1.0, 2.0], [1.0, 0.0], [0.1, 0.2], [False, False], [1.0, 1.0])
    rng = np.random.default_rng(3)
    n = 100000
    s2 = rng.uniform(0.01, 0.25, n)
    i_obs = rng.normal(50.0, 30.0, n)
    res = french_wilson(i_obs, np.full(n, 10.0), s2, rng.random(n) < 0.1, np.ones(n))
    assert np.all(np.isfinite(res.f)) and np.all(res.f > 0)
