"""Model sanity checks before refinement: errors for what cannot be repaired, repairs with warnings."""
import gemmi
import numpy as np
import pytest

from conftest import case_paths
from kickref.core.errors import InputError
from kickref.core.model import Model
from kickref.core.model_checks import check_model
from kickref.io.models import read_model


def _model(case="5e5z"):
    path, _, _ = case_paths(case)
    return read_model(path)


def test_deposited_b_zero_is_repaired():
    """5e5z's deposited N of LEU 1 has B = 0 (and a zero ANISOU record)."""
    m = _model("5e5z")
    w = check_model(m)
    assert len(w) == 1 and "A/LEU 1/N" in w[0]
    assert 2.0 < m.b_iso[0] < 10.0


def test_clean_models_pass_unchanged():
    for case in ("4hg7", "1cbs", "3zt9"):
        m = _model(case)
        xyz, b, occ = m.xyz.copy(), m.b_iso.copy(), m.occ.copy()
        assert check_model(m) == []
        assert np.array_equal(m.xyz, xyz) and np.array_equal(m.b_iso, b) and np.array_equal(m.occ, occ)


def test_all_atoms_at_one_point():
    m = _model()
    m.xyz[:] = m.xyz[0]
    with pytest.raises(InputError, match="closer than 0.1 Å"):
        check_model(m)


def test_duplicated_residue_and_atom():
    path, _, _ = case_paths("5e5z")
    st = gemmi.read_structure(str(path))
    st[0][0].add_residue(st[0][0][2])                  # residue 3 written twice
    with pytest.raises(InputError, match="appears twice in its chain"):
        check_model(Model.from_structure(st, str(path)))
    st = gemmi.read_structure(str(path))
    res = st[0][0][1]
    at = res[0].clone()
    at.pos = gemmi.Position(at.pos.x + 3, at.pos.y, at.pos.z)
    res.add_atom(at)
    with pytest.raises(InputError, match=r"appears 2 times"):
        check_model(Model.from_structure(st, str(path)))


def test_hydrogens_only_and_zero_occupancy():
    m = _model()
    m.is_hydrogen[:] = True
    with pytest.raises(InputError, match="no non-hydrogen atoms"):
        check_model(m)
    m = _model()
    m.occ[:] = 0
    with pytest.raises(InputError, match="occupancy 0"):
        check_model(m)


def test_repairs_occupancy_and_absurd_b():
    m = _model()
    assert m.is_aniso[5]
    m.u_aniso[5, :3] = 1000.0 / (8 * np.pi ** 2)        # B_eq = 1000 Å²
    m.u_aniso[7, :3] = 0.0                              # B_eq = 0
    m.occ[9] = 1.5
    w = check_model(m)
    assert len(w) == 2 and "occupancy" in w[0] and "reset" in w[1] and "isotropic" in w[1]
    assert m.occ[9] == 1.0
    assert not m.is_aniso[5] and not m.is_aniso[7]
    assert 2.0 < m.b_iso[5] < 30.0 and 2.0 < m.b_iso[7] < 30.0
    # the other atoms keep their ADPs
    ref = _model()
    keep = np.setdiff1d(np.arange(m.n_atoms), [5, 7])
    assert np.array_equal(m.u_aniso[keep], ref.u_aniso[keep])
