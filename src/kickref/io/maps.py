"""Writing map coefficients (MTZ) and maps (CCP4/MRC, one writer: :func:`write_ccp4_map`), and
reading maps for density targets (CCP4/MRC files, map coefficients from MTZ/SF-mmCIF, or the
best map m|Fo|e^{iφ_best} from Hendrickson–Lattman coefficients).

MTZ columns (types as Coot expects): FP F, SIGFP Q, FreeR_flag I (0 = test set),
FWT F, PHWT P, DELFWT F, PHDELWT P, FC_ALL F, PHIC_ALL P, FOM W. Phases in degrees.
FC_ALL/PHIC_ALL is F_model (scaled Fc with bulk solvent), REFMAC's label for it; not plain Fcalc.
"""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from ..core.errors import InputError
from ..xtal.density_map import DensityMap, density_map_from_coefficients
from .files import atomic_path, check_readable
from ..xtal.phase_probability import centric_phases, hl_centroid
from .reflections import hkl_lookup, read_hl_coefficients, read_map_coefficients, read_reflections


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


def combined_phase_columns(phases: dict) -> dict:
    """Extra MTZ columns of a phase combination (``phases`` of a density-combination result):
    PHCOMB (P, degrees) the combined centroid phase and HLACOMB..HLDCOMB (A) the combined HL
    coefficients (REFMAC's labels for phased refinement), for :func:`write_map_coefficients`."""
    hl = np.asarray(phases["hl_combined"], dtype=np.float64).reshape(-1, 4)
    cols = {"PHCOMB": ("P", np.degrees(np.asarray(phases["phi"])))}
    for i, x in enumerate("ABCD"):
        cols[f"HL{x}COMB"] = ("A", hl[:, i])
    return cols


def ccp4_map_paths(prefix) -> dict:
    """{'2fofc': PREFIX_2fofc.ccp4, 'fofc': PREFIX_fofc.ccp4}: the files of :func:`write_ccp4_maps`."""
    return {name: f"{prefix}_{name}.ccp4" for name in ("2fofc", "fofc")}


def write_ccp4_maps(mc, paths: dict, structure: gemmi.Structure | None = None, margin: float = 5.0,
                    sample_rate: float = 3.0) -> list[str]:
    """Write the 2mFo-DFc and mFo-DFc maps (e/Å³) to ``paths['2fofc']`` and ``paths['fofc']``
    (see :func:`ccp4_map_paths`), boxed around the model when given."""
    mtz = map_coefficients_mtz(mc)
    written = []
    for name, f, phi in (("2fofc", "FWT", "PHWT"), ("fofc", "DELFWT", "PHDELWT")):
        grid = mtz.transform_f_phi_to_map(f, phi, sample_rate=sample_rate)
        written.append(write_ccp4_map(grid, paths[name], structure, margin))
    return written


def write_ccp4_map(grid, path, structure: gemmi.Structure | None = None, margin: float = 5.0) -> str:
    """Write a map as a CCP4 file (atomically): ``grid`` is a gemmi.FloatGrid or a
    :class:`~kickref.xtal.density_map.DensityMap` (whole cell, on a grid that fits the space
    group). Boxed around ``structure`` (``margin`` Å) when given, else the whole cell."""
    if isinstance(grid, DensityMap):
        grid = grid.to_gemmi_grid()
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = grid
    ccp4.update_ccp4_header()
    if structure is not None:
        ccp4.set_extent(structure.calculate_fractional_box(margin=margin))
    with atomic_path(path) as tmp:
        ccp4.write_ccp4_map(tmp)
    return str(path)


def read_ccp4_map(path) -> gemmi.FloatGrid:
    """Read a CCP4/MRC map, expanded to the whole unit cell (symmetry applied)."""
    p = check_readable(path)
    try:
        m = gemmi.read_ccp4_map(str(p), setup=True)
    except Exception as e:
        raise InputError(p, f"cannot read as a CCP4/MRC map ({str(e).splitlines()[0] if str(e) else e})") from None
    return m.grid


def load_density_map(path) -> DensityMap:
    """A CCP4/MRC map file, expanded to the whole unit cell with its symmetry.

    Points the file does not cover (a boxed map) are set to the mean of the covered points.
    """
    g = read_ccp4_map(path)
    arr = np.array(g, copy=True, dtype=np.float64)
    if arr.ndim != 3 or min(arr.shape) < 2:
        raise InputError(path, f"map grid {arr.shape} is not a 3-D unit-cell grid")
    bad = ~np.isfinite(arr)
    info = {"n_points_not_covered": int(bad.sum())}
    if bad.all():
        raise InputError(path, "map holds no finite values")
    if bad.any():
        arr[bad] = float(np.mean(arr[~bad]))
    sg = g.spacegroup if g.spacegroup is not None else gemmi.SpaceGroup("P 1")
    cell = gemmi.UnitCell(*g.unit_cell.parameters)
    return DensityMap(arr, cell, sg, None, str(path), info)


def map_from_coefficients(path, f_label: str, phi_label: str, cell=None, spacegroup=None,
                          d_min: float | None = None, rate: float = 2.0) -> DensityMap:
    """Map from the coefficients F, PHI (degrees) in an MTZ/SF-mmCIF file (``--map-coeffs``).

    ``cell``/``spacegroup``: the model's (default: the file's, MTZ only). ``d_min`` (Å) cuts the
    coefficients; grid spacing ≤ d_min/(2·rate).
    """
    hkl, values = read_map_coefficients(path, f_label, phi_label)
    if cell is None or spacegroup is None:
        try:
            mtz = gemmi.read_mtz_file(str(path))
            cell = cell or mtz.cell
            spacegroup = spacegroup or mtz.spacegroup
        except Exception:
            raise InputError(path, "give the cell and space group (from the model) for these map "
                                   "coefficients") from None
    if isinstance(spacegroup, str):
        spacegroup = gemmi.SpaceGroup(spacegroup)
    return density_map_from_coefficients(cell, spacegroup, hkl, values, d_min, rate,
                                         source=f"{path}:{f_label},{phi_label}")


def map_from_hendrickson_lattman(path, labels=("HLA", "HLB", "HLC", "HLD"), cell=None, spacegroup=None,
                                 d_min: float | None = None, f_obs=None, rate: float = 2.0) -> DensityMap:
    """Best map m·|Fo|·e^{iφ_best} from Hendrickson–Lattman coefficients (``--map-hl``).

    HL convention (CCP4): P(φ) ∝ exp(A cos φ + B sin φ + C cos 2φ + D sin 2φ); centric
    reflections take only their two allowed phases (:mod:`kickref.xtal.phase_probability`).
    Amplitudes |Fo|: from ``f_obs`` when given (a :class:`~kickref.core.reflections.Reflections`
    or a reflection file, read with the default column choice), else from the HL file itself
    when it has an amplitude column (FP/F); InputError when there are none. HL reflections
    without an amplitude are left out. ``cell``/``spacegroup``: the model's (default: the
    file's). ``d_min`` (Å) cuts the coefficients; grid spacing ≤ d_min/(2·rate).
    ``info``: mean_fom (over the reflections used), n_coefficients, n_without_amplitude.
    """
    hl = read_hl_coefficients(path, labels)
    cell = cell or hl["cell"]
    spacegroup = spacegroup or hl["spacegroup"]
    if cell is None or spacegroup is None:
        raise InputError(path, "give the cell and space group (from the model) for these HL coefficients")
    if isinstance(spacegroup, str):
        spacegroup = gemmi.SpaceGroup(spacegroup)
    hkl = hl["hkl"]
    if f_obs is not None:
        if not hasattr(f_obs, "f_obs"):
            f_obs = read_reflections(f_obs, model_cell=cell, model_spacegroup=spacegroup)
        amp = hkl_lookup(f_obs.hkl, f_obs.f_obs, hkl, spacegroup)
        amp_source = f_obs.path or "f_obs"
    elif hl["f"] is not None:
        amp, amp_source = hl["f"], f"{path}:{hl['f_label']}"
    else:
        raise InputError(path, "no amplitudes for the HL map: the file has no F column; give the "
                               "observed data (f_obs, or DATA on the command line)")
    have = np.isfinite(amp)
    if not have.any():
        raise InputError(path, "no HL reflection has an amplitude in the data")
    centric, phic = centric_phases(hkl[have], spacegroup)
    phase, fom = hl_centroid(hl["abcd"][have], centric, phic)
    values = fom * amp[have] * np.exp(1j * phase)
    dmap = density_map_from_coefficients(cell, spacegroup, hkl[have], values, d_min, rate,
                                         source=f"{path}:{','.join(labels)}")
    dmap.info.update({"mean_fom": float(fom.mean()), "n_without_amplitude": int((~have).sum()),
                      "amplitudes": str(amp_source)})
    return dmap


def existing(paths) -> list[str]:
    return [str(p) for p in paths if Path(p).exists()]
