"""NCS averaging: labelled masks with symmetry, noise reduction, overlaps, 'keep' outside."""
import gemmi
import numpy as np
import pytest

from conftest import need_shared, two_copies
from kickref.core.model import Model
from kickref.core.state import AtomState
from kickref.refinement.ncs_averaging import average_map, ncs_mask
from kickref.xtal.density_map import DensityMap, density_map_from_coefficients
from kickref.xtal.fourier import calculator_for
from kickref.xtal.ncs import detect_ncs


def fc_map(model, d_min):
    calc = calculator_for(model.cell, model.spacegroup, d_min, dtype=np.float64)
    fc = calc.calculate(AtomState.from_model(model), model.element)
    return density_map_from_coefficients(model.cell, model.spacegroup, calc.hkl, fc, d_min)


def in_cell(model, cell, sg):
    st = model.structure.clone()
    st.cell = gemmi.UnitCell(*cell)
    st.spacegroup_hm = sg
    st.setup_cell_images()
    return Model.from_structure(st)


def test_averaging_lowers_the_error_of_independent_noise():
    need_shared()
    model, _, _ = two_copies(shift=(70.0, 0.0, 0.0))
    model = in_cell(model, (130, 90, 100, 90, 90, 90), "P 1")
    groups = detect_ncs(model)
    truth = fc_map(model, 3.0)
    m = ncs_mask(truth.shape, truth.cell, truth.spacegroup, model.xyz, groups, 2.5)
    inside = m.nearest >= 0
    rng = np.random.default_rng(0)
    noisy = truth.grid + rng.normal(0, truth.grid[inside].std(), truth.shape)   # σ_noise = signal rms
    res = average_map(DensityMap(noisy, truth.cell, truth.spacegroup, 3.0), model.xyz, groups, 2.5)
    err0 = np.sqrt(np.mean((noisy - truth.grid)[inside] ** 2))
    err1 = np.sqrt(np.mean((res.map.grid - truth.grid)[inside] ** 2))
    assert err1 < 0.8 * err0
    cc = lambda a: np.corrcoef(a[inside], truth.grid[inside])[0, 1]
    assert cc(res.map.grid) > cc(noisy) + 0.05
    assert np.array_equal(res.map.grid[~inside], noisy[~inside])          # 'keep'
    assert res.stats["overlap_fraction"] == 0.0 and 0 < res.stats["mask_fraction"] < 0.5
    # noise-free: averaging a perfectly NCS-symmetric map changes little
    clean = average_map(truth, model.xyz, groups, 2.5, mask=m)
    d = (clean.map.grid - truth.grid)[inside]
    assert np.sqrt(np.mean(d ** 2)) < 0.02 * truth.grid[inside].std()      # interpolation error
    assert clean.stats["groups"][0]["ncs_cc"][1] > 0.999
    assert res.stats["groups"][0]["ncs_cc"][1] < 0.7


def test_averaged_map_keeps_crystal_symmetry_and_reports_overlaps():
    need_shared()
    model, _, _ = two_copies(shift=(8.0, -5.0, 20.0))          # in 1cbs's P 21 21 21 cell
    groups = detect_ncs(model)
    dm = fc_map(model, 3.0)
    assert all(n % 2 == 0 for n in dm.shape)
    res = average_map(dm, model.xyz, groups, 3.0)
    avg = res.map.grid
    assert res.stats["overlap_fraction"] > 0
    R, t = np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]]), np.array([0.5, 0.0, 0.5])   # an op of P212121
    n = np.array(dm.shape)
    idx = np.stack(np.meshgrid(*[np.arange(k) for k in dm.shape], indexing="ij"), -1).reshape(-1, 3)
    img = (np.rint((idx / n) @ R.T * n + t * n).astype(int)) % n
    a = avg[tuple(idx.T)]
    b = avg[tuple(img.T)]
    frac_bad = np.mean(np.abs(a - b) > 1e-6 * np.abs(avg).max())
    assert frac_bad < 1e-3                      # ties between equidistant images only
    ex = average_map(dm, model.xyz, groups, 3.0, overlap="exclude")
    m = ncs_mask(dm.shape, dm.cell, dm.spacegroup, model.xyz, groups, 3.0)
    assert np.array_equal(ex.map.grid[m.overlap], dm.grid[m.overlap])
    with pytest.raises(ValueError):
        average_map(dm, model.xyz, groups, overlap="bad")


def test_cli_average_from_a_map(tmp_path, capsys):
    need_shared()
    from kickref.cli import main
    from kickref.io.maps import load_density_map, write_ccp4_map
    from kickref.io.models import write_model
    model, _, _ = two_copies(shift=(70.0, 0.0, 0.0))
    model = in_cell(model, (130, 90, 100, 90, 90, 90), "P 1")
    truth = fc_map(model, 3.0)
    rng = np.random.default_rng(1)
    noisy = DensityMap(truth.grid + rng.normal(0, 2 * truth.grid.std(), truth.shape), truth.cell, truth.spacegroup)
    write_model(model, tmp_path / "m.pdb")
    write_ccp4_map(noisy, tmp_path / "noisy.ccp4")
    assert main(["ncs", str(tmp_path / "m.pdb"), "--map", str(tmp_path / "noisy.ccp4"), "--average",
                 str(tmp_path / "avg"), "--mask-radius", "2.5", "--json", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "operator A -> B" in out and "wrote" in out
    avg = load_density_map(tmp_path / "avg.ccp4")
    inside = ncs_mask(avg.shape, truth.cell, truth.spacegroup, model.xyz, detect_ncs(model), 2.5).nearest >= 0
    noisy_read = load_density_map(tmp_path / "noisy.ccp4")
    assert avg.shape == truth.shape == noisy_read.shape
    err = lambda g: np.sqrt(np.mean((g - truth.grid)[inside] ** 2))
    assert err(avg.grid) < 0.8 * err(noisy_read.grid)
    assert main(["ncs", str(tmp_path / "m.pdb"), "--map", str(tmp_path / "noisy.ccp4")]) == 2


def test_cyclic_averaging_against_fobs_improves_a_noisy_map():
    need_shared()
    from kickref.refinement.ncs_averaging import cyclic_average
    from kickref.xtal.fourier import grid_to_coefficients
    model, _, _ = two_copies(shift=(70.0, 0.0, 0.0))
    model = in_cell(model, (130, 90, 100, 90, 90, 90), "P 1")
    groups = detect_ncs(model)
    calc = calculator_for(model.cell, model.spacegroup, 3.0, dtype=np.float64)
    fc = calc.calculate(AtomState.from_model(model), model.element)
    truth = density_map_from_coefficients(model.cell, model.spacegroup, calc.hkl, fc, 3.0)
    rng = np.random.default_rng(4)
    phase_error = rng.normal(0, np.radians(60), len(fc))           # poor phases, true amplitudes
    start = density_map_from_coefficients(model.cell, model.spacegroup, calc.hkl, fc * np.exp(1j * phase_error),
                                          3.0, shape=truth.shape)
    cc = lambda g: np.corrcoef(g.ravel(), truth.grid.ravel())[0, 1]           # over the cell
    one = average_map(start, model.xyz, groups, 2.5, outside="flatten")
    res = cyclic_average(start, model.xyz, groups, calc.hkl, np.abs(fc), cycles=4, mask_radius=2.5)
    r = [c["r_averaging"] for c in res.stats["cycles"]]
    assert len(r) == 4 and r[-1] < r[0]
    assert cc(res.map.grid) > cc(one.map.grid) > cc(start.grid)
    assert np.isfinite(grid_to_coefficients(res.map.grid, truth.cell, calc.hkl)).all()
