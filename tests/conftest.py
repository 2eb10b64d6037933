"""Shared test helpers: where ../shared is, loading its cases, a --runslow switch."""
import json
from pathlib import Path

import gemmi
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
DATA = SHARED / "data"
MONOMERS = SHARED / "monomers"
CASES = ["5e5z", "5wkd", "6mw0", "4hg7", "1cbs", "3zt9", "4iid"]
PROTEINS = ["4hg7", "1cbs", "3zt9", "4iid"]
PEPTIDES = ["5e5z", "5wkd", "6mw0"]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def need_shared():
    if not DATA.is_dir():
        pytest.skip("shared test data (../shared/data) not present: these tests run in CI")


def case_paths(case):
    """(model path, reflection path, case.json dict) of a shared case; skips without ../shared."""
    need_shared()
    info = json.loads((DATA / case / "case.json").read_text())
    return DATA / case / info["model_file"], DATA / case / info["reflection_file"], info


def fd_fmodel(model, data, n_iso: int | None = 10):
    """(FModel, AtomState) set up for finite-difference checks of X-ray terms: float64 grids, a
    tiny cut-off and a frozen blur so that the value is smooth in every parameter; the first
    ``n_iso`` atoms made isotropic (all when None)."""
    import numpy as np
    from kickref.core.state import AtomState
    from kickref.xtal.fmodel import FModel
    from kickref.xtal.structure_factors import StructureFactorCalculator
    fm = FModel(model, data)
    fm.sf = StructureFactorCalculator(model.cell, data.spacegroup, data.hkl, data.d_min, cutoff=1e-9,
                                      dtype=np.float64)
    st = AtomState.from_model(model)
    st.is_aniso[:n_iso] = False
    fm.update_all(st)
    blur = fm.sf.blur_for(st)
    fm.sf.blur_for = lambda s: blur
    return fm, st


FD_STEPS = [("xyz", 0, 1e-4), ("xyz", 2, 1e-4), ("occ", None, 1e-4), ("b_iso", None, 1e-3),
            ("u_aniso", 1, 1e-5), ("u_aniso", 4, 1e-5)]


def check_term_gradient(term, st, atoms, steps=FD_STEPS, rtol: float = 2e-4) -> int:
    """Assert that ``term``'s analytic gradient matches central finite differences for the
    given atoms and (array, component, step) triples (B for isotropic, U for anisotropic
    atoms); returns the number of checks made."""
    import numpy as np
    _, g = term.compute(st)
    checks = 0
    for i in atoms:
        for arr, k, h in steps:
            if arr == "b_iso" and st.is_aniso[i] or arr == "u_aniso" and not st.is_aniso[i]:
                continue
            idx = (i, k) if k is not None else i
            s1, s2 = st.copy(), st.copy()
            getattr(s1, arr)[idx] += h
            getattr(s2, arr)[idx] -= h
            fd = (term.compute(s1, False)[0] - term.compute(s2, False)[0]) / (2 * h)
            an = getattr(g, arr)[idx]
            scale = max(abs(fd), 1e-3 * float(np.abs(getattr(g, arr)).max()))
            assert abs(an - fd) <= rtol * scale, f"{term.name} {arr}{idx}: {an} vs {fd}"
            checks += 1
    return checks


def two_copies(rot_deg=(30.0, -20.0, 50.0), shift=(12.0, -5.0, 30.0), mutate=(), delete=()):
    """1cbs chain A plus a copy B moved by a known (R, t): returns (Model, R, t). ``mutate``:
    residue positions of B renamed; ``delete``: residue positions of B removed."""
    from kickref.core.model import Model
    from kickref.io.models import read_model
    path, _, _ = case_paths("1cbs")
    st = read_model(path).structure
    st.remove_ligands_and_waters()
    st.setup_entities()
    R = Rotation.from_euler("xyz", rot_deg, degrees=True).as_matrix()
    t = np.array(shift)
    b = st[0][0].clone()
    b.name = "B"
    tr = gemmi.Transform(gemmi.Mat33(R.tolist()), gemmi.Vec3(*t))
    for res in b:
        for at in res:
            at.pos = gemmi.Position(tr.apply(at.pos))
    for k in mutate:
        b[k].name = "ALA" if b[k].name != "ALA" else "GLY"
    for k in sorted(delete, reverse=True):
        del b[k]
    st[0].add_chain(b)
    st.setup_entities()
    return Model.from_structure(st), R, t
