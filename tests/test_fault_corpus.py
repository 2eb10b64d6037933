"""Fault corpus: bad inputs, bad options and bad output paths through the command line.

Every case is built at test time from the shared cases or synthetic files. Each asserts: the exit
code; exactly one error line on stderr (``warning:`` lines aside) and no traceback; no file under
the run's final output names (nor temporary files) unless the run succeeded; every input file
unchanged (SHA-256 before and after). The table is printed with ``pytest -s``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, case_paths
from kickref.cli import main

OUTPUT_EXTENSIONS = (".pdb", ".cif", ".mtz", ".json", ".log", ".png", ".ccp4", ".lock")


@dataclass
class Case:
    """``build(tmp) -> (argv, inputs)``; the run writes under ``tmp/out``."""
    name: str
    build: object
    rc: int = 2
    message: str = ""              # a substring of the error line (rc != 0) or of stderr
    writes: tuple = ()             # files expected under tmp/out when the run succeeds
    marks: tuple = field(default_factory=tuple)


# ------------------------------------------------------------------------------ inputs
def _shared(case):
    model, data, _ = case_paths(case)
    return model, data


def _copy(src: Path, tmp: Path, name=None) -> Path:
    dst = tmp / (name or src.name)
    shutil.copy(src, dst)
    return dst


def _structure(case="5e5z"):
    return gemmi.read_structure(str(_shared(case)[0]))


def _write_pdb(st, path: Path) -> Path:
    st.write_pdb(str(path))
    return path


def _edited_model(tmp: Path, edit, case="5e5z", name="model.pdb"):
    st = _structure(case)
    edit(st)
    return _write_pdb(st, tmp / name)


def _mtz_with(tmp: Path, columns, cell=None, sg=None, name="data.mtz"):
    """A merged MTZ over 5e5z's reflections with the given (label, type, values) columns."""
    src = gemmi.read_mtz_file(str(_shared("5e5z")[1]))
    hkl = np.array(src, copy=False)[:, :3]
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg) if sg else src.spacegroup
    mtz.cell = gemmi.UnitCell(*cell) if cell else src.cell
    mtz.add_dataset("x")
    for label, typ, _ in columns:
        mtz.add_column(label, typ)
    data = [hkl] + [np.broadcast_to(np.asarray(v, float), (len(hkl),)) for _, _, v in columns]
    mtz.set_data(np.column_stack(data).astype(np.float32))
    path = tmp / name
    mtz.write_to_file(str(path))
    return path


def _fp(n=None):
    src = gemmi.read_mtz_file(str(_shared("5e5z")[1]))
    arr = np.array(src, copy=False)
    f = arr[:, src.column_labels().index("FP")]
    s = arr[:, src.column_labels().index("SIGFP")]
    free = arr[:, src.column_labels().index("FREE")]
    return f, s, free


def _refine(model, data, *extra):
    return ["refine", model, data, "-o", "{out}/r", "--monlib", MONOMERS, "--cycles", "1", *extra]


def _refine_5e5z_with(*extra):
    """A case builder: ``kickref refine`` of 5e5z with the options ``extra`` ('{tmp}' = the test's
    folder)."""
    def build(t):
        m, d = _shared("5e5z")
        return _refine(m, d, *[str(e).replace("{tmp}", str(t)) for e in extra]), [m, d]
    return build


# ------------------------------------------------------------------------------ cases
def _c(name, build, **kw):
    return Case(name, build, **kw)


def files_cases():
    def missing_model(t):
        m, d = _shared("5e5z")
        return _refine(t / "nope.pdb", d), [d]

    def missing_data(t):
        m, d = _shared("5e5z")
        return _refine(m, t / "nope.mtz"), [m]

    def empty_model(t):
        (t / "empty.pdb").write_text("")
        m, d = _shared("5e5z")
        return _refine(t / "empty.pdb", d), [t / "empty.pdb", d]

    def empty_data(t):
        (t / "empty.mtz").write_bytes(b"")
        m, d = _shared("5e5z")
        return _refine(m, t / "empty.mtz"), [m, t / "empty.mtz"]

    def truncated_mtz(t):
        m, d = _shared("5e5z")
        p = t / "trunc.mtz"
        p.write_bytes(d.read_bytes()[: len(d.read_bytes()) // 2])
        return _refine(m, p), [m, p]

    def garbage_model(t):
        p = t / "garbage.pdb"
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
        m, d = _shared("5e5z")
        return _refine(p, d), [p, d]

    def text_as_mtz(t):
        p = t / "notes.mtz"
        p.write_text("these are not reflections\n" * 20)
        m, d = _shared("5e5z")
        return _refine(m, p), [m, p]

    def model_is_directory(t):
        (t / "adir.pdb").mkdir()
        m, d = _shared("5e5z")
        return _refine(t / "adir.pdb", d), [d]

    def truncated_gzip_model(t):
        m, d = _shared("1cbs")
        p = t / "trunc.cif.gz"
        p.write_bytes(m.read_bytes()[:3000])
        return ["rfactor", p, d], [p, d]

    def data_given_as_model(t):
        m, d = _shared("5e5z")
        return ["rfactor", d, d], [d]

    return [
        _c("missing model file", missing_model, message="nope.pdb"),
        _c("missing data file", missing_data, message="nope.mtz"),
        _c("empty model file", empty_model, message="empty.pdb"),
        _c("empty data file", empty_data, message="empty.mtz"),
        _c("truncated MTZ", truncated_mtz, message="trunc.mtz"),
        _c("random bytes as a model", garbage_model, message="garbage.pdb"),
        _c("text file named .mtz", text_as_mtz, message="notes.mtz"),
        _c("model path is a directory", model_is_directory, message="adir.pdb"),
        _c("truncated gzip mmCIF (rfactor)", truncated_gzip_model, message="trunc.cif.gz"),
        _c("reflections given as the model", data_given_as_model, message="5e5z.mtz"),
    ]


def data_cases():
    def cell_mismatch(t):
        f, s, free = _fp()
        src = gemmi.read_mtz_file(str(_shared("5e5z")[1]))
        c = src.cell
        p = _mtz_with(t, [("FP", "F", f), ("SIGFP", "Q", s), ("FREE", "I", free)],
                      cell=(c.a * 1.05, c.b, c.c, c.alpha, c.beta, c.gamma))
        m, _ = _shared("5e5z")
        return _refine(m, p), [m, p]

    def spacegroup_mismatch(t):
        f, s, free = _fp()
        p = _mtz_with(t, [("FP", "F", f), ("SIGFP", "Q", s), ("FREE", "I", free)], sg="P 1")
        m, _ = _shared("5e5z")
        return _refine(m, p), [m, p]

    def all_nan(t):
        f, s, free = _fp()
        p = _mtz_with(t, [("FP", "F", np.nan), ("SIGFP", "Q", s), ("FREE", "I", free)])
        m, _ = _shared("5e5z")
        return _refine(m, p), [m, p]

    def all_negative(t):
        f, s, free = _fp()
        p = _mtz_with(t, [("FP", "F", -f - 1), ("SIGFP", "Q", s), ("FREE", "I", free)])
        m, _ = _shared("5e5z")
        return _refine(m, p), [m, p]

    def invalid_amplitudes_warned(t):
        f, s, free = _fp()
        f = f.copy()
        f[:5] = -1.0
        p = _mtz_with(t, [("FP", "F", f), ("SIGFP", "Q", s), ("FREE", "I", free)])
        m, _ = _shared("5e5z")
        return ["rfactor", m, p, "--json", "{out}/r.json"], [m, p]

    return [
        _c("--labin column not in the file", _refine_5e5z_with("--labin", "FOBS_X,SIGFOBS_X"), message="FOBS_X"),
        _c("--labin data column of the wrong type", _refine_5e5z_with("--labin", "FREE,SIGFP"), message="FREE"),
        _c("cell 5 % off the model's", cell_mismatch, message="data.mtz"),
        _c("space group differs from the model's", spacegroup_mismatch, message="space group"),
        _c("all amplitudes NaN", all_nan, message="data.mtz"),
        _c("all amplitudes negative", all_negative, message="no valid amplitude"),
        _c("--d-min/--d-max leave no reflection", _refine_5e5z_with("--d-min", "40", "--d-max", "50"), message="no reflections"),
        _c("--free-value not among the flags", _refine_5e5z_with("--free-value", "77"), message="77"),
        _c("negative amplitudes dropped with a warning (rfactor runs)", invalid_amplitudes_warned,
           rc=0, message="with F < 0 in FP/SIGFP dropped", writes=("r.json",)),
    ]


def model_cases():
    def edited(edit, *extra):
        """A case builder: 5e5z edited by ``edit(structure)``, then refined with ``extra``."""
        def build(t):
            m = _edited_model(t, edit)
            return _refine(m, _shared("5e5z")[1], *extra), [m]
        return build

    def one_point(st):
        for r in st[0][0]:
            for a in r:
                a.pos = gemmi.Position(1, 2, 3)

    def duplicated_atom(st):
        a = st[0][0][1][0].clone()
        a.pos = gemmi.Position(a.pos.x + 2.5, a.pos.y, a.pos.z)
        st[0][0][1].add_atom(a)

    def hydrogens_only(st):
        for r in st[0][0]:
            for a in r:
                a.element = gemmi.Element("H")
                a.name = "H" + a.name[1:] if len(a.name) > 1 else "H"

    def zero_occupancy(st):
        for r in st[0][0]:
            for a in r:
                a.occ = 0.0

    def unknown_residue(t):
        m, d = _shared("1cbs")
        return ["refine", m, d, "-o", "{out}/r", "--cycles", "1"], [m, d]

    def monlib_missing(t):
        m, d = _shared("5e5z")
        return ["refine", m, d, "-o", "{out}/r", "--monlib", t / "no_such_lib"], [m, d]

    def ligand_garbage(t):
        p = t / "LIG.cif"
        p.write_text("data_comp_LIG\nloop_\n_chem_comp_atom.comp_id\n'unterminated\n")
        m, d = _shared("5e5z")
        return _refine(m, d, "--ligand", p), [m, d, p]

    def no_cryst1(t):
        st = _structure()
        p = t / "nocell.pdb"
        p.write_text("".join(l + "\n" for l in st.make_pdb_string().splitlines()
                             if not l.startswith("CRYST1")))
        return ["rfactor", p, _shared("5e5z")[1], "--json", "{out}/r.json"], [p]

    def geometry_missing(t):
        return ["geometry", t / "gone.cif"], []

    return [
        _c("all atoms at one point", edited(one_point, "--hydrogens", "keep"), message="closer than 0.1"),
        _c("a residue written twice", edited(lambda st: st[0][0].add_residue(st[0][0][2]), "--hydrogens", "keep"),
           message="appears"),
        _c("an atom written twice", edited(duplicated_atom, "--hydrogens", "keep"), message="appears 2 times"),
        _c("hydrogens only", edited(hydrogens_only, "--hydrogens", "keep"), message="no non-hydrogen atoms"),
        _c("every occupancy zero", edited(zero_occupancy), message="occupancy 0"),
        _c("ligand without a dictionary (1cbs REA)", unknown_residue, message="REA"),
        _c("--select matching no atom", _refine_5e5z_with("--select", "Z/900-901"), message="matches no atoms"),
        _c("--select malformed", _refine_5e5z_with("--select", "//A/((("), message="select"),
        _c("--monlib directory missing", monlib_missing, message="no_such_lib"),
        _c("--ligand file missing", _refine_5e5z_with("--ligand", "{tmp}/LIG.cif"), message="LIG.cif"),
        _c("--ligand file not CIF", ligand_garbage, message="LIG.cif"),
        _c("model without CRYST1 takes the data's cell (runs)", no_cryst1, rc=0,
           message="no unit cell in the model", writes=("r.json",)),
        _c("geometry of a missing file", geometry_missing, message="gone.cif"),
    ]


def option_cases():
    def opt(*extra, cmd="refine"):
        def build(t):
            m, d = _shared("5e5z")
            if cmd == "refine":
                return _refine(m, d, *extra), [m, d]
            if cmd == "maps":
                return ["maps", m, d, "-o", "{out}/m.mtz", *extra], [m, d]
            return ["rfactor", m, d, *extra], [m, d]
        return build

    return [
        _c("--cycles -3", opt("--cycles", "-3"), message="--cycles"),
        _c("--scale-shells foo", opt("--scale-shells", "foo"), message="--scale-shells"),
        _c("maps --kick --kick-models -3", opt("--kick", "--kick-models", "-3", cmd="maps"),
           message="--kick-models"),
        _c("--bond-rmsd 0", opt("--bond-rmsd", "0"), message="--bond-rmsd"),
        _c("--rephase-every 0", opt("--rephase-every", "0"), message="--rephase-every"),
        _c("--weight -1", opt("--weight", "-1"), message="--weight"),
        _c("--d-min 3 --d-max 2", opt("--d-min", "3", "--d-max", "2", cmd="rfactor"), message="--d-min"),
        _c("--labin with four labels", opt("--labin", "FP,SIGFP,FREE,X", cmd="rfactor"), message="--labin"),
        _c("unknown option", opt("--frobnicate", "1"), message="--frobnicate"),
    ]


def output_cases():
    def out_is_input(t):
        m = _copy(_shared("5e5z")[0], t, "model.pdb")
        d = _shared("5e5z")[1]
        return ["refine", m, d, "-o", t / "model", "--monlib", MONOMERS, "--cycles", "1"], [m, d]

    def maps_out_is_input(t):
        m, d = _shared("5e5z")
        dd = _copy(d, t, "data.mtz")
        return ["maps", m, dd, "-o", dd], [m, dd]

    def json_is_input(t):
        m = _copy(_shared("5e5z")[0], t, "model.pdb")
        return ["rfactor", m, _shared("5e5z")[1], "--json", m], [m]

    def geometry_json_is_model(t):
        m = _copy(_shared("5e5z")[0], t, "model.pdb")
        return ["geometry", m, "--json", m], [m]

    def empty_prefix(t):
        m, d = _shared("5e5z")
        return ["refine", m, d, "-o", "", "--monlib", MONOMERS], [m, d]

    def prefix_is_directory(t):
        m, d = _shared("5e5z")
        return ["refine", m, d, "-o", "{out}/", "--monlib", MONOMERS], [m, d]

    def parent_is_file(t):
        m, d = _shared("5e5z")
        (t / "out" / "afile").write_text("x")
        return ["refine", m, d, "-o", "{out}/afile/r", "--monlib", MONOMERS], [m, d]

    def maps_ccp4_parent_is_file(t):
        m, d = _shared("5e5z")
        (t / "out" / "afile").write_text("x")
        return ["maps", m, d, "-o", "{out}/m.mtz", "--ccp4", "{out}/afile/m"], [m, d]

    def prefix_locked(t):
        m, d = _shared("5e5z")
        (t / "out" / "r.lock").write_text(f"{os.getpid()}\n")      # a live process holds it
        return _refine(m, d), [m, d]

    return [
        _c("refine output would overwrite the model", out_is_input, message="model.pdb"),
        _c("maps output is the data file", maps_out_is_input, message="data.mtz"),
        _c("rfactor --json is the model", json_is_input, message="model.pdb"),
        _c("geometry --json is the model", geometry_json_is_model, message="model.pdb"),
        _c("-o ''", empty_prefix, message="empty output prefix"),
        _c("-o names a directory", prefix_is_directory, message="out"),
        _c("-o below a regular file", parent_is_file, message="afile"),
        _c("maps --ccp4 below a regular file", maps_ccp4_parent_is_file, message="afile"),
        _c("-o prefix locked by a running kickref", prefix_locked, message="r.lock"),
    ]


CASES = files_cases() + data_cases() + model_cases() + option_cases() + output_cases()


def _sha(paths):
    out = {}
    for p in paths:
        p = Path(p)
        if p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


RESULTS = []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv, inputs = case.build(tmp_path)
    argv = [str(a).replace("{out}", str(out)) for a in argv]
    before = _sha(inputs)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:                         # argparse paths that still exit
        rc = e.code
    cap = capsys.readouterr()
    err_lines = [ln for ln in cap.err.strip().splitlines() if ln and not ln.startswith("warning:")]
    RESULTS.append((case.name, case.rc, rc, (err_lines or [""])[0][:100]))
    assert "Traceback" not in cap.err and "Traceback" not in cap.out
    assert rc == case.rc, cap.err
    if case.rc != 0:
        assert len(err_lines) == 1, cap.err
        assert case.message in err_lines[0], err_lines[0]
        assert "warning" not in cap.out.lower()
        left = [p.name for p in out.iterdir() if p.suffix in OUTPUT_EXTENSIONS or p.name.startswith(".")]
        assert left == [] or case.name.startswith("-o prefix locked") and left == ["r.lock"], left
    else:
        assert case.message in cap.err
        for name in case.writes:
            assert (out / name).is_file()
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert _sha(inputs) == before, "an input changed"


def test_corpus_size():
    assert len(CASES) >= 40


def test_zz_corpus_table():
    """Prints the corpus as a table (case, expected, observed exit code, first error line): run
    ``pytest -s tests/test_fault_corpus.py``. Runs last in this file."""
    if not RESULTS:
        pytest.skip("no corpus case ran in this session")
    for name, want, got, line in RESULTS:
        print(f"| {name} | {want} | {got} | {line.replace('|', '/')} |")
    assert all(want == got for _, want, got, _ in RESULTS)
