"""Reading merged diffraction data (MTZ, SF-mmCIF; gzipped or not) into :class:`Reflections`.

Pipeline of :func:`read_reflections`:
 1. read the file with gemmi (MTZ columns are taken from ``numpy.array(mtz)`` by label);
 2. choose columns: amplitudes preferred over intensities; ``labin`` overrides;
 3. drop unobserved rows (NaN value or sigma, SF-mmCIF ``_refln.status`` 'x' or '-') and (0,0,0);
 4. free flags: CCP4 0..19 (0 = test), two-valued flags (smaller class = test),
    SF-mmCIF ``status`` 'f'; ``free_value`` picks the test value explicitly;
 5. map indices to the CCP4 reciprocal ASU, drop systematic absences, merge duplicates
    (inverse-variance weighted mean; a merged reflection is free if any of its parts was);
 6. values no measurement gives: amplitudes with F < 0 or sigma < 0 dropped (counted, warned),
    sigma = 0 kept as exact (warned); intensities with sigma <= 0 dropped, the others (negative
    ones too) → amplitudes by French–Wilson (:mod:`kickref.xtal.french_wilson`);
 7. resolution limits; model/data cell and space-group check.
``Reflections.source`` records the columns used, conversions, counts and warnings.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import gemmi
import numpy as np

from ..core.errors import InputError
from ..core.reflections import Reflections
from ..xtal.french_wilson import french_wilson
from .files import check_readable, short_message

# Preferred labels, most preferred first (MTZ labels and SF-mmCIF _refln tags).
AMPLITUDE_LABELS = ("FP", "F", "FOBS", "F-obs", "F_obs", "F-obs-filtered", "FMEAN", "F_meas_au", "F_meas")
INTENSITY_LABELS = ("IMEAN", "I", "IOBS", "I-obs", "I_obs", "I-obs-filtered", "intensity_meas",
                    "F_squared_meas")
FREE_LABELS = ("FREE", "FreeR_flag", "R-free-flags", "FREER", "FreeRflag", "FREE_FLAG",
               "pdbx_r_free_flag")
# MTZ-style labels that users type for SF-mmCIF files, as gemmi's cif2mtz names the _refln tags
# (its default conversion: intensity_meas → IMEAN, F_meas_au → FP, pdbx_r_free_flag/status →
# FreeR_flag, ...); plain I/SIGI and F/SIGF too. Looked up case-insensitively, used only where the
# file has no column of that name; the first tag present wins.
CIF_TAGS_FOR_MTZ_LABEL = {
    "imean": ("intensity_meas",), "i": ("intensity_meas",),
    "sigimean": ("intensity_sigma",), "sigi": ("intensity_sigma",),
    "fp": ("F_meas_au", "F_meas"), "f": ("F_meas_au", "F_meas"), "fobs": ("F_meas_au", "F_meas"),
    "sigfp": ("F_meas_sigma_au", "F_meas_sigma"), "sigf": ("F_meas_sigma_au", "F_meas_sigma"),
    "sigfobs": ("F_meas_sigma_au", "F_meas_sigma"),
    "i(+)": ("pdbx_I_plus",), "sigi(+)": ("pdbx_I_plus_sigma",),
    "i(-)": ("pdbx_I_minus",), "sigi(-)": ("pdbx_I_minus_sigma",),
    "f(+)": ("pdbx_F_plus",), "sigf(+)": ("pdbx_F_plus_sigma",),
    "f(-)": ("pdbx_F_minus",), "sigf(-)": ("pdbx_F_minus_sigma",),
    "free": ("pdbx_r_free_flag", "status"), "freer_flag": ("pdbx_r_free_flag", "status"),
    "r-free-flags": ("pdbx_r_free_flag", "status"), "freerflag": ("pdbx_r_free_flag", "status"),
}
CELL_EDGE_TOLERANCE = 0.01      # relative, model vs data
CELL_ANGLE_TOLERANCE = 1.0      # degrees, model vs data
CELL_EDGE_NOTICE = 0.002        # relative: accepted, but said (isomorphous soaks, other temperatures)


# ----------------------------------------------------------------------------------------------
# public API

def read_reflections(path, labin=None, free_value=None, d_min=None, d_max=None,
                     model_cell=None, model_spacegroup=None) -> Reflections:
    """Read merged amplitudes or intensities (MTZ or SF-mmCIF) into :class:`Reflections`.

    ``labin``: "F,SIGF[,FREE]" or "I,SIGI[,FREE]" (string or sequence); SF-mmCIF tags may be
    given with or without ``_refln.``; FREE may be ``status`` for SF-mmCIF. Without labin the
    columns are detected from MTZ column types (F/Q/J/I) and common labels.
    ``free_value``: flag value that marks the test set (default: detected convention); in
    SF-mmCIF it selects from ``pdbx_r_free_flag``, and is ignored (with a warning) where only
    ``_refln.status`` 'f' marks the test set.
    ``d_min``, ``d_max``: resolution limits in Å.
    ``model_cell`` (gemmi.UnitCell or 6 numbers) and ``model_spacegroup`` (gemmi.SpaceGroup or
    name): used when the data file lacks them, and checked against the data otherwise.
    Bad input raises :class:`InputError`.
    """
    p = check_readable(path)
    return _reflections_from_table(_read_table(p), p, labin, free_value, d_min, d_max, model_cell,
                                   model_spacegroup)


def reflections_from_mtz(mtz: gemmi.Mtz, labin=None, free_value=None, d_min=None, d_max=None,
                         model_cell=None, model_spacegroup=None) -> Reflections:
    """:class:`Reflections` from an in-memory ``gemmi.Mtz``, by the same rules as
    :func:`read_reflections` (column choice, free-flag convention, ASU, duplicates, French–Wilson,
    resolution limits). ``path`` of the result is None."""
    where = "in-memory MTZ"
    return _reflections_from_table(_mtz_table(mtz, where), where, labin, free_value, d_min, d_max,
                                   model_cell, model_spacegroup)


def reflections_to_mtz(refl: Reflections) -> gemmi.Mtz:
    """A ``gemmi.Mtz`` with H K L, FP (F), SIGFP (Q) and, when there is a test set, FREE (I) in
    the CCP4 convention: 0 = test set, 1 = work. Amplitudes on the data's scale; cell and space
    group of ``refl``. Stored as float32, as in any MTZ file."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.cell = refl.cell
    mtz.spacegroup = refl.spacegroup
    mtz.add_dataset("kickref")
    cols = [("FP", "F", refl.f_obs), ("SIGFP", "Q", refl.sigma)]
    if refl.has_free:
        cols.append(("FREE", "I", np.where(refl.free, 0, 1)))
    for label, typ, _ in cols:
        mtz.add_column(label, typ)
    mtz.set_data(np.column_stack([refl.hkl] + [c for _, _, c in cols]).astype(np.float32))
    mtz.update_reso()
    return mtz


def reflections_to_dataset(refl: Reflections):
    """A ``reciprocalspaceship.DataSet`` with FP, SIGFP and (with a test set) FREE, as
    :func:`reflections_to_mtz` (reciprocalspaceship is optional and imported here)."""
    import reciprocalspaceship as rs
    return rs.io.from_gemmi(reflections_to_mtz(refl))


def reflections_from_dataset(ds, labin=None, free_value=None, d_min=None, d_max=None) -> Reflections:
    """:class:`Reflections` from a ``reciprocalspaceship.DataSet`` (through its gemmi.Mtz), by the
    rules of :func:`reflections_from_mtz`."""
    return reflections_from_mtz(ds.to_gemmi(), labin=labin, free_value=free_value, d_min=d_min,
                                d_max=d_max)


def _reflections_from_table(table, p, labin, free_value, d_min, d_max, model_cell,
                            model_spacegroup) -> Reflections:
    """The steps 2–7 of :func:`read_reflections` on a column table; ``p`` names the source."""
    warnings: list[str] = []
    m_cell = _as_cell(model_cell, p)
    m_sg = _as_spacegroup(model_spacegroup, p)

    cell, sg = table.cell, table.spacegroup
    cell_from_model = sg_from_model = False
    if cell is None:
        if m_cell is None:
            raise InputError(p, "data file has no unit cell; give a model so its cell can be used")
        cell, cell_from_model = m_cell, True
        warnings.append("unit cell taken from the model (none in the data file)")
    if sg is None:
        if m_sg is None:
            raise InputError(p, "data file has no space group; give a model so its space group can be used")
        sg, sg_from_model = m_sg, True
        warnings.append(f"space group {m_sg.hm} taken from the model (none in the data file)")
    if (m_cell is not None or m_sg is not None) and not (cell_from_model and sg_from_model):
        check_model_data_compatible(m_cell, m_sg, SimpleNamespace(cell=cell, spacegroup=sg), None, p)
    if d_min is not None and d_min <= 0:
        raise InputError(p, f"d_min must be positive, not {d_min}")
    if d_min is not None and d_max is not None and d_min >= d_max:
        raise InputError(p, f"resolution limits d_min {d_min} >= d_max {d_max}")

    data_label, sigma_label, free_label, is_intensity = _choose_columns(table, labin, free_value, warnings)
    value = table.column(data_label)
    if sigma_label is not None:
        sigma = table.column(sigma_label)
    else:
        sigma = np.zeros_like(value)
        warnings.append(f"no sigma column for {data_label}; sigmas set to 0")
    if not np.any(np.isfinite(value)):
        raise InputError(p, f"column {data_label} has no numeric values (all missing/NaN)")

    n_in_file = len(value)
    observed = np.isfinite(value) & np.isfinite(sigma)
    n_status_x = 0
    if table.status is not None:
        unobserved_status = np.isin(table.status, ("x", "-"))
        n_status_x = int(np.count_nonzero(unobserved_status))
        observed &= ~unobserved_status
    hkl = table.hkl
    origin = np.all(hkl == 0, axis=1)
    observed &= ~origin
    if not np.any(observed):
        raise InputError(p, f"no observed reflections in column {data_label}")
    n_missing = int(n_in_file - np.count_nonzero(observed))

    # free flags (on observed rows)
    free_info = _free_flags(table, free_label, free_value, observed, p, warnings)
    has_free = free_info["has_free"]
    free = free_info["free"][observed] if has_free else np.zeros(np.count_nonzero(observed), bool)

    hkl = hkl[observed]
    value = value[observed]
    sigma = sigma[observed]

    # reciprocal ASU, absences, duplicates
    hkl = _to_reciprocal_asu(hkl, sg)
    absent = sg.operations().systematic_absences(np.ascontiguousarray(hkl, dtype=np.int32))
    n_absent = int(np.count_nonzero(absent))
    if n_absent:
        keep = ~absent
        hkl, value, sigma, free = hkl[keep], value[keep], sigma[keep], free[keep]
    if len(hkl) == 0:
        raise InputError(p, "all observed reflections are systematic absences of " + sg.hm)
    hkl, value, sigma, free, n_dup = _merge_duplicates(hkl, value, sigma, free)
    if n_dup:
        warnings.append(f"{n_dup} symmetry-equivalent or Friedel duplicate reflections merged")

    # values no measurement can give: for amplitudes F < 0 and σ < 0 are dropped, σ = 0 is kept
    # (an exact value: the likelihood's variance is then ε·S alone); for intensities negative I
    # are valid (French–Wilson takes them) and σ ≤ 0 is dropped below
    n_negative_f = n_negative_sigma = n_zero_sigma = 0
    if not is_intensity:
        bad_f, bad_s = value < 0, sigma < 0
        n_negative_f, n_negative_sigma = int(np.count_nonzero(bad_f)), int(np.count_nonzero(bad_s & ~bad_f))
        if n_negative_f or n_negative_sigma:
            keep = ~(bad_f | bad_s)
            parts = [f"{n} with {what}" for n, what in ((n_negative_f, "F < 0"), (n_negative_sigma, "sigma < 0")) if n]
            warnings.append(f"{' and '.join(parts)} in {data_label}/{sigma_label} dropped (not valid amplitudes)")
            hkl, value, sigma, free = hkl[keep], value[keep], sigma[keep], free[keep]
            if len(hkl) == 0:
                raise InputError(p, f"no valid amplitude in {data_label} (all negative F or sigma)")
        n_zero_sigma = int(np.count_nonzero(sigma == 0)) if sigma_label is not None else 0
        if n_zero_sigma:
            warnings.append(f"{n_zero_sigma} amplitudes with sigma = 0 kept (taken as exact)")

    # intensities -> amplitudes
    fw_bins = None
    n_bad_sigma = 0
    i_obs = sigma_i = None
    if is_intensity:
        good = sigma > 0
        n_bad_sigma = int(np.count_nonzero(~good))
        if n_bad_sigma:
            warnings.append(f"{n_bad_sigma} intensities with sigma <= 0 dropped before French-Wilson")
            hkl, value, sigma, free = hkl[good], value[good], sigma[good], free[good]
            if len(hkl) == 0:
                raise InputError(p, f"no intensity in {data_label} has a positive sigma")
        ops = sg.operations()
        fw = french_wilson(value, sigma, cell.calculate_1_d2_array(hkl),
                           ops.centric_flag_array(hkl),
                           ops.epsilon_factor_without_centering_array(hkl))
        i_obs, sigma_i = value, sigma                  # kept for the intensity targets
        value, sigma, fw_bins = fw.f, fw.sigma_f, fw.n_bins

    refl = Reflections(cell, sg, hkl, value, sigma, free, has_free,
                       str(p) if isinstance(p, Path) else None, {}, i_obs, sigma_i)
    n_before_cut = refl.n
    if d_min is not None or d_max is not None:
        refl = refl.resolution_cut(d_min, d_max)
        if refl.n == 0:
            lo = f"{d_max} Å" if d_max is not None else "the lowest resolution"
            hi = f"{d_min} Å" if d_min is not None else "the highest resolution"
            raise InputError(p, f"no reflections between {lo} and {hi} (--d-max/--d-min)")
    if refl.has_free and not np.any(refl.free):
        refl.has_free = False
        warnings.append("no test-set reflections left; refining without a free set")
    if not has_free:
        warnings.append(free_info["reason"])

    refl.source = {
        "format": table.format,
        "block": table.block,
        "columns": {"data": data_label, "sigma": sigma_label, "free": free_label if has_free else None},
        "labin": ",".join(x for x in (data_label, sigma_label, free_label if has_free else None) if x),
        "data_type": "intensity" if is_intensity else "amplitude",
        "french_wilson": bool(is_intensity),
        "french_wilson_bins": fw_bins,
        "free_value": free_info.get("value"),
        "free_convention": free_info["convention"],
        "n_in_file": int(n_in_file),
        "n_missing": n_missing,
        "n_status_x": n_status_x,
        "n_absent": n_absent,
        "n_duplicates_merged": int(n_dup),
        "n_negative_f": n_negative_f,
        "n_negative_sigma": n_negative_sigma,
        "n_zero_sigma": n_zero_sigma,
        "n_nonpositive_sigma_intensities": n_bad_sigma,
        "n_outside_resolution": int(n_before_cut - refl.n),
        "cell_from_model": cell_from_model,
        "spacegroup_from_model": sg_from_model,
        "warnings": warnings,
    }
    return refl


def check_model_data_compatible(model_cell, model_sg, data, model_path=None, data_path=None) -> None:
    """Raise InputError unless the model's cell and space group match the data's.

    ``data``: :class:`Reflections` (or anything with ``.cell`` and ``.spacegroup``).
    Cell edges must agree within 1 % and angles within 1°; the space groups must have the same
    symmetry operations (different names of one group, e.g. 'P 21' and 'P 1 21 1', are fine).
    ``model_cell``/``model_sg`` may be None (not checked).
    """
    where = data_path if data_path is not None else getattr(data, "path", None)
    mdesc = f" in the model {model_path}" if model_path else " in the model"
    m_cell = _as_cell(model_cell, where)
    m_sg = _as_spacegroup(model_sg, where)
    if m_cell is not None:
        d_cell = data.cell
        for rel, name, dv, mv in _edge_differences(m_cell, d_cell):
            if rel > CELL_EDGE_TOLERANCE:
                raise InputError(where, f"unit cell edge {name} = {dv:.3f} Å in the data differs by "
                                        f"{100 * rel:.1f}% from {name} = {mv:.3f} Å{mdesc} (limit 1%)")
        for name, dv, mv in zip(("alpha", "beta", "gamma"), (d_cell.alpha, d_cell.beta, d_cell.gamma),
                                (m_cell.alpha, m_cell.beta, m_cell.gamma)):
            if abs(dv - mv) > CELL_ANGLE_TOLERANCE:
                raise InputError(where, f"unit cell angle {name} = {dv:.2f}° in the data differs from "
                                        f"{name} = {mv:.2f}°{mdesc} (limit 1°)")
    if m_sg is not None:
        d_sg = data.spacegroup
        if not same_symmetry(d_sg, m_sg):
            extra = ""
            if d_sg.point_group_hm() == m_sg.point_group_hm():
                extra = " (same point group, different screw axes or centring: reindex or relabel the data)"
            raise InputError(where, f"space group {d_sg.hm} of the data differs from {m_sg.hm}{mdesc}{extra}")


def cell_difference_note(model_cell, data_cell) -> str | None:
    """A sentence when a cell edge of the data differs from the model's by more than 0.2 % (but
    within the 1 % accepted): kickref then uses the model's cell; None when the cells agree."""
    if model_cell is None or data_cell is None:
        return None
    rel, name, dv, mv = max(_edge_differences(model_cell, data_cell))
    if rel <= CELL_EDGE_NOTICE:
        return None
    return (f"unit cell edge {name} = {dv:.3f} Å in the data differs by {100 * rel:.2f}% from the "
            f"model's {mv:.3f} Å: the model's cell is used (cctbx refuses such a pair; consider "
            f"giving the model the data's cell)")


def _edge_differences(model_cell, data_cell) -> list:
    """[(relative difference, edge name, data edge, model edge)] for a, b, c (Å)."""
    return [(abs(dv - mv) / mv, name, dv, mv) for name, dv, mv in
            zip("abc", (data_cell.a, data_cell.b, data_cell.c), (model_cell.a, model_cell.b, model_cell.c))]


def same_symmetry(sg1: gemmi.SpaceGroup, sg2: gemmi.SpaceGroup) -> bool:
    """True when the two space groups have the same set of symmetry operations."""
    return _op_set(sg1) == _op_set(sg2)


def read_map_coefficients(path, f_label: str, phi_label: str):
    """Map coefficients F·exp(iφ) (φ in degrees in the file) from MTZ or SF-mmCIF.

    Returns (hkl (n,3) int32, values (n,) complex128) for rows where both columns are present,
    with indices as stored in the file.
    """
    p = check_readable(path)
    table = _read_table(p)
    for label in (f_label, phi_label):
        if not table.has(label):
            raise InputError(p, f"column {label} not found (columns: {table.describe()})")
    f = table.column(f_label)
    phi = table.column(phi_label)
    ok = np.isfinite(f) & np.isfinite(phi)
    if not np.any(ok):
        raise InputError(p, f"columns {f_label},{phi_label} hold no numeric values")
    values = f[ok] * np.exp(1j * np.deg2rad(phi[ok]))
    return np.ascontiguousarray(table.hkl[ok], dtype=np.int32), values.astype(np.complex128)


def read_hl_coefficients(path, labels=("HLA", "HLB", "HLC", "HLD")) -> dict:
    """Hendrickson–Lattman coefficients A, B, C, D (``labels``) from MTZ or SF-mmCIF.

    Returns {'hkl': (n,3) int32 as stored, 'abcd': (n,4) float64 (rows where all four are
    present), 'f': (n,) amplitudes or None, 'f_label', 'cell', 'spacegroup'}. Amplitudes are
    taken from the same file when it has an amplitude column (MTZ type F; FP, F or FOBS
    preferred), NaN where missing.
    """
    p = check_readable(path)
    table = _read_table(p)
    labels = [str(x) for x in labels]
    if len(labels) != 4:
        raise InputError(p, f"give four HL labels (A, B, C, D), not {labels}")
    for label in labels:
        if not table.has(label):
            raise InputError(p, f"column {label} not found (columns: {table.describe()})")
    abcd = np.column_stack([table.column(x) for x in labels])
    ok = np.all(np.isfinite(abcd), axis=1)
    if not np.any(ok):
        raise InputError(p, f"columns {','.join(labels)} hold no numeric values")
    f_label = None
    if table.format == "MTZ":
        f_cols = [x for x in table.labels if table.kinds[x] == "F"]
        pref = [x for x in ("FP", "F", "FOBS", "F_obs") if x in f_cols]
        f_label = (pref or f_cols or [None])[0]
    else:
        f_label = next((x for x in ("F_meas_au", "F_meas", "F_obs") if table.has(x)), None)
    f = table.column(f_label)[ok] if f_label else None
    return {"hkl": np.ascontiguousarray(table.hkl[ok], dtype=np.int32), "abcd": abcd[ok], "f": f,
            "f_label": f_label, "cell": table.cell, "spacegroup": table.spacegroup}


def hkl_lookup(hkl_from, values, hkl_to, spacegroup: gemmi.SpaceGroup) -> np.ndarray:
    """``values`` (symmetry-invariant, e.g. |F|) given at ``hkl_from`` looked up at ``hkl_to``
    (either may hold any symmetry or Friedel equivalents); NaN where there is none."""
    def keys(h):
        a = _to_reciprocal_asu(np.asarray(h, dtype=np.int32).reshape(-1, 3), spacegroup).astype(np.int64)
        return ((a[:, 0] + 1024) << 22) | ((a[:, 1] + 1024) << 11) | (a[:, 2] + 1024)
    kf, kt = keys(hkl_from), keys(hkl_to)
    order = np.argsort(kf, kind="stable")
    ks = kf[order]
    pos = np.clip(np.searchsorted(ks, kt), 0, max(len(ks) - 1, 0))
    out = np.full(len(kt), np.nan)
    if len(ks):
        hit = ks[pos] == kt
        out[hit] = np.asarray(values, dtype=np.float64)[order[pos[hit]]]
    return out


def parse_labin(labin) -> list[str]:
    """'F,SIGF,FREE' (or a sequence) → list of 1–3 labels; '_refln.' prefixes removed."""
    if isinstance(labin, str):
        items = [x.strip() for x in labin.split(",")]
    else:
        items = [str(x).strip() for x in labin]
    items = [x[len("_refln."):] if x.startswith("_refln.") else x for x in items]
    if not 1 <= len(items) <= 3 or any(not x for x in items):
        raise ValueError(f"labin must be 'F,SIGF[,FREE]' or 'I,SIGI[,FREE]', not {labin!r}")
    return items


# ----------------------------------------------------------------------------------------------
# file reading

@dataclass
class _Table:
    """Columns of one reflection file by label, with a kind per label (MTZ column type letters)."""
    format: str
    path: Path
    hkl: np.ndarray
    labels: list
    kinds: dict
    cell: gemmi.UnitCell | None
    spacegroup: gemmi.SpaceGroup | None
    getter: object
    status: np.ndarray | None = None
    block: str | None = None
    cache: dict = field(default_factory=dict)

    def has(self, label) -> bool:
        return label in self.kinds

    def column(self, label) -> np.ndarray:
        if label not in self.cache:
            self.cache[label] = np.asarray(self.getter(label), dtype=np.float64)
        return self.cache[label]

    def describe(self) -> str:
        return " ".join(f"{lab}({self.kinds[lab]})" if self.format == "MTZ" else lab for lab in self.labels)


def _read_table(p: Path) -> _Table:
    head = _head_bytes(p)
    if head[:4] == b"MTZ ":
        return _read_mtz(p)
    name = p.name.lower().removesuffix(".gz")
    if name.endswith(".mtz"):
        raise InputError(p, "not an MTZ file (no MTZ header)")
    return _read_sf_mmcif(p)


def _head_bytes(p: Path) -> bytes:
    try:
        with open(p, "rb") as f:
            head = f.read(4)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(p, "rb") as g:
                head = g.read(4)
    except (OSError, EOFError) as e:
        raise InputError(p, f"cannot read file ({short_message(e)})") from None
    if not head:
        raise InputError(p, "file is empty")
    return head


def _read_mtz(p: Path) -> _Table:
    try:
        mtz = gemmi.read_mtz_file(str(p))
    except Exception as e:
        raise InputError(p, f"corrupt or truncated MTZ ({short_message(e)})") from None
    return _mtz_table(mtz, p)


def _mtz_table(mtz: gemmi.Mtz, p) -> _Table:
    """Columns of a gemmi.Mtz by label; ``p``: the file (or a description) for messages."""
    if len(mtz.batches) > 0:
        raise InputError(p, "unmerged MTZ (has batches); merge the data first")
    labels = list(mtz.column_labels())
    if labels[:3] != ["H", "K", "L"]:
        raise InputError(p, "MTZ does not start with H, K, L columns")
    if mtz.nreflections == 0:
        raise InputError(p, "MTZ holds no reflections")
    arr = np.array(mtz, copy=False)
    if arr.ndim != 2 or arr.shape != (mtz.nreflections, len(labels)):
        raise InputError(p, "MTZ data block does not match its header")
    index = {}
    kinds = {}
    for i, col in enumerate(mtz.columns):
        if col.label not in index:          # first of duplicated labels wins
            index[col.label] = i
            kinds[col.label] = col.type
    hkl_f = arr[:, :3]
    if not np.all(np.isfinite(hkl_f)) or np.any(hkl_f != np.round(hkl_f)):
        raise InputError(p, "MTZ has non-integer Miller indices (corrupt file)")
    hkl = hkl_f.astype(np.int32)
    cell = mtz.cell
    data_cols = [c for c in mtz.columns if c.type in "FJ"]
    if data_cols:
        cell = mtz.get_cell(data_cols[0].dataset_id)
    cell = cell if _valid_cell(cell) else None
    sg = mtz.spacegroup

    def getter(label):
        return arr[:, index[label]]

    unique_labels = list(dict.fromkeys(labels))
    return _Table("MTZ", p, hkl, unique_labels, kinds, cell, sg, getter)


def _read_sf_mmcif(p: Path) -> _Table:
    try:
        doc = gemmi.cif.read(str(p))
    except Exception as e:
        raise InputError(p, f"cannot read as SF-mmCIF: corrupt or truncated ({short_message(e)})") from None
    try:
        blocks = gemmi.as_refln_blocks(doc)
    except Exception as e:
        raise InputError(p, f"cannot read reflection blocks ({short_message(e)})") from None
    chosen = None
    unmerged_only = False
    data_tags = AMPLITUDE_LABELS + INTENSITY_LABELS
    for rb in blocks:          # first merged block with indices, preferring one with F or I
        if rb.default_loop is None:
            continue
        if not rb.is_merged():
            unmerged_only = True
            continue
        labels = list(rb.column_labels())
        if not all(t in labels for t in ("index_h", "index_k", "index_l")):
            continue
        if any(t in labels for t in data_tags):
            chosen = rb
            break
        if chosen is None:
            chosen = rb
    if chosen is None:
        if unmerged_only:
            raise InputError(p, "only unmerged data (_diffrn_refln); merge the data first")
        raise InputError(p, "no _refln loop with Miller indices (not structure-factor data)")
    rb = chosen
    labels = list(rb.column_labels())
    try:
        hkl = np.asarray(rb.make_miller_array(), dtype=np.int32)
    except Exception as e:
        raise InputError(p, f"bad Miller indices in _refln ({short_message(e)})") from None
    if len(hkl) == 0:
        raise InputError(p, "the _refln loop holds no reflections")
    kinds = {lab: _cif_kind(lab) for lab in labels}
    status = None
    if "status" in labels:
        status = np.array([s.strip("'\"") for s in rb.block.find_values("_refln.status")], dtype="U2")
        if len(status) != len(hkl):
            status = None
    cell = rb.cell if _valid_cell(rb.cell) else None
    sg = rb.spacegroup

    def getter(label):
        return rb.make_float_array(label)

    table = _Table("SF-mmCIF", p, hkl, labels, kinds, cell, sg, getter, status, rb.block.name)
    table.cache["_keepalive"] = (doc, blocks)  # ReflnBlock views into the document
    return table


def _cif_kind(tag: str) -> str:
    t = tag.lower()
    if t.startswith("index_"):
        return "H"
    if "sigma" in t:
        return "Q"
    if "intensity" in t or "f_squared" in t or re.match(r"(pdbx_)?i_", t):
        return "J"
    if "phase" in t or "phwt" in t or t.startswith("pdbx_delphwt"):
        return "P"
    if "free" in t:
        return "I"
    if t.startswith("f_") or t.startswith("pdbx_f") or "fwt" in t:
        return "F"
    return "R"


# ----------------------------------------------------------------------------------------------
# column choice

def _choose_columns(table: _Table, labin, free_value, warnings):
    """→ (data label, sigma label or None, free label or None, is_intensity)."""
    p_desc = table.describe()
    free_label = None
    if labin is not None:
        try:
            items = parse_labin(labin)
        except ValueError as e:
            raise InputError(table.path, str(e)) from None
        items = [_cif_tag_for(table, lab) for lab in items]
        for lab in items:
            if not (table.has(lab) or (lab == "status" and table.status is not None)):
                raise InputError(table.path, f"labin column {lab} not found (columns: {p_desc})")
        data_label = items[0]
        kind = table.kinds[data_label]
        if kind in "JK":
            is_intensity = True
        elif kind in "FG":
            is_intensity = False
        else:
            raise InputError(table.path, f"labin column {data_label} is of type {kind}, "
                                              "not an amplitude (F) or intensity (J)")
        sigma_label = items[1] if len(items) > 1 else _sigma_partner(table, data_label)
        if len(items) > 2:
            free_label = items[2]
        else:
            free_label = _auto_free(table, free_value)
        return data_label, sigma_label, free_label, is_intensity

    free_label = _auto_free(table, free_value)
    for kind_set, preferred, is_intensity in (("F", AMPLITUDE_LABELS, False), ("J", INTENSITY_LABELS, True)):
        found = _auto_data(table, kind_set, preferred)
        if found is not None:
            return found[0], found[1], free_label, is_intensity
    raise InputError(table.path, f"no amplitude or intensity column (columns: {p_desc})")


def _cif_tag_for(table: _Table, label: str) -> str:
    """The SF-mmCIF tag that an MTZ-style ``label`` (IMEAN, FP, SIGFP, FREE, ...) stands for
    (``label`` itself for MTZ files or when the file has a column of that name); the tag used
    is what ``source['labin']`` reports."""
    if table.format == "MTZ" or table.has(label) or label == "status":
        return label
    for cand in CIF_TAGS_FOR_MTZ_LABEL.get(label.lower(), ()):
        if table.has(cand) or (cand == "status" and table.status is not None):
            return cand
    return label


def _auto_data(table: _Table, kind: str, preferred):
    """First observed-data column of MTZ type ``kind``: preferred labels, else any with a sigma partner."""
    for lab in preferred:
        if table.has(lab) and table.kinds[lab] == kind:
            return lab, _sigma_partner(table, lab)
    for lab in table.labels:
        if table.kinds[lab] == kind:
            sig = _sigma_partner(table, lab)
            if sig is not None:
                return lab, sig
    return None


def _sigma_partner(table: _Table, label: str):
    cands = ["SIG" + label, "SIG_" + label, "SIG" + label.upper(), label + "_sigma", "SIG(" + label + ")"]
    if "_meas" in label:
        cands += [label.replace("_meas", "_meas_sigma"), label.replace("_meas", "_sigma")]
    if label.startswith("pdbx_"):
        cands.append(label + "_sigma")
    for c in cands:
        if table.has(c) and table.kinds[c] == "Q":
            return c
    if table.format == "MTZ":
        i = table.labels.index(label)
        if i + 1 < len(table.labels) and table.kinds[table.labels[i + 1]] == "Q":
            return table.labels[i + 1]
    return None


def _auto_free(table: _Table, free_value=None):
    """Free-flag column: status 'f' first, unless a free_value asks for numeric flags."""
    if table.status is not None and np.any(table.status == "f"):
        if free_value is None or not (table.has("pdbx_r_free_flag")):
            return "status"
    for lab in FREE_LABELS:
        if table.has(lab) and table.kinds[lab] in ("I", "R"):
            return lab
    for lab in table.labels:
        if table.kinds[lab] in ("I", "R") and "free" in lab.lower():
            return lab
    return None


# ----------------------------------------------------------------------------------------------
# free flags

def _free_flags(table: _Table, free_label, free_value, observed, p, warnings) -> dict:
    """Test-set mask over all rows: {'has_free', 'free', 'convention', 'value', 'reason'}."""
    if free_label is None:
        if free_value is not None:
            raise InputError(p, f"free_value {free_value} given but the file has no free-flag column")
        return {"has_free": False, "free": None, "convention": "none",
                "reason": "no free-flag column: no test set (R-free cannot be computed)"}
    if free_label == "status":
        if free_value is not None:
            warnings.append(f"free_value {free_value:g} ignored: the test set is _refln.status 'f'")
            free_value = None
        flags = (table.status == "f").astype(np.float64)
        label_desc = "_refln.status (1 = 'f')"
        default_convention = ("status f", 1.0)
    else:
        flags = table.column(free_label)
        label_desc = free_label
        default_convention = None
    obs_flags = flags[observed]
    finite = np.isfinite(obs_flags)
    n_nan = int(np.count_nonzero(~finite))
    if n_nan:
        warnings.append(f"{n_nan} observed reflections have no free flag in {label_desc}; counted as work")
    values, counts = np.unique(obs_flags[finite], return_counts=True)

    if free_value is not None:
        fv = float(free_value)
        if not np.any(values == fv):
            raise InputError(p, f"free_value {free_value:g} is not among the flags of {label_desc} "
                                f"(values: {_describe_values(values)})")
        return {"has_free": True, "free": flags == fv, "convention": "free_value", "value": fv}
    if default_convention is not None:
        conv, fv = default_convention
        if not np.any(values == fv):
            return {"has_free": False, "free": None, "convention": "none",
                    "reason": "no observed reflection has status 'f': no test set"}
        return {"has_free": True, "free": flags == fv, "convention": conv, "value": fv}
    if len(values) == 0:
        return {"has_free": False, "free": None, "convention": "none",
                "reason": f"free-flag column {free_label} is empty: no test set"}
    if len(values) == 1:
        return {"has_free": False, "free": None, "convention": "none",
                "reason": f"free-flag column {free_label} has the single value {values[0]:g}: no test set"}
    if len(values) == 2:
        i = int(np.argmin(counts))   # ties: the lower value
        if counts[0] == counts[1]:
            warnings.append(f"{free_label}: both flag values equally frequent; using {values[0]:g} as test set")
        fv = float(values[i])
        return {"has_free": True, "free": flags == fv, "convention": "two-valued, smaller class", "value": fv}
    if np.any(values == 0):
        fv = 0.0
    else:
        fv = float(values[0])
        warnings.append(f"{free_label}: no flag 0; using the lowest value {fv:g} as test set")
    return {"has_free": True, "free": flags == fv, "convention": "CCP4 (0 = test)", "value": fv}


def _describe_values(values) -> str:
    if len(values) == 0:
        return "none"
    if len(values) <= 6:
        return ", ".join(f"{v:g}" for v in values)
    return f"{values[0]:g}..{values[-1]:g}, {len(values)} distinct"


# ----------------------------------------------------------------------------------------------
# symmetry helpers

def _to_reciprocal_asu(hkl: np.ndarray, sg: gemmi.SpaceGroup) -> np.ndarray:
    """Map Miller indices (n,3) to the CCP4 reciprocal ASU of ``sg`` (gemmi, vectorized via an Mtz)."""
    n = len(hkl)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = sg
    mtz.add_dataset("asu")
    mtz.add_column("IDX_HI", "R")
    mtz.add_column("IDX_LO", "R")
    idx = np.arange(n, dtype=np.int64)
    data = np.empty((n, 5), dtype=np.float32)
    data[:, :3] = hkl
    data[:, 3] = idx // 4096       # row index split so float32 holds it exactly
    data[:, 4] = idx % 4096
    mtz.set_data(data)
    mtz.ensure_asu()
    out = np.array(mtz, copy=False)
    rows = out[:, 3].astype(np.int64) * 4096 + out[:, 4].astype(np.int64)
    result = np.empty((n, 3), dtype=np.int32)
    result[rows] = out[:, :3].astype(np.int32)
    return result


def _merge_duplicates(hkl, value, sigma, free):
    """One entry per hkl (sorted by h, k, l): inverse-variance weighted mean of duplicates."""
    uniq, inverse, counts = np.unique(hkl, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    n_dup = int(len(hkl) - len(uniq))
    if n_dup == 0:
        order = np.lexsort((hkl[:, 2], hkl[:, 1], hkl[:, 0]))
        return hkl[order], value[order], sigma[order], free[order], 0
    m = len(uniq)
    if np.all(sigma > 0):
        w = 1.0 / sigma**2
        wsum = np.bincount(inverse, weights=w, minlength=m)
        merged_value = np.bincount(inverse, weights=w * value, minlength=m) / wsum
        merged_sigma = 1.0 / np.sqrt(wsum)
    else:
        merged_value = np.bincount(inverse, weights=value, minlength=m) / counts
        merged_sigma = np.sqrt(np.bincount(inverse, weights=sigma**2, minlength=m)) / counts
    merged_free = np.bincount(inverse, weights=free.astype(np.float64), minlength=m) > 0
    return uniq.astype(np.int32), merged_value, merged_sigma, merged_free, n_dup


def _op_set(sg: gemmi.SpaceGroup) -> frozenset:
    return frozenset(op.triplet() for op in sg.operations())


def _valid_cell(cell) -> bool:
    return (cell is not None and cell.is_crystal() and min(cell.a, cell.b, cell.c) > 0
            and cell.volume > 1.0)


def _as_cell(cell, where):
    if cell is None or isinstance(cell, gemmi.UnitCell):
        if cell is not None and not _valid_cell(cell):
            return None
        return cell
    vals = list(cell)
    if len(vals) != 6:
        raise InputError(where, f"model cell must have 6 parameters, got {vals}")
    return gemmi.UnitCell(*map(float, vals))


def _as_spacegroup(sg, where):
    if sg is None or isinstance(sg, gemmi.SpaceGroup):
        return sg
    try:
        return gemmi.SpaceGroup(str(sg))
    except Exception:
        raise InputError(where, f"unknown space group {sg!r}") from None


