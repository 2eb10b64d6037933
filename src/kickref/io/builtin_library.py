"""kickref's built-in restraint library: its compact text format, reader and generator.

The built-in set lets a standard protein (or nucleic acid) be restrained without a CCP4
installation. It holds, for the monomers in ``BUILTIN_MONOMERS``, the restraint categories
of the CCP4 monomer library (bonds, angles, torsions, chiral centres, planes, atoms with
energy types and ideal coordinates), the library's complete link and modification lists
(peptide, cis/trans, proline, disulfide, nucleotide, glycosidic links; terminal
modifications) and the energy-type table (radii, H-bond types) of ``ener_lib.cif``.

Where the numbers come from: the CCP4 monomer library, list version 5.60 (Vagin et al. 2004,
Acta Cryst. D60:2184; dictionaries from AceDRG, Long et al. 2017, Acta Cryst. D73:112; the
amino-acid targets follow Engh & Huber 1991/2001, International Tables F ch. 18.3).
These are published ideal values; the file records which library produced them.

Format ("kickref-restraint-library 1"), line based, UTF-8:

    # comment
    @list                      section: blocks of mon_lib_list.cif (links, mods, synonyms)
    @energy                    section: energy types (category _lib_atom)
    @monomer ALA               section: the blocks of one monomer file
    %block comp_ALA            a data block
    %loop _chem_comp_atom *comp_id atom_id type_symbol ...
    N N NT3 1 2.474 26.375 12.879

A ``%loop`` line names the category and its columns; each following line is one row of
CIF tokens (quoted as in CIF). A column written ``*comp_id`` is left out of the rows: its
value is the monomer code of the enclosing ``comp_<CODE>`` block. Categories that gemmi
does not use for restraints (``_chem_comp_tree``, ``_chem_comp_acedrg``) are left out.
:func:`load_builtin` turns the sections back into gemmi CIF documents.

Regenerate with ``python -m kickref.io.builtin_library MONOMER_DIR OUT_FILE``.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import gemmi

FORMAT_TAG = "kickref-restraint-library 1"
BUILTIN_FILE = "restraint_library.txt"

AMINO_ACIDS = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
               "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
NUCLEOTIDES = ("A", "C", "G", "U", "DA", "DC", "DG", "DT")
WATER = ("HOH",)
IONS = ("NA", "K", "MG", "CA", "MN", "FE", "FE2", "CO", "NI", "CU", "ZN", "CD",
        "CL", "BR", "IOD", "SO4", "PO4")
EXTRA = ("MSE",)
BUILTIN_MONOMERS = AMINO_ACIDS + NUCLEOTIDES + WATER + IONS + EXTRA

_DROP_CATEGORIES = {"_chem_comp_tree", "_chem_comp_acedrg"}
_ENERGY_COLUMNS = ("type", "hb_type", "vdw_radius", "vdwh_radius", "ion_radius", "element")


@dataclass
class BuiltinLibrary:
    """The parsed built-in file: CIF text per section, energy-type rows."""
    source: str
    list_cif: str
    monomer_cif: dict = field(default_factory=dict)     # code -> CIF text
    energy_rows: list = field(default_factory=list)     # rows of _ENERGY_COLUMNS (strings)

    @property
    def monomers(self) -> tuple:
        return tuple(self.monomer_cif)


# --------------------------------------------------------------------------- writer
def _token(raw: str) -> str:
    """A CIF token that fits on one line."""
    if "\n" in raw:
        return gemmi.cif.quote(" ".join(gemmi.cif.as_string(raw).split()))
    return raw


def _block_lines(block: gemmi.cif.Block, comp_code: str | None) -> list:
    """Serialise one CIF block: loops and pairs grouped by category."""
    lines = [f"%block {block.name}"]
    categories = []
    for item in block:
        if item.loop is not None:
            tags = list(item.loop.tags)
        elif item.pair is not None:
            tags = [item.pair[0]]
        else:
            continue
        cat = tags[0].split(".")[0]
        if cat not in categories:
            categories.append(cat)
    for cat in categories:
        if cat in _DROP_CATEGORIES:
            continue
        table = block.find_mmcif_category(cat + ".")
        tags = [t.split(".", 1)[1] for t in table.tags]
        rows = [[table[r][c] for c in range(len(tags))] for r in range(len(table))]
        implied = set()
        if comp_code is not None and "comp_id" in tags:
            k = tags.index("comp_id")
            if all(gemmi.cif.as_string(row[k]) == comp_code for row in rows):
                implied.add(k)
        header = " ".join(("*" + t) if k in implied else t for k, t in enumerate(tags))
        lines.append(f"%loop {cat} {header}")
        for row in rows:
            lines.append(" ".join(_token(v) for k, v in enumerate(row) if k not in implied))
    return lines


def write_builtin(monomer_dir, out_path, codes=BUILTIN_MONOMERS) -> None:
    """Write the built-in library file from a CCP4 monomer-library directory."""
    mdir = Path(monomer_dir)
    lines = [f"# {FORMAT_TAG}",
             "# Ideal values from the CCP4 monomer library (list version "
             f"{_lib_version(mdir)}), LGPL-3; see kickref/io/builtin_library.py.",
             f"# Monomers: {' '.join(codes)}"]
    list_doc = gemmi.cif.read(str(mdir / "list" / "mon_lib_list.cif"))
    lines.append("@list")
    for block in list_doc:
        if block.name == "comp_list":
            continue  # the big table of names of every monomer; gemmi reads groups from the files
        lines += _block_lines(block, None)
    lines.append("@energy")
    ener = gemmi.cif.read(str(mdir / "ener_lib.cif")).sole_block()
    table = ener.find("_lib_atom.", list(_ENERGY_COLUMNS))
    lines.append("%block energy")
    lines.append("%loop _lib_atom " + " ".join(_ENERGY_COLUMNS))
    for row in table:
        lines.append(" ".join(row[k] for k in range(len(_ENERGY_COLUMNS))))
    for code in codes:
        path = mdir / code[0].lower() / f"{code}.cif"
        doc = gemmi.cif.read(str(path))
        lines.append(f"@monomer {code}")
        for block in doc:
            lines += _block_lines(block, code if block.name == f"comp_{code}" else None)
    Path(out_path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _lib_version(mdir: Path) -> str:
    try:
        block = gemmi.cif.read(str(mdir / "list" / "mon_lib_list.cif"))[0]
        return gemmi.cif.as_string(block.find_value("_lib.version") or "?")
    except Exception:
        return "?"


# --------------------------------------------------------------------------- reader
def _section_to_cif(lines: list, start: int, stop: int) -> str:
    """CIF text for the lines of one section."""
    out = []
    code = None
    implied = []
    for line in lines[start:stop]:
        if line.startswith("%block "):
            name = line[7:].strip()
            out.append(f"data_{name}")
            code = name[5:] if name.startswith("comp_") and name != "comp_list" else None
        elif line.startswith("%loop "):
            parts = line[6:].split()
            cat, cols = parts[0], parts[1:]
            implied = [k for k, c in enumerate(cols) if c.startswith("*")]
            out.append("loop_")
            out.extend(f"{cat}.{c.lstrip('*')}" for c in cols)
        elif line and not line.startswith("#"):
            if implied:
                toks = _split_tokens(line)
                for k in implied:
                    toks.insert(k, gemmi.cif.quote(code))
                out.append(" ".join(toks))
            else:
                out.append(line)
    return "\n".join(out) + "\n"


def _split_tokens(line: str) -> list:
    """Split a row into CIF tokens (quotes end only before whitespace, as in CIF)."""
    toks, i, n = [], 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        q = line[i]
        if q in "'\"":
            j = i + 1
            while j < n and not (line[j] == q and (j + 1 == n or line[j + 1].isspace())):
                j += 1
            toks.append(line[i:j + 1])
            i = j + 1
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            toks.append(line[i:j])
            i = j
    return toks


def parse_builtin_text(text: str, source: str = "<text>") -> BuiltinLibrary:
    lines = text.splitlines()
    if not lines or FORMAT_TAG not in lines[0]:
        raise ValueError(f"{source}: not a {FORMAT_TAG!r} file")
    marks = [(k, ln) for k, ln in enumerate(lines) if ln.startswith("@")]
    lib = BuiltinLibrary(source=source, list_cif="")
    for m, (k, ln) in enumerate(marks):
        stop = marks[m + 1][0] if m + 1 < len(marks) else len(lines)
        kind = ln[1:].split()
        if kind[0] == "list":
            lib.list_cif = _section_to_cif(lines, k + 1, stop)
        elif kind[0] == "monomer":
            lib.monomer_cif[kind[1]] = _section_to_cif(lines, k + 1, stop)
        elif kind[0] == "energy":
            lib.energy_rows = [_split_tokens(x) for x in lines[k + 1:stop]
                               if x and not x.startswith(("%", "#"))]
    return lib


@functools.lru_cache(maxsize=1)
def load_builtin() -> BuiltinLibrary:
    """The built-in library shipped in ``kickref/data`` (parsed once per process)."""
    ref = resources.files("kickref") / "data" / BUILTIN_FILE
    return parse_builtin_text(ref.read_text(encoding="utf-8"), source=str(ref))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m kickref.io.builtin_library MONOMER_DIR OUT_FILE", file=sys.stderr)
        return 1
    write_builtin(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
