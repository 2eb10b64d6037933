"""Finding and loading restraint dictionaries into a gemmi.MonLib.

Resolution order: an explicit monomer-library directory, else ``$CLIBD_MON``, else the
built-in set shipped with kickref (:mod:`kickref.restraints.builtin`). Dictionaries given
with ``--ligand`` (``ligands``) override the library for the monomers they define and may
add links and modifications.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gemmi

from ..core.errors import InputError
from ..io.files import check_readable
from .builtin import load_builtin


@dataclass
class EnergyType:
    """One row of ``ener_lib.cif`` _lib_atom: radii in Å, H-bond type N/D/A/B/H."""
    hb_type: str
    vdw_radius: float
    vdwh_radius: float
    ion_radius: float
    element: str


@dataclass
class RestraintLibrary:
    monlib: gemmi.MonLib
    energy_types: dict                 # energy type name -> EnergyType
    source: str                        # 'built-in' or the directory
    ligand_codes: dict = field(default_factory=dict)   # monomer code -> ligand file
    missing: list = field(default_factory=list)        # residue names found nowhere

    def describe(self) -> str:
        s = f"monomer library: {self.source}"
        if self.ligand_codes:
            s += "; from --ligand: " + ", ".join(f"{c} ({Path(p).name})"
                                                 for c, p in sorted(self.ligand_codes.items()))
        return s


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")


def _energy_types(rows) -> dict:
    out = {}
    for r in rows:
        t, hb, vdw, vdwh, ion, el = (gemmi.cif.as_string(x) for x in r[:6])
        out[t] = EnergyType(hb or "N", _float(vdw), _float(vdwh), _float(ion), el)
    return out


def read_energy_types(path) -> dict:
    """Energy types (radii, H-bond types) from an ``ener_lib.cif``."""
    p = check_readable(path)
    try:
        block = gemmi.cif.read(str(p)).sole_block()
        table = block.find("_lib_atom.", ["type", "hb_type", "vdw_radius", "vdwh_radius",
                                          "?ion_radius", "element"])
        rows = [[row[k] if row.has(k) else "." for k in range(6)] for row in table]
    except Exception as e:
        raise InputError(p, f"cannot read the energy library ({_short(e)})") from None
    if not rows:
        raise InputError(p, "no _lib_atom energy types in this file")
    return _energy_types(rows)


def _short(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def read_dictionary(path) -> tuple:
    """Parse a ligand dictionary; return (gemmi cif Document, monomer codes it defines)."""
    p = check_readable(path)
    try:
        doc = gemmi.cif.read(str(p))
    except Exception as e:
        raise InputError(p, f"cannot parse restraint dictionary ({_short(e)})") from None
    codes = [b.name[5:] for b in doc if b.name.startswith("comp_") and b.name != "comp_list"]
    has_links = any(b.name.startswith(("link_", "mod_")) for b in doc)
    if not codes and not has_links:
        raise InputError(p, "no monomer (data_comp_XXX) or link/modification blocks: "
                            "not a restraint dictionary")
    for code in codes:
        if not doc.find_block(f"comp_{code}").find_values("_chem_comp_atom.atom_id"):
            raise InputError(p, f"monomer {code} has no _chem_comp_atom records")
    return doc, codes


def resolve_monlib_dir(monlib_dir=None):
    """The monomer-library directory to use, or None for the built-in set."""
    if monlib_dir is not None:
        d = Path(monlib_dir)
        if not d.is_dir():
            raise InputError(d, "monomer library directory not found")
        if not (d / "list" / "mon_lib_list.cif").is_file():
            raise InputError(d, "not a CCP4 monomer library: list/mon_lib_list.cif is missing")
        return d
    env = os.environ.get("CLIBD_MON")
    if env:
        d = Path(env)
        if not (d / "list" / "mon_lib_list.cif").is_file():
            raise InputError(d, "$CLIBD_MON does not point to a CCP4 monomer library "
                                "(list/mon_lib_list.cif is missing)")
        return d
    return None


def _monomer_path(d: Path, code: str) -> Path:
    return d / code[0].lower() / f"{code}.cif"


def load_library(resnames, monlib_dir=None, ligands=()) -> RestraintLibrary:
    """Load dictionaries for ``resnames`` (an iterable of residue names)."""
    resnames = sorted(set(resnames))
    ligand_docs = []
    ligand_codes = {}
    for path in ligands:
        doc, codes = read_dictionary(path)
        ligand_docs.append(doc)
        for c in codes:
            ligand_codes[c] = str(path)
    base_names = [r for r in resnames if r not in ligand_codes]
    d = resolve_monlib_dir(monlib_dir)
    if d is not None:
        # check every file gemmi will open parses, so that an error names the file
        for p in [d / "list" / "mon_lib_list.cif"] + [_monomer_path(d, r) for r in base_names]:
            if p.is_file():
                try:
                    gemmi.cif.read(str(p))
                except Exception as e:
                    raise InputError(p, f"cannot parse library file ({_short(e)})") from None
        try:
            monlib = gemmi.read_monomer_lib(str(d), base_names, ignore_missing=True)
        except Exception as e:
            raise InputError(d, f"cannot read monomer library ({_short(e)})") from None
        ener = d / "ener_lib.cif"
        if not ener.is_file():
            raise InputError(ener, "file not found (needed for non-bonded radii)")
        energy = read_energy_types(ener)
        source = str(d)
    else:
        lib = load_builtin()
        monlib = gemmi.MonLib()
        monlib.read_monomer_doc(gemmi.cif.read_string(lib.list_cif))
        for r in base_names:
            if r in lib.monomer_cif:
                monlib.read_monomer_doc(gemmi.cif.read_string(lib.monomer_cif[r]))
        energy = _energy_types(lib.energy_rows)
        source = "built-in"
    for doc, path in zip(ligand_docs, ligands):
        try:
            monlib.read_monomer_doc(doc)
        except Exception as e:
            raise InputError(path, f"cannot use restraint dictionary ({_short(e)})") from None
    missing = [r for r in resnames if r not in monlib.monomers]
    return RestraintLibrary(monlib, energy, source, ligand_codes, missing)
