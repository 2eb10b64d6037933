"""Restraints: gradients by finite differences, agreement with gemmi's topology, links,
non-bonded contacts with symmetry, hydrogens, bad input."""
import io
import json
import math
import shutil
from pathlib import Path

import gemmi
import numpy as np
import pytest

from kickref.core.errors import InputError
from kickref.io.models import read_model
from kickref.core.model import Model
from kickref.core.state import AtomState
from kickref.refinement.energy import Energy
from kickref.restraints import KINDS, build_restraints

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
MONLIB = SHARED / "monomers"
CASES = {"5e5z": "5e5z.pdb", "5wkd": "5wkd.pdb", "6mw0": "6mw0.cif", "4hg7": "4hg7.cif",
         "1cbs": "1cbs.cif.gz", "3zt9": "3zt9.cif", "4iid": "4iid.pdb"}


def case_path(case):
    p = SHARED / "data" / case / CASES[case]
    if not p.exists() or not MONLIB.exists():
        pytest.skip(f"shared test data ({p}, {MONLIB}) not present")
    return p


_cache = {}


def restraints_for(case, **kw):
    key = (case, tuple(sorted(kw.items())))
    if key not in _cache:
        model = read_model(case_path(case))
        _cache[key] = (model, build_restraints(model, monlib_dir=MONLIB, **kw))
    return _cache[key]


# ------------------------------------------------------------------ gradients
def _fd_check(term, state, attr, atoms, h):
    """Max relative error of the analytic gradient vs central differences over ``atoms``."""
    v, g = term.compute(state)
    G = getattr(g, attr).reshape(state.n_atoms, -1)
    num, ana = [], []
    for a in atoms:
        for c in range(G.shape[1]):
            sp, sm = state.copy(), state.copy()
            getattr(sp, attr).reshape(state.n_atoms, -1)[a, c] += h
            getattr(sm, attr).reshape(state.n_atoms, -1)[a, c] -= h
            num.append((term.value(sp) - term.value(sm)) / (2 * h))
            ana.append(G[a, c])
    num, ana = np.array(num), np.array(ana)
    assert np.abs(ana).max() > 0, f"{term.name}: gradient is zero on the checked atoms"
    return np.abs(num - ana).max() / np.abs(ana).max()


def _atoms_of(R, kind, rng, k=6):
    if kind in ("bond", "angle", "torsion", "chiral"):
        idx = getattr(R, kind + "s").idx
    elif kind == "plane":
        idx = R.planes.atoms[:, None]
    elif kind == "nonbonded":
        nb = R.nonbonded
        viol = np.flatnonzero(nb.actual < nb.d0)
        sym = viol[nb.weight[viol] < 1]           # include symmetry contacts
        pick = np.concatenate([rng.choice(viol, min(k, len(viol)), replace=False),
                               sym[:3]])
        return np.unique(np.concatenate([nb.pi[pick], nb.pj[pick]]))
    else:
        idx = R.b_pairs.idx if kind == "b_similarity" else R.u_pairs.idx
    rows = rng.choice(len(idx), min(k, len(idx)), replace=False)
    return np.unique(idx[rows].ravel())


@pytest.mark.parametrize("case", ["4hg7", "5e5z", "1cbs"])
def test_gradients_match_finite_differences(case):
    """Every term's analytic gradient on a real (perturbed) model: relative error ≤ 1e-4."""
    model, R = restraints_for(case)
    rng = np.random.default_rng(7)
    state = AtomState.from_model(model)
    state.xyz = state.xyz + rng.normal(0, 0.05, state.xyz.shape)
    state.b_iso = state.b_iso + rng.normal(0, 2.0, state.b_iso.shape)
    ani = state.is_aniso
    state.u_aniso[ani] += rng.normal(0, 0.003, (ani.sum(), 6))
    checked = set()
    for term in R.terms():
        term.compute(state)    # (re)builds the neighbour list before differencing
        atoms = _atoms_of(R, term.name, rng)
        if term.name == "b_similarity":
            p = R.b_pairs.idx
            both_iso = p[~state.is_aniso[p[:, 0]] & ~state.is_aniso[p[:, 1]]]
            if len(both_iso):
                iso = np.unique(both_iso[rng.choice(len(both_iso), min(6, len(both_iso)),
                                                    replace=False)].ravel())
                assert _fd_check(term, state, "b_iso", iso, 1e-3) < 1e-4
                checked.add((term.name, "b_iso"))
            continue
        if term.name == "adp_kl":
            p = R.kl_pairs.idx
            atoms = np.unique(p[rng.choice(len(p), min(8, len(p)), replace=False)].ravel())
            iso = atoms[~state.is_aniso[atoms]]
            ani_atoms = atoms[state.is_aniso[atoms]]
            if len(iso):
                assert _fd_check(term, state, "b_iso", iso, 1e-4) < 1e-4
            if len(ani_atoms):
                assert _fd_check(term, state, "u_aniso", ani_atoms, 1e-6) < 1e-4
            checked.add((term.name, "adp"))
            continue
        if term.name in ("adp_rigid_bond", "adp_similarity"):
            if not state.is_aniso.any():
                assert term.compute(state)[0] == 0.0
                continue
            p = R.term(term.name).idx
            p = p[state.is_aniso[p[:, 0]] & state.is_aniso[p[:, 1]]]
            atoms = np.unique(p[rng.choice(len(p), min(6, len(p)), replace=False)].ravel())
            assert _fd_check(term, state, "u_aniso", atoms, 1e-6) < 1e-4
            checked.add((term.name, "u_aniso"))
            if term.name == "adp_similarity":
                continue
        assert _fd_check(term, state, "xyz", atoms, 1e-5) < 1e-4, term.name
        checked.add((term.name, "xyz"))
    expected = set(KINDS)
    p = R.b_pairs.idx
    if not np.any(~state.is_aniso[p[:, 0]] & ~state.is_aniso[p[:, 1]]):
        expected.discard("b_similarity")     # see test_b_similarity_acts_on_b_eq...
    if not state.is_aniso.any():
        expected -= {"adp_rigid_bond", "adp_similarity"}
    assert {k for k, _ in checked} == expected


def test_b_similarity_acts_on_b_eq_of_anisotropic_atoms():
    """For aniso atoms dE/dB (in AtomGradient.b_iso) is the derivative w.r.t. B_eq."""
    model, R = restraints_for("5e5z")
    state = AtomState.from_model(model)
    assert state.is_aniso.sum() > 40
    term = [t for t in R.terms() if t.name == "b_similarity"][0]
    v, g = term.compute(state)
    assert v > 0
    h = 1e-6                                   # Å² on each U_kk → ΔB_eq = 8π² h
    p = R.b_pairs.idx
    p = p[state.is_aniso[p[:, 0]] & state.is_aniso[p[:, 1]]]
    for a in p[:5].ravel():
        sp, sm = state.copy(), state.copy()
        sp.u_aniso[a, :3] += h
        sm.u_aniso[a, :3] -= h
        fd = (term.value(sp) - term.value(sm)) / (2 * 8 * math.pi ** 2 * h)
        assert fd == pytest.approx(g.b_iso[a], rel=1e-5, abs=1e-8)
    assert np.all(g.u_aniso == 0)


def test_terms_interface_and_energy_sum():
    model, R = restraints_for("4hg7")
    terms = R.terms()
    assert [t.name for t in terms] == list(KINDS)
    kinds = {t.name: t.kind for t in terms}
    assert kinds["bond"] == "geometry" and kinds["nonbonded"] == "geometry"
    assert kinds["b_similarity"] == kinds["adp_rigid_bond"] == kinds["adp_similarity"] == "adp"
    state = AtomState.from_model(model)
    E = Energy(terms)
    total, grad, parts = E.compute(state)
    assert total == pytest.approx(sum(parts.values()))
    # 4hg7 is all anisotropic: its ADPs are restrained by the U terms, and B similarity acts
    # only on pairs with an isotropic atom (none here)
    assert all(parts[k] > 0 for k in KINDS if k != "b_similarity")
    assert parts["b_similarity"] == 0.0
    iso_state = state.copy()
    iso_state.is_aniso[:10] = False
    assert E.compute(iso_state)[2]["b_similarity"] > 0
    # chi-square-like: the bond value is Σ z² = n · rmsz²
    s = R.statistics(state)
    assert parts["bond"] == pytest.approx(s["bond"]["n"] * s["bond"]["rmsz"] ** 2, rel=1e-10)
    assert parts["angle"] == pytest.approx(s["angle"]["n"] * s["angle"]["rmsz"] ** 2, rel=1e-10)
    E["bond"].enabled = False
    assert E.compute(state, gradient=False)[0] == pytest.approx(total - parts["bond"])


def test_terms_own_their_data_and_report():
    """Each term holds its arrays; terms() gives new objects (own scale/enabled) over shared
    data; deviations agree with actual − ideal; without_atoms drops the masked atoms' rows."""
    model, R = restraints_for("4hg7")
    state = AtomState.from_model(model)
    t1, t2 = R.terms(), R.terms()
    for a, b, kind in zip(t1, t2, KINDS):
        assert a is not b and a.name == kind and R.term(kind).name == kind
        dev, sig, mask = a.deviations(state)
        assert len(dev) == len(sig) == len(mask) == len(a.actual(state))
    t1[0].enabled = False
    assert t2[0].enabled and R.bonds.enabled
    assert t1[0].idx is t2[0].idx is R.bonds.idx
    assert t1[5].neighbours is t2[5].neighbours is R.nonbonded
    dev, sig, _ = R.deviations("bond", state)
    assert np.array_equal(dev, R.bonds.actual(state) - R.bonds.ideal) and sig is R.bonds.sigma
    assert np.allclose(np.abs(dev), np.abs(np.linalg.norm(
        model.xyz[R.bonds.idx[:, 0]] - model.xyz[R.bonds.idx[:, 1]], axis=1) - R.bonds.ideal))
    mask = np.zeros(model.n_atoms, bool)
    mask[R.bonds.idx[0, 0]] = True
    R2 = R.without_atoms(mask)
    for attr in ("bonds", "angles", "torsions", "chirals"):
        kept = getattr(R2, attr)
        assert not mask[kept.idx].any()
        assert len(kept) == int((~mask[getattr(R, attr).idx].any(axis=1)).sum())
    assert not mask[R2.planes.atoms].any() and len(R2.planes) <= len(R.planes)
    assert R2.nonbonded is R.nonbonded and R2.kl_pairs is R.kl_pairs


def test_bond_graph_neighbour_keys():
    """Chain 0-1-2-3-4 plus a duplicate, reversed bond: pairs 1, 2 and 3 bonds apart."""
    from kickref.restraints.graph import neighbour_keys, pair_keys
    n = 6
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [2, 1]])
    k1, k2, k3 = neighbour_keys(edges, n, 3)
    key = lambda pairs: sorted(a * n + b for a, b in pairs)
    assert k1.tolist() == key([(0, 1), (1, 2), (2, 3), (3, 4)])
    assert k2.tolist() == key([(0, 2), (1, 3), (2, 4)])       # A² has no i<j self pairs
    assert k3.tolist() == key([(0, 1), (0, 3), (1, 2), (1, 4), (2, 3), (3, 4)])
    assert pair_keys(np.array([4, 1]), np.array([2, 5]), n).tolist() == [2 * n + 4, 1 * n + 5]


# --------------------------------------------------------------- vs gemmi
@pytest.mark.parametrize("case", list(CASES))
def test_bond_angle_rmsd_match_gemmi_topology(case):
    model, R = restraints_for(case)
    st = model.structure.clone()
    ml = gemmi.read_monomer_lib(str(MONLIB), st[0].get_all_residue_names(), ignore_missing=True)
    topo = gemmi.prepare_topology(st, ml, warnings=io.StringIO(), ignore_unknown_links=True)
    g_bond = math.sqrt(np.mean([(b.calculate() - b.restr.value) ** 2 for b in topo.bonds]))
    g_angle = math.sqrt(np.mean([(math.degrees(a.calculate()) - a.restr.value) ** 2
                                 for a in topo.angles]))
    s = R.statistics()
    assert abs(s["bond"]["rmsd"] - g_bond) < 1e-3
    assert abs(s["angle"]["rmsd"] - g_angle) < 1e-2
    expected = json.loads((case_path(case).parent / "case.json").read_text())
    topo_counts = expected["monomer_library"]["topology"]
    assert s["bond"]["n"] == topo_counts["bonds"]
    assert s["angle"]["n"] == topo_counts["angles"]
    assert s["chiral"]["n"] == topo_counts["chirs"]
    assert s["plane"]["n_planes"] == topo_counts["planes"]
    # torsions: the library's minus constant ones (esd 0)
    assert 0 < s["torsion"]["n"] <= topo_counts["torsions"]


# ------------------------------------------------------------------- links
def test_links_in_4iid_glycans_and_disulfides():
    model, R = restraints_for("4iid")
    c = R.link_counts
    assert c["disulf"] == 6
    assert c["pyr-ASN"] == 19                   # NAG–ASN N-glycosylation
    assert c["BETA1-4"] == 26
    assert c["ALPHA1-2"] + c["ALPHA1-3"] + c["ALPHA1-6"] == 38
    assert c["TRANS"] > 1500 and c["CIS"] + c["PCIS"] == 16 and c["PTRANS"] == 80
    # an SG–SG bond restraint near 2.03 Å exists for each disulfide
    b = R.bonds.idx
    ss = (model.atom_name[b[:, 0]] == "SG") & (model.atom_name[b[:, 1]] == "SG")
    assert ss.sum() == 6 and np.allclose(R.bonds.ideal[ss], 2.03, atol=0.05)


def test_links_found_by_distance_without_records():
    """With the LINK/SSBOND records removed the same 89 links are found by distance."""
    model = read_model(case_path("4iid"))
    st = model.structure.clone()
    st.connections.clear()
    m2 = Model.from_structure(st, path=model.path)
    R = build_restraints(m2, monlib_dir=MONLIB)
    auto = [l for l in R.links if l["origin"] == "distance"]
    assert len(auto) == 89
    assert sum(1 for l in auto if l["link_id"] == "disulf") == 6
    _, R0 = restraints_for("4iid")
    assert len(R.bonds) == len(R0.bonds) and len(R.angles) == len(R0.angles)


# --------------------------------------------------------------- non-bonded
def test_nonbonded_exclusions_altlocs_and_symmetry():
    model, R = restraints_for("4hg7")
    nb = R.nonbonded
    n = model.n_atoms
    keys = np.minimum(nb.pi, nb.pj) * n + np.maximum(nb.pi, nb.pj)
    asu = nb.weight == 1.0
    bonded = np.minimum(R.bonds.idx[:, 0], R.bonds.idx[:, 1]) * n + \
        np.maximum(R.bonds.idx[:, 0], R.bonds.idx[:, 1])
    ang = np.minimum(R.angles.idx[:, 0], R.angles.idx[:, 2]) * n + \
        np.maximum(R.angles.idx[:, 0], R.angles.idx[:, 2])
    assert not np.isin(keys[asu], bonded).any()
    assert not np.isin(keys[asu], ang).any()
    alt_i, alt_j = model.altloc[nb.pi], model.altloc[nb.pj]
    assert (model.altloc != "").sum() > 50
    assert not np.any((alt_i != "") & (alt_j != "") & (alt_i != alt_j))
    # symmetry contacts exist, come in pairs of weight 1/2, and distances are real ones
    sym = ~asu
    assert sym.sum() > 100 and np.all(nb.weight[sym] == 0.5)
    x = model.xyz
    ops = nb.symops
    img = np.einsum("kab,kb->ka", ops.cart_rot[nb.pop[sym]], x[nb.pj[sym]]) + nb.ptr[sym]
    d = np.linalg.norm(x[nb.pi[sym]] - img, axis=1)
    assert np.allclose(d, nb.actual[sym])
    # each image is a symmetry copy of atom j: frac(image) − (R_s frac(x_j) + t_s) ∈ Z³
    f_img = img @ ops.frac.T
    f_j = x[nb.pj[sym]] @ ops.frac.T
    s_op = nb.pop[sym]
    diff = f_img - (np.einsum("kab,kb->ka", ops.frac_rot[s_op], f_j) + ops.frac_tran[s_op])
    assert np.allclose(diff, np.round(diff), atol=1e-6)
    # the contact distance of each symmetry pair is the shortest crystal distance
    for k in range(0, int(sym.sum()), max(1, int(sym.sum()) // 10)):
        i, j = nb.pi[sym][k], nb.pj[sym][k]
        near = model.cell.find_nearest_image(gemmi.Position(*x[i]), gemmi.Position(*x[j]),
                                             gemmi.Asu.Different)
        assert near.dist() <= d[k] + 1e-6


def test_special_position_and_neighbour_list_rebuild():
    model, R = restraints_for("5wkd")
    sp = np.flatnonzero(R.site_symmetry_order > 1)
    assert len(sp) == 1 and model.is_water[sp[0]]
    nb = R.nonbonded
    assert not np.any((nb.pi == sp[0]) & (nb.pj == sp[0]))   # no contact with its own image
    state = AtomState.from_model(model)
    builds = nb.n_builds
    state.xyz = state.xyz + 0.2                      # rigid shift < margin/2: no rebuild
    R.contacts.value(state)
    assert nb.n_builds == builds
    state.xyz[3] += np.array([0.0, 0.0, 0.6])        # one atom moves > margin/2: rebuild
    R.contacts.value(state)
    assert nb.n_builds == builds + 1


# --------------------------------------------------------------- hydrogens
def test_riding_hydrogens_3zt9():
    model, R = restraints_for("3zt9")
    H = model.is_hydrogen
    assert H.sum() == 1513
    par = R.hydrogen_parents
    assert np.all(par[H] >= 0) and np.all(par[~H] == -1)
    assert not model.is_hydrogen[par[H]].any()
    d = np.linalg.norm(model.xyz[H] - model.xyz[par[H]], axis=1)
    assert d.max() < 1.3
    x = R.place_hydrogens(model.xyz)
    shift = np.linalg.norm(x[H] - model.xyz[H], axis=1)
    assert np.sqrt(np.mean(shift ** 2)) < 0.1
    assert np.array_equal(x[~H], model.xyz[~H])
    # H follow a rigid motion of the heavy atoms
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y = R.place_hydrogens(model.xyz @ rot.T + 3.0)
    assert np.allclose(y[H], x[H] @ rot.T + 3.0, atol=1e-9)


def test_hydrogens_remove_leaves_h_unrestrained():
    model, R = restraints_for("3zt9", hydrogens="remove")
    H = model.is_hydrogen
    for kind in ("bonds", "angles", "torsions", "chirals"):
        assert not H[getattr(R, kind).idx].any()
    assert not H[R.nonbonded.pi].any() and not H[R.nonbonded.pj].any()
    _, R_keep = restraints_for("3zt9")
    assert len(R.bonds) == len(R_keep.bonds) - H.sum()


# --------------------------------------------------------------- bad input
def test_unknown_residue_error_and_allow_unknown(monkeypatch):
    monkeypatch.delenv("CLIBD_MON", raising=False)
    model = read_model(case_path("4hg7"))
    with pytest.raises(InputError) as e:
        build_restraints(model)                  # built-in library has no NUT
    msg = str(e.value)
    assert "NUT" in msg and "A/201" in msg and "--ligand" in msg and "--monlib" in msg
    R = build_restraints(model, allow_unknown=True)
    assert R.unknown_residues == ["A/NUT 201"]
    assert any("--allow-unknown" in line and "NUT" in line for line in R.log)
    nut = np.flatnonzero(model.resname == "NUT")
    assert not np.isin(R.bonds.idx, nut).any()
    assert np.isin(R.nonbonded.pi, nut).any() or np.isin(R.nonbonded.pj, nut).any()
    # the ligand's dictionary with --ligand restores its restraints
    R2 = build_restraints(model, ligands=[MONLIB / "n" / "NUT.cif"])
    assert np.isin(R2.bonds.idx, nut).any() and R2.library.ligand_codes == {
        "NUT": str(MONLIB / "n" / "NUT.cif")}


def test_library_file_that_does_not_parse(tmp_path):
    model = read_model(case_path("5e5z"))
    lib = tmp_path / "monlib"
    (lib / "list").mkdir(parents=True)
    shutil.copy(MONLIB / "list" / "mon_lib_list.cif", lib / "list")
    shutil.copy(MONLIB / "ener_lib.cif", lib)
    for code in ("VAL", "HIS", "SER", "ASN", "HOH"):
        (lib / code[0].lower()).mkdir(exist_ok=True)
        shutil.copy(MONLIB / code[0].lower() / f"{code}.cif", lib / code[0].lower())
    (lib / "l").mkdir()
    (lib / "l" / "LEU.cif").write_text("data_comp_LEU\nloop_\n_chem_comp_atom.atom_id\n'unterminated\n")
    with pytest.raises(InputError) as e:
        build_restraints(model, monlib_dir=lib)
    assert "LEU.cif" in str(e.value)
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not CIF\n")
    with pytest.raises(InputError) as e:
        build_restraints(model, monlib_dir=MONLIB, ligands=[bad])
    assert "bad.cif" in str(e.value)
    with pytest.raises(InputError) as e:
        build_restraints(model, monlib_dir=tmp_path / "nowhere")
    assert "nowhere" in str(e.value)


def test_outliers_sorted_and_labelled():
    model, R = restraints_for("4hg7")
    out = R.outliers(n=20)
    assert len(out) == 20
    z = [abs(o["z"]) for o in out]
    assert z == sorted(z, reverse=True)
    worst = out[0]                 # NUT C18 has the opposite chirality to its dictionary
    assert worst["kind"] == "chiral" and "NUT 201/C18" in worst["atoms"][0]
    assert worst["ideal"] * worst["actual"] < 0 and abs(worst["z"]) > 20


def test_non_h_statistics_match_gemmi_on_riding_hydrogens():
    """3zt9 carries riding H: geometry is reported over all restraints and over those without H
    (REFMAC's 'refined atoms'); the non-H bond and angle RMSDs equal gemmi's topology without H."""
    model, R = restraints_for("3zt9")
    st = model.structure.clone()
    ml = gemmi.read_monomer_lib(str(MONLIB), st[0].get_all_residue_names(), ignore_missing=True)
    topo = gemmi.prepare_topology(st, ml, warnings=io.StringIO(), ignore_unknown_links=True)
    heavy = lambda r: not any(a.is_hydrogen() for a in r.atoms)
    g_bond = math.sqrt(np.mean([(b.calculate() - b.restr.value) ** 2 for b in topo.bonds if heavy(b)]))
    g_angle = math.sqrt(np.mean([(math.degrees(a.calculate()) - a.restr.value) ** 2
                                 for a in topo.angles if heavy(a)]))
    s = R.statistics()
    assert s["bond"]["n_non_h"] == sum(1 for b in topo.bonds if heavy(b)) < s["bond"]["n"]
    assert abs(s["bond"]["rmsd_non_h"] - g_bond) < 1e-4 and abs(s["bond"]["rmsd"] - g_bond) > 0.003
    assert abs(s["angle"]["rmsd_non_h"] - g_angle) < 1e-3
    assert R.rmsd_non_h("bond", model) == pytest.approx(s["bond"]["rmsd_non_h"])
