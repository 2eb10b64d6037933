"""Bad input through the command line: one line on stderr naming the file, exit code 2, nothing written."""
import gzip
import shutil

import gemmi
import numpy as np
import pytest

from conftest import case_paths
from kickref.cli import main


def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_clean_error(rc, err, must_name, *unwritten):
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(must_name) in lines[0], lines[0]
    for p in unwritten:
        assert not p.exists()


def write_mtz(path, cols, cell=(45.65, 47.56, 77.61, 90, 90, 90), sg="P 21 21 21"):
    hkl = np.array([[1, 2, 3], [2, 3, 4], [3, 1, 5], [4, 2, 2], [1, 1, 1], [2, 2, 2]])
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg)
    mtz.cell = gemmi.UnitCell(*cell)
    mtz.add_dataset("x")
    for label, typ, _ in cols:
        mtz.add_column(label, typ)
    mtz.set_data(np.column_stack([hkl] + [np.full(len(hkl), v, float) if np.isscalar(v) else v
                                          for _, _, v in cols]).astype(np.float32))
    mtz.write_to_file(str(path))
    return path


@pytest.fixture
def real_case(tmp_path):
    model, data, _ = case_paths("1cbs")
    return model, data, tmp_path / "out.json"


def test_missing_model(capsys, real_case, tmp_path):
    _, data, out = real_case
    rc, _, err = run_cli(capsys, "rfactor", tmp_path / "nope.pdb", data, "--json", out)
    assert_clean_error(rc, err, "nope.pdb", out)
    assert "not found" in err


def test_missing_data(capsys, real_case, tmp_path):
    model, _, out = real_case
    rc, _, err = run_cli(capsys, "rfactor", model, tmp_path / "nope.mtz", "--json", out)
    assert_clean_error(rc, err, "nope.mtz", out)


def test_corrupt_model(capsys, real_case, tmp_path):
    _, data, out = real_case
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1 2 3 4\n'unterminated\n")
    rc, _, err = run_cli(capsys, "rfactor", bad, data, "--json", out)
    assert_clean_error(rc, err, "bad.cif", out)


def test_truncated_mtz(capsys, real_case, tmp_path):
    model, data, out = real_case
    cut = tmp_path / "cut.mtz"
    cut.write_bytes(data.read_bytes()[:5000])
    rc, _, err = run_cli(capsys, "rfactor", model, cut, "--json", out)
    assert_clean_error(rc, err, "cut.mtz", out)


def test_truncated_sf_mmcif(capsys, tmp_path):
    model, data, _ = case_paths("4hg7")
    cut = tmp_path / "cut-sf.cif"
    text = data.read_text()
    cut.write_text(text[: text.index("\n", len(text) // 3) + 9])      # a few characters into a row
    out = tmp_path / "o.json"
    rc, _, err = run_cli(capsys, "rfactor", model, cut, "--json", out)
    # a cut in the middle of the loop leaves a ragged last row: an error, not silently fewer data
    assert_clean_error(rc, err, "cut-sf.cif", out)


def test_no_atoms(capsys, real_case, tmp_path):
    _, data, out = real_case
    empty = tmp_path / "empty.pdb"
    empty.write_text("CRYST1   45.650   47.560   77.610  90.00  90.00  90.00 P 21 21 21\nEND\n")
    rc, _, err = run_cli(capsys, "rfactor", empty, data, "--json", out)
    assert_clean_error(rc, err, "empty.pdb", out)
    assert "no atoms" in err


def test_unknown_element(capsys, real_case, tmp_path):
    _, data, out = real_case
    pdb = tmp_path / "xx.pdb"
    pdb.write_text("CRYST1   45.650   47.560   77.610  90.00  90.00  90.00 P 21 21 21\n"
                   "ATOM      1  CA  ALA A   1      10.000  10.000  10.000  1.00 20.00          QQ\nEND\n")
    rc, _, err = run_cli(capsys, "rfactor", pdb, data, "--json", out)
    assert_clean_error(rc, err, "xx.pdb", out)
    assert "unknown element" in err


def test_no_amplitude_column(capsys, real_case, tmp_path):
    model, _, out = real_case
    mtz = write_mtz(tmp_path / "nof.mtz", [("FREE", "I", 1), ("PHI", "P", 10.0)])
    rc, _, err = run_cli(capsys, "rfactor", model, mtz, "--json", out)
    assert_clean_error(rc, err, "nof.mtz", out)


def test_all_nan(capsys, real_case, tmp_path):
    model, _, out = real_case
    mtz = write_mtz(tmp_path / "nan.mtz", [("FP", "F", np.nan), ("SIGFP", "Q", np.nan), ("FREE", "I", 1)])
    rc, _, err = run_cli(capsys, "rfactor", model, mtz, "--json", out)
    assert_clean_error(rc, err, "nan.mtz", out)


def test_cell_mismatch_names_both_values(capsys, real_case, tmp_path):
    model, _, out = real_case
    mtz = write_mtz(tmp_path / "cell.mtz", [("FP", "F", 10.0), ("SIGFP", "Q", 1.0), ("FREE", "I", 1)],
                    cell=(50.0, 47.56, 77.61, 90, 90, 90))
    rc, _, err = run_cli(capsys, "rfactor", model, mtz, "--json", out)
    assert_clean_error(rc, err, "cell.mtz", out)
    assert "50.000" in err and "45.650" in err


def test_space_group_mismatch(capsys, real_case, tmp_path):
    model, _, out = real_case
    mtz = write_mtz(tmp_path / "sg.mtz", [("FP", "F", 10.0), ("SIGFP", "Q", 1.0), ("FREE", "I", 1)],
                    sg="P 2 2 2")
    rc, _, err = run_cli(capsys, "rfactor", model, mtz, "--json", out)
    assert_clean_error(rc, err, "sg.mtz", out)
    assert "P 2 2 2" in err and "P 21 21 21" in err


def test_output_never_overwrites_input(capsys, tmp_path):
    model, data, _ = case_paths("1cbs")
    mdl = tmp_path / "m.cif.gz"
    shutil.copy(model, mdl)
    before = mdl.read_bytes()
    rc, _, err = run_cli(capsys, "rfactor", mdl, data, "--json", mdl)
    assert rc == 2 and "overwrite an input" in err
    assert mdl.read_bytes() == before


def test_no_free_set_is_a_warning(capsys, tmp_path):
    model, data, _ = case_paths("6mw0")
    out = tmp_path / "r.json"
    rc, stdout, err = run_cli(capsys, "rfactor", model, data, "--json", out)
    assert rc == 0
    assert "free" in (stdout + err).lower() and "warning" in (stdout + err).lower()
    assert out.exists()


def test_gzipped_model_and_data(capsys, tmp_path):
    model, data, _ = case_paths("5e5z")
    gz_model = tmp_path / "5e5z.pdb.gz"
    gz_model.write_bytes(gzip.compress(model.read_bytes()))
    gz_data = tmp_path / "5e5z.mtz.gz"
    gz_data.write_bytes(gzip.compress(data.read_bytes()))
    rc, stdout, err = run_cli(capsys, "rfactor", gz_model, gz_data)
    assert rc == 0, err
    assert "R-work 0.1" in stdout
