"""TLS: the TLS → U conversion against gemmi, gradients of the TLS and residual-B parameters by
finite differences (a synthetic energy with riding H, and the X-ray target on 1cbs), and a short
refinement whose PDB and mmCIF outputs gemmi reads back with the groups intact."""
import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, case_paths
import kickref
from kickref.core.state import AtomGradient, AtomState
from kickref.refinement.parameters import Parameters
from kickref.refinement.protocol import RefineOptions, Refinement
from kickref.refinement.tls import TLSModel, TLSParameters
from kickref.restraints import build_restraints
from kickref.xtal.tls import DEG, tls_parameters, tls_tensors, u_from_tls


def _random_tls(rng):
    return rng.normal(size=20) * np.r_[[0.1] * 6, [3e-4] * 6, [3e-3] * 8]


def test_u_from_tls_matches_gemmi():
    rng = np.random.default_rng(0)
    p = _random_tls(rng)
    T, L, S = tls_tensors(p)
    assert np.allclose(tls_parameters(T, L, S), p)
    assert abs(np.trace(S)) < 1e-15
    xyz = rng.normal(size=(7, 3)) * 12 + 5
    origin = np.array([4.0, 6.0, 2.5])
    g = gemmi.TlsGroup()
    g.origin = gemmi.Position(*origin)
    sym = lambda M: gemmi.SMat33d(M[0, 0], M[1, 1], M[2, 2], M[0, 1], M[0, 2], M[1, 2])
    g.T, g.L, g.S = sym(T), sym(L / DEG ** 2), gemmi.Mat33((S / DEG).tolist())
    ref = np.array([gemmi.calculate_u_from_tls(g, gemmi.Position(*x)).elements_pdb() for x in xyz])
    assert np.allclose(u_from_tls(p, xyz, origin), ref, atol=1e-12)
    # pure translation, and an atom at the origin sees T only
    assert np.allclose(u_from_tls(np.r_[p[:6], np.zeros(14)], xyz, origin), p[:6])
    assert np.allclose(u_from_tls(p, origin[None], origin), p[:6])


def _toy(rng, n_heavy=40, n_h=10):
    n = n_heavy + n_h
    xyz = rng.normal(size=(n, 3)) * 6
    st = AtomState(xyz, rng.uniform(10, 30, n), np.zeros((n, 6)), np.zeros(n, bool), np.ones(n))
    hp = np.full(n, -1)
    hp[n_heavy:] = rng.integers(0, n_heavy, n_h)
    element = np.array(["C"] * n_heavy + ["H"] * n_h, dtype=object)
    return st, hp, element


@pytest.mark.parametrize("part", ["tls", "residual"])
def test_tls_gradients_match_finite_differences(part):
    """Synthetic E = Σ c·U + Σ d·U² over the TLS atoms + Σ e·B over riding H (B_H = 1.2 B_eq)."""
    rng = np.random.default_rng(3)
    st, hp, element = _toy(rng)
    groups = [("1", np.arange(0, 25)), ("2", np.arange(25, 40))]
    tls = TLSModel.start(st, element, groups)
    adp = Parameters("adp", st, np.ones(st.n_atoms, bool) & (hp < 0), hp)
    adp.update_hydrogen_b(st)
    p = TLSParameters(tls, part, adp)
    c, d, e = rng.normal(size=(st.n_atoms, 6)), rng.uniform(1, 3, (st.n_atoms, 6)), rng.normal(size=st.n_atoms)
    h = hp >= 0

    def energy(s):
        return float((c * s.u_aniso).sum() + (d * s.u_aniso ** 2).sum() + (e[h] * s.b_iso[h]).sum())

    x = p.get(st) + (rng.normal(size=p.n) * (1e-3 if part == "tls" else 1.0))
    p.set(x, st)
    g = AtomGradient(st.n_atoms)
    g.u_aniso[:] = c + 2 * d * st.u_aniso
    g.b_iso[h] = e[h]
    an = p.gradient(g, st)
    scale = np.abs(x) + (1e-3 if part == "tls" else 1.0)
    for j in rng.choice(p.n, 12, replace=False):
        step = 1e-5 * scale[j]
        xp, xm = x.copy(), x.copy()
        xp[j] += step
        xm[j] -= step
        fd = (energy(p.set(xp, st.copy())) - energy(p.set(xm, st.copy()))) / (2 * step)
        assert an[j] == pytest.approx(fd, rel=1e-5, abs=1e-6 * np.abs(an).max())


def test_start_keeps_b_eq_and_is_positive_definite():
    rng = np.random.default_rng(4)
    st, hp, element = _toy(rng, n_h=0)
    b0 = st.b_eq()
    tls = TLSModel.start(st, element, [("A", np.arange(40))])
    assert np.all(st.is_aniso[:40])
    assert np.all(np.linalg.eigvalsh(np.array([[[u[0], u[3], u[4]], [u[3], u[1], u[5]], [u[4], u[5], u[2]]]
                                                for u in st.u_aniso[:40]])) > 0)
    keep = tls.b_res > 0
    assert np.allclose(st.b_eq()[:40][keep], b0[:40][keep])
    assert np.allclose(tls.origins[0], st.xyz[:40].mean(axis=0))


def test_tls_gradient_through_the_xray_target_on_1cbs():
    model, data, _ = case_paths("1cbs")
    m, d = kickref.load_inputs(model, data)
    r = Refinement(m, d, build_restraints(m, monlib_dir=MONOMERS), RefineOptions(tls="chain", adp="iso"))
    # TLS atoms (one residual B each) are restrained as isotropic atoms: no rigid bond among them
    rb = r.restraints.rigid_bonds
    assert r.state.is_aniso[rb.idx].all(axis=1).all() and not rb._active(r.state).any()
    r.rephase()
    r.weight = 1.0
    p = r.p_tls
    x = p.get(r.state)
    e = r.e_adp
    r.xray.want = ("adp",)
    _, g, _ = e.compute(p.set(x, r.state.copy()), gradient=True)
    an = p.gradient(g, r.state)
    for j, step in [(0, 1e-3), (7, 2e-6), (12, 2e-5), (19, 2e-5)]:       # T11, L22, S11, S32
        xp, xm = x.copy(), x.copy()
        xp[j] += step
        xm[j] -= step
        fd = (e.compute(p.set(xp, r.state.copy()), gradient=False)[0]
              - e.compute(p.set(xm, r.state.copy()), gradient=False)[0]) / (2 * step)
        assert an[j] == pytest.approx(fd, rel=2e-3), j


def test_tls_refinement_output_read_back_by_gemmi(tmp_path):
    model, data, _ = case_paths("1cbs")
    res = kickref.refine(model, data, monlib=MONOMERS, cycles=1, xyz_steps=3, adp_steps=3,
                         tls_steps=5, tls="chain", hydrogens="keep")
    m = res.model
    groups = m.meta["tls"]
    assert len(groups) == 1 and groups[0]["id"] == "A"
    for ext in ("pdb", "cif"):
        path = tmp_path / f"out.{ext}"
        kickref.write_model(m, path, remarks={"r_work": res.r_work, "r_free": res.r_free})
        st = gemmi.read_structure(str(path))
        tg = st.meta.refinement[0].tls_groups
        assert len(tg) == 1 and tg[0].id == "A"
        assert tg[0].selections[0].chain == "A"
        assert tg[0].T.u11 == pytest.approx(groups[0]["T"][0][0], abs=1e-4)
        assert tg[0].L.u22 == pytest.approx(groups[0]["L"][1][1], abs=1e-4)
        assert tg[0].S.tolist()[2][1] == pytest.approx(groups[0]["S"][2][1], abs=1e-4)
        assert tg[0].origin.dist(gemmi.Position(*groups[0]["origin"])) < 1e-3
        # total U of a group atom = gemmi's U from the TLS + an isotropic residual
        at = st[0]["A"][5][0]
        u_tls = np.array(gemmi.calculate_u_from_tls(tg[0], at.pos).elements_pdb())
        diff = np.array(at.aniso.elements_pdb()) - u_tls
        assert np.allclose(diff[3:], 0, atol=1e-4) and np.ptp(diff[:3]) < 1e-4 and diff[0] >= -1e-4
    assert res.r_free is not None and np.isfinite(res.r_free)


def test_tls_group_specs():
    from kickref.core.errors import InputError
    from kickref.refinement.tls import tls_group_atoms
    model, _, _ = case_paths("1cbs")
    m = kickref.read_model(model)
    logged = []
    (gid, atoms), = tls_group_atoms(m, "chain")
    assert gid == "A" and not m.is_water[atoms].any() and not m.is_hydrogen[atoms].any()
    assert [g for g, _ in tls_group_atoms(m, "auto")] == ["A"]
    two = tls_group_atoms(m, [("N", "//A/1-60"), "//A/61-137", "//A/200"], logged.append)
    assert [g for g, _ in two] == ["N", "2"] and "no TLS" in logged[0]          # the ligand alone: too few
    with pytest.raises(InputError, match="overlaps"):
        tls_group_atoms(m, ["//A/1-60", "//A/50-70"])
