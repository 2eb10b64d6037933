"""Multi-crystal averaging (issue 12, deliverable 5): 1cbs chain A in its own P 21 21 21 cell
and, rotated and translated, in a P 1 21 1 cell; independent noise on each form's Fc map."""
import gemmi
import numpy as np
from scipy.spatial.transform import Rotation

from conftest import case_paths, need_shared
from kickref import api
from kickref.core.model import Model
from kickref.core.state import AtomState
from kickref.io.models import read_model
from kickref.refinement.ncs_averaging import average_maps, ncs_mask
from kickref.xtal.density_map import DensityMap, density_map_from_coefficients
from kickref.xtal.fourier import calculator_for
from kickref.xtal.ncs import rotation_angle

R_TRUE = Rotation.from_euler("zyx", (40.0, -25.0, 70.0), degrees=True).as_matrix()


def fc_map(model, d_min=3.0):
    calc = calculator_for(model.cell, model.spacegroup, d_min, dtype=np.float64)
    fc = calc.calculate(AtomState.from_model(model), model.element)
    return density_map_from_coefficients(model.cell, model.spacegroup, calc.hkl, fc, d_min)


def placed(st, R, t, cell=None, sg=None):
    """A copy of ``st`` with every atom moved to R·x + t (and a new cell / space group)."""
    st = st.clone()
    tr = gemmi.Transform(gemmi.Mat33(np.asarray(R).tolist()), gemmi.Vec3(*np.asarray(t, float)))
    for ch in st[0]:
        for res in ch:
            for at in res:
                at.pos = gemmi.Position(tr.apply(at.pos))
    if cell:
        st.cell = gemmi.UnitCell(*cell)
        st.spacegroup_hm = sg
        st.setup_cell_images()
    return Model.from_structure(st)


def forms():
    st = read_model(case_paths("1cbs")[0]).structure
    st.remove_ligands_and_waters()
    st.setup_entities()
    m1 = Model.from_structure(st)
    c1 = m1.xyz.mean(0)
    cell2 = gemmi.UnitCell(48, 62, 55, 90, 104, 90)
    centre2 = np.array(cell2.orthogonalize(gemmi.Fractional(0.3, 0.2, 0.6)).tolist())
    t_true = centre2 - R_TRUE @ c1                               # form 2: x₂ = R x₁ + t
    m2 = placed(st, R_TRUE, t_true, (48, 62, 55, 90, 104, 90), "P 1 21 1")
    # the second model as given: misplaced by 2° about a random axis through its centroid and 0.5 Å
    rng = np.random.default_rng(7)
    axis, d = rng.normal(size=3), rng.normal(size=3)
    Rp = Rotation.from_rotvec(np.radians(2.0) * axis / np.linalg.norm(axis)).as_matrix()
    m2_given = placed(m2.structure, Rp, centre2 - Rp @ centre2 + 0.5 * d / np.linalg.norm(d))
    return m1, m2, m2_given, t_true


def test_two_crystal_forms_averaging_and_operator():
    need_shared()
    m1, m2, m2_given, t_true = forms()
    truth = [fc_map(m1), fc_map(m2)]
    rng = np.random.default_rng(11)
    noisy, inside = [], []
    for m, tr in zip((m1, m2), truth):
        a = np.arange(len(m.xyz))[None, :]
        mk = ncs_mask(tr.shape, tr.cell, tr.spacegroup, m.xyz, [_one(a)], 2.5)
        inside.append(mk.nearest >= 0)
        sig = tr.grid[inside[-1]].std()
        noisy.append(DensityMap(tr.grid + rng.normal(0, sig, tr.shape), tr.cell, tr.spacegroup, 3.0))
    # form 2's map on another absolute scale: the averaging matches scales inside the masks
    noisy[1] = DensityMap(3.0 * noisy[1].grid + 0.5, noisy[1].cell, noisy[1].spacegroup, 3.0)
    res = api.multi_crystal_average([m1, m2_given], noisy, mask_radius=2.5)
    # the refined operator: the true placement, from the 2° / 0.5 Å misplaced model's superposition
    op = res.groups[1].copies[0]
    assert res.operator["rotation_change_deg"] > 1.5
    assert rotation_angle(op.rotation @ R_TRUE.T) < 0.2
    c1 = m1.xyz.mean(0)
    assert np.linalg.norm(op.rotation @ c1 + op.translation - (R_TRUE @ c1 + t_true)) < 0.1
    assert np.abs(op.transform(m1.xyz) - m2.xyz).max() < 0.3
    # averaged maps closer to the truth within the molecule's mask, in both forms
    cc = lambda g, f: np.corrcoef(g[inside[f]], truth[f].grid[inside[f]])[0, 1]
    for f in (0, 1):          # measured: 0.705 -> 0.837 and 0.706 -> 0.826
        before, after = cc(noisy[f].grid, f), cc(res.maps[f].grid, f)
        assert after > before + 0.05, (f, before, after)
    # outside the mask (the molecule and its symmetry images): unchanged ("keep"), point by point
    for f in (0, 1):
        mk = ncs_mask(noisy[f].shape, noisy[f].cell, noisy[f].spacegroup,
                      (m1, m2_given)[f].xyz, [res.groups[f]], 2.5).nearest >= 0
        assert (~mk).any()
        assert np.array_equal(res.maps[f].grid[~mk], noisy[f].grid[~mk])
        p = np.unravel_index(np.flatnonzero(~mk)[0], mk.shape)
        assert res.maps[f].grid[p] == noisy[f].grid[p]
    assert res.maps[1].grid[inside[1]].std() > 2.0 * res.maps[0].grid[inside[0]].std()   # own scale kept
    # each form's coefficients (to 3 Å) make a map still closer to the truth than the noisy one
    hkl, fc = res.coefficients[1]
    back = density_map_from_coefficients(m2.cell, m2.spacegroup, hkl, fc, shape=res.maps[1].shape)
    assert cc(back.grid, 1) > cc(noisy[1].grid, 1) + 0.05
    assert res.stats[0]["groups"][0]["ncs_cc"][0] == 1.0 and 0.3 < res.stats[0]["groups"][0]["ncs_cc"][1] < 0.8
    # weights (0 for form 2): form 1's map unchanged
    w = average_maps(noisy, [m1.xyz, m2_given.xyz], [[res.groups[0]], [res.groups[1]]], 2.5, weights=[1.0, 0.0])
    assert np.array_equal(w[0].map.grid, noisy[0].grid)


def _one(atoms):
    from kickref.xtal.ncs import NcsCopy, NcsGroup
    return NcsGroup([NcsCopy("A", np.eye(3), np.zeros(3))], atoms)


def test_cli_two_forms_from_data_and_a_map(tmp_path, capsys):
    """Form 1: 1cbs with its own data (σA 2mFo−DFc); form 2: a noisy Fc map of the P 1 21 1 form."""
    need_shared()
    from kickref.cli import main
    from kickref.io.maps import load_density_map, write_ccp4_map
    from kickref.io.models import write_model
    model_path, data_path = case_paths("1cbs")[:2]
    _, m2, m2_given, _ = forms()
    tr = fc_map(m2)
    noisy = DensityMap(tr.grid + np.random.default_rng(5).normal(0, tr.grid.std(), tr.shape), tr.cell, tr.spacegroup, 3.0)
    write_model(m2_given, tmp_path / "form2.pdb")
    write_ccp4_map(noisy, tmp_path / "form2.ccp4")
    pre = str(tmp_path / "avg")
    assert main(["ncs", str(model_path), str(data_path), "--other-form", str(tmp_path / "form2.pdb"),
                 str(tmp_path / "form2.ccp4"), "--average", pre, "--mask-radius", "2.5",
                 "--json", str(tmp_path / "x.json")]) == 0
    out = capsys.readouterr().out
    assert "operator form 1 -> form 2" in out and "form 2: mask" in out
    cc = [float(line.split("density ")[1].split()[0]) for line in out.splitlines() if "other form's density" in line]
    assert len(cc) == 2 and abs(cc[0] - cc[1]) < 0.05 and 0.3 < cc[0] < 0.99
    assert all((tmp_path / n).exists() for n in ("avg_1.ccp4", "avg_2.ccp4", "avg_1.mtz", "x.json"))
    assert not (tmp_path / "avg_2.mtz").exists()
    assert load_density_map(tmp_path / "avg_2.ccp4").shape == tr.shape
    assert main(["ncs", str(model_path), "--other-form", str(tmp_path / "form2.pdb"),
                 str(tmp_path / "form2.ccp4"), "--average", pre + "b"]) == 2      # no map for form 1


def test_two_forms_input_errors():
    need_shared()
    import pytest
    from kickref.core.errors import KickrefError
    m1, m2, _, _ = forms()
    maps = [DensityMap(np.zeros((8, 8, 8)), m.cell, m.spacegroup) for m in (m1, m2)]
    with pytest.raises(KickrefError, match="fom"):
        api.multi_crystal_average([m1, m2], maps, weights="fom")
    with pytest.raises(KickrefError, match="weights"):
        api.multi_crystal_average([m1, m2], maps, weights=[1.0, -1.0])
    with pytest.raises(KickrefError, match="chain"):
        api.multi_crystal_average([m1, m2], maps, chains=("A", "Q"))
    with pytest.raises(KickrefError, match="two crystal forms"):
        api.multi_crystal_average([m1], maps[:1])
