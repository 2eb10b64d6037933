"""The self-made example (kickref.examples.peptide) and the demo helpers; no ../shared needed."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

import kickref
from kickref.examples import peptide as P


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("example")
    return P.build_example(out, seed=0)


def _atoms(path):
    st = gemmi.read_structure(str(path))
    return st, [(r, a) for r in st[0][0] for a in r]


# ------------------------------------------------------------------ geometry helpers
def test_nerf_places_atom_with_requested_internal_coordinates():
    rng = np.random.default_rng(5)
    a, b, c = rng.normal(size=(3, 4, 3)) * 2.0
    bond = np.array([1.33, 1.52, 1.0, 2.1])
    angle = np.array([116.2, 109.5, 90.0, 150.0])
    torsion = np.array([-60.0, 180.0, 35.0, -150.0])
    d = P.place_atom(a, b, c, bond, angle, torsion)
    assert np.allclose(np.linalg.norm(d - c, axis=1), bond)
    u, v = b - c, d - c
    cosang = np.sum(u * v, axis=1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    assert np.allclose(np.degrees(np.arccos(cosang)), angle)
    dih = P.dihedral(a, b, c, d)
    assert np.allclose((dih - torsion + 180.0) % 360.0 - 180.0, 0.0, atol=1e-9)


def test_peptide_is_helical_with_requested_rotamers():
    residues = P.build_peptide()
    assert [r["name"] for r in residues] == list(P.SEQUENCE)
    n_heavy = sum(len(r["atoms"]) for r in residues)
    assert n_heavy == 95            # 10 residues + OXT
    bb = {k: [gemmi.Position(*r["xyz"][r["atoms"].index(k)]) for r in residues]
          for k in ("N", "CA", "C")}
    phi = [np.degrees(gemmi.calculate_dihedral(bb["C"][i - 1], bb["N"][i], bb["CA"][i], bb["C"][i]))
           for i in range(1, len(residues))]
    psi = [np.degrees(gemmi.calculate_dihedral(bb["N"][i], bb["CA"][i], bb["C"][i], bb["N"][i + 1]))
           for i in range(len(residues) - 1)]
    assert np.allclose(phi, P.PHI, atol=0.01) and np.allclose(psi, P.PSI, atol=0.01)
    # i → i+4 backbone hydrogen bonds of an α-helix
    o = np.array([r["xyz"][r["atoms"].index("O")] for r in residues])
    n = np.array([r["xyz"][r["atoms"].index("N")] for r in residues])
    d_hb = np.linalg.norm(o[:-4] - n[4:], axis=1)
    assert np.all((d_hb > 2.8) & (d_hb < 3.2))
    # every χ is one of the listed rotamers of its residue
    for r in residues:
        assert r["chi"] in P.HELIX_ROTAMERS.get(r["name"], ((),))
        pos = dict(zip(r["atoms"], r["xyz"]))
        for atoms, chi in zip(P.CHI_ATOMS.get(r["name"], ()), r["chi"]):
            got = P.dihedral(*[pos[x] for x in atoms])
            assert abs((got - chi + 180.0) % 360.0 - 180.0) < 1e-6


def test_peptide_has_ideal_geometry_by_the_restraints():
    from kickref.core.model import Model
    from kickref.restraints import build_restraints
    st = P.true_structure()
    stats = build_restraints(Model.from_structure(st)).statistics()
    assert stats["bond"]["n"] >= 95 and stats["bond"]["rmsd"] < 0.015     # Å
    assert stats["angle"]["rmsd"] < 1.5                                     # degrees
    assert stats["plane"]["rmsd"] < 0.01
    assert stats["chiral"]["rmsz"] < 1.0                                    # all L


def test_no_intramolecular_clashes():
    residues = P.build_peptide()
    xyz = np.vstack([r["xyz"] for r in residues])
    polar = np.isin([e for r in residues for e in r["elements"]], ["N", "O"])
    bonds = P.peptide_bonds(residues)
    d_bond = np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)
    assert d_bond.min() > 1.2 and d_bond.max() < 1.6
    near = P.separated_pairs(bonds, len(xyz), max_sep=3)
    i, j = np.triu_indices(len(xyz), 1)
    far = np.array([(a, b) not in near for a, b in zip(i.tolist(), j.tolist())])
    i, j = i[far], j[far]
    d = np.linalg.norm(xyz[i] - xyz[j], axis=1)
    limit = np.where(polar[i] & polar[j], 2.6, 2.9)     # O(i)···C(i+1) is 2.95 Å in a helix
    assert np.all(d >= limit), d[d < limit]


# ------------------------------------------------------------------ the written example
def test_example_model_atoms_and_crystal(example):
    st, atoms = _atoms(example["model"])
    assert st.find_spacegroup().hm == "P 21 21 21"
    assert st[0].count_atom_sites() == 101
    assert sum(1 for r in st[0][0] if r.is_water()) == P.N_WATERS
    b = np.array([a.b_iso for _, a in atoms])
    assert 10.0 <= b.min() and b.max() <= 25.0 and b.std() > 2.0
    assert all(a.occ == 1.0 for _, a in atoms)
    # no clash with symmetry mates: gemmi's nearest image of every pair (other ASU copies)
    cell = st.cell
    pos = [a.pos for _, a in atoms]
    d_min = min(cell.find_nearest_image(p, q, gemmi.Asu.Different).dist() for p in pos for q in pos)
    assert d_min >= 3.0
    contacts = P.symmetry_contacts(st, 4.0)
    assert contacts and contacts[0][0] == pytest.approx(d_min, abs=1e-3)
    assert len(contacts) >= 10            # packed: molecules touch their neighbours
    # Matthews coefficient in the range of real crystals (Å³/Da)
    mass = sum(a.element.weight for _, a in atoms if not _.is_water())
    vm = cell.volume / (4 * mass)
    assert 1.8 < vm < 4.0


def test_example_mtz_columns_and_free_set(example):
    mtz = gemmi.read_mtz_file(str(example["mtz"]))
    assert {c.label: c.type for c in mtz.columns if c.label in ("FP", "SIGFP", "FREE")} == \
        {"FP": "F", "SIGFP": "Q", "FREE": "I"}
    data = kickref.read_reflections(str(example["mtz"]))
    assert data.n >= 600
    assert data.has_free and data.free.sum() >= 30
    assert 0.04 <= data.free.mean() <= 0.06            # FREE 0..19, flag 0 = test
    assert data.d_min == pytest.approx(1.6, abs=0.01)
    assert np.all(data.sigma > 0) and np.all(data.f_obs > 0)
    rel = np.median(data.sigma / data.f_obs)
    assert 0.03 < rel < 0.1


def test_r_factors_true_and_start(example):
    true = kickref.rfactor(str(example["model"]), str(example["mtz"]))
    assert true.r_work < 0.08 and true.r_free < 0.08
    assert true.scale["k_sol"] == pytest.approx(P.K_SOL, abs=0.1)
    start = kickref.rfactor(str(example["start_model"]), str(example["mtz"]))
    assert start.r_work > 0.15 and start.r_free > 0.15
    assert start.r_work > true.r_work + 0.1


def test_start_model_is_shaken_with_flat_b(example):
    _, t = _atoms(example["model"])
    _, s = _atoms(example["start_model"])
    assert [a.name for _, a in t] == [a.name for _, a in s]
    dx = np.array([a.pos.tolist() for _, a in s]) - np.array([a.pos.tolist() for _, a in t])
    rms = np.sqrt((dx ** 2).sum(axis=1).mean())
    assert rms == pytest.approx(P.SHAKE_RMS, abs=0.06)
    assert all(a.b_iso == P.START_B for _, a in s)


def test_deterministic_for_a_seed(example, tmp_path):
    P.build_true_structure_text.cache_clear()          # rebuild the model too
    again = P.build_example(tmp_path / "same", seed=0)
    for key in ("model", "start_model", "mtz"):
        assert again[key].read_bytes() == example[key].read_bytes(), key
    other = P.build_example(tmp_path / "other", seed=1)
    assert other["model"].read_bytes() == example["model"].read_bytes()
    assert other["start_model"].read_bytes() != example["start_model"].read_bytes()
    a = kickref.read_reflections(str(example["mtz"]))
    b = kickref.read_reflections(str(other["mtz"]))
    assert np.array_equal(a.hkl, b.hkl)
    assert not np.allclose(a.f_obs, b.f_obs) and not np.array_equal(a.free, b.free)


# ------------------------------------------------------------------ demo helpers
def test_demo_refine_command_uses_offered_options():
    import argparse
    from kickref.demo import refine_command
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("-o", "--output")
    p.add_argument("--cycles", type=int)
    assert refine_command(p, "m.pdb", "d.mtz", "out.pdb") == \
        ["refine", "m.pdb", "d.mtz", "-o", "out.pdb", "--cycles", "5"]
    q = argparse.ArgumentParser()
    q.add_argument("model")
    q.add_argument("data")
    assert refine_command(q, "m.pdb", "d.mtz", "out.pdb", cycles=3) == ["refine", "m.pdb", "d.mtz"]
