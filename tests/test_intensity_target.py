"""ML intensity target (MLI): the integrated likelihood, its derivatives, the X-ray term."""
import numpy as np
import pytest

from conftest import case_paths, check_term_gradient, fd_fmodel
import kickref
from kickref.targets.xray import XrayTarget
from kickref.xtal.fmodel import FModel
from kickref.xtal.intensity_likelihood import mli_sigmaa_terms, mli_value_and_derivative
from kickref.xtal.sigmaa import ml_value_and_derivative


def _random_set(n, centric, seed=3):
    rng = np.random.default_rng(seed)
    fm = rng.uniform(0.5, 50, n)
    D = rng.uniform(0.3, 1.0, n)
    S = rng.uniform(10, 300, n)
    eps = rng.choice([1.0, 2.0], n)
    io = rng.uniform(-100, 2500, n)           # weak and negative intensities included
    sig = rng.uniform(1, 200, n)
    return io, sig, fm, np.full(n, centric), eps, D, S


@pytest.mark.parametrize("centric", [False, True])
def test_mli_derivative_matches_finite_difference(centric):
    io, sig, fm, c, eps, D, S = _random_set(400, centric)
    v, d = mli_value_and_derivative(io, sig, fm, c, eps, D, S)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(d))
    h = 1e-5
    vp, _ = mli_value_and_derivative(io, sig, fm + h, c, eps, D, S)
    vm, _ = mli_value_and_derivative(io, sig, fm - h, c, eps, D, S)
    assert np.allclose(d, (vp - vm) / (2 * h), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("centric", [False, True])
def test_mli_sigmaa_derivatives_match_finite_difference(centric):
    io, sig, fm, c, eps, D, S = _random_set(300, centric, seed=4)
    terms = mli_sigmaa_terms(io, sig, fm, c, eps)
    _, dD, dS = terms(D, S)
    for x, d, h, name in ((D, dD, 1e-6, "D"), (S, dS, 1e-4, "S")):
        for i in (0, 7, 123):
            e = np.zeros_like(x)
            e[i] = h
            args_p = (D + e, S) if name == "D" else (D, S + e)
            args_m = (D - e, S) if name == "D" else (D, S - e)
            fd = (terms(*args_p)[0] - terms(*args_m)[0]) / (2 * h)
            assert d[i] == pytest.approx(fd, rel=1e-4, abs=1e-7), f"{name}[{i}]"


@pytest.mark.parametrize("centric", [False, True])
def test_mli_is_a_density_in_io_and_tends_to_the_amplitude_likelihood(centric):
    grid = np.linspace(-3000, 30000, 100001)
    nll, _ = mli_value_and_derivative(grid, 100.0, 40.0, centric, 1.0, 0.9, 300.0)
    assert np.trapezoid(np.exp(-nll), grid) == pytest.approx(1.0, abs=1e-6)
    # σ_I → 0: P(Io) dIo = P(F) dF with F = √Io, i.e. −ln P(Io) = −ln P(F) + ln 2F
    F = 30.0
    nll, dnll = mli_value_and_derivative(np.array([F * F]), 1e-3, np.array([25.0]), centric, 1.0, 0.9, 300.0)
    amp, damp = ml_value_and_derivative(F, 0.0, 25.0, centric, 1.0, 0.9, 300.0)
    assert nll[0] == pytest.approx(amp + np.log(2 * F), abs=1e-6)
    assert dnll[0] == pytest.approx(damp, rel=1e-5)


@pytest.fixture(scope="module")
def fmodel_5e5z_intensities():
    model, data, _ = case_paths("5e5z")
    m, d = kickref.load_inputs(model, data, labin="I,SIGI,FREE")
    assert d.has_intensities and d.source["french_wilson"]
    fm, st = fd_fmodel(m, d)
    return m, fm, st


def test_mli_term_gradient_matches_finite_difference(fmodel_5e5z_intensities):
    m, fm, st = fmodel_5e5z_intensities
    term = XrayTarget(fm, "mli")
    sa, sa_amp = fm.sigmaa("all", intensities=True), fm.sigmaa("all")
    assert np.allclose(sa.D_bin, sa_amp.D_bin, rtol=0.3)            # MLI and amplitude σA agree roughly
    term.set_sigmaa(sa)
    assert np.isfinite(term.value(st))
    atoms = np.random.default_rng(0).choice(m.n_atoms, 4, replace=False)
    assert check_term_gradient(term, st, atoms) >= 10


def test_mli_needs_intensities():
    model, data, _ = case_paths("5e5z")
    m, d = kickref.load_inputs(model, data)            # amplitudes (FP) preferred
    assert not d.has_intensities
    with pytest.raises(ValueError, match="intensity"):
        XrayTarget(FModel(m, d), "mli")
