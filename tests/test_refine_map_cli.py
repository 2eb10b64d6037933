"""``kickref refine`` toward a map: ``--map FILE.ccp4``, ``--map-coeffs FILE.mtz:F,PHI`` and
``--dens-comb`` with data, on a shaken 5e5z (riding hydrogens added, the command's default)."""
import json

import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, case_paths
from kickref.cli import main


def heavy_positions(path) -> dict:
    """{(chain, resseq, atom name, altloc): xyz} of the non-hydrogen atoms of a model file."""
    st = gemmi.read_structure(str(path))
    out = {}
    for ch in st[0]:
        for r in ch:
            for a in r:
                if not a.is_hydrogen():
                    out[(ch.name, r.seqid.num, a.name, a.altloc)] = np.array(a.pos.tolist())
    return out


def rmsd(a: dict, b: dict, keys) -> float:
    return float(np.sqrt(np.mean([np.sum((a[k] - b[k]) ** 2) for k in keys])))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """(deposited model, data, shaken model, 2mFo-DFc CCP4 map, map-coefficient MTZ)."""
    model, data, _ = case_paths("5e5z")
    if not MONOMERS.is_dir():
        pytest.skip("shared monomer library (../shared/monomers) not present")
    d = tmp_path_factory.mktemp("refine_map")
    assert main(["maps", str(model), str(data), "-o", str(d / "maps.mtz"), "--ccp4", str(d / "m")]) == 0
    st = gemmi.read_structure(str(model))
    rng = np.random.default_rng(5)
    for ch in st[0]:
        for r in ch:
            for a in r:
                a.pos = a.pos + gemmi.Position(*rng.normal(0.0, 0.25, 3))
    shaken = d / "shaken.pdb"
    st.write_pdb(str(shaken))
    return model, data, shaken, d / "m_2fofc.ccp4", d / "maps.mtz"


def check_real_space(case, out, args):
    model, _, shaken, _, _ = case
    rc = main(["refine", str(shaken)] + args + ["-o", str(out), "--monlib", str(MONOMERS), "--steps", "40", "-q"])
    assert rc == 0
    for ext in ("pdb", "cif", "json", "log"):
        assert (out.parent / f"{out.name}.{ext}").exists(), ext
    info = json.loads((out.parent / f"{out.name}.json").read_text())
    h = info["history"]
    assert info["mode"] == "real-space" and h[-1]["step"] == 40
    assert h[-1]["target"] < h[0]["target"] - 10            # the density target improved
    ref, start, end = heavy_positions(model), heavy_positions(shaken), heavy_positions(f"{out}.pdb")
    keys = sorted(ref)
    assert set(keys) <= set(end)
    # shaken by 0.25 Å per axis (0.39 Å RMSD): the map pulls the atoms back (to 0.055 Å when written)
    assert rmsd(end, ref, keys) < 0.4 * rmsd(start, ref, keys)
    assert max(np.linalg.norm(end[k] - start[k]) for k in keys) < 1.5
    st = gemmi.read_structure(f"{out}.pdb")
    assert st[0].has_hydrogen()                              # --hydrogens add (default): riding H
    return info


def test_refine_toward_ccp4_map(case, tmp_path):
    check_real_space(case, tmp_path / "rs", ["--map", str(case[3])])


def test_refine_toward_map_coefficients(case, tmp_path):
    info = check_real_space(case, tmp_path / "rc", ["--map-coeffs", f"{case[4]}:FWT,PHWT"])
    assert info["map"].endswith("maps.mtz:FWT,PHWT")


def test_bad_map_coefficients_argument_is_an_error(case, tmp_path, capsys):
    rc = main(["refine", str(case[2]), "--map-coeffs", str(case[4]), "-o", str(tmp_path / "x"), "-q"])
    assert rc == 2
    assert "FILE:F,PHI" in capsys.readouterr().err


def test_density_combination_with_data(case, tmp_path):
    """The README example (``--dens-comb --part``) with the refine default --hydrogens add: it
    ended in a traceback ('hydrogens must be keep or remove') before."""
    model, data, shaken, ccp4, _ = case
    out = tmp_path / "dc"
    rc = main(["refine", str(shaken), str(data), "--map", str(ccp4), "--dens-comb", "--part", "A/1-3",
               "-o", str(out), "--monlib", str(MONOMERS), "--steps", "30", "-q"])
    assert rc == 0
    for name in ("dc.pdb", "dc.cif", "dc.json", "dc.log", "dc_combined.ccp4"):
        assert (tmp_path / name).exists(), name
    info = json.loads((tmp_path / "dc.json").read_text())
    h = info["history"]
    assert info["mode"] == "density combination" and [x["step"] for x in h] == [0, 15, 30]
    assert h[-1]["r_combined"] < h[0]["r_combined"] - 0.02     # 0.42 → 0.36 when written
    assert h[-1]["cc_model_map"] > h[0]["cc_model_map"]
    ref, start, end = heavy_positions(model), heavy_positions(shaken), heavy_positions(out.with_suffix(".pdb"))
    part = [k for k in ref if k[1] <= 3]
    rest = [k for k in ref if k[1] > 3]
    assert rmsd(end, ref, part) < 0.8 * rmsd(start, ref, part)    # 0.39 → 0.24 Å when written
    assert max(np.linalg.norm(end[k] - start[k]) for k in part) < 1.5
    assert rmsd(end, start, rest) < 1e-3                      # atoms outside --part stay put
    grid = gemmi.read_ccp4_map(str(tmp_path / "dc_combined.ccp4")).grid
    assert np.isfinite(np.array(grid)).all()
