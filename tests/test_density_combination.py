"""Partial-model refinement by density combination (MAIN dens_comb): masks, the combined map,
and a refinement of a shaken partial model with and without Fobs."""
import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, case_paths
import kickref
from kickref.refinement.density_combination import DensityCombination, run_density_combination, sphere_mask
from kickref.core.state import AtomState
from kickref.restraints import build_restraints
from kickref.io.maps import load_density_map
from kickref.xtal.density_map import density_map_from_coefficients


def test_sphere_mask_with_symmetry_matches_brute_force():
    cell = gemmi.UnitCell(20, 24, 30, 90, 100, 90)
    sg = gemmi.SpaceGroup("C 1 2 1")
    xyz = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 25.0]])
    shape = (20, 24, 30)
    mask = sphere_mask(shape, cell, sg, xyz, 3.0)
    # brute force: minimum-image distance of every grid point to every symmetry mate
    ops = list(sg.operations())
    frac = np.array(cell.frac.mat.tolist())
    orth = np.array(cell.orth.mat.tolist())
    g = np.stack(np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    best = np.full(len(g), np.inf)
    for x in xyz:
        f = frac @ x
        for op in ops:
            d = g - np.array(op.apply_to_xyz(f.tolist()))
            d -= np.round(d)
            for s in np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1])).T.reshape(-1, 3):
                best = np.minimum(best, np.sum(((d + s) @ orth.T) ** 2, axis=1))
    dist = np.sqrt(best)
    clear = np.abs(dist - 3.0) > 1e-6             # points exactly on a sphere may go either way
    assert mask.sum() > 800
    assert np.array_equal(mask.ravel()[clear], dist[clear] < 3.0)


@pytest.fixture(scope="module")
def cbs_setup():
    model, data, _ = case_paths("1cbs")
    m, d = kickref.load_inputs(model, data)
    mc = kickref.compute_maps(m, d).map_coefficients
    ext = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    restraints = build_restraints(m, monlib_dir=MONOMERS)
    part = (m.residue_index < 70) & ~m.is_water
    return m, d, ext, restraints, part


def test_combined_map_regions(cbs_setup):
    m, d, ext, _, part = cbs_setup
    dc = DensityCombination(m, ext, d, part=part, rad_mask=4.5, rad_comb=2.8, weight_fc=1.1)
    s = AtomState.from_model(m)
    rho = dc.combine(s)
    env, comb = dc.masks(s)
    model_map = dc.model_map(s)
    k = dc.stats["k_model_map"]
    assert k > 0 and dc.stats["cc_model_map"] > 0.8          # the deposited model fits its map
    assert np.allclose(rho[comb], 1.1 * k * model_map[comb])
    assert np.allclose(rho[env & ~comb], dc.ext[env & ~comb])
    assert np.ptp(rho[~env]) == 0 and rho[~env][0] == pytest.approx(dc.ext[~env].mean())
    # the envelope covers the refined part only (the default): about 70 of 137 residues
    assert 0.05 < comb.mean() < env.mean() < 0.6
    st = dc.update(s)
    assert 0.1 < st["r_combined"] < 0.4


def test_partial_model_refinement(cbs_setup, tmp_path):
    """Residues 1-69 shaken by 0.4 Å come back toward the deposited model; the maps are written."""
    m, d, ext, restraints, part = cbs_setup
    rng = np.random.default_rng(3)
    start = m.copy()
    start.xyz[part] += rng.normal(0, 0.4 / np.sqrt(3), size=(part.sum(), 3))
    rmsd = lambda x: float(np.sqrt(np.mean(np.sum((x - m.xyz)[part] ** 2, axis=1))))
    r0 = rmsd(start.xyz)
    out = tmp_path / "combined.ccp4"
    fo = tmp_path / "map_fo.ccp4"
    work = start.copy()
    res = run_density_combination(work, ext, restraints, data=d, part=part, envelope=~m.is_water,
                                  steps=30, recombine_every=15, output_map=out, output_fo_map=fo)
    r1 = rmsd(work.xyz)
    h = res.history
    print(f"with Fobs: RMSD {r0:.3f} -> {r1:.3f} Å, R(comb) {h[0]['r_combined']:.4f} -> {h[-1]['r_combined']:.4f}")
    assert r1 < 0.5 * r0
    assert h[-1]["r_combined"] < h[0]["r_combined"] - 0.03
    assert np.array_equal(work.xyz[~part], start.xyz[~part])           # only the part moves
    assert out.exists() and fo.exists()
    back = load_density_map(out)
    assert back.grid.std() > 0 and np.isfinite(back.grid).all()
    # without Fobs: the external map's own amplitudes
    work = start.copy()
    res = run_density_combination(work, ext, restraints, data=None, part=part, steps=15, recombine_every=15)
    assert res.history[0]["amplitudes_from"] == "external map"
    r2 = rmsd(work.xyz)
    print(f"without Fobs: RMSD {r0:.3f} -> {r2:.3f} Å")
    assert r2 < 0.75 * r0
