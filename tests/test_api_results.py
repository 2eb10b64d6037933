"""One helper per concept (binning, hkl keys, σA map coefficients), the API's result objects,
and Reflections ↔ gemmi.Mtz / reciprocalspaceship conversions."""
import json

import gemmi
import numpy as np
import pytest

import kickref
from conftest import MONOMERS, case_paths
from kickref.cli import main
from kickref.core.reflections import bins_from_edges, equal_count_bins, hkl_keys
from kickref.io.reflections import (reflections_from_dataset, reflections_from_mtz, reflections_to_dataset,
                                    reflections_to_mtz)
from kickref.xtal.maps import sigmaa_map_coefficients


# ---------------------------------------------------------------------- helpers
def test_equal_count_bins_edges_and_used_subset():
    s2 = np.arange(10.0)
    bins, edges = equal_count_bins(s2, 2)
    assert edges.tolist() == [4.5]
    assert bins.tolist() == [0] * 5 + [1] * 5
    # edges from the used reflections only; every reflection still gets a bin
    used = s2 >= 6
    bins, edges = equal_count_bins(s2, 3, used=used)
    assert edges.tolist() == pytest.approx([7.0, 8.0])
    assert bins.tolist() == [0] * 7 + [1, 2, 2]          # bin = number of edges ≤ s²
    assert np.array_equal(bins_from_edges(s2, edges), bins)
    one, e1 = equal_count_bins(s2, 1)
    assert len(e1) == 0 and np.all(one == 0)
    rng = np.random.default_rng(0)
    counts = np.bincount(equal_count_bins(rng.uniform(0, 1, 1000), 10)[0])
    assert counts.min() >= 99 and counts.max() <= 101


def test_hkl_keys_are_unique_and_shape_preserving():
    r = np.arange(-5, 6)
    hkl = np.array(np.meshgrid(r, r, r, indexing="ij")).reshape(3, -1).T
    keys = hkl_keys(hkl)
    assert len(np.unique(keys)) == len(hkl)
    assert hkl_keys(np.array([[1, 2, 3]]))[0] == (1025 << 22) | (1026 << 11) | 1027
    assert hkl_keys(hkl.reshape(11, 121, 3)).shape == (11, 121)


def test_sigmaa_map_coefficients_formula():
    fo = np.array([10.0, 10.0, 10.0])
    fm = np.array([8.0, 8.0j, 8.0])                   # phases 0°, 90°, 0°
    centric = np.array([False, True, False])
    D = np.array([0.9, 0.9, 0.9])
    S, sig, eps = np.full(3, 20.0), np.zeros(3), np.ones(3)
    use = np.array([True, True, False])
    fwt, delfwt, fom = sigmaa_map_coefficients(fo, sig, fm, centric, eps, D, S, use)
    X = fo * D * 8.0 / S
    from scipy.special import i0, i1
    m_a, m_c = i1(2 * X[0]) / i0(2 * X[0]), np.tanh(X[1])
    assert fom[0] == pytest.approx(m_a) and fom[1] == pytest.approx(m_c) and fom[2] == 0
    assert fwt[0] == pytest.approx(2 * m_a * 10 - 0.9 * 8)                  # acentric 2m|Fo| − D|Fm|
    assert fwt[1] == pytest.approx(1j * m_c * 10)                           # centric m|Fo|, phase of Fm
    assert delfwt[1] == pytest.approx(1j * (m_c * 10 - 0.9 * 8))
    assert fwt[2] == pytest.approx(0.9 * 8) and delfwt[2] == 0              # not used: D·Fm, 0


# ---------------------------------------------------------------------- result objects
@pytest.fixture(scope="module")
def cbs():
    model, data, _ = case_paths("1cbs")
    return kickref.load_inputs(model, data)


def test_load_inputs_and_rfactor_result(cbs, tmp_path):
    assert isinstance(cbs, kickref.Inputs)
    m, d = cbs
    assert cbs.model is m and cbs.data is d
    res = kickref.rfactor(m, d)
    assert isinstance(res, kickref.RFactorResult)
    assert 0.1 < res.r_work < res.r_free < 0.3
    assert res.n_work + res.n_free + res.n_outliers == res.n_refl
    out = res.as_dict()
    assert out["r_work"] == res.r_work and out["scale"]["k_overall"] == res.scale["k_overall"]
    assert sum(r["n"] for r in res.shells) == res.n_refl - res.n_outliers
    js = tmp_path / "r.json"
    model, data, _ = case_paths("1cbs")
    assert main(["rfactor", str(model), str(data), "--json", str(js)]) == 0
    from_cli = json.loads(js.read_text())
    assert from_cli["r_work"] == pytest.approx(res.r_work, abs=1e-12)
    assert from_cli["r_free"] == pytest.approx(res.r_free, abs=1e-12)


def test_maps_result_written_with_fc_all(cbs, tmp_path):
    res = kickref.compute_maps(*cbs)
    assert isinstance(res, kickref.MapsResult) and res.kick is None
    mc = res.map_coefficients
    assert isinstance(mc, kickref.MapCoefficients)
    assert res.statistics.r_free == pytest.approx(kickref.rfactor(*cbs).r_free, abs=1e-12)
    out = tmp_path / "m.mtz"
    kickref.write_map_coefficients(mc, out)
    mtz = gemmi.read_mtz_file(str(out))
    labels = mtz.column_labels()
    assert "FC_ALL" in labels and "PHIC_ALL" in labels and "FC" not in labels
    arr = np.array(mtz)
    f = arr[:, labels.index("FC_ALL")]
    phi = arr[:, labels.index("PHIC_ALL")]
    assert np.allclose(f, np.abs(mc.fmodel), rtol=1e-6)
    assert np.allclose(np.exp(1j * np.radians(phi)), np.exp(1j * np.angle(mc.fmodel)), atol=1e-5)
    js = res.as_dict()
    assert js["maps"]["n_bins"] == len(js["maps"]["S_bin"]) and js["r_work"] == res.statistics.r_work


def test_public_names():
    for name in ("RefineOptions", "RefinementResult", "MapCoefficients", "write_map_coefficients",
                 "RFactorResult", "MapsResult", "RealSpaceResult", "DensityCombinationResult", "Inputs",
                 "reflections_to_mtz", "reflections_from_mtz"):
        assert getattr(kickref, name) is not None
    assert kickref.RefineOptions().cycles >= 1


def test_refine_map_result_and_cli_json(tmp_path):
    model, data, _ = case_paths("5e5z")
    maps = kickref.compute_maps(model, data)
    mtz = tmp_path / "maps.mtz"
    kickref.write_map_coefficients(maps.map_coefficients, mtz)
    start = kickref.read_model(model)
    res = kickref.refine_map(start, map_coeffs=(str(mtz), "FWT", "PHWT"), steps=4, monlib=MONOMERS)
    assert isinstance(res, kickref.RealSpaceResult) and not res.interrupted
    assert res.model is not start and res.weight > 0
    assert res.history[0]["step"] == 0 and res.history[-1]["step"] == 4
    assert res.as_dict() == {"history": res.history, "weight": res.weight, "interrupted": False}
    prefix = tmp_path / "rs"
    rc = main(["refine", str(model), "--map-coeffs", f"{mtz}:FWT,PHWT", "--steps", "4", "-o", str(prefix),
               "--monlib", str(MONOMERS), "-q"])
    assert rc == 0
    summary = json.loads((tmp_path / "rs.json").read_text())
    assert summary["mode"] == "real-space" and summary["history"][-1]["step"] == 4


# ---------------------------------------------------------------------- Reflections ↔ Mtz
def test_reflections_mtz_round_trip(cbs):
    _, d = cbs
    mtz = reflections_to_mtz(d)
    assert mtz.column_labels() == ["H", "K", "L", "FP", "SIGFP", "FREE"]
    assert [c.type for c in mtz.columns][3:] == ["F", "Q", "I"]
    free_col = np.array(mtz.column_with_label("FREE"))
    assert np.array_equal(free_col == 0, d.free)                       # CCP4: 0 = test set
    back = reflections_from_mtz(mtz)
    assert back.path is None and back.has_free
    assert np.array_equal(back.hkl, d.hkl)
    assert np.array_equal(back.f_obs, d.f_obs.astype(np.float32))
    assert np.array_equal(back.sigma, d.sigma.astype(np.float32))
    assert np.array_equal(back.free, d.free)
    assert back.cell.parameters == pytest.approx(d.cell.parameters)
    assert back.spacegroup.hm == d.spacegroup.hm


def test_reflections_mtz_round_trip_no_test_set_and_labin(cbs):
    _, d = cbs
    nofree = kickref.Reflections(d.cell, d.spacegroup, d.hkl, d.f_obs, d.sigma, np.zeros(d.n, bool),
                                 has_free=False)
    mtz = reflections_to_mtz(nofree)
    assert "FREE" not in mtz.column_labels()
    back = reflections_from_mtz(mtz, labin="FP,SIGFP", d_min=2.0)
    assert not back.has_free
    cut = d.d >= 2.0 * (1 - 1e-9)
    assert np.array_equal(back.hkl, d.hkl[cut])
    assert np.array_equal(back.f_obs, d.f_obs[cut].astype(np.float32))


def test_reflections_dataset_round_trip(cbs):
    pytest.importorskip("reciprocalspaceship")
    _, d = cbs
    ds = reflections_to_dataset(d)
    assert {"FP", "SIGFP", "FREE"} <= set(ds.columns)
    back = reflections_from_dataset(ds)
    order = np.lexsort(back.hkl.T[::-1])
    ref = np.lexsort(d.hkl.T[::-1])
    assert np.array_equal(back.hkl[order], d.hkl[ref])
    assert np.array_equal(back.f_obs[order], d.f_obs[ref].astype(np.float32))
    assert np.array_equal(back.free[order], d.free[ref])
