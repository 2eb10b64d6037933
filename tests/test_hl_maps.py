"""Maps from Hendrickson–Lattman coefficients: centroid phase and figure of merit against hand
calculations, and the gamma case's Xe-SAD phases (mean FOM, agreement with the 1GYU model)."""
import math

import gemmi
import numpy as np
import pytest

from conftest import DATA, case_paths
import kickref
from kickref.cli import main
from kickref.core.errors import InputError
from kickref.io.maps import map_from_hendrickson_lattman
from kickref.io.reflections import read_hl_coefficients
from kickref.xtal.density_map import density_map_from_coefficients
from kickref.xtal.phase_probability import centric_phases, hl_centroid


def bessel_i(n, x, terms=80):
    """Modified Bessel function I_n(x) by its power series (hand calculation, no quadrature)."""
    return sum((x / 2) ** (2 * k + n) / (math.factorial(k) * math.factorial(k + n)) for k in range(terms))


def test_acentric_a_and_b_only_is_bessel_ratio():
    abcd = np.array([[0.5, 0, 0, 0], [2.0, 0, 0, 0], [10.0, 0, 0, 0], [-3.0, 0, 0, 0],
                     [3.0, 4.0, 0, 0], [0, 0, 0, 0]])
    phase, fom = hl_centroid(abcd)
    for (a, b, _, _), p, m in zip(abcd, phase, fom):
        x = math.hypot(a, b)
        expect = bessel_i(1, x) / bessel_i(0, x)
        assert m == pytest.approx(expect, abs=1e-9)
        if x > 0:
            assert abs(np.angle(np.exp(1j * (p - math.atan2(b, a))))) < 1e-9
    assert fom[-1] == 0 and phase[-1] == 0


def test_bimodal_c_only_has_no_centroid():
    """C > 0 alone: equal peaks at 0 and π, so ⟨e^{iφ}⟩ = 0."""
    _, fom = hl_centroid(np.array([[0, 0, 5.0, 0], [0, 0, 0, -2.0]]))
    assert np.all(fom < 1e-9)


def test_c_term_sharpens_unimodal_distribution():
    """A with C > 0 narrows the peak at φ = 0: m above I1(A)/I0(A); brute force on a fine grid."""
    abcd = np.array([[2.0, 0, 1.5, 0], [1.0, -1.0, 0.5, 0.7]])
    phase, fom = hl_centroid(abcd)
    phi = np.linspace(0, 2 * np.pi, 200001)[:-1]
    for (a, b, c, d), p, m in zip(abcd, phase, fom):
        w = np.exp(a * np.cos(phi) + b * np.sin(phi) + c * np.cos(2 * phi) + d * np.sin(2 * phi))
        z = (w * np.exp(1j * phi)).sum() / w.sum()
        assert m == pytest.approx(abs(z), abs=1e-9)
        assert p == pytest.approx(np.angle(z), abs=1e-9)
    assert fom[0] > bessel_i(1, 2.0) / bessel_i(0, 2.0)


def test_centric_two_phases_tanh():
    """P212121: (h,0,0) allows φ = h·π/2 + nπ (±π/2 for odd h, 0/π for even h); two-point
    distribution m = |tanh(A cos φc + B sin φc)|; C and D drop out."""
    sg = gemmi.SpaceGroup("P 21 21 21")
    hkl = np.array([[1, 0, 0], [2, 0, 0], [3, 4, 0], [1, 2, 3]])
    centric, phic = centric_phases(hkl, sg)
    assert centric.tolist() == [True, True, True, False]
    assert phic[0] == pytest.approx(np.pi / 2) and phic[1] == pytest.approx(0.0)
    assert centric.tolist() == np.asarray(sg.operations().centric_flag_array(hkl), bool).tolist()
    a, b = 1.2, 0.7
    abcd = np.array([[a, b, 3.0, -1.0]] * 3 + [[a, b, 0, 0]])
    phase, fom = hl_centroid(abcd, centric, phic)
    for i in range(3):
        x = a * math.cos(phic[i]) + b * math.sin(phic[i])      # C, D cancel between φc and φc + π
        assert fom[i] == pytest.approx(abs(math.tanh(x)), abs=1e-12)
        assert np.cos(phase[i] - phic[i]) == pytest.approx(math.copysign(1, x), abs=1e-12)
    assert fom[3] == pytest.approx(bessel_i(1, math.hypot(a, b)) / bessel_i(0, math.hypot(a, b)), abs=1e-9)


def gamma_paths():
    model, data, info = case_paths("gamma") if (DATA / "gamma").is_dir() else pytest.skip("no gamma case")
    return model, data, DATA / "gamma" / info["phases_file"]


def test_gamma_mean_fom():
    """README: mean FOM 0.75. That is the figure with every reflection treated as acentric; with
    the centric reflections restricted to their two phases (tanh, sharper) the mean is 0.77."""
    _, _, phases = gamma_paths()
    hl = read_hl_coefficients(phases)
    _, fom_acentric = hl_centroid(hl["abcd"])
    assert fom_acentric.mean() == pytest.approx(0.75, abs=0.005)
    centric, phic = centric_phases(hl["hkl"], hl["spacegroup"])
    _, fom = hl_centroid(hl["abcd"], centric, phic)
    print("mean FOM", fom.mean(), "all-acentric", fom_acentric.mean(), "centric", centric.sum())
    assert 0.76 < fom.mean() < 0.78
    assert np.all(fom[centric] >= fom_acentric[centric] - 1e-12)


def test_gamma_sad_map_matches_model():
    """FOM-weighted ⟨cos Δφ⟩ between the SAD best phases and 1GYU's Fc (no bulk solvent): 0.945
    in case.json, 0.948 here (0.958 against F_model with bulk solvent); and the SAD map
    correlates with the model's map."""
    model, data, phases = gamma_paths()
    sad = map_from_hendrickson_lattman(phases, f_obs=data)
    assert sad.info["mean_fom"] > 0.75 and sad.d_min == pytest.approx(1.79, abs=0.01)
    mc = kickref.compute_maps(model, data, bulk_solvent=False).map_coefficients
    hl = read_hl_coefficients(phases)
    centric, phic = centric_phases(hl["hkl"], hl["spacegroup"])
    phase, fom = hl_centroid(hl["abcd"], centric, phic)
    index = {tuple(h): i for i, h in enumerate(mc.hkl.tolist())}
    rows = [(k, index[tuple(h)]) for k, h in enumerate(hl["hkl"].tolist()) if tuple(h) in index]
    assert len(rows) > 0.95 * len(hl["hkl"])
    k, j = np.array(rows).T
    cos = np.sum(fom[k] * np.cos(phase[k] - np.angle(mc.fmodel[j]))) / np.sum(fom[k])
    print("FOM-weighted <cos dphi>", cos)
    assert cos == pytest.approx(0.945, abs=0.01)
    # centric best phases are one of the two allowed phases, as the model's are
    cen = centric[k]
    assert np.all(np.abs(np.cos(np.angle(mc.fmodel[j][cen]) - phic[k][cen])) > 1 - 1e-4)
    fc = density_map_from_coefficients(sad.cell, sad.spacegroup, mc.hkl, mc.fmodel, sad.d_min,
                                       shape=sad.shape)
    cc = np.corrcoef(sad.grid.ravel(), fc.grid.ravel())[0, 1]
    print("SAD map vs model map CC (whole cell)", cc)
    assert cc > 0.7


def test_hl_map_needs_amplitudes():
    _, _, phases = gamma_paths()
    with pytest.raises(InputError, match="amplitudes"):
        map_from_hendrickson_lattman(phases)


def test_refine_map_cli_with_hl(tmp_path):
    model, data, phases = gamma_paths()
    prefix = tmp_path / "hl"
    rc = main(["refine", str(model), str(data), "--map-hl", f"{phases}:HLA,HLB,HLC,HLD", "--steps", "3",
               "--hydrogens", "keep", "-o", str(prefix), "-q"])
    assert rc == 0
    assert (tmp_path / "hl.pdb").exists()
