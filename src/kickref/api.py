"""kickref's Python API: what the command line calls.

Every function accepts file paths or already loaded objects (:class:`~kickref.core.model.Model`,
:class:`~kickref.core.reflections.Reflections`) and returns one documented result object::

    import kickref
    r = kickref.rfactor("model.pdb", "data.mtz")           # RFactorResult: r.r_work, r.as_dict()
    maps = kickref.compute_maps("model.pdb", "data.mtz")    # MapsResult
    kickref.write_map_coefficients(maps.map_coefficients, "maps.mtz")
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, NamedTuple

from .io.files import process_age
from .io.models import read_model
from .io.reflections import cell_difference_note, check_model_data_compatible, read_reflections
from .core import profile
from .core.errors import KickrefError
from .core.model import Model
from .core.reflections import Reflections

if TYPE_CHECKING:
    from .xtal.maps import MapCoefficients


class Inputs(NamedTuple):
    """A model and its data, read and checked by :func:`load_inputs` (unpacks as ``m, d``)."""
    model: Model
    data: Reflections


@dataclass
class RFactorResult:
    """R factors of a model against data (:func:`rfactor`); ``as_dict()`` is the JSON of
    ``kickref rfactor --json``.

    R = Σ||Fo| − |Fmodel||/Σ|Fo| with outliers excluded: ``r_work``/``r_free`` (None without a
    test set)/``r_all`` on the common fitted scale; ``*_cctbx``: each set rescaled by its own
    least-squares factor (cctbx's r1_factor). ``scale``: k_overall, b_aniso (B11 B22 B33 B12 B13
    B23, Å²), k_sol, b_sol (Å²), k_shell, method. ``shells``: per-shell rows (d_max, d_min in Å,
    n, n_free, r_work, r_free), lowest resolution first. ``d_min``/``d_max`` in Å;
    ``solvent_fraction`` of the unit cell (None without bulk solvent).
    """
    r_work: float | None
    r_free: float | None
    r_all: float | None
    r_work_cctbx: float | None
    r_free_cctbx: float | None
    r_all_cctbx: float | None
    n_outliers: int
    scale: dict
    shells: list
    n_refl: int
    n_work: int
    n_free: int
    d_min: float
    d_max: float
    solvent_fraction: float | None = None
    model: str | None = None
    data: str | None = None
    data_columns: dict | None = None
    warnings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if d["solvent_fraction"] is None:
            del d["solvent_fraction"]
        return d


@dataclass
class MapsResult:
    """σA-weighted map coefficients (:func:`compute_maps`) with the statistics of the input model.

    ``map_coefficients``: :class:`~kickref.xtal.maps.MapCoefficients` (write them with
    :func:`kickref.write_map_coefficients`); ``statistics``: :class:`RFactorResult`, its
    ``warnings`` include "D and S estimated from all reflections" when there is no usable test
    set; ``kick``: ensemble statistics of ``kick=True`` (n_models, amplitudes in Å, seed,
    r_work_mean, r_free_mean, time in s), else None.
    """
    map_coefficients: MapCoefficients
    statistics: RFactorResult
    kick: dict | None = None

    def as_dict(self) -> dict:
        """The JSON of ``kickref maps --json``: statistics, 'kick' (if any) and 'maps' (D, S per bin…)."""
        d = self.statistics.as_dict()
        if self.kick is not None:
            d["kick"] = self.kick
        d["maps"] = self.map_coefficients.info
        return d


@dataclass
class RealSpaceResult:
    """Real-space refinement toward a map (:func:`refine_map`): the refined ``model`` (a copy),
    ``history`` (per-chunk values), the density ``weight`` used and whether it was ``interrupted``."""
    model: Model
    history: list
    weight: float | None
    interrupted: bool = False

    def as_dict(self) -> dict:
        return {"history": self.history, "weight": self.weight, "interrupted": self.interrupted}


def _rfactor_result(stats: dict, model: Model, data: Reflections) -> RFactorResult:
    """RFactorResult from ``FModel.statistics()`` and the inputs' paths, columns and warnings."""
    stats = dict(stats)
    extra = stats.pop("warnings", [])
    res = RFactorResult(**stats, model=model.path, data=data.path,
                        data_columns=data.source.get("columns"),
                        warnings=list(data.source.get("warnings", [])))
    if not data.has_free:
        res.warnings.append("no test set: R-free not available")
    res.warnings.extend(extra)
    return res


def load_inputs(model, data, *, labin=None, free_value=None, d_min=None, d_max=None,
                hydrogens: str = "keep") -> Inputs:
    """Read (if paths) and check a model and a data set; returns :class:`Inputs` (model, data).

    The data are cut to [d_min, d_max]; cell and space group must agree (1 % on cell edges).
    """
    if not isinstance(model, Model):
        model = read_model(model, hydrogens=hydrogens)
    no_cell = model.meta.get("no_cell", False)
    if not isinstance(data, Reflections):
        data = read_reflections(data, labin=labin, free_value=free_value, d_min=d_min, d_max=d_max,
                                model_cell=None if no_cell else model.cell,
                                model_spacegroup=None if no_cell else model.spacegroup)
    else:
        if d_min is not None or d_max is not None:
            data = data.resolution_cut(d_min, d_max)
    if no_cell:
        # a model without CRYST1 (or _cell) takes the data's cell and space group
        model.structure.cell = data.cell
        model.structure.spacegroup_hm = data.spacegroup.hm
        model.meta["no_cell"] = False
        warnings.warn(f"{model.path}: no unit cell in the model: the data's cell and space group "
                      f"{data.spacegroup.hm} are used", stacklevel=2)
    check_model_data_compatible(model.cell, model.spacegroup, data, model.path, data.path)
    note = cell_difference_note(model.cell, data.cell)
    if note:
        warnings.warn(f"{data.path}: {note}", stacklevel=2)
    for w in data.source.get("warnings", []):
        warnings.warn(f"{data.path}: {w}", stacklevel=2)
    return Inputs(model, data)


def data_columns(data: Reflections) -> str:
    """One line naming the data's file, the columns used and the test-set convention."""
    src = data.source
    kind = src.get("data_type", "amplitude") + ("s, French-Wilson" if src.get("french_wilson") else "s")
    free = (f"test set: flag {src.get('free_value')} ({src.get('free_convention')})" if data.has_free
            else "no test set")
    return f"data: {data.path} columns {src.get('labin', '?')} ({kind}); {free}"


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
            reject_outliers: bool = True, n_shells: int = 10, **load_options) -> RFactorResult:
    """R-work/R-free with bulk solvent and anisotropic scaling, and a per-shell table
    (``n_shells`` rows); see :class:`RFactorResult`."""
    model, data = load_inputs(model, data, **load_options)
    fm = make_fmodel(model, data, bulk_solvent=bulk_solvent, scale_shells=scale_shells,
                     reject_outliers=reject_outliers)
    return _rfactor_result(fm.statistics(n_shells=n_shells), model, data)


def compute_maps(model, data, *, include_free: bool = False, bulk_solvent: bool = True,
                 scale_shells="auto", kick: bool = False, kick_options: dict | None = None,
                 **load_options) -> MapsResult:
    """σA-weighted map coefficients (2mFo−DFc, mFo−DFc, Fmodel, FOM) for the model as it is.

    ``include_free``: use test-set reflections like work ones (default: D·Fm there).
    ``kick=True`` averages the coefficients over an ensemble of kicked models
    (:func:`kickref.refinement.kick.kick_map_coefficients`, options ``kick_options``).
    """
    from .xtal.maps import compute_map_coefficients
    model, data = load_inputs(model, data, **load_options)
    if kick:
        from .refinement.kick import kick_map_coefficients
        mc, stats = kick_map_coefficients(model, data, include_free=include_free,
                                          bulk_solvent=bulk_solvent, scale_shells=scale_shells,
                                          **(kick_options or {}))
        kick_stats = stats.pop("kick")
    else:
        fm = make_fmodel(model, data, bulk_solvent=bulk_solvent, scale_shells=scale_shells)
        mc = compute_map_coefficients(fm, include_free=include_free)
        stats = fm.statistics()
        if mc.info.get("sigmaa_from") != "test":
            stats["warnings"] = ["D and S estimated from all reflections (no usable test set)"]
        kick_stats = None
    return MapsResult(mc, _rfactor_result(stats, model, data), kick_stats)


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
    occupancy_groups/_complete/_incomplete, tls ('chain', 'auto' or selections), tls_steps,
    fix_xyz, fix_b, selection, seed, twin, twin_laws, ncs, ...); ``target="mli"`` needs intensity
    data, ``twin="auto"`` refines twin fractions; ``ncs``: 'auto' | 'on' | 'off' (NCS restraints;
    auto: on when NCS groups are found, as 'on'), ``ncs_groups``: given groups instead of
    detection ('A,B;C,D', a JSON file or chain lists; see :func:`ncs_chain_groups`).
    ``log``: callable receiving log lines (the data columns used among them). ``progress(n_eval, cycle)``: called after each energy evaluation
    with the evaluations so far and the macro-cycle under way (0 before the first).
    ``stop``: a :class:`kickref.refinement.minimize.StopFlag` to end the run early.

    Returns a :class:`~kickref.refinement.protocol.RefinementResult` (refined model, per-cycle
    statistics, final statistics, geometry and map coefficients, and its ``profile``: time and
    memory per phase, :mod:`kickref.core.profile`, kept running until the outputs are written).
    """
    from .refinement.protocol import RefineOptions, Refinement
    from .restraints import build_restraints
    prof = profile.reset(process_age())
    h_read = "remove" if hydrogens == "remove" else "keep"
    with profile.phase("read_inputs"):
        if isinstance(model, Model):
            model = model.copy()            # never modify the caller's model
        model, data = load_inputs(model, data, labin=labin, free_value=free_value, d_min=d_min,
                                  d_max=d_max, hydrogens=h_read)
    say = log or (lambda s: None)
    with profile.phase("topology"):
        _check_model(model)
        if hydrogens == "add":
            model = add_hydrogens(model, monlib, ligands)
        elif hydrogens not in ("keep", "remove"):
            raise ValueError(f"hydrogens must be keep, remove or add, not {hydrogens!r}")
        restraints = build_restraints(model, monlib_dir=monlib, ligands=ligands,
                                      allow_unknown=allow_unknown, hydrogens="keep")
        say(data_columns(data))
        for line in restraints.log:
            say(line)
        if options.get("ncs_groups") is not None:
            options["ncs_groups"] = ncs_chain_groups(options["ncs_groups"])
        opts = RefineOptions(**options)
        r = Refinement(model, data, restraints, opts, log=say, progress=progress)
    if stop is not None:
        r.stop = stop
    res = r.run()
    res.profile = prof
    return res


def refine_to_files(model, data, output, *, command: str = "", lines: list | None = None, log=None,
                    progress=None, stop=None, **kwargs):
    """``kickref refine MODEL DATA -o OUTPUT`` as a function: the output set is opened first
    (paths checked, PREFIX.lock taken), then :func:`refine` runs with ``kwargs`` (its keyword
    arguments) and every output (PREFIX.pdb .cif .mtz .json .log .png) is written as one set.

    ``model``/``data``: paths. ``command``: the command line recorded in the log and JSON.
    ``lines``: the log file's lines so far (warnings among them), extended here. ``log(line)``:
    also receives each line. ``progress``: as for :func:`refine`; its ``close()``, when it has
    one, is called once the refinement ends. ``stop``: a StopFlag, installed while refining and
    holding signals back during the writes. Returns (RefinementResult, {kind: path written}).
    """
    import contextlib
    from pathlib import Path
    from .io.outputs import refinement_output_set, write_refinement_outputs
    from .refinement.protocol import RefineOptions
    lines = [] if lines is None else lines
    load = {k: kwargs.pop(k) for k in ("monlib", "ligands", "allow_unknown", "hydrogens", "labin",
                                        "free_value", "d_min", "d_max") if k in kwargs}

    def say(s):
        lines.append(s)
        if log is not None:
            log(s)

    inputs = [model, data, *load.get("ligands", ())]
    with refinement_output_set(output, inputs) as out, (stop if stop is not None else contextlib.nullcontext()):
        lines.append(f"command: {command}")
        lines.append("options: " + ", ".join(f"{k}={v}" for k, v in RefineOptions(**kwargs).as_dict().items()))
        say(f"kickref refine {model} {data}")
        res = refine(model, data, log=say, progress=progress, stop=stop, **load, **kwargs)
        if hasattr(progress, "close"):
            progress.close()
        s = res.statistics
        status = ("INTERRUPTED: outputs hold the model after the last completed step" if res.interrupted
                  else "done")
        say(f"final R-work {fmt_r(s['r_work'])} R-free {fmt_r(s['r_free'])}  bonds {s['rmsd_bond']:.4f} Å  "
            f"angles {s['rmsd_angle']:.2f}° (non-H)  ({status}, {res.timings.get('total', 0):.1f} s)")
        title = f"{Path(model).name} / {Path(data).name}" + ("  (INTERRUPTED)" if res.interrupted else "")
        with (stop.deferred() if stop is not None else contextlib.nullcontext()):
            written = write_refinement_outputs(res, out, lines, {"model": model, "data": data, "command": command},
                                               title=title)
    return res, written


def fmt_r(v) -> str:
    """An R factor as printed in logs: 4 decimals, '-' when None."""
    return "   -  " if v is None else f"{v:.4f}"


def _check_model(model: Model) -> None:
    """Sanity checks before refinement (:func:`kickref.core.model_checks.check_model`): errors
    raise InputError; each repair is a Python warning."""
    from .core.model_checks import check_model
    for w in check_model(model):
        warnings.warn(f"{model.path}: {w}", stacklevel=3)


def _load_map(map_path=None, map_coeffs=None, model=None, d_min=None, hl=None, f_obs=None):
    from .io.maps import load_density_map, map_from_coefficients, map_from_hendrickson_lattman
    if map_path:
        return load_density_map(map_path)
    if hl is not None:
        path, labels, *amp = hl
        if isinstance(labels, str):
            labels = [x.strip() for x in labels.split(",")]
        return map_from_hendrickson_lattman(path, tuple(labels), model.cell, model.spacegroup, d_min=d_min,
                                            f_obs=amp[0] if amp and amp[0] is not None else f_obs)
    path, f_label, phi_label = map_coeffs
    return map_from_coefficients(path, f_label, phi_label, model.cell, model.spacegroup, d_min=d_min)


def _prepared_model(model, hydrogens: str, monlib, ligands, allow_unknown):
    """A checked copy of ``model`` (a Model or a path) with riding hydrogens per ``hydrogens``
    (keep | remove | add), and its restraints."""
    from .restraints import build_restraints
    if hydrogens not in ("keep", "remove", "add"):
        raise ValueError(f"hydrogens must be keep, remove or add, not {hydrogens!r}")
    if not isinstance(model, Model):
        model = read_model(model, hydrogens="remove" if hydrogens == "remove" else "keep")
    else:
        model = model.copy()
    _check_model(model)
    if hydrogens == "add":
        model = add_hydrogens(model, monlib, ligands)
    restraints = build_restraints(model, monlib_dir=monlib, ligands=ligands, allow_unknown=allow_unknown)
    return model, restraints


def _map_inputs(model, map_path, map_coeffs, hydrogens: str, monlib, ligands, allow_unknown, hl=None,
                f_obs=None):
    """For the map paths: :func:`_prepared_model` (model copy, restraints) and the map (a file,
    map coefficients, or Hendrickson–Lattman coefficients ``hl`` with amplitudes ``f_obs``)."""
    model, restraints = _prepared_model(model, hydrogens, monlib, ligands, allow_unknown)
    dmap = _load_map(map_path, map_coeffs, model, hl=hl, f_obs=f_obs)
    return model, dmap, restraints


def refine_map(model, map_path=None, *, map_coeffs=None, hl=None, mode: str = "interpolation",
               monlib=None, ligands=(), allow_unknown: bool = False, selection=None, steps: int = 100,
               weight=None, bond_rmsd: float | None = None, hydrogens: str = "keep", log=None, stop=None):
    """Real-space refinement of ``model`` toward a map (no Fobs needed): a CCP4/MRC file
    (``map_path``) or map coefficients ``map_coeffs=(FILE, F, PHI)`` (MTZ/SF-mmCIF labels), or
    Hendrickson–Lattman coefficients ``hl=(FILE, (HLA, HLB, HLC, HLD)[, AMPLITUDES])`` (best map
    m|Fo|e^{iφ_best}; |Fo| from AMPLITUDES, a data file or Reflections, else from FILE's own F).

    ``mode``: 'interpolation' (tricubic, atoms weighted by Z) or 'convolution' (model density ×
    map). ``hydrogens``: keep | remove | add (riding hydrogens placed from the library).
    ``bond_rmsd`` (Å): target of the weight adjustment (default
    :data:`~kickref.refinement.weighting.BOND_RMSD_MAP`, 0.02). Returns a :class:`RealSpaceResult`.
    """
    from .refinement.real_space import refine_against_map
    from .refinement.weighting import BOND_RMSD_MAP
    model, dmap, restraints = _map_inputs(model, map_path, map_coeffs, hydrogens, monlib, ligands,
                                          allow_unknown, hl=hl)
    info = refine_against_map(model, dmap, restraints, mode, selection=selection, steps=steps,
                              weight=weight, bond_rmsd=BOND_RMSD_MAP if bond_rmsd is None else bond_rmsd,
                              log=log, stop=stop)
    return RealSpaceResult(model, info["history"], info["weight"], info["interrupted"])


def density_combination(model, map_path=None, data=None, *, map_coeffs=None, hl=None, part=None,
                        envelope=None,                        rad_mask: float = 4.5, rad_comb: float = 2.8, weight_fc: float = 1.1,
                        dens_scale: float = 1.0, steps: int = 120, recombine_every: int = 15,
                        monlib=None, ligands=(), allow_unknown: bool = False, output_map=None,
                        weight=None, bond_rmsd: float | None = None, hydrogens: str = "keep", log=None,
                        stop=None, combination: str = "real-space", target: str = "difference",
                        calibrate_hl: bool = True, **load_options):
    """Partial-model refinement by density combination (MAIN ``dens_comb``): the external map
    (e.g. MIR; ``map_path``, ``map_coeffs=(FILE, F, PHI)``, or ``hl=(FILE, (HLA, HLB, HLC, HLD)[,
    AMPLITUDES])``, |Fo| from AMPLITUDES, else ``data``, else FILE) is combined with the model map,
    and the ``part`` atoms are minimized against the difference map of the combined structure
    factors, re-combining every ``recombine_every`` steps. ``data`` (Fobs) is optional.
    ``hydrogens``: keep | remove | add (riding hydrogens placed from the library). ``bond_rmsd``
    (Å): default :data:`~kickref.refinement.weighting.BOND_RMSD_MAP` (0.02). Returns a
    :class:`~kickref.refinement.density_combination.DensityCombinationResult` (refined model,
    combined map, history, files written). ``combination``: 'real-space' (MAIN's density pasting,
    default) or 'phase' (reciprocal-space combination of the ``hl`` phase probabilities with the
    model's σA phase probability; needs ``hl`` and ``data``); ``target`` ('difference' | 'map'):
    what the atoms minimize in 'phase' mode (see :mod:`kickref.refinement.density_combination`);
    ``calibrate_hl`` ('phase' mode, default True): scale the HL per resolution bin by the
    maximum-likelihood factor judged by the model's σA phases (the file's FOM not trusted)."""
    from .io.reflections import read_hl_coefficients
    from .refinement.density_combination import run_density_combination
    from .refinement.weighting import BOND_RMSD_MAP
    if combination not in ("real-space", "phase"):
        raise KickrefError(f"combination must be 'real-space' or 'phase', not {combination!r}")
    hl_coeffs = None
    if combination == "phase":
        if hl is None or data is None:
            raise KickrefError("combination='phase' needs HL coefficients (hl=, --map-hl) and data (Fobs)")
        h = read_hl_coefficients(hl[0], hl[1])
        hl_coeffs = (h["hkl"], h["abcd"])
    if data is not None:
        model, data = load_inputs(model, data, hydrogens="remove" if hydrogens == "remove" else "keep",
                                  **load_options)
    model, dmap, restraints = _map_inputs(model, map_path, map_coeffs, hydrogens, monlib, ligands,
                                          allow_unknown, hl=hl, f_obs=data)
    return run_density_combination(model, dmap, restraints, data=data, part=part, envelope=envelope,
                                   rad_mask=rad_mask, rad_comb=rad_comb, weight_fc=weight_fc,
                                   dens_scale=dens_scale, steps=steps, recombine_every=recombine_every,
                                   weight=weight, bond_rmsd=BOND_RMSD_MAP if bond_rmsd is None else bond_rmsd,
                                   output_map=output_map, log=log, stop=stop,
                                   **({"combination": "phase", "hl": hl_coeffs, "target": target,
                                         "calibrate_hl": calibrate_hl}
                                      if combination == "phase" else {}))


def ncs_chain_groups(spec) -> list | None:
    """Chain lists [[ref, copy, ...], ...] from an NCS group spec: None (detect), a string
    'A,B;C,D', a path to a JSON file (:func:`kickref.io.ncs.read_ncs_groups`), or chain lists."""
    from pathlib import Path
    from .io.ncs import read_ncs_groups
    from .xtal.ncs import parse_group_spec
    if spec is None or isinstance(spec, list):
        return spec
    spec = str(spec)
    if spec.lower().endswith(".json") or Path(spec).is_file():
        return read_ncs_groups(spec)
    try:
        return parse_group_spec(spec)
    except ValueError as e:
        raise KickrefError(str(e)) from None


def ncs_groups(model, groups=None, **detect_options) -> list:
    """NCS groups of ``model`` (a Model or a path): detected from its polymer chains
    (:func:`kickref.xtal.ncs.detect_ncs`) or built for ``groups`` (see :func:`ncs_chain_groups`).
    Returns a list of :class:`~kickref.xtal.ncs.NcsGroup` (empty: no NCS)."""
    from .xtal.ncs import detect_ncs, groups_from_chains
    if not isinstance(model, Model):
        model = read_model(model)
    chains = ncs_chain_groups(groups)
    if chains is None:
        return detect_ncs(model, **detect_options)
    try:
        return groups_from_chains(model, chains)
    except ValueError as e:
        raise KickrefError(str(e)) from None


@dataclass
class NcsAverageResult:
    """:func:`ncs_average`: the averaged map (a full-cell
    :class:`~kickref.xtal.density_map.DensityMap`), with data its map coefficients (FWT/PHWT
    replaced by the averaged map's Fourier coefficients), the groups with their (refined)
    operators, the operator reports and the averaging statistics."""
    map: object
    map_coefficients: object
    groups: list
    operators: list
    stats: dict

    def as_dict(self) -> dict:
        return {"groups": [g.as_dict() for g in self.groups], "operator_optimization": self.operators,
                "averaging": self.stats}


def ncs_average(model, data=None, *, map_path=None, map_coeffs=None, groups=None, mask_radius: float = 3.0,
                optimize: bool = True, overlap: str = "nearest", outside: str | None = None, cycles: int = 0,
                **load_options):
    """NCS-averaged map of ``map_path`` / ``map_coeffs=(FILE, F, PHI)`` or, with ``data``, of the
    σA 2mFo−DFc map of ``model``. The operators of the NCS groups (``groups`` as for
    :func:`ncs_groups`) are first refined against the map (``optimize``, MAIN's mandatory step;
    :mod:`kickref.refinement.ncs_operators`), then the map is averaged with labelled masks
    (:mod:`kickref.refinement.ncs_averaging`); with data and ``cycles`` > 0, by cyclic averaging
    against |Fobs| (:func:`~kickref.refinement.ncs_averaging.cyclic_average`). ``outside`` the
    masks: 'keep' (default for one averaging) or 'flatten' (default for cyclic averaging).
    Returns a :class:`NcsAverageResult`."""
    import dataclasses
    from .refinement.ncs_averaging import average_map, cyclic_average
    from .refinement.ncs_operators import optimize_operators
    from .xtal.density_map import density_map_from_coefficients
    from .xtal.fourier import grid_to_coefficients
    mc = None
    if data is not None:
        model, data = load_inputs(model, data, **load_options)
        mc = compute_maps(model, data).map_coefficients
        dmap = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt, source="2mFo-DFc")
    else:
        if not isinstance(model, Model):
            model = read_model(model)
        if not (map_path or map_coeffs):
            raise KickrefError("NCS averaging needs a map (map_path, map_coeffs) or data")
        dmap = _load_map(map_path, map_coeffs, model)
    grp = ncs_groups(model, groups)
    if not grp:
        raise KickrefError(f"{model.path or 'model'}: no NCS groups to average over")
    reports = []
    if optimize:
        grp, reports = optimize_operators(dmap, model.xyz, grp, mask_radius)
    if cycles and mc is None:
        raise KickrefError("cyclic NCS averaging needs data (observed amplitudes)")
    if cycles:
        avg = cyclic_average(dmap, model.xyz, grp, mc.hkl, mc.f_obs, cycles, mask_radius=mask_radius,
                             overlap=overlap, outside=outside or "flatten")
    else:
        avg = average_map(dmap, model.xyz, grp, mask_radius, overlap, outside or "keep")
    if mc is not None:
        mc = dataclasses.replace(mc, fwt=grid_to_coefficients(avg.map.grid, mc.cell, mc.hkl),
                                 info={**mc.info, "ncs_averaged": True})
    return NcsAverageResult(avg.map, mc, grp, reports, avg.stats)


@dataclass
class MultiCrystalResult:
    """:func:`multi_crystal_average`, per crystal form (lists in the order of the forms): ``maps``
    (full-cell :class:`~kickref.xtal.density_map.DensityMap`, the averaged density put back into
    that form's cell), ``coefficients`` ((hkl, F) of each averaged map to its resolution),
    ``map_coefficients`` (for forms given as data: their
    :class:`~kickref.xtal.maps.MapCoefficients` with FWT/PHWT replaced by the averaged map's
    coefficients; None for maps), ``groups`` (each form's one-copy NCS group: chain, matched atoms,
    operator from the first form's frame), ``operator`` (the superposition and refinement report of
    the first → second form operator), ``weights`` and per-form averaging ``stats``."""
    maps: list
    coefficients: list
    map_coefficients: list
    groups: list
    operator: dict
    weights: list
    stats: list

    def as_dict(self) -> dict:
        return {"groups": [g.as_dict() for g in self.groups], "operator": self.operator,
                "weights": self.weights, "averaging": self.stats}


def _form_map(model, source, load_options):
    """(model, DensityMap, MapCoefficients or None, mean FOM or None) of one crystal form:
    ``source`` a DensityMap, a CCP4/MRC path, map coefficients (FILE, F, PHI), or data
    (Reflections or a reflection file: its σA 2mFo−DFc map)."""
    from .xtal.density_map import DensityMap, density_map_from_coefficients
    if isinstance(source, DensityMap) or isinstance(source, tuple) or (
            isinstance(source, str) and source.lower().endswith((".ccp4", ".map", ".mrc", ".ccp4.gz", ".map.gz", ".mrc.gz"))):
        if not isinstance(model, Model):
            model = read_model(model)
        if isinstance(source, DensityMap):
            return model, source, None, None
        return model, (_load_map(None, source, model) if isinstance(source, tuple) else _load_map(source)), None, None
    model, data = load_inputs(model, source, **load_options)
    mc = compute_maps(model, data).map_coefficients
    dmap = density_map_from_coefficients(mc.cell, mc.spacegroup, mc.hkl, mc.fwt, source="2mFo-DFc")
    fom = float(mc.fom[mc.observed].mean()) if mc.observed.any() else None
    return model, dmap, mc, fom


def multi_crystal_average(models, maps_or_data, *, chains=(None, None), mask_radius: float = 3.0,
                          optimize: bool = True, overlap: str = "nearest", outside: str = "keep",
                          weights="equal", **load_options) -> MultiCrystalResult:
    """Density of one molecule averaged across two crystal forms (MAIN's multi-crystal averaging).

    ``models``: the two forms' models (Models or paths); ``maps_or_data``: per form a
    DensityMap, a CCP4/MRC map path, map coefficients (FILE, F, PHI), or data (a reflection file
    or Reflections: the σA 2mFo−DFc map of that form's model). ``chains``: the molecule's chain in
    each model (None: its first polymer chain). The operator mapping the molecule of form 1 onto
    form 2 (Cartesian) comes from superposing the matched atoms
    (:func:`kickref.xtal.ncs.cross_crystal_groups`) and is then refined against the two maps as
    the within-crystal NCS operators are (``optimize``; the first form's masked density against
    the second map, correlation, analytic gradients). Each form's mask is the molecule's envelope
    (``mask_radius`` Å around its matched atoms) with its crystal-symmetry images in that form's
    cell; each masked point gets the weighted mean of the two forms' densities, the other form's
    put on this form's scale (mean and RMS over the masks matched), and the result is put back
    into each form's cell (:func:`kickref.refinement.ncs_averaging.average_maps`). ``weights``:
    'equal' (default), 'fom' (each form's mean figure of merit; needs data for both) or one
    number per form. ``outside``: 'keep' or 'flatten' the points outside the mask."""
    import dataclasses

    import gemmi
    import numpy as np

    from .refinement.ncs_averaging import average_maps
    from .refinement.ncs_operators import optimize_operator, reference_points
    from .xtal.fourier import grid_to_coefficients
    from .xtal.ncs import cross_crystal_groups
    if len(models) != 2 or len(maps_or_data) != 2:
        raise KickrefError("multi-crystal averaging takes two crystal forms (two models, two maps or data sets)")
    forms = [_form_map(m, s, load_options) for m, s in zip(models, maps_or_data)]
    (m1, d1, _, _), (m2, d2, _, _) = forms
    if isinstance(weights, str):
        if weights == "equal":
            w = [1.0, 1.0]
        elif weights == "fom":
            w = [f[3] for f in forms]
            if any(v is None or not v > 0 for v in w):
                raise KickrefError("weights='fom' needs data (a figure of merit) for both forms")
        else:
            raise KickrefError(f"weights must be 'equal', 'fom' or two numbers, not {weights!r}")
    else:
        w = [float(v) for v in weights]
        if len(w) != 2 or min(w) < 0 or not sum(w) > 0:
            raise KickrefError(f"weights: two non-negative numbers, not both zero, not {weights!r}")
    try:
        g1, g2 = cross_crystal_groups(m1, chains[0], m2, chains[1])
    except ValueError as e:
        raise KickrefError(str(e)) from None
    sup = g2.copies[0]
    report = {"chains": [g1.chains[0], sup.chain], "n_atoms_matched": int(g1.atoms.shape[1]),
              "superposition_rmsd": sup.rmsd, "rotation": sup.rotation.round(6).tolist(),
              "translation": sup.translation.round(4).tolist()}
    if optimize:
        x, a = reference_points(d1, m1.xyz, [g1], 0, mask_radius)
        new, rep = optimize_operator(d2, x, a, sup)
        g2 = dataclasses.replace(g2, copies=[new])
        report.update({k: rep[k] for k in ("cc_start", "cc_end", "rotation_change_deg", "translation_change",
                                           "n_points")})
        report.update({"rotation": new.rotation.round(6).tolist(), "translation": new.translation.round(4).tolist()})
    try:
        res = average_maps([d1, d2], [m1.xyz, m2.xyz], [[g1], [g2]], mask_radius, overlap, outside, weights=w)
    except ValueError as e:
        raise KickrefError(str(e)) from None
    coefficients, mcs = [], []
    for (model, dmap, mc, _), r in zip(forms, res):
        if mc is not None:
            hkl = mc.hkl
        else:
            d_min = dmap.resolution
            hkl = np.asarray(gemmi.make_miller_array(dmap.cell, dmap.spacegroup, d_min * (1 - 1e-6)), dtype=np.int64)
        f = grid_to_coefficients(r.map.grid, dmap.cell, hkl)
        coefficients.append((hkl, f))
        mcs.append(None if mc is None else dataclasses.replace(mc, fwt=f, info={**mc.info, "multi_crystal_averaged": True}))
    return MultiCrystalResult([r.map for r in res], coefficients, mcs, [g1, g2], report, w, [r.stats for r in res])
