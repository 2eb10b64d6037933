"""NCS restraint terms: gradients, rigid-motion invariance, robustness, B offsets."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import MONOMERS, need_shared, two_copies
from kickref.core.state import AtomState
from kickref.io.models import read_model
from kickref.restraints import build_restraints
from kickref.restraints.ncs import LocalNcsTerm, NcsBTerm, ncs_terms
from kickref.xtal.ncs import detect_ncs

_cache = {}


def setup():
    """(model, restraints, groups) of the two-copy 1cbs model (cached)."""
    if not _cache:
        need_shared()
        model, _, _ = two_copies()
        _cache["x"] = (model, build_restraints(model, monlib_dir=MONOMERS), detect_ncs(model))
    return _cache["x"]


def noisy_state(sd=0.1, seed=0):
    model, R, groups = setup()
    st = AtomState.from_model(model)
    rng = np.random.default_rng(seed)
    st.xyz += rng.normal(0, sd, st.xyz.shape)
    st.b_iso += rng.normal(0, 3.0, st.b_iso.shape)
    return st


def fd_check(term, state, attr, idx, h):
    """Max relative error of the analytic gradient against central differences at ``idx``."""
    _, g = term.compute(state)
    ga = getattr(g, attr)
    arr = getattr(state, attr)
    err = []
    for i in idx:
        old = arr[i].copy()
        arr[i] = old + h
        vp = term.value(state)
        arr[i] = old - h
        vm = term.value(state)
        arr[i] = old
        num = (vp - vm) / (2 * h)
        err.append(abs(num - ga[i]) / max(abs(num), 1e-3))
    return max(err)


def test_identical_copies_give_zero_and_terms_are_built():
    model, R, groups = setup()
    st = AtomState.from_model(model)
    local, b = ncs_terms(groups, R, st)
    assert len(local) > 1000 and len(b) == groups[0].atoms.shape[1]
    assert local.value(st) < 1e-12
    # no 1-2 or 1-3 pairs
    bonded = {tuple(sorted(p)) for p in R.bonds.idx.tolist()}
    assert not any(tuple(sorted(p)) in bonded for p in local.pairs[:, :2].tolist())


def test_local_gradient_matches_finite_differences():
    model, R, groups = setup()
    st = noisy_state()
    local, _ = ncs_terms(groups, R, st)
    assert local.value(st) > 0
    atoms = np.unique(local.pairs)
    rng = np.random.default_rng(1)
    idx = [(int(a), int(c)) for a, c in zip(rng.choice(atoms, 40), rng.integers(0, 3, 40))]
    assert fd_check(local, st, "xyz", idx, 1e-5) < 1e-6


def test_local_is_invariant_to_a_rigid_motion_of_a_copy():
    model, R, groups = setup()
    st = noisy_state()
    local, _ = ncs_terms(groups, R, st)
    v0 = local.value(st)
    b = model.chain == "B"
    rot = Rotation.from_rotvec([0.4, -1.1, 0.7]).as_matrix()
    c = st.xyz[b].mean(axis=0)
    st.xyz[b] = (st.xyz[b] - c) @ rot.T + c + np.array([3.0, -7.0, 11.0])
    assert abs(local.value(st) - v0) < 1e-10 * max(1.0, v0)


def test_local_is_robust_and_bounded():
    model, R, groups = setup()
    st = AtomState.from_model(model)
    local, _ = ncs_terms(groups, R, st)
    # a side chain of copy B swung away: energy grows but stays below z0² per pair
    b = (model.chain == "B") & (model.seqid == "20") & ~np.isin(model.atom_name, ["N", "CA", "C", "O", "CB"])
    assert b.sum() >= 1
    st.xyz[b] += np.array([2.5, 0.0, 0.0])
    v = local.value(st)
    assert 0 < v <= local.z0 ** 2 * len(local)
    hit = np.isin(local.pairs[:, 2:], np.flatnonzero(b)).any(axis=1)
    assert v <= local.z0 ** 2 * hit.sum() + 1e-9


def test_b_term_gradient_and_offset():
    model, R, groups = setup()
    st = noisy_state()
    _, bt = ncs_terms(groups, R, st)
    rng = np.random.default_rng(2)
    idx = list(rng.choice(np.concatenate([bt.ia, bt.ib]), 30))
    assert fd_check(bt, st, "b_iso", idx, 1e-4) < 1e-6
    b = model.chain == "B"
    v0 = bt.value(st)
    st.b_iso[b] += 12.0
    bt.update(st)
    assert abs(bt.value(st) - v0) < 1e-9 * max(v0, 1)
    off = NcsBTerm(groups, offset=False)
    off.update(st)
    st.b_iso[b] -= 12.0
    v1 = off.value(st)
    st.b_iso[b] += 12.0
    assert off.value(st) > v1 + 1.0


def test_terms_off_and_scaled_in_an_energy():
    from kickref.refinement.energy import Energy
    model, R, groups = setup()
    st = noisy_state()
    local, bt = ncs_terms(groups, R, st)
    e = Energy([local, bt])
    v, _, parts = e.compute(st)
    local.scale = 2.0
    bt.enabled = False
    v2, _, parts2 = e.compute(st)
    assert set(parts2) == {"ncs_local"} and v2 == pytest.approx(2 * parts["ncs_local"])
    assert isinstance(local, LocalNcsTerm)


def test_refine_wires_the_terms_and_reports_them():
    """Two-copy 1cbs model against 1cbs data (wiring only: the data fit one copy)."""
    import kickref
    from conftest import case_paths
    from kickref.io.outputs import summary_dict
    model, _, _ = setup()
    _, data, _ = case_paths("1cbs")
    res = kickref.refine(model.copy(), data, monlib=MONOMERS, cycles=1, xyz_steps=2, adp_steps=1,
                         hydrogens="keep", ncs="on", ncs_groups="A,B")
    ncs = summary_dict(res)["ncs"]
    assert ncs["used"] is True and ncs["mode"] == "on" and len(ncs["groups"]) == 1
    assert ncs["local"]["n_pairs"] > 1000 and len(ncs["b_offsets"]) == 1


@pytest.mark.parametrize("mode, copies, used", [("auto", 2, True), ("auto", 1, False), ("off", 2, False),
                                               ("on", 1, False)])
def test_auto_rule(mode, copies, used):
    """auto: restrained whenever NCS groups are found (measured on 4iid at 3.5 and 2.3 Å)."""
    import warnings
    from conftest import case_paths
    from kickref.api import load_inputs
    from kickref.refinement.protocol import Refinement, RefineOptions
    model, R, groups = setup()
    path, data_path, _ = case_paths("1cbs")
    if copies == 1:
        model = read_model(path)
        R = build_restraints(model, monlib_dir=MONOMERS)
    m, data = load_inputs(model.copy(), data_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = Refinement(m, data, R, RefineOptions(ncs=mode))
    assert any("no NCS groups" in str(x.message) for x in w) is (mode == "on")
    assert r.ncs["used"] is used and ("ncs_local" in [t.name for t in r.e_xyz.terms]) is used
    assert ("ncs_b" in [t.name for t in r.e_adp.terms]) is used


def test_given_group_with_a_missing_chain_is_an_input_error():
    from conftest import case_paths
    from kickref.api import load_inputs
    from kickref.core.errors import KickrefError
    from kickref.refinement.protocol import Refinement, RefineOptions
    model, R, _ = setup()
    m, data = load_inputs(model.copy(), case_paths("1cbs")[1])
    with pytest.raises(KickrefError, match="no polymer chain 'Z'"):
        Refinement(m, data, R, RefineOptions(ncs="on", ncs_groups=[["A", "Z"]]))
