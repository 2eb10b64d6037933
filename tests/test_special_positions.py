"""Atoms on special positions: detection, projectors, constrained parameters, Fc, refinement."""
import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, case_paths
from kickref.core.adp import sym6_to_mat
from kickref.core.state import AtomGradient, AtomState
from kickref.io.models import read_model
from kickref.refinement.parameters import Parameters, find_occupancy_groups
from kickref.xtal.site_symmetry import find_site_symmetry
from kickref.xtal.structure_factors import StructureFactorCalculator


def image_distance(cell, xyz):
    """Distance (Å) from a position to its nearest symmetry image."""
    p = gemmi.Position(*xyz)
    return cell.find_nearest_image(p, p, gemmi.Asu.Different).dist()


@pytest.fixture(scope="module")
def wkd():
    model_path, data_path, _ = case_paths("5wkd")
    m = read_model(model_path)
    return m, data_path, find_site_symmetry(m.xyz, m.cell, m.spacegroup)


def test_detection_5wkd(wkd):
    m, _, site = wkd
    assert [m.atom_label(a) for a in site.atoms] == ["A/HOH 401/O"]
    a = site.atoms[0]
    assert site.order[a] == 2 and (np.delete(site.order, a) == 1).all()
    assert abs(m.occ[a] - 1.0 / site.order[a]) < 1e-6       # deposited as 1/multiplicity


@pytest.mark.parametrize("case", ["5e5z", "6mw0", "1cbs", "3zt9"])
def test_no_special_positions(case):
    m = read_model(case_paths(case)[0])
    site = find_site_symmetry(m.xyz, m.cell, m.spacegroup)
    assert len(site) == 0 and (site.order == 1).all()


def test_projector_properties(wkd):
    m, _, site = wkd
    P = site.projector[0]
    assert np.allclose(P @ P, P, atol=1e-12) and np.allclose(P, P.T, atol=1e-12)
    assert round(np.trace(P)) == 1                           # a 2-fold axis: one free direction
    a = site.atoms[0]
    on = site.on_element(m.xyz)
    assert image_distance(m.cell, on[0]) < 1e-6              # the exact on-axis position
    assert image_distance(m.cell, m.xyz[a]) > 1e-3           # the deposited one is 0.012 Å off
    x = m.xyz.copy()
    assert np.allclose(site.place(x), 0.0, atol=1e-12)       # the start is where it was
    x[a] += [0.3, -0.2, 0.5]                                 # any move: only its axial part stays
    site.place(x)
    assert image_distance(m.cell, x[a]) == pytest.approx(image_distance(m.cell, m.xyz[a]), abs=1e-9)
    y = x.copy()
    assert np.allclose(site.place(y), 0.0, atol=1e-12)       # placing twice moves nothing
    # a gradient already symmetric (along the axis) is unchanged; any gradient ends on it
    rng = np.random.default_rng(3)
    g = rng.normal(size=(1, 3))
    pg = site.project_vectors(g)
    assert np.allclose(site.project_vectors(pg), pg) and np.linalg.norm(pg) < np.linalg.norm(g)


def test_u_projection_symmetric(wkd):
    m, _, site = wkd
    a = site.atoms[0]
    ops = [op for op in m.spacegroup.operations()]
    orth = np.array(m.cell.orth.mat.tolist())
    frac = np.array(m.cell.frac.mat.tolist())
    rng = np.random.default_rng(5)
    A = rng.normal(size=(3, 3))
    u = np.array([*np.diag(A @ A.T), (A @ A.T)[0, 1], (A @ A.T)[0, 2], (A @ A.T)[1, 2]]) * 0.01
    pu = site.project_u(u[None])[0]
    U = sym6_to_mat(pu)
    x = m.xyz[a]
    n_sym = 0
    for op in ops:                       # the operations that keep the atom in place keep U too
        R = orth @ (np.array(op.rot) / op.DEN) @ frac
        f = np.array(m.cell.fractionalize(gemmi.Position(*x)).tolist())
        img = np.array(op.apply_to_xyz(f.tolist()))
        if np.linalg.norm((img - f - np.round(img - f)) @ orth.T) < 0.5:
            assert np.allclose(R @ U @ R.T, U, atol=1e-12)
            n_sym += 1
    assert n_sym == 2 and not np.allclose(pu, u)
    assert np.allclose(site.project_u(pu[None])[0], pu, atol=1e-14)
    # gradient chain rule: <Mᵀg, du> = <g, M du>
    g, du = rng.normal(size=6), rng.normal(size=6)
    assert np.isclose(site.project_u_gradient(g[None])[0] @ du, g @ site.project_u(du[None])[0])


def test_parameters_keep_atom_on_axis(wkd):
    m, _, site = wkd
    state = AtomState.from_model(m)
    p = Parameters("xyz", state, np.ones(m.n_atoms, bool), site_symmetry=site)
    p.project(state)
    a = site.atoms[0]
    d0 = image_distance(m.cell, m.xyz[a])                  # 0.023 Å: the deposited offset, kept
    rng = np.random.default_rng(7)
    for _ in range(5):
        g = AtomGradient(m.n_atoms)
        g.xyz[:] = rng.normal(size=g.xyz.shape)
        x = p.get(state) - 0.3 * p.gradient(g, state)      # a steepest-descent step
        p.set(x, state)
        assert image_distance(m.cell, state.xyz[a]) == pytest.approx(d0, abs=1e-9)
    moved = np.flatnonzero(np.abs(state.xyz - m.xyz).sum(axis=1) > 1e-6)
    assert a in moved and len(moved) > 1
    # an arbitrary vector is projected in set() too
    p.set(p.get(state) + rng.normal(size=p.n), state)
    assert image_distance(m.cell, state.xyz[a]) == pytest.approx(d0, abs=1e-9)
    # without site symmetry nothing is constrained
    q = Parameters("xyz", state, np.ones(m.n_atoms, bool))
    assert q.site is None


def test_anisotropic_parameters_stay_symmetric(wkd):
    m, _, site = wkd
    state = AtomState.from_model(m)
    a = site.atoms[0]
    state.is_aniso[a] = True
    state.u_aniso[a] = [0.3, 0.2, 0.25, 0.05, -0.02, 0.03]
    p = Parameters("adp", state, np.ones(m.n_atoms, bool), site_symmetry=site)
    p.project(state)
    x = p.get(state) + np.random.default_rng(2).normal(size=p.n)
    p.set(x, state)
    assert np.allclose(site.project_u(state.u_aniso[a][None])[0], state.u_aniso[a], atol=1e-14)


def test_occupancy_meaning(wkd):
    m, _, site = wkd
    movable = np.ones(m.n_atoms, bool)
    # a water at 0.5 on a 2-fold is fully occupied: not a partial residue, bound 1/|G|
    g = find_occupancy_groups(m, movable, refine_partial=True, site_order=site.order)
    assert not any(site.atoms[0] in mem for mem in g.members)
    m2 = m.copy()
    m2.occ[site.atoms[0]] = 0.3
    g = find_occupancy_groups(m2, movable, refine_partial=True, site_order=site.order)
    k = [i for i, mem in enumerate(g.members) if site.atoms[0] in mem]
    assert len(k) == 1 and g.upper[k[0]] == 0.5
    state = AtomState.from_model(m2)
    p = Parameters("occ", state, movable, occupancy_groups=g)
    assert p.bounds(state)[k[0]] == (0.0, 0.5)


def test_fc_of_special_atom_matches_direct_summation(wkd):
    """The P1 spread of all images counts the atom |G| times at one place: with occupancy
    1/|G| that is the crystal's density; gemmi's direct sum over all operations agrees."""
    m, _, site = wkd
    a = site.atoms[0]
    st = m.structure
    x = m.xyz.copy()
    x[a] = site.on_element(m.xyz)[0]
    keep = gemmi.Structure()
    keep.cell, keep.spacegroup_hm = st.cell, st.spacegroup_hm
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name, res.seqid = "HOH", gemmi.SeqId(401, " ")
    atom = gemmi.Atom()
    atom.name, atom.element = "O", gemmi.Element("O")
    atom.pos, atom.occ, atom.b_iso = gemmi.Position(*x[a]), float(m.occ[a]), float(m.b_iso[a])
    res.add_atom(atom)
    chain.add_residue(res)
    model.add_chain(chain)
    keep.add_model(model)
    d_min = 1.2
    hkl = np.array(gemmi.make_miller_array(m.cell, m.spacegroup, d_min), dtype=np.int32)
    calc = StructureFactorCalculator(m.cell, m.spacegroup, hkl, d_min)
    state = AtomState.from_model(m)
    only = np.zeros(m.n_atoms, bool)
    only[a] = True
    state.occ[~only] = 0.0
    state.xyz = x
    fc = calc.calculate(state, m.element)
    direct = gemmi.StructureFactorCalculatorX(m.cell)
    sub = np.random.default_rng(1).choice(len(hkl), 300, replace=False)
    ref = np.array([direct.calculate_sf_from_model(keep[0], [int(v) for v in h]) for h in hkl[sub]])
    err = np.sqrt(np.sum(np.abs(fc[sub] - ref) ** 2) / np.sum(np.abs(ref) ** 2))
    assert err <= 1e-3


def test_refine_keeps_water_on_axis(wkd):
    """A short refinement of 5wkd keeps the water exactly on its 2-fold axis, with a warning."""
    import kickref
    m, data_path, site = wkd
    lines = []
    res = kickref.refine(m, data_path, monlib=MONOMERS, cycles=1, xyz_steps=10, adp_steps=5,
                         log=lines.append)
    a = [i for i in range(res.model.n_atoms) if res.model.atom_label(i) == "A/HOH 401/O"][0]
    d0 = image_distance(m.cell, m.xyz[site.atoms[0]])
    assert image_distance(res.model.cell, res.model.xyz[a]) == pytest.approx(d0, abs=1e-6)
    assert abs(res.model.occ[a] - 0.5) < 1e-9
    assert any(s.startswith("warning:") and "HOH 401/O (multiplicity 2" in s for s in lines)
    assert any("move along their symmetry elements only" in s for s in lines)


@pytest.mark.slow
def test_refine_5wkd_acceptance(wkd):
    """Three cycles: the water stays on the axis (it drifted 0.70 Å off it before, image distance
    1.409 Å, R-free 0.2276) and R-free is not worse than before by more than 0.005."""
    import kickref
    m, data_path, site = wkd
    res = kickref.refine(m, data_path, monlib=MONOMERS, cycles=3)
    a = [i for i in range(res.model.n_atoms) if res.model.atom_label(i) == "A/HOH 401/O"][0]
    assert image_distance(res.model.cell, res.model.xyz[a]) == pytest.approx(
        image_distance(m.cell, m.xyz[site.atoms[0]]), abs=1e-6)
    assert res.r_free <= 0.2276 + 0.005


@pytest.mark.slow
def test_refine_4hg7_anisotropic_water_on_axis():
    """4hg7: an anisotropic water (HOH 322) on a 2-fold of P6₅22 keeps position and U symmetric."""
    import kickref
    model_path, data_path, _ = case_paths("4hg7")
    start = read_model(model_path)
    res = kickref.refine(start, data_path, monlib=MONOMERS, cycles=1, xyz_steps=10, adp_steps=10)
    m = res.model
    a = [i for i in range(m.n_atoms) if m.atom_label(i) == "A/HOH 322/O"][0]
    site = find_site_symmetry(m.xyz, m.cell, m.spacegroup).subset([a])
    assert len(site) == 1 and m.is_aniso[a]
    a0 = [i for i in range(start.n_atoms) if start.atom_label(i) == "A/HOH 322/O"][0]
    d0 = image_distance(start.cell, start.xyz[a0])            # deposited 0.15 Å off the axis
    assert d0 > 0.2 and image_distance(m.cell, m.xyz[a]) == pytest.approx(d0, abs=1e-6)
    assert np.allclose(site.project_u(m.u_aniso[a][None])[0], m.u_aniso[a], atol=1e-6)


def test_restraints_of_special_atom():
    """The warning names the water; no contact with its own images, no restraint to itself."""
    from kickref.restraints import build_restraints
    m = read_model(case_paths("5wkd")[0])
    R = build_restraints(m, monlib_dir=MONOMERS)
    a = int(np.flatnonzero(R.site_symmetry_order > 1)[0])
    assert m.atom_label(a) == "A/HOH 401/O"
    assert any("HOH 401/O (multiplicity 2, occupancy 0.50)" in s for s in R.log)
    nb = R.nonbonded
    assert not np.any((nb.pi == a) & (nb.pj == a))
    for kind in ("bonds", "angles"):
        idx = getattr(R, kind).idx
        assert not np.any(idx == a) and not np.any(idx[:, 0] == idx[:, 1])
