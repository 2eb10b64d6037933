"""The entries of a batch (``kickref batch ENTRIES``): a CSV/TSV table or a folder of case
folders, and the checksums and manifests that make a batch resumable.

Table columns (header row; CSV, or TSV when the file ends in ``.tsv``/``.tab`` or its header has
a tab): ``model``, ``data`` (required), ``name``, ``labin``, ``ligands`` (dictionaries separated
by ``;``), ``options`` (more ``kickref refine`` options, as on its command line). Relative paths
are taken from the table's folder. A folder: each sub-folder with a ``case.json``
(``model_file``, ``reflection_file``, optional ``labin``, ``ligand_files`` of which the ``.cif``
ones are dictionaries, ``options``), as ``../shared/data/<case>/``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError

NAME_OK = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class Entry:
    """One structure of a batch: model and data paths, per-entry ``kickref refine`` options."""
    name: str
    model: str
    data: str
    labin: str | None = None
    ligands: tuple = ()
    options: str = ""                       # extra command-line options of kickref refine


def read_entries(path) -> list[Entry]:
    """The entries of a table (CSV/TSV) or of a folder of case folders (see the module notes).
    InputError for a missing file, a table without ``model``/``data`` columns, or two entries
    with one name."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    entries = _from_folder(p) if p.is_dir() else _from_table(p)
    if not entries:
        raise InputError(p, "no entries (a table with model,data rows, or case folders with case.json)")
    seen = set()
    for e in entries:
        if e.name in seen:
            raise InputError(p, f"two entries named {e.name!r}; give a 'name' column")
        seen.add(e.name)
    return entries


def _from_table(p: Path) -> list[Entry]:
    text = p.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if p.suffix.lower() in (".tsv", ".tab") or "\t" in first else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    if not rows or not {"model", "data"} <= {k.strip().lower() for k in rows[0] if k}:
        raise InputError(p, "a batch table needs a header with 'model' and 'data' columns")
    out = []
    for row in rows:
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row.get("model") and not row.get("data"):
            continue                            # blank line
        model, data = (str(_resolve(p.parent, row[k])) for k in ("model", "data"))
        ligands = tuple(str(_resolve(p.parent, x.strip())) for x in re.split(r"[;]", row.get("ligands", ""))
                        if x.strip())
        name = row.get("name") or _stem(model)
        out.append(Entry(_safe(name), model, data, row.get("labin") or None, ligands, row.get("options", "")))
    return out


def _from_folder(p: Path) -> list[Entry]:
    out = []
    for case in sorted(q for q in p.iterdir() if (q / "case.json").is_file()):
        try:
            info = json.loads((case / "case.json").read_text())
        except ValueError as e:
            raise InputError(case / "case.json", f"not JSON ({e})") from None
        if "model_file" not in info or "reflection_file" not in info:
            raise InputError(case / "case.json", "needs model_file and reflection_file")
        ligands = tuple(str(case / f) for f in info.get("ligand_files", []) if f.lower().endswith(".cif"))
        out.append(Entry(_safe(info.get("name") or case.name), str(case / info["model_file"]),
                         str(case / info["reflection_file"]), info.get("labin"), ligands,
                         info.get("options", "")))
    return out


def _resolve(base: Path, name: str) -> Path:
    q = Path(name).expanduser()
    return q if q.is_absolute() else base / q


def _stem(path: str) -> str:
    name = Path(path).name
    for ext in (".gz", ".pdb", ".cif", ".mmcif", ".ent"):
        name = name.removesuffix(ext)
    return name


def _safe(name: str) -> str:
    """A name usable as a folder: characters other than letters, digits and ._+- become '_'."""
    return NAME_OK.sub("_", name) or "entry"


def file_digest(path) -> str | None:
    """SHA-256 of a file's bytes (None when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def read_json_or_none(path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable (a manifest, a stamp)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
