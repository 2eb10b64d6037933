"""One judge for every refined model of the refinement benchmark.

- R-work / R-free: cctbx ``mmtbx.model_vs_data MODEL DATA`` (its own bulk solvent, anisotropic
  scaling and n_gaussian form factors) when a peers venv provides it, else kickref's own
  calculator (:func:`kickref.rfactor`). The same data file is given for every model of a case.
- Geometry: bond and angle RMSD (Å, degrees) from gemmi's topology (``gemmi.prepare_topology``
  with the given CCP4 monomer library, hydrogens unchanged) over restraints whose atoms are all
  non-hydrogen — the "non H" rows of REFMAC/servalcat — so that models with and without riding
  H are compared on the same restraints.
- xyz RMSD (Å) to a reference (the deposited model): atoms matched by (chain, residue number,
  insertion code, residue name, atom name, altloc), non-hydrogen atoms only.

Run: ``python benchmarks/judge.py MODEL DATA [--reference REF] [--monlib DIR] [--mvd EXE]``
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gemmi
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MONLIB = ROOT / ".." / "shared" / "monomers"


# ---------------------------------------------------------------- files for cctbx
def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plain_copy(path, dest_dir, stem: str | None = None) -> Path:
    """A copy of ``path`` that cctbx can read: gunzipped, ``.ent``/``.mmcif`` renamed ``.cif``.

    Written to ``dest_dir/<stem><suffix>``; an identical existing copy is kept as it is.
    """
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    base, _, suffix = name.rpartition(".")
    suffix = {"ent": "cif", "mmcif": "cif"}.get(suffix.lower(), suffix.lower())
    dest = Path(dest_dir) / f"{stem or base}.{suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    tmp = dest.with_name(dest.name + ".tmp")
    with opener(path, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    if dest.exists() and _digest(dest) == _digest(tmp):
        tmp.unlink()
    else:
        tmp.replace(dest)
    return dest


# ---------------------------------------------------------------- R factors
_R_LINE = re.compile(r"^\s*(r_work|r_free):\s*([-0-9.eE+naN]+|None)\s*$", re.M)


def parse_model_vs_data(text: str) -> dict:
    """r_work, r_free, the data array used and the free-flag value from model_vs_data's output."""
    out: dict = {}
    section = text.split("Model vs Data:", 1)[-1]
    for key, value in _R_LINE.findall(section):
        # first block only (later: header of the file); "None": no test set (r_free None)
        out.setdefault(key, None if value == "None" else float(value))
    m = re.search(r"Miller array info:\s*(.+)", text)
    out["data_array"] = m.group(1).strip() if m else None
    m = re.search(r"R-free-flags:.*?flag value:\s*(\S+)", text, re.S)
    out["free_flag_value"] = m.group(1) if m else None
    m = re.search(r"Number of F-obs outliers:\s*(\d+)", text)
    out["n_fobs_outliers"] = int(m.group(1)) if m else None
    return out


def cctbx_rfactors(model, data, mvd_exe, work_dir, extra_args=(), timeout: float = 1800) -> dict:
    """R-work/R-free of MODEL against DATA by cctbx ``mmtbx.model_vs_data``.

    MODEL and DATA are copied (plain, ``.cif`` names) under ``work_dir`` first. Raises
    RuntimeError with the end of cctbx's output if it fails or prints no R factors.
    """
    work_dir = Path(work_dir)
    m = plain_copy(model, work_dir, stem="model")
    d = Path(data)
    if d.name.endswith(".gz") or d.suffix.lower() in (".ent", ".mmcif"):
        d = plain_copy(d, work_dir, stem="data")
    cmd = [str(mvd_exe), m.name, str(d.resolve()), *extra_args]
    proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True, timeout=timeout)
    text = proc.stdout + proc.stderr
    (work_dir / "model_vs_data.log").write_text(text)
    res = parse_model_vs_data(text)
    if proc.returncode or res.get("r_work") is None or "r_free" not in res:
        tail = " | ".join(text.strip().splitlines()[-5:])
        raise RuntimeError(f"model_vs_data failed on {model} (rc {proc.returncode}): {tail}")
    res.update(calculator="cctbx mmtbx.model_vs_data", command=" ".join(cmd[:1] + [str(m), *cmd[2:]]))
    return res


def kickref_rfactors(model, data, **load_options) -> dict:
    """R-work/R-free of MODEL against DATA by kickref's own calculator (:func:`kickref.rfactor`)."""
    import warnings
    import kickref
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = kickref.rfactor(str(model), str(data), **load_options)
    return {"r_work": float(res.r_work), "r_free": float(res.r_free),
            "data_array": ",".join(res.data_columns or []) or None,
            "n_fobs_outliers": res.n_outliers, "calculator": "kickref.rfactor"}


# ---------------------------------------------------------------- geometry
def read_structure(path) -> gemmi.Structure:
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    st.remove_empty_chains()
    return st


def geometry_rmsd(model, monlib_dir=DEFAULT_MONLIB) -> dict:
    """Bond RMSD (Å) and angle RMSD (degrees) over all-non-H restraints of gemmi's topology.

    Also the number of those restraints and the largest |Δ| of each. Restraint targets are the
    monomer library's (``value``, not the nucleus distance).
    """
    st = model if isinstance(model, gemmi.Structure) else read_structure(model)
    monlib = gemmi.read_monomer_lib(str(monlib_dir), st[0].get_all_residue_names())
    warnings_out: list = []

    class _Log:                                   # gemmi writes topology warnings here
        def write(self, s):
            if s.strip():
                warnings_out.append(s.strip())

        def flush(self):
            pass

    topo = gemmi.prepare_topology(st, monlib, h_change=gemmi.HydrogenChange.NoChange,
                                  warnings=_Log(), ignore_unknown_links=True)
    bonds = [(b.calculate(), b.restr.value) for b in topo.bonds
             if not (b.atoms[0].is_hydrogen() or b.atoms[1].is_hydrogen())]
    angles = [(a.calculate(), a.restr.value) for a in topo.angles
              if not any(x.is_hydrogen() for x in a.atoms)]
    db = np.array(bonds, dtype=float).reshape(-1, 2)
    da = np.array(angles, dtype=float).reshape(-1, 2)
    d_bond = db[:, 0] - db[:, 1]
    d_angle = np.degrees(da[:, 0]) - da[:, 1]
    rms = lambda x: float(np.sqrt(np.mean(x ** 2))) if x.size else float("nan")  # noqa: E731
    mx = lambda x: float(np.max(np.abs(x))) if x.size else float("nan")  # noqa: E731
    return {"bond_rmsd": rms(d_bond), "angle_rmsd": rms(d_angle), "n_bonds": int(d_bond.size),
            "n_angles": int(d_angle.size), "bond_max": mx(d_bond), "angle_max": mx(d_angle),
            "geometry_by": f"gemmi {gemmi.__version__} topology, non-H restraints",
            "topology_warnings": warnings_out[:20]}


# ---------------------------------------------------------------- coordinates
def atom_table(model) -> tuple[list, np.ndarray]:
    """Keys (chain, resseq, icode, resname, atom name, altloc) and xyz (n,3) Å of non-H atoms."""
    st = model if isinstance(model, gemmi.Structure) else read_structure(model)
    keys, xyz = [], []
    for ch in st[0]:
        for res in ch:
            icode = res.seqid.icode.strip()
            for a in res:
                if a.is_hydrogen():
                    continue
                alt = a.altloc if a.altloc != "\0" else ""
                keys.append((ch.name, res.seqid.num, icode, res.name, a.name, alt))
                xyz.append(a.pos.tolist())
    return keys, np.array(xyz, dtype=float).reshape(-1, 3)


def xyz_rmsd(model, reference) -> dict:
    """RMSD (Å) of matched non-H atoms of MODEL to REFERENCE; also max deviation and counts."""
    keys_m, xyz_m = atom_table(model)
    keys_r, xyz_r = reference if isinstance(reference, tuple) else atom_table(reference)
    index_r = {k: i for i, k in enumerate(keys_r)}
    pairs = np.array([(i, index_r[k]) for i, k in enumerate(keys_m) if k in index_r],
                     dtype=np.int64).reshape(-1, 2)
    if pairs.shape[0] == 0:
        return {"xyz_rmsd": float("nan"), "xyz_max": float("nan"), "n_matched": 0,
                "n_model": len(keys_m), "n_reference": len(keys_r)}
    d = np.linalg.norm(xyz_m[pairs[:, 0]] - xyz_r[pairs[:, 1]], axis=1)
    return {"xyz_rmsd": float(np.sqrt(np.mean(d ** 2))), "xyz_max": float(d.max()),
            "n_matched": int(pairs.shape[0]), "n_model": len(keys_m), "n_reference": len(keys_r)}


# ---------------------------------------------------------------- everything
def judge(model, data, *, reference=None, monlib_dir=DEFAULT_MONLIB, mvd_exe=None,
          work_dir=None, cctbx_args=(), kickref_options=None) -> dict:
    """R factors (cctbx if ``mvd_exe`` else kickref), geometry and xyz RMSD of one model.

    Failures of one part are recorded as ``<part>_error`` strings; the other parts still run.
    """
    out: dict = {"model": str(model)}
    try:
        if mvd_exe:
            out.update(cctbx_rfactors(model, data, mvd_exe, work_dir or Path(model).parent / "judge",
                                      extra_args=cctbx_args))
        else:
            out.update(kickref_rfactors(model, data, **(kickref_options or {})))
    except Exception as exc:                      # noqa: BLE001 - recorded, reported in the table
        out["r_error"] = f"{type(exc).__name__}: {exc}"
    try:
        st = read_structure(model)
        out.update(geometry_rmsd(st, monlib_dir))
    except Exception as exc:                      # noqa: BLE001
        out["geometry_error"] = f"{type(exc).__name__}: {exc}"
    if reference is not None:
        try:
            out.update(xyz_rmsd(model, reference))
        except Exception as exc:                  # noqa: BLE001
            out["xyz_error"] = f"{type(exc).__name__}: {exc}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--reference", help="model to compute the xyz RMSD to (e.g. the deposited one)")
    ap.add_argument("--monlib", default=str(DEFAULT_MONLIB))
    ap.add_argument("--mvd", help="mmtbx.model_vs_data executable (default: kickref's calculator)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "judge"))
    ap.add_argument("cctbx_args", nargs="*", help="extra model_vs_data arguments (key=value)")
    args = ap.parse_args(argv)
    res = judge(args.model, args.data, reference=args.reference, monlib_dir=args.monlib,
                mvd_exe=args.mvd, work_dir=args.work, cctbx_args=args.cctbx_args)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
