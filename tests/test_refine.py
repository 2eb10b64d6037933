"""Refinement: parameters and constraints, weight adjustment, selection, occupancies, riding H,
interruption by SIGINT, and a short real refinement whose R-free drops from a shaken start."""
import json
import os
import signal
import subprocess
import sys
import time

import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, ROOT, case_paths
import kickref
from kickref.core.state import AtomGradient, AtomState
from kickref.refinement.parameters import Parameters, find_occupancy_groups
from kickref.refinement.protocol import RefineOptions, Refinement, select_atoms
from kickref.restraints import build_restraints


def shaken_copy(model, rms, seed):
    m = model.copy()
    rng = np.random.default_rng(seed)
    heavy = ~m.is_hydrogen
    m.xyz[heavy] += rng.normal(0, rms / np.sqrt(3), size=(heavy.sum(), 3))
    return m


def test_lbfgs_with_bounds():
    from kickref.core.lbfgs import lbfgs
    A = np.array([1.0, 10.0, 100.0])
    fun = lambda x: (float(0.5 * np.sum(A * (x - 2) ** 2)), A * (x - 2))
    r = lbfgs(fun, np.zeros(3), 100, lower=np.array([-1, -1, -1.0]), upper=np.array([3, 1.5, 3.0]))
    assert r.converged
    assert np.allclose(r.x, [2, 1.5, 2], atol=1e-5)


def test_parameters_round_trip_and_chain_rule():
    model, data, _ = case_paths("4hg7")
    m = kickref.read_model(model)
    st = AtomState.from_model(m)
    movable = np.ones(m.n_atoms, bool)
    groups = find_occupancy_groups(m, movable)
    assert groups.n > 0
    for kind in ("xyz", "adp", "occ"):
        p = Parameters(kind, st, movable, occupancy_groups=groups)
        x = p.get(st)
        s2 = p.set(x, st.copy())
        assert np.allclose(p.get(s2), x)
    # occupancy: sums of altloc conformers are kept whatever the parameters
    p = Parameters("occ", st, movable, occupancy_groups=groups)
    s2 = p.set(np.clip(p.get(st) + 0.1, 0, 1), st.copy())
    for atoms, params, total in groups.dependents:
        assert s2.occ[atoms[0]] + sum(s2.occ[groups.members[k][0]] for k in params) == pytest.approx(total)
    # chain rule of the occupancy parameters: linear target Σ c_i occ_i
    c = np.random.default_rng(0).normal(size=m.n_atoms)
    g = AtomGradient(m.n_atoms)
    g.occ[:] = c
    x = p.get(st)
    an = p.gradient(g, st)
    for k in range(min(3, len(x))):
        xp, xm = x.copy(), x.copy()
        xp[k] += 1e-6
        xm[k] -= 1e-6
        fd = (c @ p.set(xp, st.copy()).occ - c @ p.set(xm, st.copy()).occ) / 2e-6
        assert an[k] == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.fixture(scope="module")
def cbs():
    model, data, _ = case_paths("1cbs")
    m, d = kickref.load_inputs(model, data)
    return m, d


def test_weight_adjustment_moves_toward_target(cbs):
    m, d = cbs
    r = build_restraints(m, monlib_dir=MONOMERS)
    ref = Refinement(m.copy(), d, r, RefineOptions(bond_rmsd=0.02))
    ref.weight = 10.0
    ref.adjust_weight(0.04)          # bonds too loose: less X-ray weight
    assert ref.weight < 10.0
    w = ref.weight
    ref.adjust_weight(0.005)         # bonds too tight: more X-ray weight
    assert ref.weight > w
    fixed = Refinement(m.copy(), d, r, RefineOptions(weight=5.0))
    fixed.weight = 5.0
    fixed.adjust_weight(0.04)
    assert fixed.weight == 5.0       # --weight fixes it


def test_bond_target_by_resolution(cbs):
    from kickref.refinement.weighting import (BOND_RMSD_ATOMIC, BOND_RMSD_REFINE,
                                              bond_rmsd_for_resolution)
    assert bond_rmsd_for_resolution(2.5) == bond_rmsd_for_resolution(1.2) == BOND_RMSD_REFINE == 0.008
    assert bond_rmsd_for_resolution(0.9) == bond_rmsd_for_resolution(0.6) == BOND_RMSD_ATOMIC == 0.02
    assert bond_rmsd_for_resolution(1.05) == pytest.approx(0.014)
    d = np.linspace(0.5, 3.0, 26)
    assert np.all(np.diff([bond_rmsd_for_resolution(x) for x in d]) <= 0)   # looser at higher resolution
    m, data = cbs                                            # 1cbs: 1.8 Å
    r = build_restraints(m, monlib_dir=MONOMERS)
    lines = []
    assert Refinement(m.copy(), data, r, RefineOptions(), log=lines.append).options.bond_rmsd == 0.008
    assert not any("bond RMSD target" in s for s in lines)
    assert Refinement(m.copy(), data, r, RefineOptions(bond_rmsd=0.015)).options.bond_rmsd == 0.015
    model, hkl, _ = case_paths("6mw0")                      # 0.78 Å: the atomic-resolution target
    m6, d6 = kickref.load_inputs(model, hkl)
    lines = []
    ref = Refinement(m6, d6, build_restraints(m6, monlib_dir=MONOMERS), RefineOptions(), log=lines.append)
    assert ref.options.bond_rmsd == BOND_RMSD_ATOMIC
    assert any("bond RMSD target 0.0200" in s for s in lines)


def test_auto_strategy_alternates_only_far_from_the_data(cbs):
    from kickref.refinement.protocol import CycleStats
    m, d = cbs
    r = build_restraints(m, monlib_dir=MONOMERS)
    ref = Refinement(m.copy(), d, r, RefineOptions())
    assert ref.options.strategy == "auto"
    assert ref.cycle_strategy() == "combined"            # nothing recorded yet

    def at(r_work):
        ref.cycles = [CycleStats(0, r_work, None, 0.0, "-LL", 0.0, 0.0, 1.0, 0.0, 0)]
        return ref.cycle_strategy()
    assert at(0.36) == "alternate"                       # far: coordinates, then ADPs
    assert at(0.19) == "combined"
    ref.options.far_r_work = 0.15
    assert at(0.19) == "alternate"
    assert ref.cycle_strategy("combined") == "combined"  # an explicit strategy wins
    with pytest.raises(ValueError):
        ref.cycle_strategy("sideways")


def test_overall_b_moves_from_scale_to_atoms_without_changing_fmodel(cbs):
    m, d = cbs
    r = build_restraints(m, monlib_dir=MONOMERS)
    ref = Refinement(m.copy(), d, r, RefineOptions())
    ref.rephase()
    fm = ref.fmodel
    fm.scale.b_aniso[:3] += 4.0                      # an overall B of 4 Å² held by the scale
    fm.scale.b_aniso[3] += 0.5                       # (and an anisotropic part, which stays)
    before = fm.f_model.copy()
    b_atoms = ref.state.b_iso.copy()
    bsol = fm.scale.b_sol
    aniso_before = fm.scale.b_aniso.copy()
    moved = ref.overall_b_to_atoms()
    heavy = ~m.is_hydrogen
    assert moved > 3.9
    assert fm.scale.b_iso_overall == pytest.approx(aniso_before[:3].mean() - moved)
    assert fm.scale.b_aniso[3] == pytest.approx(aniso_before[3])
    assert fm.scale.b_sol == pytest.approx(bsol + moved)
    assert np.allclose(ref.state.b_iso[heavy], b_atoms[heavy] + moved)
    rel = np.linalg.norm(fm.f_model - before) / np.linalg.norm(before)
    assert rel < 2e-4                                # F_model unchanged (float32 FFT grids)
    fixed = Refinement(m.copy(), d, r, RefineOptions(fix_b=True))
    fixed.rephase()
    fixed.fmodel.scale.b_aniso[:3] += 4.0
    assert fixed.overall_b_to_atoms() == 0.0         # fixed ADPs: left in the scale


def test_selection_minimize_moves_only_selected(cbs):
    m, d = cbs
    mask = select_atoms(m, "A/10-20")
    assert 50 < mask.sum() < 150
    start = shaken_copy(m, 0.3, 5)
    res = kickref.refine(start.copy(), d, monlib=MONOMERS, selection="A/10-20", cycles=1, xyz_steps=8,
                         fix_b=True, hydrogens="keep")
    moved = np.linalg.norm(res.model.xyz - start.xyz, axis=1)
    assert np.all(moved[~mask] == 0)
    assert np.median(moved[mask]) > 0.01


def test_short_refinement_from_shaken_start_lowers_r_free(cbs):
    m, d = cbs
    start = shaken_copy(m, 0.4, 11)
    r0 = kickref.rfactor(start, d)
    res = kickref.refine(start, d, monlib=MONOMERS, cycles=2, xyz_steps=20, hydrogens="keep")
    print(f"1cbs shaken 0.4 Å: R-free {r0.r_free:.4f} -> {res.r_free:.4f}, "
          f"R-work {r0.r_work:.4f} -> {res.r_work:.4f}")
    assert res.r_free < r0.r_free - 0.03
    assert res.r_work < r0.r_work - 0.03
    assert res.statistics["rmsd_bond"] < 0.03
    # moved toward the deposited model
    rms0 = np.sqrt(np.mean(np.sum((start.xyz - m.xyz) ** 2, axis=1)))
    rms1 = np.sqrt(np.mean(np.sum((res.model.xyz - m.xyz) ** 2, axis=1)))
    assert rms1 < 0.7 * rms0
    assert len(res.cycles) >= 2 and res.cycles[0].cycle == 0


def test_riding_hydrogens_stay_on_parents():
    model, data, _ = case_paths("3zt9")
    m, d = kickref.load_inputs(model, data)
    res = kickref.refine(m, d, monlib=MONOMERS, cycles=1, xyz_steps=5, fix_b=True, hydrogens="keep")
    # hydrogens end on ideal positions for the refined heavy atoms (frames re-derived each cycle)
    r = build_restraints(res.model, monlib_dir=MONOMERS)
    h = np.flatnonzero(r.hydrogen_parents >= 0)
    assert np.linalg.norm(res.model.xyz[~m.is_hydrogen] - m.xyz[~m.is_hydrogen], axis=1).max() > 0.01
    d_new = np.linalg.norm(res.model.xyz[h] - res.model.xyz[r.hydrogen_parents[h]], axis=1)
    assert np.all((d_new > 0.8) & (d_new < 1.4))          # X-H 0.82 (O-H) to 1.2 (S-H) Å
    replaced = r.place_hydrogens(res.model.xyz)
    # (methyl/hydroxyl rotamers far from gemmi's choice keep their own; hence percentiles)
    dev = np.linalg.norm(replaced[h] - res.model.xyz[h], axis=1)
    assert np.percentile(dev, 90) < 0.1 and np.median(dev) < 0.05


def test_occupancy_refinement_keeps_altloc_sums():
    model, data, _ = case_paths("4hg7")
    m, d = kickref.load_inputs(model, data)
    groups = find_occupancy_groups(m, np.ones(m.n_atoms, bool))
    before = [(atoms, params, total) for atoms, params, total in groups.dependents]
    res = kickref.refine(m, d, monlib=MONOMERS, cycles=1, xyz_steps=3, fix_b=True, fix_xyz=True,
                         hydrogens="keep")
    occ = res.model.occ
    changed = False
    for k, (atoms, params, total) in enumerate(before):
        s = occ[atoms[0]] + sum(occ[groups.members[p][0]] for p in params)
        assert s == pytest.approx(total, abs=1e-6)
        changed |= abs(occ[atoms[0]] - m.occ[atoms[0]]) > 1e-4
    assert changed
    assert np.all((occ >= 0) & (occ <= 1))


def test_sigint_writes_valid_outputs(tmp_path):
    model, data, _ = case_paths("1cbs")
    prefix = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "kickref", "refine", str(model), str(data),
                             "--monlib", str(MONOMERS), "-o", str(prefix), "--cycles", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    out = ""
    t0 = time.time()
    while time.time() - t0 < 120:                      # wait until the first cycle is logged
        line = proc.stdout.readline()
        out += line
        if line.strip().startswith("1 ") or line.strip().startswith("1  "):
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    out += rest
    assert proc.returncode == 130, out
    assert "INTERRUPTED" in out
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["interrupted"] is True
    assert 1 <= len(summary["cycles"]) < 50
    st = gemmi.read_structure(str(tmp_path / "run.pdb"))
    heavy = sum(1 for ch in st[0] for r in ch for a in r if not a.is_hydrogen())
    assert heavy == kickref.read_model(model).n_atoms     # riding hydrogens are added by default
    assert gemmi.read_structure(str(tmp_path / "run.cif"))[0].count_atom_sites() == st[0].count_atom_sites()
    assert gemmi.read_mtz_file(str(tmp_path / "run.mtz")).column_with_label("FWT") is not None


def test_cli_overall_b_option_reaches_the_refinement(tmp_path):
    from kickref.cli import main
    model, data, _ = case_paths("5e5z")
    runs = {}
    for choice in ("atoms", "scale"):
        prefix = tmp_path / choice
        rc = main(["refine", str(model), str(data), "--monlib", str(MONOMERS), "-o", str(prefix),
                   "--cycles", "1", "--overall-b", choice, "-q"])
        assert rc in (0, None)
        runs[choice] = json.loads((tmp_path / f"{choice}.json").read_text())
    assert runs["atoms"]["options"]["overall_b_to_atoms"] is True
    assert runs["scale"]["options"]["overall_b_to_atoms"] is False
    # the move changes the refined B values (5e5z: the scale holds a non-zero isotropic B)
    assert runs["atoms"]["cycles"][-1]["mean_b"] != pytest.approx(runs["scale"]["cycles"][-1]["mean_b"], abs=1e-3)
