"""Density (real-space) and difference-map targets: map synthesis and resampling, B-spline
interpolation, finite-difference gradients, and real-space refinement of a shaken model."""
import time

import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, case_paths
import kickref
from kickref.io.maps import map_coefficients_mtz, write_map_coefficients
from kickref.refinement.real_space import refine_against_map
from kickref.core.state import AtomState
from kickref.refinement.energy import Energy
from kickref.refinement.minimize import minimize_energy
from kickref.refinement.parameters import Parameters
from kickref.restraints import build_restraints
from kickref.cli.common import parse_map_coefficients_argument
from kickref.io.maps import load_density_map, map_from_coefficients, write_ccp4_map
from kickref.targets.density import DensityTarget
from kickref.xtal.bspline import bspline_coefficients, bspline_eval
from kickref.xtal.density_map import density_map_from_coefficients
from kickref.xtal.fourier import calculator_for, coefficients_to_grid, fourier_resample, grid_to_coefficients
from kickref.core.selection import select_atoms as selection_mask
from kickref.targets.difference_map import DifferenceMapTarget
from kickref.xtal.fmodel import FModel
from kickref.xtal.structure_factors import StructureFactorCalculator


def fd_check(term, state, checks, h=1e-4, rel=2e-4, abs_tol=1e-6):
    """Compare analytic gradients with central differences; checks: [(attr, index tuple)]."""
    _, g = term.compute(state)
    for attr, ix in checks:
        sp, sm = state.copy(), state.copy()
        getattr(sp, attr)[ix] += h
        getattr(sm, attr)[ix] -= h
        fd = (term.value(sp) - term.value(sm)) / (2 * h)
        an = getattr(g, attr)[ix]
        assert an == pytest.approx(fd, rel=rel, abs=abs_tol), (attr, ix, an, fd)


@pytest.fixture(scope="module")
def cbs():
    model, data, _ = case_paths("1cbs")
    m, d = kickref.load_inputs(model, data)
    mc = kickref.compute_maps(m, d).map_coefficients
    return m, d, mc


@pytest.fixture(scope="module")
def peptide():
    model, data, _ = case_paths("5e5z")
    m, d = kickref.load_inputs(model, data)
    mc = kickref.compute_maps(m, d).map_coefficients
    return m, d, mc


# ------------------------------------------------------------------------- maps
def test_map_from_coefficients_matches_gemmi(cbs):
    m, d, mc = cbs
    mtz = map_coefficients_mtz(mc)
    ref = np.array(mtz.transform_f_phi_to_map("FWT", "PHWT", sample_rate=3), copy=True)
    mine = coefficients_to_grid(mc.cell, mc.spacegroup, mc.hkl, mc.fwt, ref.shape)
    assert np.abs(mine - ref).max() <= 1e-4 * ref.std()
    # Friedel mates and duplicates in the input are dropped, not counted twice
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, np.vstack([mc.hkl, -mc.hkl]),
                                       np.concatenate([mc.fwt, np.conj(mc.fwt)]), shape=ref.shape)
    assert np.abs(dm.grid - ref).max() <= 1e-4 * ref.std()
    # and back: the grid's coefficients are the input coefficients
    f = grid_to_coefficients(mine, mc.cell, mc.hkl)
    assert np.abs(f - mc.fwt).max() <= 1e-6 * np.abs(mc.fwt).max()


def test_fourier_resample_is_exact_for_band_limited_maps(peptide):
    m, d, mc = peptide
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    big = tuple(2 * n for n in dm.shape)
    up = fourier_resample(dm.grid, dm.cell, big)
    assert np.abs(up[::2, ::2, ::2] - dm.grid).max() <= 1e-9 * np.abs(dm.grid).max()
    down = fourier_resample(up, dm.cell, dm.shape)
    assert np.abs(down - dm.grid).max() <= 1e-9 * np.abs(dm.grid).max()
    # a resolution cut removes the high-resolution coefficients only
    cut = fourier_resample(dm.grid, dm.cell, dm.shape, d_min=3.0)
    s2 = mc.cell.calculate_1_d2_array(mc.hkl)
    f = grid_to_coefficients(cut, mc.cell, mc.hkl)
    low = s2 < 1 / 3.0 ** 2 * 0.999
    assert np.allclose(f[low], mc.fwt[low], atol=1e-6 * np.abs(mc.fwt).max())
    assert np.abs(f[s2 > 1 / 3.0 ** 2 * 1.001]).max() <= 1e-6 * np.abs(mc.fwt).max()


def test_bspline_interpolates_grid_and_gradient():
    rng = np.random.default_rng(3)
    grid = fourier_resample(rng.normal(size=(12, 10, 14)), gemmi.UnitCell(10, 11, 12, 80, 95, 100),
                            (24, 20, 28))
    coef = bspline_coefficients(grid)
    pts = np.array([[3, 4, 5], [0, 0, 0], [23, 19, 27], [10, 1, 13]], dtype=float)
    v, _ = bspline_eval(coef, pts, False)
    assert np.allclose(v, grid[tuple(pts.astype(int).T)], atol=1e-10)
    # periodic: one cell further gives the same value
    v2, _ = bspline_eval(coef, pts + np.array([24, -20, 28.0]), False)
    assert np.allclose(v2, v, atol=1e-10)
    u = rng.uniform(-5, 30, size=(20, 3))
    _, g = bspline_eval(coef, u, True)
    h = 1e-5
    for c in range(3):
        e = np.zeros(3)
        e[c] = h
        fd = (bspline_eval(coef, u + e, False)[0] - bspline_eval(coef, u - e, False)[0]) / (2 * h)
        assert np.allclose(g[:, c], fd, rtol=1e-5, atol=1e-7)


def test_ccp4_round_trip_and_boxed_map(tmp_path, peptide):
    m, d, mc = peptide
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    path = tmp_path / "map.ccp4"
    write_ccp4_map(dm, path)
    back = load_density_map(path)
    fixed = dm.resampled(back.shape, dm.d_min)
    assert np.abs(back.grid - fixed).max() <= 1e-5 * np.abs(fixed).max()
    # a map boxed around the model: uncovered points get the mean of the covered ones
    boxed = tmp_path / "boxed.ccp4"
    one_residue = m.structure.clone()
    del one_residue[0][0][1:]
    write_ccp4_map(dm, boxed, structure=one_residue, margin=0.5)
    b = load_density_map(boxed)
    assert b.info["n_points_not_covered"] > 0
    assert np.isfinite(b.grid).all()
    # the MTZ route gives the same map as the coefficients in memory
    mtz = tmp_path / "coefs.mtz"
    write_map_coefficients(mc, mtz)
    fm = map_from_coefficients(mtz, "FWT", "PHWT", m.cell, m.spacegroup)
    assert fm.shape == dm.shape
    assert np.abs(fm.grid - dm.grid).max() <= 1e-4 * np.abs(dm.grid).max()   # float32 in the MTZ


# --------------------------------------------------------------------- gradients
def test_interpolation_target_gradient(cbs):
    m, d, mc = cbs
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    s = AtomState.from_model(m)
    sel = np.zeros(m.n_atoms, bool)
    sel[:400] = True
    t = DensityTarget(dm, m, "interpolation", selection=sel)
    v, g = t.compute(s)
    assert v < 0
    assert not g.xyz[400:].any() and not g.occ[400:].any()
    fd_check(t, s, [("xyz", (i, c)) for i in (0, 7, 250) for c in range(3)] + [("occ", (i,)) for i in (0, 7)])
    # σ units: the map is normalized; deposited atoms sit on density (mean ≫ 0 σ)
    rho = t.density_at_atoms(s)
    assert np.mean(rho[~m.is_water]) > 2.0


def test_convolution_target_gradient_and_blur_invariance(peptide):
    m, d, mc = peptide
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    calc = calculator_for(dm.cell, dm.spacegroup, dm.d_min, dtype=np.float64, cutoff=1e-9)
    s = AtomState.from_model(m)
    assert s.is_aniso.sum() > 10 and (~s.is_aniso).any()
    t = DensityTarget(dm, m, "convolution", calculator=calc)
    v, _ = t.compute(s)
    ani = int(np.flatnonzero(s.is_aniso)[3])
    iso = int(np.flatnonzero(~s.is_aniso)[0])
    fd_check(t, s, [("xyz", (i, c)) for i in (ani, iso) for c in range(3)]
             + [("u_aniso", (ani, c)) for c in range(6)] + [("b_iso", (iso,)), ("occ", (ani,)), ("occ", (iso,))],
             h=1e-5)
    # the blur of the model density is undone by sharpening the map: the value does not depend on it
    t.blur = t.blur + 10.0
    v2, _ = t.compute(s)
    assert v2 == pytest.approx(v, rel=2e-3)


def test_difference_map_target_gradient_and_map(cbs):
    m, d, _ = cbs
    fm = FModel(m, d)
    fm.sf = StructureFactorCalculator(m.cell, d.spacegroup, d.hkl, d.d_min, cutoff=1e-9, dtype=np.float64)
    s = AtomState.from_model(m)
    t = DifferenceMapTarget(fm)
    t.rephase(s, full=True)
    # the map is mFo−DFc on the absolute scale, sharpened by the blur
    from kickref.xtal.maps import compute_map_coefficients
    mc = compute_map_coefficients(fm, s, fill_missing=False, sigmaa=t.sigmaa)
    ref = coefficients_to_grid(m.cell, d.spacegroup, d.hkl, mc.delfwt / fm.scale_factor, fm.sf.shape,
                               b_sharpen=t.blur)
    assert np.abs(t.map_values() - ref).max() <= 1e-9 * np.abs(ref).max()
    fd_check(t, s, [("xyz", (i, c)) for i in (0, 200) for c in range(3)]
             + [("b_iso", (200,)), ("occ", (0,))], h=1e-4, rel=1e-4, abs_tol=1e-7)
    # a selection: only those atoms feel the map
    sel = np.arange(m.n_atoms) < 300
    t2 = DifferenceMapTarget(fm, selection=sel)
    t2.update_map(s, t.sigmaa)
    _, g2 = t2.compute(s)
    assert not g2.xyz[300:].any()
    assert np.abs(g2.xyz[:300]).max() > 0


# ------------------------------------------------------------------- refinement
def shaken(model, rms, seed):
    s = AtomState.from_model(model)
    rng = np.random.default_rng(seed)
    heavy = ~model.is_hydrogen
    s.xyz[heavy] += rng.normal(0, rms / np.sqrt(3), size=(heavy.sum(), 3))
    return s


def rmsd(a, b, mask):
    return float(np.sqrt(np.mean(np.sum((a[mask] - b[mask]) ** 2, axis=1))))


def test_real_space_refinement_halves_rmsd(cbs, tmp_path):
    """A 0.5 Å-shaken 1cbs refined against the deposited model's 2mFo-DFc map (a CCP4 file: no
    Fobs involved) with geometry restraints comes back to within half its starting RMSD."""
    m, d, mc = cbs
    t0 = time.perf_counter()
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    write_ccp4_map(dm, tmp_path / "2fofc.ccp4")
    dmap = load_density_map(tmp_path / "2fofc.ccp4")
    restraints = build_restraints(m, monlib_dir=MONOMERS)
    heavy = ~m.is_hydrogen
    work = m.copy()
    work.xyz[:] = shaken(m, 0.5, seed=11).xyz
    r0 = rmsd(work.xyz, m.xyz, heavy)
    assert r0 == pytest.approx(0.5, abs=0.03)
    out = refine_against_map(work, dmap, restraints, "interpolation", steps=60)
    r1 = rmsd(work.xyz, m.xyz, heavy)
    print(f"interpolation: RMSD {r0:.3f} -> {r1:.3f} Å ({time.perf_counter() - t0:.1f} s)")
    assert r1 <= 0.5 * r0
    assert out["history"][-1]["target"] < out["history"][0]["target"]
    assert out["history"][-1]["rmsd_bond"] < 0.03
    # the convolution mode as well (fewer steps: each costs a spread and a gather)
    work.xyz[:] = shaken(m, 0.5, seed=12).xyz
    r0 = rmsd(work.xyz, m.xyz, heavy)
    refine_against_map(work, dm, restraints, "convolution", steps=30)
    r1 = rmsd(work.xyz, m.xyz, heavy)
    print(f"convolution: RMSD {r0:.3f} -> {r1:.3f} Å ({time.perf_counter() - t0:.1f} s)")
    assert r1 <= 0.5 * r0
    # a selection: only those atoms move (MAIN's MINIMIZE on the active set)
    work.xyz[:] = shaken(m, 0.5, seed=13).xyz
    before = work.xyz.copy()
    sel = m.residue_index < 20
    refine_against_map(work, dmap, restraints, selection=sel, steps=20)
    assert np.array_equal(work.xyz[~sel], before[~sel])
    assert rmsd(work.xyz, m.xyz, sel) < 0.6 * rmsd(before, m.xyz, sel)


def test_difference_map_refinement_lowers_r(cbs):
    """Minimizing against mFo−DFc, re-phased every 10 steps, pulls a 0.3 Å-shaken model back."""
    m, d, _ = cbs
    restraints = build_restraints(m, monlib_dir=MONOMERS)
    heavy = ~m.is_hydrogen
    s = shaken(m, 0.3, seed=5)
    r0 = rmsd(s.xyz, m.xyz, heavy)
    fm = FModel(m.copy(), d)
    t = DifferenceMapTarget(fm)
    t.rephase(s, full=True)
    r_start = t.stats["r_work"]
    geo = [x for x in restraints.terms() if x.kind == "geometry"]
    _, g = t.compute(s)
    w = 2 * 0.02 * 0.5 / (0.02 ** 2 * float(np.sqrt(np.mean(g.xyz[heavy] ** 2))))
    energy = Energy([t] + geo, weights={"xray": w})
    params = Parameters("xyz", s, np.ones(m.n_atoms, bool))
    for _ in range(4):
        minimize_energy(energy, params, s, 10)
        t.rephase(s)
    r1 = rmsd(s.xyz, m.xyz, heavy)
    print(f"difference map: RMSD {r0:.3f} -> {r1:.3f} Å, R-work {r_start:.4f} -> {t.stats['r_work']:.4f}")
    assert t.stats["r_work"] < r_start - 0.03
    assert r1 < 0.75 * r0


def test_selection_strings(peptide):
    m, _, mc = peptide
    mask = selection_mask(m, "//A/2-3")
    assert mask.sum() == np.isin(m.seqid, ["2", "3"]).sum() > 0
    dm = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt)
    t = DensityTarget(dm, m, selection="//A/2-3")
    _, g = t.compute(AtomState.from_model(m))
    assert (np.abs(g.xyz).sum(axis=1) > 0).sum() == mask.sum()
    with pytest.raises(kickref.InputError):
        selection_mask(m, "//Z")
    assert parse_map_coefficients_argument("dir:x/maps.mtz:FWT,PHWT") == ("dir:x/maps.mtz", "FWT", "PHWT")
    with pytest.raises(ValueError):
        parse_map_coefficients_argument("maps.mtz")
