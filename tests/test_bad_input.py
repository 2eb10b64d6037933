"""Bad diffraction-data input gives InputError(path, one-line problem), never a traceback."""
import gzip
import os
from pathlib import Path

import gemmi
import numpy as np
import pytest

from kickref.core.errors import InputError
from kickref.io.reflections import read_map_coefficients, read_reflections

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DATA = SHARED / "data"


def shared_file(case, name):
    p = DATA / case / name
    if not p.exists():
        pytest.skip(f"shared test data ({p}) not present")
    return p


def small_mtz(path, columns, hkl=None, cell=(20, 21, 22, 90, 90, 90), sg="P 21 21 21"):
    if hkl is None:
        hkl = np.array([[1, 2, 3], [2, 2, 3], [3, 1, 4], [4, 2, 2], [1, 1, 1]])
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg)
    mtz.cell = gemmi.UnitCell(*cell)
    mtz.add_dataset("bad")
    for label, typ, _ in columns:
        mtz.add_column(label, typ)
    data = np.column_stack([hkl] + [np.asarray(v, float) for _, _, v in columns]).astype(np.float32)
    mtz.set_data(data)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.write_to_file(str(path))
    return path


def problem(excinfo):
    """The one-line message; also checks it is one line and names a file."""
    err = excinfo.value
    assert "\n" not in str(err)
    return err.problem


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as e:
        read_reflections(tmp_path / "nothere.mtz")
    assert problem(e) == "file not found"
    assert e.value.path.endswith("nothere.mtz")


def test_directory_and_empty_file(tmp_path):
    with pytest.raises(InputError, match="directory"):
        read_reflections(tmp_path)
    empty = tmp_path / "empty.mtz"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as e:
        read_reflections(empty)
    assert problem(e) == "file is empty"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    p = tmp_path / "secret.mtz"
    p.write_bytes(shared_file("5e5z", "5e5z.mtz").read_bytes())
    p.chmod(0)
    try:
        with pytest.raises(InputError, match="not readable"):
            read_reflections(p)
    finally:
        p.chmod(0o600)


@pytest.mark.parametrize("fraction", [0.5, 0.05])
def test_truncated_mtz(tmp_path, fraction):
    data = shared_file("5e5z", "5e5z.mtz").read_bytes()
    p = tmp_path / "trunc.mtz"
    p.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError) as e:
        read_reflections(p)
    assert "corrupt or truncated MTZ" in problem(e)


def test_truncated_sf_mmcif_mid_row(tmp_path):
    text = shared_file("4hg7", "4hg7-sf.cif").read_text()
    cut = text.index("\n", len(text) // 2) + 6          # a few characters into a loop row
    p = tmp_path / "trunc-sf.cif"
    p.write_text(text[:cut])
    with pytest.raises(InputError) as e:
        read_reflections(p)
    assert "corrupt or truncated" in problem(e)


def test_truncated_gzip(tmp_path):
    raw = gzip.compress(shared_file("5wkd", "r5wkdsf.ent").read_bytes())
    p = tmp_path / "trunc-sf.cif.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError):
        read_reflections(p)


def test_text_file_named_mtz_and_cif(tmp_path):
    p = tmp_path / "notes.mtz"
    p.write_text("these are not structure factors\n")
    with pytest.raises(InputError, match="not an MTZ file"):
        read_reflections(p)
    q = tmp_path / "notes.cif"
    q.write_text("these are not structure factors\n")
    with pytest.raises(InputError, match="SF-mmCIF"):
        read_reflections(q)


def test_model_cif_given_as_data():
    with pytest.raises(InputError, match="no _refln loop"):
        read_reflections(shared_file("4hg7", "4hg7.cif"))


def test_no_amplitude_or_intensity_column_names_columns(tmp_path):
    p = small_mtz(tmp_path / "fc.mtz", [("FREE", "I", [0, 1, 1, 1, 1]), ("FC", "F", [1, 2, 3, 4, 5]),
                                        ("PHIC", "P", [0, 90, 180, 0, 0])])
    with pytest.raises(InputError) as e:
        read_reflections(p)
    msg = problem(e)
    assert msg.startswith("no amplitude or intensity column")
    for label in ("FREE", "FC", "PHIC"):
        assert label in msg


def test_all_nan_amplitudes(tmp_path):
    nan = np.full(5, np.nan)
    p = small_mtz(tmp_path / "nan.mtz", [("FP", "F", nan), ("SIGFP", "Q", nan), ("FREE", "I", [0, 1, 1, 1, 1])])
    with pytest.raises(InputError, match="FP has no numeric values"):
        read_reflections(p)


def test_labin_names_missing_column():
    path = shared_file("5e5z", "5e5z.mtz")
    with pytest.raises(InputError) as e:
        read_reflections(path, labin="FOBS,SIGFOBS,FREE")
    msg = problem(e)
    assert "FOBS" in msg and "FP(F)" in msg and "SIGI(Q)" in msg
    with pytest.raises(InputError, match="FREE_X"):
        read_reflections(path, labin="FP,SIGFP,FREE_X")
    with pytest.raises(InputError, match="type P"):
        read_reflections(shared_file("1cbs", "1cbs_map.mtz"), labin="PHIC,SIGFP")
    with pytest.raises(InputError, match="labin"):
        read_reflections(path, labin="FP,SIGFP,FREE,EXTRA")


def test_free_value_not_among_flags():
    with pytest.raises(InputError, match=r"free_value 3 is not among the flags of FREE \(values: 0, 1\)"):
        read_reflections(shared_file("1cbs", "1cbs_map.mtz"), free_value=3)
    with pytest.raises(InputError, match="no free-flag column"):
        read_reflections(shared_file("6mw0", "6mw0-sf.cif.gz"), free_value=0)
    with pytest.raises(InputError, match="0..19, 20 distinct"):
        read_reflections(shared_file("3zt9", "r3zt9sf.ent"),
                         labin="F_meas_au,F_meas_sigma_au,pdbx_r_free_flag", free_value=25)


def test_resolution_limits_that_leave_nothing():
    path = shared_file("5e5z", "5e5z.mtz")
    with pytest.raises(InputError, match="no reflections between"):
        read_reflections(path, d_min=0.5, d_max=1.0)
    with pytest.raises(InputError, match="d_min"):
        read_reflections(path, d_min=3.0, d_max=2.0)


def test_cell_mismatch_names_both_values():
    path = shared_file("1cbs", "1cbs_map.mtz")
    with pytest.raises(InputError) as e:
        read_reflections(path, model_cell=(45.65, 48.60, 77.61, 90, 90, 90), model_spacegroup="P 21 21 21")
    msg = problem(e)
    assert "47.560" in msg and "48.600" in msg and "edge b" in msg
    with pytest.raises(InputError, match="P 21 21 21 of the data differs from P 2 2 2"):
        read_reflections(path, model_cell=(45.65, 47.56, 77.61, 90, 90, 90), model_spacegroup="P 2 2 2")


def test_unmerged_mtz_is_refused(tmp_path):
    p = small_mtz(tmp_path / "unmerged.mtz", [("I", "J", [1, 2, 3, 4, 5]), ("SIGI", "Q", [1, 1, 1, 1, 1])])
    mtz = gemmi.read_mtz_file(str(p))
    batch = gemmi.Mtz.Batch()
    batch.number = 1
    mtz.batches.append(batch)
    mtz.write_to_file(str(p))
    with pytest.raises(InputError, match="unmerged"):
        read_reflections(p)


def test_map_coefficients_missing_label():
    with pytest.raises(InputError, match="column 2FOFCWT not found"):
        read_map_coefficients(shared_file("1cbs", "1cbs_map.mtz"), "2FOFCWT", "PH2FOFCWT")
