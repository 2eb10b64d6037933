"""FFT structure factors agree with direct summation; gradients agree with finite differences."""
import gemmi
import numpy as np
import pytest

from conftest import CASES, case_paths
from kickref.io.models import read_model
from kickref.core.state import AtomState
from kickref.xtal.structure_factors import StructureFactorCalculator


def rel_rms(a, b):
    return float(np.sqrt(np.sum(np.abs(a - b) ** 2) / np.sum(np.abs(b) ** 2)))


def direct_sf(structure, hkl):
    calc = gemmi.StructureFactorCalculatorX(structure.cell)
    return np.array([calc.calculate_sf_from_model(structure[0], [int(x) for x in h]) for h in hkl])


@pytest.mark.parametrize("case", CASES)
def test_fc_matches_direct_summation(case):
    model_path, _, info = case_paths(case)
    m = read_model(model_path)
    d_min = info["data"]["d_min"]
    hkl = np.array(gemmi.make_miller_array(m.cell, m.spacegroup, d_min), dtype=np.int32)
    calc = StructureFactorCalculator(m.cell, m.spacegroup, hkl, d_min)
    fc = calc.calculate(AtomState.from_model(m), m.element)
    rng = np.random.default_rng(1)
    # direct summation is slow in Python terms: compare on a random subset (plus the lowest/highest)
    n_sub = max(300, int(4e6 / max(m.n_atoms, 1) / 10))
    sub = rng.choice(len(hkl), size=min(len(hkl), n_sub), replace=False)
    ref = direct_sf(m.structure, hkl[sub])
    err = rel_rms(fc[sub], ref)
    print(f"{case}: {m.n_atoms} atoms, grid {calc.shape}, relative RMS error {err:.2e}")
    assert err <= 1e-3


SPACE_GROUPS = [s for s in gemmi.spacegroup_table()]


def cell_for(sg):
    system = sg.crystal_system_str()
    if system == "triclinic":
        return gemmi.UnitCell(11, 12, 13, 80, 85, 95)
    if system == "monoclinic":   # unique axis b, c or a: try each
        for c in ((90, 100, 90), (90, 90, 100), (100, 90, 90)):
            cell = gemmi.UnitCell(11, 12, 13, *c)
            if cell.is_compatible_with_spacegroup(sg):
                return cell
    if system == "orthorhombic":
        return gemmi.UnitCell(11, 12, 13, 90, 90, 90)
    if system == "tetragonal":
        return gemmi.UnitCell(11, 11, 13, 90, 90, 90)
    if system in ("trigonal", "hexagonal"):
        if sg.ext == "R":
            return gemmi.UnitCell(12, 12, 12, 80, 80, 80)
        return gemmi.UnitCell(11, 11, 13, 90, 90, 120)
    return gemmi.UnitCell(12, 12, 12, 90, 90, 90)


def test_fc_every_space_group_setting():
    """All 564 settings in gemmi's table: a few random atoms, FFT vs direct summation.

    A symmetry mistake gives errors of order 1; each setting must be within 3e-3 (settings with
    only a handful of reflections are noisier) and all together within 1e-3.
    """
    rng = np.random.default_rng(7)
    worst = 0.0
    n_tested = 0
    sum_err2 = sum_ref2 = 0.0
    for sg in SPACE_GROUPS:
        cell = cell_for(sg)
        if not cell.is_compatible_with_spacegroup(sg):
            continue
        st = gemmi.Structure()
        st.cell = cell
        st.spacegroup_hm = sg.xhm()
        model = gemmi.Model("1")
        ch = gemmi.Chain("A")
        res = gemmi.Residue()
        res.name = "UNL"
        res.seqid = gemmi.SeqId(1, " ")
        for i, el in enumerate(["C", "N", "O", "S"]):
            a = gemmi.Atom()
            a.name = f"{el}{i}"
            a.element = gemmi.Element(el)
            a.pos = cell.orthogonalize(gemmi.Fractional(*rng.uniform(0, 1, 3)))
            a.b_iso = float(rng.uniform(8, 30))
            a.occ = 1.0
            if i == 3:  # one anisotropic atom
                a.aniso = gemmi.SMat33f(0.2, 0.25, 0.15, 0.02, -0.01, 0.03)
            res.add_atom(a)
        ch.add_residue(res)
        model.add_chain(ch)
        st.add_model(model)
        st.setup_cell_images()       # gemmi's direct summation uses the cell's symmetry images
        from kickref.core.model import Model
        m = Model.from_structure(st)
        hkl = np.array(gemmi.make_miller_array(cell, sg, 1.5), dtype=np.int32)
        calc = StructureFactorCalculator(cell, sg, hkl, 1.5)
        fc = calc.calculate(AtomState.from_model(m), m.element)
        ref = direct_sf(st, hkl)
        nz = np.abs(ref) > 1e-3
        err = rel_rms(fc[nz], ref[nz])
        worst = max(worst, err)
        n_tested += 1
        sum_err2 += float(np.sum(np.abs(fc[nz] - ref[nz]) ** 2))
        sum_ref2 += float(np.sum(np.abs(ref[nz]) ** 2))
        assert err <= 3e-3, f"{sg.xhm()}: relative RMS error {err:.2e}"
    overall = np.sqrt(sum_err2 / sum_ref2)
    print(f"{n_tested} space-group settings, worst relative RMS error {worst:.2e}, overall {overall:.2e}")
    assert n_tested > 500
    assert overall <= 1e-3


@pytest.fixture(scope="module")
def small_problem():
    model_path, _, info = case_paths("5e5z")
    m = read_model(model_path)
    m.is_aniso[:5] = False      # mix isotropic and anisotropic atoms
    hkl = np.array(gemmi.make_miller_array(m.cell, m.spacegroup, 1.7), dtype=np.int32)
    # a tiny density cut-off: grid points entering the atom's sphere would otherwise make the
    # finite differences jump; float64 grids for finite differences at 1e-4 relative
    calc = StructureFactorCalculator(m.cell, m.spacegroup, hkl, 1.7, cutoff=1e-9, dtype=np.float64)
    state = AtomState.from_model(m)
    rng = np.random.default_rng(0)
    f_ref = calc.calculate(state, m.element) * (1 + 0.3 * rng.standard_normal(len(hkl)))
    blur = calc.blur_for(state)
    calc.blur_for = lambda s: blur       # keep the blur fixed during finite differences
    return m, calc, state, f_ref


def test_gradients_match_finite_differences(small_problem):
    m, calc, state, f_ref = small_problem

    def target(s):
        f = calc.calculate(s, m.element)
        return float(np.sum(np.abs(f - f_ref) ** 2)), 2.0 * (f - f_ref)

    _, dT = target(state)
    g = calc.gradient(state, m.element, dT)
    checked = 0
    for i in [0, 3, 10, 25]:
        for what, arr, h in [("xyz", "xyz", 1e-4), ("occ", "occ", 1e-4),
                             ("b", "b_iso", 1e-3), ("u", "u_aniso", 1e-5)]:
            if what == "b" and state.is_aniso[i] or what == "u" and not state.is_aniso[i]:
                continue
            ncomp = {"xyz": 3, "occ": 1, "b": 1, "u": 6}[what]
            for k in range(ncomp):
                s1, s2 = state.copy(), state.copy()
                idx = (i, k) if ncomp > 1 else i
                getattr(s1, arr)[idx] += h
                getattr(s2, arr)[idx] -= h
                fd = (target(s1)[0] - target(s2)[0]) / (2 * h)
                an = getattr(g, arr)[idx]
                assert abs(an - fd) <= 1e-4 * max(abs(fd), 1e-3 * np.abs(getattr(g, arr)).max()), \
                    f"{what} atom {i} component {k}: analytic {an} vs finite difference {fd}"
                checked += 1
    assert checked >= 30
