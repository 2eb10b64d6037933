"""Map coefficients: columns and types Coot expects, σA weighting, missing reflections, CCP4 maps."""
import gemmi
import numpy as np
import pytest

from conftest import case_paths
from kickref.cli import main
import kickref


@pytest.fixture(scope="module")
def maps_1cbs(tmp_path_factory):
    model, data, _ = case_paths("1cbs")
    d = tmp_path_factory.mktemp("maps")
    out = d / "maps.mtz"
    rc = main(["maps", str(model), str(data), "-o", str(out), "--ccp4", str(d / "m")])
    assert rc == 0
    return out, d, model, data


def test_mtz_columns_and_types(maps_1cbs):
    out, *_ = maps_1cbs
    mtz = gemmi.read_mtz_file(str(out))
    types = {c.label: c.type for c in mtz.columns}
    for label, typ in [("FWT", "F"), ("PHWT", "P"), ("DELFWT", "F"), ("PHDELWT", "P"),
                       ("FC_ALL", "F"), ("PHIC_ALL", "P"), ("FOM", "W"), ("FP", "F"), ("SIGFP", "Q"),
                       ("FreeR_flag", "I")]:
        assert types[label] == typ
    assert mtz.spacegroup.hm == "P 21 21 21"


def test_map_agrees_with_deposited_map_coefficients(maps_1cbs):
    """The 1cbs MTZ carries PDB-REDO-style FWT/DELFWT of the same model: the maps must look alike."""
    out, _, _, data = maps_1cbs
    ours = gemmi.read_mtz_file(str(out))
    ref = gemmi.read_mtz_file(str(data))
    size = [96, 96, 160]
    for f, p, min_cc in (("FWT", "PHWT", 0.9), ("DELFWT", "PHDELWT", 0.85)):
        a = np.array(ours.transform_f_phi_to_map(f, p, exact_size=size))
        b = np.array(ref.transform_f_phi_to_map(f, p, exact_size=size))
        cc = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        print(f, "map CC", cc)
        assert cc > min_cc


def test_missing_reflections_filled_and_fom_range():
    model, data, _ = case_paths("1cbs")
    mc = kickref.compute_maps(model, data).map_coefficients
    assert mc.info["sigmaa_from"] == "test"
    assert mc.info["n_missing_filled"] > 0
    miss = ~mc.observed
    # missing Fo: FWT = D·Fc (phase of Fc), DELFWT = 0, FOM = 0
    assert np.all(mc.delfwt[miss] == 0)
    assert np.allclose(np.angle(mc.fwt[miss] * np.conj(mc.fmodel[miss])), 0, atol=1e-6)
    assert np.all(mc.fom[miss] == 0)
    assert np.all((mc.fom >= 0) & (mc.fom <= 1))
    obs = mc.observed & ~mc.free
    assert 0.6 < np.mean(mc.fom[obs]) < 0.99
    assert 0.7 < np.median(mc.info["D_bin"]) < 1.2


def test_no_test_set_warns():
    model, data, _ = case_paths("6mw0")
    res = kickref.compute_maps(model, data)
    assert res.map_coefficients.info["sigmaa_from"] == "all"
    assert any("all reflections" in w for w in res.statistics.warnings)


def test_ccp4_maps_cover_model(maps_1cbs):
    _, d, model, _ = maps_1cbs
    st = kickref.read_model(model).structure
    for name in ("m_2fofc.ccp4", "m_fofc.ccp4"):
        m = gemmi.read_ccp4_map(str(d / name))
        box = m.get_extent()
        fbox = st.calculate_fractional_box(margin=0.0)
        for k in range(3):
            assert box.minimum[k] <= fbox.minimum[k] + 1e-6
            assert box.maximum[k] >= fbox.maximum[k] - 1e-6
    # the 2mFo-DFc map is high at the atoms
    m = gemmi.read_ccp4_map(str(d / "m_2fofc.ccp4"), setup=True)
    arr = np.array(m.grid, copy=False)
    at = np.mean([m.grid.interpolate_value(a.pos) for a in st[0][0][5]])
    assert at > arr.mean() + 2 * arr.std()
