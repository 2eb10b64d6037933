"""Refined models written as PDB and mmCIF carry kickref's refinement record only."""
import gemmi
import pytest

from conftest import case_paths
from kickref.io.models import read_model, write_model


def test_pdb_output_replaces_the_input_remark3(tmp_path):
    """4hg7.pdb comes with REFMAC's REMARK 3 (R 0.1735/0.2147): the output must carry ours only,
    after HEADER/TITLE/REMARK 2 and before the other REMARKs, and gemmi must read our R values."""
    model_path, _, _ = case_paths("4hg7")
    model = read_model(model_path.parent / "4hg7.pdb")
    out = tmp_path / "out.pdb"
    write_model(model, out, remarks={"r_work": 0.1811, "r_free": 0.2502, "d_min": 1.6, "d_max": 30.0,
                                     "rmsd_bond": 0.0081, "rmsd_angle": 1.5})
    lines = out.read_text().splitlines()
    assert lines[0].startswith("HEADER")
    r3 = [k for k, l in enumerate(lines) if l.startswith("REMARK   3")]
    assert sum("PROGRAM" in lines[k] for k in r3) == 1
    assert not any("REFMAC" in lines[k] for k in r3)
    assert r3 == list(range(r3[0], r3[0] + len(r3)))                       # one block
    assert max(k for k, l in enumerate(lines) if l.startswith("REMARK   2")) < r3[0]
    assert min(k for k, l in enumerate(lines) if l.startswith("REMARK 350")) > r3[-1]
    ref = gemmi.read_structure(str(out)).meta.refinement
    assert ref and ref[0].r_work == pytest.approx(0.1811) and ref[0].r_free == pytest.approx(0.2502)
    # the input model (and its gemmi structure) keeps its own remarks
    assert sum(l.startswith("REMARK   3") for l in model.structure.raw_remarks) == 119


def test_cif_unknown_values_are_cif_nulls(tmp_path):
    model_path, _, _ = case_paths("5e5z")
    model = read_model(model_path)
    out = tmp_path / "out.cif"
    write_model(model, out, remarks={"r_work": 0.2, "r_free": None, "d_min": 1.66, "d_max": None})
    block = gemmi.cif.read(str(out)).sole_block()
    assert block.find_value("_refine.ls_R_factor_R_free") == "?"
    assert block.find_value("_refine.ls_d_res_low") == "?"
    assert float(block.find_value("_refine.ls_R_factor_R_work")) == pytest.approx(0.2)


def test_long_chain_names_leave_out_the_pdb_file(tmp_path, capsys):
    """mmCIF allows chain names such as DM_A (MAIN's segments); the PDB format does not: the run
    writes the mmCIF file and the rest of the set, leaves the PDB file out and says so."""
    from kickref.cli import main
    from conftest import MONOMERS
    model_path, data_path, _ = case_paths("5e5z")
    st = gemmi.read_structure(str(model_path))
    st[0][0].name = "DM_A"
    cif = tmp_path / "long.cif"
    st.make_mmcif_document().write_file(str(cif))
    assert main(["maps", str(model_path), str(data_path), "-o", str(tmp_path / "m.mtz")]) == 0
    rc = main(["refine", str(cif), "--map-coeffs", f"{tmp_path / 'm.mtz'}:FWT,PHWT", "--steps", "4",
               "-o", str(tmp_path / "rs"), "--monlib", str(MONOMERS), "-q"])
    err = capsys.readouterr().err
    assert rc == 0
    assert (tmp_path / "rs.cif").is_file() and not (tmp_path / "rs.pdb").exists()
    assert "rs.pdb not written: chain names longer than the PDB format's 2 characters (DM_A)" in err
    assert gemmi.read_structure(str(tmp_path / "rs.cif"))[0][0].name == "DM_A"
