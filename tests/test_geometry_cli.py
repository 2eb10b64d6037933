"""``kickref geometry``: statistics table, outliers, JSON, errors."""
import json
from pathlib import Path

import pytest

from kickref.cli import main

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
MONLIB = SHARED / "monomers"


def shared(case, name):
    p = SHARED / "data" / case / name
    if not p.exists() or not MONLIB.exists():
        pytest.skip(f"shared test data ({p}) not present")
    return p


def test_geometry_table_outliers_and_json(tmp_path, capsys):
    model = shared("4hg7", "4hg7.cif")
    out = tmp_path / "geom.json"
    rc = main(["geometry", str(model), "--monlib", str(MONLIB), "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "bond" in text and "angle" in text and "20 worst outliers" in text
    doc = json.loads(out.read_text())
    s = doc["statistics"]
    assert s["bond"]["n"] == 862 and s["angle"]["n"] == 1181
    assert s["bond"]["rmsd"] == pytest.approx(0.01599, abs=1e-4)
    assert s["angle"]["rmsd"] == pytest.approx(1.7144, abs=1e-3)
    assert f"{s['bond']['rmsd']:.4f}" in text
    assert len(doc["outliers"]) == 20
    o = doc["outliers"][0]
    assert set(o) >= {"kind", "atoms", "ideal", "actual", "z"}
    assert o["kind"] == "chiral" and "NUT" in o["atoms"][0]


def test_geometry_json_to_stdout_and_ligand_option(capsys, monkeypatch):
    monkeypatch.delenv("CLIBD_MON", raising=False)
    model = shared("4hg7", "4hg7.cif")
    rc = main(["geometry", str(model), "--ligand", str(MONLIB / "n" / "NUT.cif"),
               "--json", "-", "--outliers", "5"])
    cap = capsys.readouterr()
    assert rc == 0
    doc = json.loads(cap.out)                    # the table went to stderr
    assert doc["library"] == "built-in" and len(doc["outliers"]) == 5
    assert "NUT (NUT.cif)" in cap.err


def test_geometry_unknown_residue_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.delenv("CLIBD_MON", raising=False)
    model = shared("4hg7", "4hg7.cif")
    rc = main(["geometry", str(model)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "NUT A/201" in err and "--ligand" in err and len(err.strip().splitlines()) == 1
    rc = main(["geometry", str(model), "--allow-unknown"])
    text = capsys.readouterr().out
    assert rc == 0 and "--allow-unknown" in text and "A/NUT 201" in text


def test_geometry_bad_ligand_file(tmp_path, capsys):
    model = shared("5e5z", "5e5z.pdb")
    bad = tmp_path / "lig.cif"
    bad.write_text("data_x\n_some.thing 1\n")
    rc = main(["geometry", str(model), "--monlib", str(MONLIB), "--ligand", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "lig.cif" in err


def test_geometry_hydrogens_remove(capsys):
    model = shared("3zt9", "3zt9.cif")
    rc = main(["geometry", str(model), "--monlib", str(MONLIB), "--hydrogens", "remove",
               "--json", "-"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert doc["n_atoms"] == 3143 - 1513
    assert doc["statistics"]["bond"]["n"] == 1500
