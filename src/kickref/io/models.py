"""Reading and writing atomic models (PDB, mmCIF, gzipped or not) through gemmi."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from ..core.errors import InputError
from ..core.model import Model
from .files import atomic_path, check_readable, short_message


def read_model(path, hydrogens: str = "keep") -> Model:
    """Read a coordinate file into a :class:`Model`.

    ``hydrogens``: 'keep' (default) or 'remove' (drop H/D atoms on reading).
    Only the first model of a multi-model file is used.
    """
    p = check_readable(path)
    try:
        st = gemmi.read_structure(str(p), merge_chain_parts=True)
    except Exception as e:  # gemmi raises RuntimeError/ValueError with a message
        raise InputError(p, f"cannot read as PDB or mmCIF ({short_message(e)})") from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(p, "model has no atoms")
    if len(st) > 1:
        del st[1:]
    st.setup_entities()
    if hydrogens == "remove":
        st.remove_hydrogens()
        if st[0].count_atom_sites() == 0:
            raise InputError(p, "model has no atoms after removing hydrogens")
    elif hydrogens != "keep":
        raise ValueError(f"hydrogens must be 'keep' or 'remove', not {hydrogens!r}")
    st.remove_empty_chains()
    model = Model.from_structure(st, path=str(p))
    unknown = np.flatnonzero(model.element == "X")
    if len(unknown):
        i = unknown[0]
        raise InputError(p, f"unknown element for atom {model.atom_label(i)} "
                            f"({len(unknown)} atom(s) with unknown element)")
    if not np.all(np.isfinite(model.xyz)):
        raise InputError(p, "non-finite coordinates")
    if model.cell.volume < 1.0 or not st.cell.is_crystal():
        model.meta["no_cell"] = True
    return model




def pdb_limitation(model: Model) -> str | None:
    """Why ``model`` cannot be written in the PDB format (chain names over 2 characters), or None;
    mmCIF holds any model."""
    long = sorted({c for c in model.chain if len(c) > 2})
    if long:
        return f"chain names longer than the PDB format's 2 characters ({', '.join(long[:3])})"
    return None


def write_model(model: Model, path, *, remarks: dict | None = None) -> None:
    """Write the model as PDB (``.pdb``/``.ent``) or mmCIF (``.cif``/``.mmcif``), atomically.

    ``remarks`` may carry refinement statistics (keys r_work, r_free, rmsd_bond, rmsd_angle,
    d_min, d_max, n_refl, n_free) that go into REMARK 3 / ``_refine``. TLS groups in
    ``model.meta['tls']`` (:meth:`kickref.refinement.tls.TLSModel.records`) go into REMARK 3
    (REFMAC's layout) / ``_pdbx_refine_tls*``; the atoms' U are the total (TLS + residual).
    """
    st = model.sync_structure()
    p = Path(path)
    name = p.name.lower().removesuffix(".gz")
    if remarks:
        _set_refinement_info(st, remarks)
    tls = model.meta.get("tls")
    if tls:
        _set_tls_groups(st, tls)
    with atomic_path(p) as tmp:
        if name.endswith((".cif", ".mmcif")):
            doc = st.make_mmcif_document()
            if remarks:
                _add_refine_to_cif(doc.sole_block(), remarks)
            doc.write_file(tmp)
        else:
            opt = gemmi.PdbWriteOptions()
            raw = list(st.raw_remarks)
            if remarks or tls:
                # the input's REMARK 3 (another program's refinement) would be read as ours
                st.raw_remarks = [line for line in raw if not line.startswith("REMARK   3")]
            try:
                text = st.make_pdb_string(opt)
            finally:
                st.raw_remarks = raw
            if remarks or tls:
                text = _insert_remark3(text, (_pdb_remarks(remarks) if remarks else "")
                                       + (_pdb_tls_remarks(tls) if tls else ""))
            with open(tmp, "w") as f:
                f.write(text)


def _set_refinement_info(st: gemmi.Structure, r: dict) -> None:
    try:
        ref = gemmi.RefinementInfo()
        ref.id = "1"
        if r.get("r_work") is not None:
            ref.r_work = float(r["r_work"])
        if r.get("r_free") is not None:
            ref.r_free = float(r["r_free"])
        if r.get("d_min") is not None:
            ref.resolution_high = float(r["d_min"])
        if r.get("d_max") is not None:
            ref.resolution_low = float(r["d_max"])
        st.meta.refinement = [ref]
        sw = gemmi.SoftwareItem()
        sw.name = "kickref"
        from .. import __version__
        sw.version = __version__
        sw.classification = gemmi.SoftwareItem.Classification.Refinement
        st.meta.software = [sw]
    except Exception:  # metadata is a courtesy; never fail writing on it
        pass


def _set_tls_groups(st: gemmi.Structure, groups: list) -> None:
    """TLS groups into gemmi's metadata (mmCIF ``_pdbx_refine_tls*`` is written from it)."""
    out = []
    for g in groups:
        t = gemmi.TlsGroup()
        t.id = g["id"]
        t.origin = gemmi.Position(*g["origin"])
        T, L = g["T"], g["L"]
        t.T = gemmi.SMat33d(T[0][0], T[1][1], T[2][2], T[0][1], T[0][2], T[1][2])
        t.L = gemmi.SMat33d(L[0][0], L[1][1], L[2][2], L[0][1], L[0][2], L[1][2])
        t.S = gemmi.Mat33(g["S"])
        sels = []
        for chain, first, last in g["ranges"]:
            sel = gemmi.TlsGroup.Selection()
            sel.chain, sel.res_begin, sel.res_end = chain, gemmi.SeqId(first), gemmi.SeqId(last)
            sels.append(sel)
        t.selections = sels
        out.append(t)
    if not st.meta.refinement:
        ref = gemmi.RefinementInfo()
        ref.id = "1"
        st.meta.refinement = [ref]
    refs = st.meta.refinement
    refs[0].tls_groups = out
    st.meta.refinement = refs


def _pdb_tls_remarks(groups: list) -> str:
    """REMARK 3 TLS DETAILS (REFMAC's layout: T Å², L deg², S Å·deg), as gemmi reads it."""
    lines = ["REMARK   3", "REMARK   3  TLS DETAILS",
             f"REMARK   3   NUMBER OF TLS GROUPS  : {len(groups)}"]
    for g in groups:
        T, L, S, o = g["T"], g["L"], g["S"], g["origin"]
        lines += ["REMARK   3", f"REMARK   3   TLS GROUP : {g['id']}",
                  f"REMARK   3    NUMBER OF COMPONENTS GROUP : {len(g['ranges'])}",
                  "REMARK   3    COMPONENTS        C SSSEQI   TO  C SSSEQI"]
        lines += [f"REMARK   3    RESIDUE RANGE :   {c:>1s} {a:>5s}        {c:>1s} {b:>5s}"
                  for c, a, b in g["ranges"]]
        lines += [f"REMARK   3    ORIGIN FOR THE GROUP (A):{o[0]:9.4f}{o[1]:9.4f}{o[2]:9.4f}",
                  "REMARK   3    T TENSOR",
                  f"REMARK   3      T11:{T[0][0]:9.4f} T22:{T[1][1]:9.4f}",
                  f"REMARK   3      T33:{T[2][2]:9.4f} T12:{T[0][1]:9.4f}",
                  f"REMARK   3      T13:{T[0][2]:9.4f} T23:{T[1][2]:9.4f}",
                  "REMARK   3    L TENSOR",
                  f"REMARK   3      L11:{L[0][0]:9.4f} L22:{L[1][1]:9.4f}",
                  f"REMARK   3      L33:{L[2][2]:9.4f} L12:{L[0][1]:9.4f}",
                  f"REMARK   3      L13:{L[0][2]:9.4f} L23:{L[1][2]:9.4f}",
                  "REMARK   3    S TENSOR"]
        lines += [f"REMARK   3      S{i + 1}1:{S[i][0]:9.4f} S{i + 1}2:{S[i][1]:9.4f} S{i + 1}3:{S[i][2]:9.4f}"
                  for i in range(3)]
    lines.append("REMARK   3")
    return "\n".join(f"{s:<80}" for s in lines) + "\n"


# records that stand before REMARK 3 in a PDB file (format v3.3, title section order)
_BEFORE_REMARK3 = ("HEADER", "OBSLTE", "TITLE ", "SPLIT ", "CAVEAT", "COMPND", "SOURCE", "KEYWDS",
                   "EXPDTA", "NUMMDL", "MDLTYP", "AUTHOR", "REVDAT", "SPRSDE", "JRNL  ",
                   "REMARK   0", "REMARK   1", "REMARK   2")


def _insert_remark3(text: str, block: str) -> str:
    """``block`` (REMARK 3 lines) inserted where PDB order puts it: after the title records and
    REMARKs 0–2, before any other record."""
    lines = text.splitlines(keepends=True)
    k = 0
    while k < len(lines) and lines[k].startswith(_BEFORE_REMARK3):
        k += 1
    return "".join(lines[:k]) + block + "".join(lines[k:])


def _fmt(v, f="{:.4f}", null="NULL"):
    """A number for a PDB REMARK (``NULL`` when unknown) or, with ``null='?'``, for mmCIF."""
    return null if v is None else f.format(v)


def _pdb_remarks(r: dict) -> str:
    """The REMARK 3 block, laid out as REFMAC writes it (gemmi and the PDB read it back)."""
    lines = ["REMARK   3", "REMARK   3 REFINEMENT.", "REMARK   3   PROGRAM     : KICKREF",
             "REMARK   3", "REMARK   3  DATA USED IN REFINEMENT."]
    if r.get("d_min") is not None:
        lines.append(f"REMARK   3   RESOLUTION RANGE HIGH (ANGSTROMS) : {r['d_min']:.2f}")
    if r.get("d_max") is not None:
        lines.append(f"REMARK   3   RESOLUTION RANGE LOW  (ANGSTROMS) : {r['d_max']:.2f}")
    lines += ["REMARK   3", "REMARK   3  FIT TO DATA USED IN REFINEMENT.",
              f"REMARK   3   R VALUE            (WORKING SET) : {_fmt(r.get('r_work'))}",
              f"REMARK   3   FREE R VALUE                     : {_fmt(r.get('r_free'))}"]
    if r.get("rmsd_bond") is not None or r.get("rmsd_angle") is not None:
        lines += ["REMARK   3", "REMARK   3  RMS DEVIATIONS FROM IDEAL VALUES        COUNT    RMS    WEIGHT"]
    if r.get("rmsd_bond") is not None:
        lines.append(f"REMARK   3   BOND LENGTHS REFINED ATOMS        (A):  NULL ;{r['rmsd_bond']:7.4f} ;  NULL")
    if r.get("rmsd_angle") is not None:
        lines.append(f"REMARK   3   BOND ANGLES REFINED ATOMS   (DEGREES):  NULL ;{r['rmsd_angle']:7.3f} ;  NULL")
    lines.append("REMARK   3")
    return "\n".join(f"{s:<80}" for s in lines) + "\n"


def _add_refine_to_cif(block: gemmi.cif.Block, r: dict) -> None:
    """Write the ``_refine`` and ``_refine_ls_restr`` categories."""
    block.find_mmcif_category("_refine.").erase()
    pairs = [
        ("pdbx_refine_id", "'X-RAY DIFFRACTION'"),
        ("entry_id", block.name.upper() if block.name else "XXXX"),
        ("ls_R_factor_R_work", _fmt(r.get("r_work"), null="?")),
        ("ls_R_factor_R_free", _fmt(r.get("r_free"), null="?")),
        ("ls_d_res_high", _fmt(r.get("d_min"), "{:.3f}", null="?")),
        ("ls_d_res_low", _fmt(r.get("d_max"), "{:.3f}", null="?")),
        ("ls_number_reflns_obs", str(r.get("n_refl", "?"))),
        ("ls_number_reflns_R_free", str(r.get("n_free", "?"))),
        ("pdbx_ls_sigma_F", "?"),
    ]
    block.set_pairs("_refine.", {k: v for k, v in pairs}, raw=True)
    block.find_mmcif_category("_refine_ls_restr.").erase()
    rows = []
    if r.get("rmsd_bond") is not None:
        rows.append(["'X-RAY DIFFRACTION'", "r_bond_refined_d", f"{r['rmsd_bond']:.4f}"])
    if r.get("rmsd_angle") is not None:
        rows.append(["'X-RAY DIFFRACTION'", "r_angle_refined_deg", f"{r['rmsd_angle']:.3f}"])
    if rows:
        loop = block.init_mmcif_loop("_refine_ls_restr.", ["pdbx_refine_id", "type", "dev_ideal"])
        for row in rows:
            loop.add_row(row)
