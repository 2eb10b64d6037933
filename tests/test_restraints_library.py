"""The built-in restraint library agrees with the CCP4 monomer library it was made from."""
from pathlib import Path

import gemmi
import numpy as np
import pytest

from kickref.io.models import read_model
from kickref.restraints import build_restraints, load_library
from kickref.io.builtin_library import (AMINO_ACIDS, BUILTIN_MONOMERS, NUCLEOTIDES,
                                        load_builtin, parse_builtin_text, write_builtin)
from kickref.io.monomers import read_energy_types

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
MONLIB = SHARED / "monomers"


def need_monlib():
    if not (MONLIB / "list" / "mon_lib_list.cif").exists():
        pytest.skip(f"shared monomer library ({MONLIB}) not present")


def _restraint_table(cc):
    rt = cc.rt
    return {
        "atoms": sorted((a.id, a.el.name, a.chem_type) for a in cc.atoms),
        "bonds": sorted((b.id1.atom, b.id2.atom, b.value, b.esd, b.value_nucleus) for b in rt.bonds),
        "angles": sorted((a.id1.atom, a.id2.atom, a.id3.atom, a.value, a.esd) for a in rt.angles),
        "torsions": sorted((t.label, t.id1.atom, t.id2.atom, t.id3.atom, t.id4.atom, t.value,
                            t.esd, t.period) for t in rt.torsions),
        "chirs": sorted((c.id_ctr.atom, c.id1.atom, c.id2.atom, c.id3.atom, str(c.sign))
                        for c in rt.chirs),
        "planes": sorted((p.label, tuple(sorted(i.atom for i in p.ids)), p.esd) for p in rt.planes),
    }


def test_builtin_covers_the_promised_monomers():
    lib = load_builtin()
    for code in AMINO_ACIDS + NUCLEOTIDES + ("HOH", "NA", "MG", "CA", "ZN", "CL", "SO4"):
        assert code in lib.monomer_cif
    assert len(AMINO_ACIDS) == 20 and len(NUCLEOTIDES) == 8
    # terminal variants and links come from the library's modification and link lists
    ml = gemmi.MonLib()
    ml.read_monomer_doc(gemmi.cif.read_string(lib.list_cif))
    for link in ("TRANS", "CIS", "PTRANS", "PCIS", "NMTRANS", "SS", "disulf", "p"):
        assert link in ml.links, link
    for mod in ("NH3", "COO", "DEL-OXT", "DEL-HN1"):
        assert mod in ml.modifications, mod
    assert len(lib.energy_rows) > 200


def test_builtin_monomers_equal_monomer_library():
    need_monlib()
    codes = list(BUILTIN_MONOMERS)
    ref = gemmi.read_monomer_lib(str(MONLIB), codes)
    ours = load_library(codes).monlib           # no monlib_dir, no $CLIBD_MON → built-in
    assert sorted(ours.monomers.keys()) == sorted(codes)
    for code in codes:
        a, b = _restraint_table(ours.monomers[code]), _restraint_table(ref.monomers[code])
        assert a == b, code
        assert ours.monomers[code].group == ref.monomers[code].group
    assert sorted(ours.links.keys()) == sorted(ref.links.keys())
    assert sorted(ours.modifications.keys()) == sorted(ref.modifications.keys())


def test_builtin_energy_types_equal_ener_lib():
    need_monlib()
    lib = load_library(["ALA"])
    ref = read_energy_types(MONLIB / "ener_lib.cif")
    assert lib.energy_types.keys() == ref.keys()
    for t in ("C", "CH1", "NH1", "O", "OH2", "ZN", "S"):
        a, b = lib.energy_types[t], ref[t]
        assert (a.hb_type, a.element) == (b.hb_type, b.element)
        np.testing.assert_equal([a.vdw_radius, a.vdwh_radius, a.ion_radius],
                                [b.vdw_radius, b.vdwh_radius, b.ion_radius])


def test_shipped_file_is_what_the_generator_writes(tmp_path):
    need_monlib()
    out = tmp_path / "lib.txt"
    write_builtin(MONLIB, out)
    regenerated = parse_builtin_text(out.read_text(), str(out))
    shipped = load_builtin()
    assert regenerated.list_cif == shipped.list_cif
    assert regenerated.monomer_cif == shipped.monomer_cif
    assert regenerated.energy_rows == shipped.energy_rows


@pytest.mark.parametrize("case,name", [("5e5z", "5e5z.pdb"), ("5wkd", "5wkd.pdb"),
                                       ("1cbs", "1cbs.cif.gz"), ("3zt9", "3zt9.cif")])
def test_topology_from_builtin_equals_monomer_library(case, name, monkeypatch):
    """Same restraints (atoms, targets, σ) from either library on the built-in residues."""
    need_monlib()
    path = SHARED / "data" / case / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    monkeypatch.delenv("CLIBD_MON", raising=False)
    model = read_model(path)
    unknown = sorted(set(model.resname) - set(BUILTIN_MONOMERS))
    R_b = build_restraints(model, allow_unknown=bool(unknown))
    R_m = build_restraints(model, monlib_dir=MONLIB)
    assert R_b.library.source == "built-in"
    keep = ~np.isin(model.resname, unknown)
    for kind in ("bonds", "angles", "torsions", "chirals"):
        a, b = getattr(R_b, kind), getattr(R_m, kind)
        sel = keep[b.idx].all(axis=1)
        assert len(a) == sel.sum(), kind
        ka = sorted(zip(map(tuple, a.idx.tolist()), a.ideal.round(6), a.sigma))
        kb = sorted(zip(map(tuple, b.idx[sel].tolist()), b.ideal[sel].round(6), b.sigma[sel]))
        assert ka == kb, kind
    if not unknown:
        s_b, s_m = R_b.statistics(), R_m.statistics()
        for kind in ("bond", "angle", "torsion", "plane", "chiral"):
            assert s_b[kind]["rmsd"] == pytest.approx(s_m[kind]["rmsd"], rel=1e-12)
