"""Kicking: schedules, coordinate and B kicks (seeded, bounded, riding H), fast cooling on a
Refinement, and maps averaged over kicked models."""

import numpy as np
import pytest

from conftest import MONOMERS, case_paths
import kickref
from kickref.core.state import AtomState
from kickref.cli.common import parse_range
from kickref.refinement.kick import (EIGHT_PI2, kick_amplitudes, kick_b, kick_coordinates, kick_map_coefficients,
                                 kick_schedule, run_kick_cooling)
from kickref.refinement.protocol import RefineOptions, Refinement
from kickref.restraints import build_restraints


def random_state(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    u = np.zeros((n, 6))
    u[:, :3] = rng.uniform(0.1, 0.5, (n, 3))
    u[:, 3:] = rng.uniform(-0.02, 0.02, (n, 3))
    return AtomState(rng.uniform(0, 50, (n, 3)), rng.uniform(2, 60, n), u, rng.random(n) < 0.3, np.ones(n))


# ---------------------------------------------------------------------- schedule
@pytest.mark.parametrize("law", ["linear", "square", "exponential"])
def test_schedule_reaches_end_and_decreases(law):
    k = kick_schedule(0.8, 0.0, 10, law)
    assert len(k) == 10
    assert k[0] == 0.8 and k[-1] == 0.0
    assert np.all(np.diff(k) < 0)
    kb = kick_schedule(5.0, 1.0, 7, law)
    assert kb[0] == 5.0 and kb[-1] == 1.0


def test_schedule_shapes():
    lin = kick_schedule(0.8, 0.0, 5, "linear")
    assert np.allclose(lin, [0.8, 0.6, 0.4, 0.2, 0.0])
    sq = kick_schedule(0.8, 0.0, 5, "square")
    assert np.allclose(sq, 0.8 * (1 - np.linspace(0, 1, 5)) ** 2)
    # exponential between positive values: geometric, constant ratio per cycle
    ex = kick_schedule(0.8, 0.05, 5, "exponential")
    ratios = ex[1:] / ex[:-1]
    assert np.allclose(ratios, ratios[0]) and ratios[0] == pytest.approx((0.05 / 0.8) ** 0.25)
    # toward 0: the shifted exponential, convex, 90 % of the range gone at half way (λ = ln 100)
    ex0 = kick_schedule(1.0, 0.0, 11, "exponential")
    assert ex0[5] == pytest.approx((0.1 - 0.01) / 0.99)
    assert np.all(np.diff(ex0, 2) > 0)
    assert np.allclose(kick_schedule(0.3, 0.3, 4, "exponential"), 0.3)
    assert kick_schedule(0.5, 0.0, 1).tolist() == [0.5]
    with pytest.raises(ValueError):
        kick_schedule(0.8, 0, 5, "cubic")
    with pytest.raises(ValueError):
        kick_schedule(0.8, 0, 0)
    assert parse_range("0.8:0") == (0.8, 0.0)
    assert parse_range("5") == (5.0, 5.0)
    with pytest.raises(ValueError):
        parse_range("a:b")


# ------------------------------------------------------------------------- kicks
def test_coordinate_kick_reproducible_and_bounded():
    s = random_state()
    a = kick_coordinates(s.copy(), 0.8, seed=1)
    b = kick_coordinates(s.copy(), 0.8, seed=1)
    c = kick_coordinates(s.copy(), 0.8, seed=2)
    assert np.array_equal(a.xyz, b.xyz)
    assert not np.allclose(a.xyz, c.xyz)
    d = a.xyz - s.xyz
    assert np.abs(d).max() <= 0.8
    rms = np.sqrt(np.mean(np.sum(d ** 2, axis=1)))
    assert rms == pytest.approx(0.8, rel=0.03)           # per-coordinate uniform ±K: RMS = K
    ball = kick_coordinates(s.copy(), 0.8, seed=1, distribution="ball").xyz - s.xyz
    norms = np.linalg.norm(ball, axis=1)
    assert norms.max() <= 0.8 + 1e-12
    assert np.sqrt(np.mean(norms ** 2)) == pytest.approx(0.8 * np.sqrt(3 / 5), rel=0.03)
    # a selection: the others stay where they are
    sel = np.zeros(s.n_atoms, bool)
    sel[::3] = True
    e = kick_coordinates(s.copy(), 0.5, sel, np.random.default_rng(4))
    assert np.array_equal(e.xyz[~sel], s.xyz[~sel])
    assert np.all(np.any(e.xyz[sel] != s.xyz[sel], axis=1))


def test_hydrogens_follow_their_parents():
    xyz = np.array([[0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [5, 5, 5], [5.9, 5, 5.3]])
    is_h = np.array([False, True, True, False, True])
    s = AtomState(xyz.copy(), np.full(5, 20.0), np.zeros((5, 6)), np.zeros(5, bool), np.ones(5))
    k = kick_coordinates(s.copy(), 0.5, seed=3, hydrogens=is_h)
    d = k.xyz - xyz
    assert np.allclose(d[1], d[0]) and np.allclose(d[2], d[0]) and np.allclose(d[4], d[3])
    assert not np.allclose(d[0], d[3])
    # a riding-H callable is used instead when given
    calls = []

    def place(x):
        calls.append(1)
        out = x.copy()
        out[is_h] = x[[0, 0, 3]] + np.array([[0, 0, 1.0]])
        return out

    k2 = kick_coordinates(s.copy(), 0.5, seed=3, hydrogens=is_h, place_hydrogens=place)
    assert calls and np.allclose(k2.xyz[4], k2.xyz[3] + [0, 0, 1.0])


def test_b_kick_bounds_and_anisotropic_scaling():
    s = random_state()
    k = kick_b(s.copy(), 5.0, seed=7)
    iso = ~s.is_aniso
    db = k.b_iso[iso] - s.b_iso[iso]
    free = k.b_iso[iso] > 1.0
    assert np.abs(db).max() <= 5.0 and k.b_iso.min() >= 1.0
    assert db[free].std() == pytest.approx(5.0 / np.sqrt(3), rel=0.06)     # uniform ±5
    # anisotropic: U scaled, B_eq moved by the kick, shape kept
    ani = s.is_aniso
    beq0 = EIGHT_PI2 / 3 * s.u_aniso[ani, :3].sum(axis=1)
    beq1 = EIGHT_PI2 / 3 * k.u_aniso[ani, :3].sum(axis=1)
    assert np.abs(beq1 - beq0).max() <= 5.0 + 1e-9
    assert np.allclose(k.b_iso[ani], beq1)
    ratio = k.u_aniso[ani] / s.u_aniso[ani]
    assert np.allclose(ratio, ratio[:, :1])
    assert np.array_equal(kick_b(s.copy(), 5.0, seed=7).b_iso, k.b_iso)
    # floor at b_min
    low = s.copy()
    low.b_iso[:] = 1.5
    low.is_aniso[:] = False
    assert kick_b(low, 5.0, seed=1).b_iso.min() == 1.0


def test_kicks_on_a_model_with_a_selection_string():
    model, _, _ = case_paths("5e5z")
    m = kickref.read_model(model)
    x0, b0 = m.xyz.copy(), m.b_iso.copy()
    kick_coordinates(m, 0.2, "//A/2-3", seed=1)                 # MAIN: set coor kick 0.2 sele ... end
    kick_b(m, 5.0, "//A/2-3", seed=1)                            # MAIN: set temp kick 5. sele ... end
    moved = np.any(m.xyz != x0, axis=1)
    sel = np.isin(m.seqid, ["2", "3"])
    assert np.array_equal(moved, sel)
    assert np.abs(m.xyz - x0).max() <= 0.2
    assert np.array_equal(m.b_iso[~sel], b0[~sel])


# ------------------------------------------------------------------ fast cooling
def test_kick_cooling_reproducible():
    model, data, _ = case_paths("5e5z")
    m, d = kickref.load_inputs(model, data)
    restraints = build_restraints(m, monlib_dir=MONOMERS)
    results = []
    for seed in (1, 1, 2):
        ref = Refinement(m.copy(), d, restraints, RefineOptions(xyz_steps=20, rephase_every=20))
        res = run_kick_cooling(ref, kick=(0.3, 0.0), kick_b=(3.0, 0.0), cool=3, law="linear", seed=seed)
        results.append(res)
        notes = [c.note for c in res.cycles]
        assert notes[0] == "start" and len(res.cycles) == 4
        assert notes[1].startswith("kick 0.30 Å, B 3.0") and notes[3].startswith("kick 0.00 Å, B 0.0")
    assert np.array_equal(results[0].model.xyz, results[1].model.xyz)
    assert results[0].r_work == results[1].r_work
    assert not np.array_equal(results[0].model.xyz, results[2].model.xyz)
    # cooling recovers from the kicks: the last (unkicked) cycle ends below the first kicked one
    # and within 0.01 of the unkicked start (5e5z: R-work 0.1725 -> 0.1821 -> 0.1772 -> 0.1805)
    r = [c.r_work for c in results[0].cycles]
    assert r[3] < r[1] and r[3] < r[0] + 0.01


# ---------------------------------------------------------------------- kick maps
def test_kick_map_without_kicks_is_the_ordinary_map():
    model, data, _ = case_paths("1cbs")
    m, d = kickref.load_inputs(model, data)
    mc0 = kickref.compute_maps(m, d).map_coefficients
    mc1, st = kick_map_coefficients(m, d, n_models=1, max_amplitude=0.0)
    assert np.array_equal(mc0.hkl, mc1.hkl)
    for a, b in ((mc0.fwt, mc1.fwt), (mc0.delfwt, mc1.delfwt)):
        assert np.abs(a - b).max() <= 0.01 * np.abs(a).max()
    assert np.allclose(mc0.fom, mc1.fom, atol=0.01)
    assert kick_amplitudes(5, 0.8).tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])


def test_kick_maps_seeded():
    """4hg7, 50 kicked models: same seed, same maps; the average has a lower FOM than the
    unkicked map and stays close to it (its time is measured in benchmarks, not here)."""
    model, data, _ = case_paths("4hg7")
    m, d = kickref.load_inputs(model, data)
    res = kickref.compute_maps(m, d, kick=True, kick_options={"n_models": 50, "max_amplitude": 0.8,
                                                              "seed": 1})
    mc = res.map_coefficients
    assert res.kick["n_models"] == 50 and res.statistics.r_work < 0.2
    mc0 = kickref.compute_maps(m, d).map_coefficients
    assert mc.fom.mean() < mc0.fom.mean()
    cc = np.real(np.vdot(mc.fwt, mc0.fwt)) / np.sqrt(np.vdot(mc.fwt, mc.fwt).real * np.vdot(mc0.fwt, mc0.fwt).real)
    assert cc > 0.95
    again, _ = kick_map_coefficients(m, d, n_models=3, max_amplitude=0.8, seed=1)
    again2, _ = kick_map_coefficients(m, d, n_models=3, max_amplitude=0.8, seed=1)
    assert np.array_equal(again.fwt, again2.fwt)


def test_hydrogens_without_given_parent_use_the_nearest_heavy_atom():
    xyz = np.array([[0, 0, 0], [1.0, 0, 0], [4, 4, 4], [4.9, 4, 4]])
    is_h = np.array([False, True, False, True])
    s = AtomState(xyz.copy(), np.full(4, 20.0), np.zeros((4, 6)), np.zeros(4, bool), np.ones(4))
    k = kick_coordinates(s, 0.5, seed=2, hydrogens=is_h, hydrogen_parents=np.array([-1, 0, -1, -1]))
    d = k.xyz - xyz
    assert np.allclose(d[1], d[0]) and np.allclose(d[3], d[2]) and np.abs(d[0]).max() > 0
