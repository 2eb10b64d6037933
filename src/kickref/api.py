"""kickref's Python API: what the command line calls.

Every function accepts file paths or already loaded objects (:class:`~kickref.model.Model`,
:class:`~kickref.reflections.Reflections`)::

    import kickref
    stats = kickref.rfactor("model.pdb", "data.mtz")
    maps = kickref.compute_maps("model.pdb", "data.mtz")
"""
from __future__ import annotations

import warnings

from .io.models import read_model
from .io.reflections import check_model_data_compatible, read_reflections
from .core.model import Model
from .core.reflections import Reflections


def load_inputs(model, data, *, labin=None, free_value=None, d_min=None, d_max=None,
                hydrogens: str = "keep"):
    """Read (if paths) and check a model and a data set; returns (Model, Reflections).

    The data are cut to [d_min, d_max]; cell and space group must agree (1 % on cell edges).
    """
    if not isinstance(model, Model):
        model = read_model(model, hydrogens=hydrogens)
    if not isinstance(data, Reflections):
        data = read_reflections(data, labin=labin, free_value=free_value, d_min=d_min, d_max=d_max,
                                model_cell=model.cell, model_spacegroup=model.spacegroup)
    else:
        if d_min is not None or d_max is not None:
            data = data.resolution_cut(d_min, d_max)
    check_model_data_compatible(model.cell, model.spacegroup, data, model.path, data.path)
    for w in data.source.get("warnings", []):
        warnings.warn(f"{data.path}: {w}", stacklevel=2)
    return model, data


def make_fmodel(model: Model, data: Reflections, *, bulk_solvent: bool = True,
                scale_shells="auto", reject_outliers: bool = True):
    """An up-to-date FModel (Fc, Fmask, scale, outliers) for the model as it is."""
    from .core.state import AtomState
    from .xtal.fmodel import FModel
    fm = FModel(model, data, bulk_solvent=bulk_solvent, scale_shells=scale_shells,
                reject_outliers=reject_outliers)
    fm.update_all(AtomState.from_model(model))
    return fm


def rfactor(model, data, *, bulk_solvent: bool = True, scale_shells="auto",
            reject_outliers: bool = True, n_shells: int = 10, **load_options) -> dict:
    """R-work/R-free with bulk solvent and anisotropic scaling, and a per-shell table.

    Returns a dict: r_work, r_free, r_all (common scale), r_work_cctbx/r_free_cctbx (each set
    rescaled on its own, cctbx's convention), scale (k_overall, b_aniso B11..B23 Å², k_sol, B_sol
    Å²), shells, n_refl, n_free, n_outliers, d_min, d_max.
    """
    model, data = load_inputs(model, data, **load_options)
    fm = make_fmodel(model, data, bulk_solvent=bulk_solvent, scale_shells=scale_shells,
                     reject_outliers=reject_outliers)
    out = fm.statistics(n_shells=n_shells)
    out["model"] = model.path
    out["data"] = data.path
    out["data_columns"] = data.source.get("columns")
    out["warnings"] = list(data.source.get("warnings", []))
    if not data.has_free:
        out["warnings"].append("no test set: R-free not available")
    return out


def compute_maps(model, data, *, include_free: bool = False, bulk_solvent: bool = True,
                 scale_shells="auto", kick: bool = False, kick_options: dict | None = None,
                 **load_options):
    """σA-weighted map coefficients (2mFo−DFc, mFo−DFc, Fmodel, FOM) for the model as it is.

    Returns (MapCoefficients, statistics dict). ``kick=True`` averages the coefficients over an
    ensemble of kicked models (see :func:`kickref.refinement.kick.kick_map_coefficients`).
    """
    from .xtal.maps import compute_map_coefficients
    model, data = load_inputs(model, data, **load_options)
    if kick:
        from .refinement.kick import kick_map_coefficients
        return kick_map_coefficients(model, data, include_free=include_free, bulk_solvent=bulk_solvent,
                                     scale_shells=scale_shells, **(kick_options or {}))
    fm = make_fmodel(model, data, bulk_solvent=bulk_solvent, scale_shells=scale_shells)
    mc = compute_map_coefficients(fm, include_free=include_free)
    stats = fm.statistics()
    if mc.info.get("sigmaa_from") != "test":
        stats.setdefault("warnings", []).append(
            "D and S estimated from all reflections (no usable test set)")
    return mc, stats


def add_hydrogens(model: Model, monlib_dir=None, ligands=()) -> Model:
    """A copy of ``model`` with riding hydrogens placed from the monomer library (gemmi)."""
    import io
    import gemmi
    from .restraints.library import load_library
    names = sorted(set(model.resname.tolist()))
    lib = load_library(names, monlib_dir, ligands)
    st = model.sync_structure().clone()
    gemmi.prepare_topology(st, lib.monlib, h_change=gemmi.HydrogenChange.ReAddKnown,
                           warnings=io.StringIO(), reorder=True, ignore_unknown_links=True)
    new = Model.from_structure(st, path=model.path)
    new.meta.update(model.meta)
    return new


def refine(model, data, *, monlib=None, ligands=(), allow_unknown: bool = False,
           hydrogens: str = "add", labin=None, free_value=None, d_min=None, d_max=None,
           log=None, progress=None, stop=None, **options):
    """Restrained refinement of coordinates, ADPs and occupancies against X-ray data.

    ``model``/``data``: paths or loaded objects. ``monlib``: monomer-library directory (default
    $CLIBD_MON, else kickref's built-in set); ``ligands``: extra CIF dictionaries.
    ``hydrogens``: keep | remove | add (riding hydrogens placed from the library).
    Other keyword options are those of :class:`kickref.refinement.protocol.RefineOptions`
    (target, cycles, bond_rmsd, weight, weight_every, rephase_every, adp, refine_occupancy,
    fix_xyz, fix_b, selection, seed, ...). ``log``: callable receiving log lines.
    ``stop``: a :class:`kickref.refinement.minimize.StopFlag` to end the run early.

    Returns a :class:`~kickref.refinement.protocol.RefinementResult` (refined model, per-cycle
    statistics, final statistics, geometry and map coefficients).
    """
    from .refinement.protocol import RefineOptions, Refinement
    from .restraints import build_restraints
    h_read = "remove" if hydrogens == "remove" else "keep"
    if isinstance(model, Model):
        model = model.copy()            # never modify the caller's model
    model, data = load_inputs(model, data, labin=labin, free_value=free_value, d_min=d_min,
                              d_max=d_max, hydrogens=h_read)
    if hydrogens == "add":
        model = add_hydrogens(model, monlib, ligands)
    elif hydrogens not in ("keep", "remove"):
        raise ValueError(f"hydrogens must be keep, remove or add, not {hydrogens!r}")
    restraints = build_restraints(model, monlib_dir=monlib, ligands=ligands, allow_unknown=allow_unknown,
                                  hydrogens="keep")
    say = log or (lambda s: None)
    for line in restraints.log:
        say(line)
    opts = RefineOptions(**options)
    r = Refinement(model, data, restraints, opts, log=say, progress=progress)
    if stop is not None:
        r.stop = stop
    return r.run()


def _load_map(map_path=None, map_coeffs=None, model=None, d_min=None):
    from .targets.density import load_density_map, map_from_coefficients, parse_map_coefficients_argument
    if map_path:
        return load_density_map(map_path)
    path, f_label, phi_label = parse_map_coefficients_argument(map_coeffs)
    return map_from_coefficients(path, f_label, phi_label, model.cell, model.spacegroup, d_min=d_min)


def refine_map(model, map_path=None, *, map_coeffs=None, mode: str = "interpolation", monlib=None,
               ligands=(), allow_unknown: bool = False, selection=None, steps: int = 100,
               weight=None, bond_rmsd: float = 0.02, hydrogens: str = "keep", log=None, stop=None):
    """Real-space refinement of ``model`` toward a map (no Fobs needed): a CCP4/MRC file
    (``map_path``) or map coefficients ``map_coeffs='FILE.mtz:F,PHI'``.

    ``mode``: 'interpolation' (tricubic, atoms weighted by Z) or 'convolution' (model density ×
    map). Returns (refined Model, dict with 'history', 'weight', 'interrupted').
    """
    from .refinement.density_combination import refine_against_map
    from .restraints import build_restraints
    if not isinstance(model, Model):
        model = read_model(model, hydrogens="remove" if hydrogens == "remove" else "keep")
    else:
        model = model.copy()
    dmap = _load_map(map_path, map_coeffs, model)
    restraints = build_restraints(model, monlib_dir=monlib, ligands=ligands, allow_unknown=allow_unknown)
    info = refine_against_map(model, dmap, restraints, mode, selection=selection, steps=steps,
                              weight=weight, bond_rmsd=bond_rmsd, log=log, stop=stop)
    return model, info


def density_combination(model, map_path=None, data=None, *, map_coeffs=None, part=None, envelope=None,
                        rad_mask: float = 4.5, rad_comb: float = 2.8, weight_fc: float = 1.1,
                        dens_scale: float = 1.0, steps: int = 120, recombine_every: int = 15,
                        monlib=None, ligands=(), allow_unknown: bool = False, output_map=None,
                        weight=None, bond_rmsd: float = 0.02, log=None, stop=None, **load_options):
    """Partial-model refinement by density combination (MAIN ``dens_comb``): the external map
    (e.g. MIR) is combined with the model map, and the ``part`` atoms are minimized against the
    difference map of the combined structure factors, re-combining every ``recombine_every``
    steps. ``data`` (Fobs) is optional. Returns the DensityCombinationResult (refined model,
    combined map, history, files written)."""
    from .refinement.density_combination import run_density_combination
    from .restraints import build_restraints
    if data is not None:
        model, data = load_inputs(model, data, **load_options)
        model = model.copy()
    elif not isinstance(model, Model):
        model = read_model(model)
    else:
        model = model.copy()
    dmap = _load_map(map_path, map_coeffs, model)
    restraints = build_restraints(model, monlib_dir=monlib, ligands=ligands, allow_unknown=allow_unknown)
    return run_density_combination(model, dmap, restraints, data=data, part=part, envelope=envelope,
                                   rad_mask=rad_mask, rad_comb=rad_comb, weight_fc=weight_fc,
                                   dens_scale=dens_scale, steps=steps, recombine_every=recombine_every,
                                   weight=weight, bond_rmsd=bond_rmsd, output_map=output_map, log=log,
                                   stop=stop)
