"""Reading monomer-library files: dictionaries, the energy-type table, a CCP4 library directory.

Only this module opens those files; :mod:`kickref.restraints.library` decides what to load.
Errors are :class:`~kickref.core.errors.InputError` naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi

from ..core.errors import InputError
from .files import check_readable, short_message


@dataclass
class EnergyType:
    """One row of ``ener_lib.cif`` _lib_atom: radii in Å, H-bond type N/D/A/B/H."""
    hb_type: str
    vdw_radius: float
    vdwh_radius: float
    ion_radius: float
    element: str


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")


def energy_types_from_rows(rows) -> dict:
    """Energy type name → :class:`EnergyType` from _lib_atom rows (type, hb_type, vdw_radius,
    vdwh_radius, ion_radius, element; CIF tokens)."""
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
        raise InputError(p, f"cannot read the energy library ({short_message(e)})") from None
    if not rows:
        raise InputError(p, "no _lib_atom energy types in this file")
    return energy_types_from_rows(rows)


def read_dictionary(path) -> tuple:
    """Parse a ligand dictionary; return (gemmi cif Document, monomer codes it defines)."""
    p = check_readable(path)
    try:
        doc = gemmi.cif.read(str(p))
    except Exception as e:
        raise InputError(p, f"cannot parse restraint dictionary ({short_message(e)})") from None
    codes = [b.name[5:] for b in doc if b.name.startswith("comp_") and b.name != "comp_list"]
    has_links = any(b.name.startswith(("link_", "mod_")) for b in doc)
    if not codes and not has_links:
        raise InputError(p, "no monomer (data_comp_XXX) or link/modification blocks: "
                            "not a restraint dictionary")
    for code in codes:
        if not doc.find_block(f"comp_{code}").find_values("_chem_comp_atom.atom_id"):
            raise InputError(p, f"monomer {code} has no _chem_comp_atom records")
    return doc, codes


def monomer_path(d: Path, code: str) -> Path:
    """Where a CCP4 monomer library directory ``d`` keeps the dictionary of ``code``."""
    return d / code[0].lower() / f"{code}.cif"


def read_monomer_library(d, names) -> tuple:
    """Read the CCP4 monomer library in directory ``d`` for the monomers ``names``.

    Returns (gemmi.MonLib, energy types of ``ener_lib.cif``). Every file gemmi will open is
    parsed first, so that an error names the file."""
    d = Path(d)
    for p in [d / "list" / "mon_lib_list.cif"] + [monomer_path(d, r) for r in names]:
        if p.is_file():
            try:
                gemmi.cif.read(str(p))
            except Exception as e:
                raise InputError(p, f"cannot parse library file ({short_message(e)})") from None
    try:
        monlib = gemmi.read_monomer_lib(str(d), list(names), ignore_missing=True)
    except Exception as e:
        raise InputError(d, f"cannot read monomer library ({short_message(e)})") from None
    ener = d / "ener_lib.cif"
    if not ener.is_file():
        raise InputError(ener, "file not found (needed for non-bonded radii)")
    return monlib, read_energy_types(ener)
