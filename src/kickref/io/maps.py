"""Writing map coefficients (MTZ) and maps (CCP4/MRC), and reading maps for density targets.

MTZ columns (types as Coot expects): FP F, SIGFP Q, FreeR_flag I (0 = test set),
FWT F, PHWT P, DELFWT F, PHDELWT P, FC_ALL F, PHIC_ALL P, FOM W. Phases in degrees.
FC_ALL/PHIC_ALL is F_model (scaled Fc with bulk solvent), REFMAC's label for it; not plain Fcalc.
"""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from .files import atomic_path


def _amp_phase(c):
    return np.abs(c).astype(np.float32), np.degrees(np.angle(c)).astype(np.float32)


def map_coefficients_mtz(mc, extra: dict | None = None) -> gemmi.Mtz:
    """Build a gemmi.Mtz holding the map coefficients ``mc`` (MapCoefficients)."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.title = "kickref map coefficients"
    mtz.cell = mc.cell
    mtz.spacegroup = mc.spacegroup
    mtz.add_dataset("kickref")
    cols = [("FP", "F"), ("SIGFP", "Q"), ("FreeR_flag", "I"),
            ("FWT", "F"), ("PHWT", "P"), ("DELFWT", "F"), ("PHDELWT", "P"),
            ("FC_ALL", "F"), ("PHIC_ALL", "P"), ("FOM", "W")]
    extra = extra or {}
    for label, (typ, _) in extra.items():
        cols.append((label, typ))
    for label, typ in cols:
        mtz.add_column(label, typ)
    fwt, phwt = _amp_phase(mc.fwt)
    dfwt, phd = _amp_phase(mc.delfwt)
    fmodel, phic = _amp_phase(mc.fmodel)
    flag = np.where(mc.free, 0, 1).astype(np.float32)
    data = [mc.hkl[:, 0], mc.hkl[:, 1], mc.hkl[:, 2], mc.f_obs, mc.sigma, flag,
            fwt, phwt, dfwt, phd, fmodel, phic, mc.fom]
    for label, (_, values) in extra.items():
        data.append(values)
    arr = np.column_stack([np.asarray(c, dtype=np.float32) for c in data])
    mtz.set_data(arr)
    mtz.update_reso()
    return mtz


def write_map_coefficients(mc, path, extra: dict | None = None) -> None:
    """Write ``mc`` to an MTZ file atomically. ``extra``: {label: (type, values)} more columns."""
    mtz = map_coefficients_mtz(mc, extra)
    mtz.history = ["kickref map coefficients"]
    with atomic_path(path) as tmp:
        mtz.write_to_file(tmp)


def write_ccp4_maps(mc, prefix, structure: gemmi.Structure | None = None, margin: float = 5.0,
                    sample_rate: float = 3.0) -> list[str]:
    """Write PREFIX_2fofc.ccp4 and PREFIX_fofc.ccp4 (e/Å³), boxed around the model when given."""
    mtz = map_coefficients_mtz(mc)
    written = []
    for name, f, phi in (("2fofc", "FWT", "PHWT"), ("fofc", "DELFWT", "PHDELWT")):
        grid = mtz.transform_f_phi_to_map(f, phi, sample_rate=sample_rate)
        ccp4 = gemmi.Ccp4Map()
        ccp4.grid = grid
        ccp4.update_ccp4_header()
        if structure is not None:
            box = structure.calculate_fractional_box(margin=margin)
            ccp4.set_extent(box)
        out = f"{prefix}_{name}.ccp4"
        with atomic_path(out) as tmp:
            ccp4.write_ccp4_map(tmp)
        written.append(out)
    return written


def read_ccp4_map(path) -> gemmi.FloatGrid:
    """Read a CCP4/MRC map, expanded to the whole unit cell (symmetry applied)."""
    from ..core.errors import InputError
    from .files import check_readable
    p = check_readable(path)
    try:
        m = gemmi.read_ccp4_map(str(p), setup=True)
    except Exception as e:
        raise InputError(p, f"cannot read as a CCP4/MRC map ({str(e).splitlines()[0] if str(e) else e})") from None
    return m.grid


def existing(paths) -> list[str]:
    return [str(p) for p in paths if Path(p).exists()]
