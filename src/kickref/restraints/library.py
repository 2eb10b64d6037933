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
from ..io.files import short_message
from ..io.monomers import energy_types_from_rows, read_dictionary, read_monomer_library
from ..io.builtin_library import load_builtin


@dataclass
class RestraintLibrary:
    monlib: gemmi.MonLib
    energy_types: dict                 # energy type name -> io.monomers.EnergyType
    source: str                        # 'built-in' or the directory
    ligand_codes: dict = field(default_factory=dict)   # monomer code -> ligand file
    missing: list = field(default_factory=list)        # residue names found nowhere

    def describe(self) -> str:
        s = f"monomer library: {self.source}"
        if self.ligand_codes:
            s += "; from --ligand: " + ", ".join(f"{c} ({Path(p).name})"
                                                 for c, p in sorted(self.ligand_codes.items()))
        return s


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
        monlib, energy = read_monomer_library(d, base_names)
        source = str(d)
    else:
        lib = load_builtin()
        monlib = gemmi.MonLib()
        monlib.read_monomer_doc(gemmi.cif.read_string(lib.list_cif))
        for r in base_names:
            if r in lib.monomer_cif:
                monlib.read_monomer_doc(gemmi.cif.read_string(lib.monomer_cif[r]))
        energy = energy_types_from_rows(lib.energy_rows)
        source = "built-in"
    for doc, path in zip(ligand_docs, ligands):
        try:
            monlib.read_monomer_doc(doc)
        except Exception as e:
            raise InputError(path, f"cannot use restraint dictionary ({short_message(e)})") from None
    missing = [r for r in resnames if r not in monlib.monomers]
    return RestraintLibrary(monlib, energy, source, ligand_codes, missing)
