"""Reciprocal-space phase combination (density combination, ``combination='phase'``): the HL
algebra (model σA HL, addition, moving HL between symmetry equivalents) and a short run on gamma's
Xe-SAD phases with the partial model of benchmarks/gamma_partial.py."""
import gemmi
import numpy as np
import pytest

from conftest import DATA, case_paths
import kickref
from kickref.cli import main
from kickref.xtal import sigmaa as _sigmaa
from kickref.xtal.phase_probability import (_phase_projections, calibrate_hl_scale, centric_phases,
                                            combine_hl, hl_centroid, hl_on_hkl, model_hl)

RNG = np.random.default_rng(7)


def random_reflections(n=400):
    """Fo, σ, complex Fm, centric flags, ε, D, S of a plausible σA model."""
    fo = RNG.gamma(2.0, 50.0, n)
    fm = fo * RNG.uniform(0.5, 1.5, n) * np.exp(1j * RNG.uniform(-np.pi, np.pi, n))
    centric = RNG.random(n) < 0.2
    fm[centric] = np.abs(fm[centric]) * np.where(RNG.random(int(centric.sum())) < 0.5, 1, -1)
    return fo, fo * 0.05, fm, centric, np.ones(n), np.full(n, 0.7), np.full(n, 2000.0)


def exp_hl(n, centric):
    abcd = RNG.normal(0, 2.0, (n, 4))
    abcd[:, 2:] *= 0.3
    return abcd


def test_zero_model_hl_gives_experimental_phases():
    fo, sig, fm, centric, eps, D, S = random_reflections()
    phic = np.where(centric, 0.0, 0.0)
    hl_e = exp_hl(len(fo), centric)
    p0, m0 = hl_centroid(hl_e, centric, phic)
    p1, m1 = hl_centroid(combine_hl(hl_e, np.zeros_like(hl_e)), centric, phic)
    np.testing.assert_allclose(m1, m0, atol=1e-12)
    np.testing.assert_allclose(np.angle(np.exp(1j * (p1 - p0))), 0, atol=1e-12)


def test_zero_experimental_hl_gives_sigmaa_model_phases_and_fom():
    fo, sig, fm, centric, eps, D, S = random_reflections()
    phic = np.zeros(len(fo))
    hl_m = model_hl(fo, sig, fm, centric, eps, D, S)
    assert np.all(hl_m[:, 2:] == 0)
    p, m = hl_centroid(combine_hl(np.full_like(hl_m, np.nan), hl_m), centric, phic)
    expect = _sigmaa.figure_of_merit(fo, sig, np.abs(fm), centric, eps, D, S)   # I1(X)/I0(X), tanh
    np.testing.assert_allclose(m, expect, rtol=1e-9, atol=1e-12)
    ok = m > 1e-6
    np.testing.assert_allclose(np.angle(np.exp(1j * (p - np.angle(fm))))[ok], 0, atol=1e-9)


def test_two_agreeing_estimates_raise_the_fom():
    """Independent estimates whose phases differ by < 90° give a sharper combined probability."""
    n = 300
    x1, x2 = RNG.uniform(0.2, 5, n), RNG.uniform(0.2, 5, n)
    a = RNG.uniform(-np.pi, np.pi, n)
    b = a + RNG.uniform(-0.45 * np.pi, 0.45 * np.pi, n)
    h1 = np.column_stack([x1 * np.cos(a), x1 * np.sin(a), np.zeros(n), np.zeros(n)])
    h2 = np.column_stack([x2 * np.cos(b), x2 * np.sin(b), np.zeros(n), np.zeros(n)])
    _, m1 = hl_centroid(h1)
    _, m2 = hl_centroid(h2)
    _, m12 = hl_centroid(combine_hl(h1, h2))
    assert np.all(m12 > np.maximum(m1, m2))


def test_hl_moved_to_symmetry_equivalents_follow_the_phases():
    """HL built from a structure's phases at ASU reflections, moved to random symmetry/Friedel
    equivalents, have their centroid at the structure's phases there (C, D rotate by 2δ)."""
    st = gemmi.read_structure(str(DATA / "gamma" / "1gyu.pdb")) if (DATA / "gamma").is_dir() \
        else pytest.skip("no gamma case")
    st.setup_entities()
    sg = gemmi.SpaceGroup(st.spacegroup_hm)
    hkl = np.asarray(gemmi.make_miller_array(st.cell, sg, 4.0), dtype=np.int64)[::3]
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    f = np.array([calc.calculate_sf_from_model(st[0], h.tolist()) for h in hkl])
    ph = np.angle(f)
    centric, phic = centric_phases(hkl, sg)
    hl = np.column_stack([3 * np.cos(ph), 3 * np.sin(ph), 0.8 * np.cos(2 * ph), 0.8 * np.sin(2 * ph)])
    ops = list(sg.operations())
    equiv = []
    for h in hkl:
        op = ops[RNG.integers(len(ops))]
        r = np.asarray(op.rot) // gemmi.Op.DEN
        equiv.append((h @ r) * (1 if RNG.random() < 0.5 else -1))
    equiv = np.array(equiv)
    moved = hl_on_hkl(hkl, hl, equiv, sg)
    assert np.isfinite(moved).all()
    f_eq = np.array([calc.calculate_sf_from_model(st[0], h.tolist()) for h in equiv])
    c2, pc2 = centric_phases(equiv, sg)
    p, m = hl_centroid(moved, c2, pc2)
    big = np.abs(f_eq) > 1e-3 * np.abs(f_eq).max()
    np.testing.assert_allclose(np.angle(np.exp(1j * (p - np.angle(f_eq))))[big], 0, atol=1e-6)
    _, m0 = hl_centroid(hl, centric, phic)
    np.testing.assert_allclose(m, m0, atol=1e-9)


def _draw_phases(rng, abcd, centric, phic, n_steps=720):
    """One phase per row drawn from the HL distribution (acentric: inverse CDF on a fine grid;
    centric: one of the two allowed phases)."""
    e = _phase_projections(abcd, centric, phic, n_steps)
    p = np.exp(e - e.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    j = np.minimum((np.cumsum(p, axis=1) < rng.random(len(abcd))[:, None]).sum(axis=1), n_steps - 1)
    phi = 2 * np.pi * j / n_steps + rng.uniform(0, 2 * np.pi / n_steps, len(abcd))
    return np.where(centric, phic + np.pi * j, phi)


def synthetic_calibration_case(n=6000, seed=11):
    """Calibrated experimental HL (A, B, C, D random), true phases drawn from them, and model phases
    drawn around the true ones with the σA (von Mises) error of a known X: hl_model = X e^{iφ_m}."""
    rng = np.random.default_rng(seed)
    centric = rng.random(n) < 0.15
    phic = np.where(centric, rng.choice([0.0, np.pi / 2], n), 0.0)
    hl_true = rng.normal(0, 1, (n, 4)) * np.array([3.0, 3.0, 1.0, 1.0])
    phi_true = _draw_phases(rng, hl_true, centric, phic)
    x = rng.uniform(0.3, 4.0, n)
    around = np.column_stack([x * np.cos(phi_true), x * np.sin(phi_true), 0 * x, 0 * x])
    phi_m = _draw_phases(rng, around, centric, phic)
    hl_model = np.column_stack([x * np.cos(phi_m), x * np.sin(phi_m), 0 * x, 0 * x])
    return hl_true, hl_model, centric, phic, np.arange(n) % 4


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_calibration_recovers_a_known_confidence_factor(factor):
    """HL written with κ·factor (under-confident for 0.5, over-confident for 2): the calibration
    finds k ≈ 1/factor in every bin (within 20 %)."""
    hl_true, hl_model, centric, phic, bins = synthetic_calibration_case()
    res = calibrate_hl_scale(hl_true * factor, hl_model, centric, phic, bins)
    print(factor, res["k_bin"], res["k_raw"])
    np.testing.assert_allclose(res["k_bin"] * factor, 1.0, rtol=0.2)
    np.testing.assert_allclose(res["k_raw"] * factor, 1.0, rtol=0.2)
    assert np.all(res["gain"] > 5)                 # the likelihood clearly prefers the factor


def test_calibration_leaves_calibrated_hl_alone():
    hl_true, hl_model, centric, phic, bins = synthetic_calibration_case(seed=12)
    res = calibrate_hl_scale(hl_true, hl_model, centric, phic, bins)
    print(res["k_bin"], res["gain"])
    np.testing.assert_allclose(res["k_bin"], 1.0, rtol=0.15)
    assert np.all(res["gain"] < 3)                 # no significant gain over k = 1


def test_calibration_without_model_information_is_neutral():
    """Zero model HL (test set) or a bin without reflections: k = 1."""
    hl_true, hl_model, centric, phic, bins = synthetic_calibration_case(n=400)
    res = calibrate_hl_scale(hl_true * 0.5, np.zeros_like(hl_model), centric, phic, bins)
    np.testing.assert_allclose(res["k_bin"], 1.0)


def gamma_partial_start(tmp_path):
    """The benchmark's start: 1GYU without A775–A822 (not shaken, for speed of set-up)."""
    if not (DATA / "gamma").is_dir():
        pytest.skip("no gamma case")
    model, data, info = case_paths("gamma")
    st = gemmi.read_structure(str(model))
    st.setup_entities()
    for ch in st[0]:
        for i in range(len(ch) - 1, -1, -1):
            if 775 <= ch[i].seqid.num <= 822:
                del ch[i]
    path = tmp_path / "partial.pdb"
    st.write_pdb(str(path))
    return path, data, DATA / "gamma" / info["phases_file"]


def test_phase_combination_run_on_gamma(tmp_path):
    start, data, phases = gamma_partial_start(tmp_path)
    res = kickref.density_combination(str(start), data=str(data), hl=(str(phases), ("HLA", "HLB", "HLC", "HLD")),
                                      steps=4, recombine_every=2, combination="phase")
    first, last = res.history[0], res.history[-1]
    print(first, last)
    assert first["n_hl_matched"] > 10000
    # the partial model's phases add information: combined FOM above the experimental one
    assert first["mean_fom_combined"] > first["mean_fom_experimental"] > 0.7
    assert 0 < first["mean_fom_model"] < 1
    # the SAD HL are under-confident for these data: calibrated up (k per bin in [0.25, 4])
    assert len(first["hl_scale_bins"]) == len(first["hl_scale_d_min"]) > 1
    assert first["hl_scale_mean"] > 1.2
    assert first["mean_fom_experimental_calibrated"] > first["mean_fom_experimental"]
    assert res.combined_map.grid.shape == res.fo_map.grid.shape
    assert np.isfinite(res.model.xyz).all()
    # the last combination is returned: the combined HL are the sum of experimental and model HL,
    # and φ_comb, FOM are their centroid
    p = res.phases
    np.testing.assert_allclose(p["hl_combined"], np.nan_to_num(p["hl_experimental"]) + p["hl_model"])
    phi, m = hl_centroid(p["hl_combined"], *centric_phases(res.map_coefficients.hkl, res.map_coefficients.spacegroup))
    np.testing.assert_allclose(m, p["fom"], atol=1e-9)
    assert abs(m.mean() - last["mean_fom_combined"]) < 1e-9
    assert not np.any(p["hl_model"][~p["model_used"]])          # no model phases on the test set
    assert np.all(res.map_coefficients.delfwt[~p["model_used"]] == 0)


def test_phase_combination_cli(tmp_path, capsys):
    start, data, phases = gamma_partial_start(tmp_path)
    prefix = tmp_path / "pc"
    rc = main(["refine", str(start), str(data), "--map-hl", f"{phases}:HLA,HLB,HLC,HLD", "--dens-comb",
               "--combination", "phase", "--steps", "2", "--recombine-every", "2", "--hydrogens", "keep",
               "-o", str(prefix), "-q"])
    assert rc == 0 and (tmp_path / "pc.pdb").exists() and (tmp_path / "pc_combined.ccp4").exists()
    # the combined phases as map coefficients: FWT/PHWT the combined map, PHCOMB and the HL
    mtz = gemmi.read_mtz_file(str(tmp_path / "pc.mtz"))
    labels = [c.label for c in mtz.columns]
    for lab in ("FP", "FWT", "PHWT", "DELFWT", "FOM", "PHCOMB", "HLACOMB", "HLBCOMB", "HLCCOMB", "HLDCOMB"):
        assert lab in labels
    fom = mtz.column_with_label("FOM").array
    fom = fom[np.isfinite(fom)]
    assert 0.7 < fom.mean() < 1.0 and fom.max() <= 1.0
    # PHWT is the centroid of the written combined HL (PHCOMB), FWT = FOM·FP
    ph = mtz.column_with_label("PHWT").array
    pc = mtz.column_with_label("PHCOMB").array
    fwt, fp = mtz.column_with_label("FWT").array, mtz.column_with_label("FP").array
    big = fwt > 1e-3 * np.nanmax(fwt)
    dphi = np.degrees(np.angle(np.exp(1j * np.radians(ph[big] - pc[big]))))
    assert np.abs(dphi).max() < 0.01
    np.testing.assert_allclose(fwt, mtz.column_with_label("FOM").array * fp, rtol=1e-4, atol=1e-3)


def test_phase_combination_without_calibration_uses_the_file_hl(tmp_path):
    start, data, phases = gamma_partial_start(tmp_path)
    res = kickref.density_combination(str(start), data=str(data), hl=(str(phases), ("HLA", "HLB", "HLC", "HLD")),
                                      steps=0, recombine_every=2, combination="phase", calibrate_hl=False)
    assert "hl_scale_bins" not in res.history[0]


def test_combination_choice_is_checked(tmp_path, capsys):
    start, data, phases = gamma_partial_start(tmp_path)
    rc = main(["refine", str(start), str(data), "--map-hl", f"{phases}:HLA,HLB,HLC,HLD", "--dens-comb",
               "--combination", "bogus", "-o", str(tmp_path / "x"), "-q"])
    assert rc != 0 and "invalid choice" in capsys.readouterr().err
    rc = main(["refine", str(start), str(data), "--combination", "phase", "-o", str(tmp_path / "y"), "-q"])
    assert rc != 0
    assert "--combination phase needs" in capsys.readouterr().err
