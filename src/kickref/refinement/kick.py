"""Kicking: random displacements of coordinates and B values (MAIN's fast cooling), and maps
averaged over an ensemble of kicked models.

Fast cooling (MAIN): repeated cycles of [kick → minimization of N steps → re-phase], the kick
amplitudes decreasing from a start to an end value over the cycles (:func:`kick_schedule`,
:func:`run_kick_cooling`). MAIN's ``set coor kick 0.2 sele ... end`` and
``set temp kick 5. sele ... end`` are :func:`kick_coordinates` and :func:`kick_b`.

Conventions
- Coordinate kick of amplitude K (Å): every coordinate of every selected atom gets an
  independent uniform shift in [−K, K] ("displacement by up to K Å" per coordinate,
  ``distribution='cube'``, the default); the RMS displacement of an atom is then exactly K.
  ``distribution='ball'``: a displacement uniform in the ball of radius K (RMS K·√(3/5)).
- B kick of amplitude K_B (Å²): B + uniform[−K_B, K_B], kept ≥ ``b_min`` (1 Å²). Anisotropic
  atoms: U is multiplied by B_eq'/B_eq, so B_eq changes by the kick and the ellipsoid keeps its
  shape (U stays positive definite).
- Hydrogens are never kicked on their own: with ``place_hydrogens`` (riding model) they are
  re-placed on their kicked parents; otherwise each H follows its parent (given as
  ``hydrogen_parents`` or, by default, the nearest non-hydrogen atom) rigidly. Their B values
  are left for the refinement's riding rule (1.2 × parent).
- Randomness: a ``numpy.random.Generator`` (``rng``) or an integer ``seed``; same seed, same kicks.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..core.adp import EIGHT_PI2
from ..core.state import AtomState

LAWS = ("linear", "square", "exponential")


# ---------------------------------------------------------------------------- schedule
def kick_schedule(start: float, end: float, n_cycles: int, law: str = "linear",
                  rate: float | None = None) -> np.ndarray:
    """Kick amplitude of each of ``n_cycles`` cycles, from ``start`` (first) to ``end`` (last).

    With t = i/(n−1), i = 0 … n−1:
    - ``linear``:       K = start + (end − start)·t
    - ``square``:       K = end + (start − end)·(1 − t)²   (falls fast early, slowly late)
    - ``exponential``:  K = end + (start − end)·(e^{−λt} − e^{−λ})/(1 − e^{−λ}).
      With 0 < end < start and no ``rate`` given, λ = ln(start/end) and this is exactly the
      geometric law K = start·(end/start)^t (constant ratio per cycle). A geometric law never
      reaches 0, so toward end = 0 (or end ≥ start) it is the exponential decay shifted to hit
      ``end`` at the last cycle, with λ = ``rate`` (default ln 100: the first half of the cycles
      removes 90 % of the range).
    One cycle gives [start].
    """
    n = int(n_cycles)
    if n < 1:
        raise ValueError("the number of cooling cycles must be at least 1")
    if law not in LAWS:
        raise ValueError(f"kick law must be one of {', '.join(LAWS)}, not {law!r}")
    start, end = float(start), float(end)
    if n == 1:
        return np.array([start])
    t = np.arange(n) / (n - 1.0)
    if law == "linear":
        k = start + (end - start) * t
    elif law == "square":
        k = end + (start - end) * (1.0 - t) ** 2
    else:
        if rate is None:
            lam = math.log(start / end) if 0 < end < start else math.log(100.0)
        else:
            lam = float(rate)
        if lam == 0 or start == end:
            k = start + (end - start) * t
        else:
            e = math.exp(-lam)
            k = end + (start - end) * (np.exp(-lam * t) - e) / (1.0 - e)
    k[0], k[-1] = start, end
    return k


# ------------------------------------------------------------------------------- kicks
def _as_rng(rng=None, seed=None) -> np.random.Generator:
    if rng is not None:
        return rng
    return np.random.default_rng(seed)


def _selection_mask(obj, selection, n, model=None):
    from ..core.selection import resolve_selection
    if isinstance(selection, str) and model is None and hasattr(obj, "structure"):
        model = obj
    return resolve_selection(selection, n, model)


def _hydrogen_mask(obj, hydrogens, n, model=None) -> np.ndarray:
    """``hydrogens`` as a bool mask; default: ``obj``'s (or ``model``'s) is_hydrogen, else none."""
    if hydrogens is None:
        hydrogens = getattr(obj, "is_hydrogen", None)
        if hydrogens is None and model is not None:
            hydrogens = model.is_hydrogen
    return np.zeros(n, bool) if hydrogens is None else np.asarray(hydrogens, bool)


def nearest_heavy_parents(xyz: np.ndarray, is_hydrogen: np.ndarray) -> np.ndarray:
    """Index of the nearest non-hydrogen atom for each hydrogen (−1 for the others)."""
    from scipy.spatial import cKDTree
    parents = np.full(len(xyz), -1, dtype=np.int64)
    h = np.flatnonzero(is_hydrogen)
    heavy = np.flatnonzero(~is_hydrogen)
    if len(h) and len(heavy):
        _, j = cKDTree(xyz[heavy]).query(xyz[h])
        parents[h] = heavy[j]
    return parents


def kick_coordinates(obj, amplitude: float, selection=None, rng=None, *, seed=None, model=None,
                     hydrogens=None, hydrogen_parents=None, place_hydrogens=None,
                     distribution: str = "cube"):
    """Displace the selected atoms of ``obj`` (AtomState or Model, in place) at random.

    ``selection``: None (all), bool mask, indices, or a gemmi selection string (needs a Model:
    ``obj`` itself or ``model``). ``hydrogens``: mask of H atoms (default: the Model's, else none).
    Returns ``obj``. See the module docstring for the distributions and the riding hydrogens.
    """
    xyz = obj.xyz
    n = len(xyz)
    sel = _selection_mask(obj, selection, n, model)
    is_h = _hydrogen_mask(obj, hydrogens, n, model)
    rng = _as_rng(rng, seed)
    moving = sel & ~is_h
    m = int(moving.sum())
    if amplitude <= 0 or m == 0:
        return obj
    if distribution == "cube":
        shift = rng.uniform(-amplitude, amplitude, size=(m, 3))
    elif distribution == "ball":
        v = rng.normal(size=(m, 3))
        v /= np.maximum(np.linalg.norm(v, axis=1), 1e-300)[:, None]
        shift = v * (amplitude * rng.uniform(0.0, 1.0, m) ** (1.0 / 3.0))[:, None]
    else:
        raise ValueError(f"distribution must be 'cube' or 'ball', not {distribution!r}")
    old = xyz.copy() if is_h.any() else None
    xyz[moving] += shift
    if is_h.any():
        if place_hydrogens is not None:
            xyz[:] = place_hydrogens(xyz)
        else:
            parents = (np.full(n, -1, dtype=np.int64) if hydrogen_parents is None
                       else np.asarray(hydrogen_parents, dtype=np.int64).copy())
            orphan = is_h & (parents < 0)
            if orphan.any():                       # no parent given: the nearest heavy atom
                parents[orphan] = nearest_heavy_parents(old, is_h)[orphan]
            h = np.flatnonzero(is_h & (parents >= 0))
            p = parents[h]
            follow = moving[p]
            xyz[h[follow]] += xyz[p[follow]] - old[p[follow]]
    return obj


def kick_b(obj, amplitude: float, selection=None, rng=None, *, seed=None, model=None,
           hydrogens=None, b_min: float = 1.0):
    """Add uniform[−K_B, K_B] (Å²) to B of the selected non-hydrogen atoms (in place), B ≥ ``b_min``.

    Anisotropic atoms: U scaled so that B_eq = 8π²/3·tr(U) changes by the kick (``b_iso`` of
    those atoms is set to the new B_eq too). Returns ``obj``.
    """
    n = len(obj.b_iso)
    sel = _selection_mask(obj, selection, n, model)
    is_h = _hydrogen_mask(obj, hydrogens, n, model)
    rng = _as_rng(rng, seed)
    idx = np.flatnonzero(sel & ~is_h)
    if amplitude <= 0 or len(idx) == 0:
        return obj
    delta = rng.uniform(-amplitude, amplitude, len(idx))
    ani = obj.is_aniso[idx]
    iso_i = idx[~ani]
    obj.b_iso[iso_i] = np.maximum(obj.b_iso[iso_i] + delta[~ani], b_min)
    if ani.any():
        ai = idx[ani]
        u = obj.u_aniso[ai]
        beq = EIGHT_PI2 / 3.0 * u[:, :3].sum(axis=1)
        new = np.maximum(beq + delta[ani], b_min)
        obj.u_aniso[ai] = u * (new / np.maximum(beq, 1e-6))[:, None]
        obj.b_iso[ai] = new
    return obj


_kick_b_values = kick_b          # run_kick_cooling's ``kick_b`` argument shadows the function


# ------------------------------------------------------------------------ fast cooling
def run_kick_cooling(refinement, kick=(0.8, 0.0), kick_b=(5.0, 0.0), cool: int = 10,
                     law: str = "linear", steps: int | None = None, seed: int = 1, selection=None,
                     finish: bool = True):
    """MAIN's fast cooling on a :class:`~kickref.refinement.protocol.Refinement`.

    ``cool`` cycles of: kick the movable atoms (coordinates by K Å, B by K_B Å², amplitudes from
    :func:`kick_schedule` over the cycles with ``law``) → minimize coordinates ``steps`` steps
    (default the refinement's ``xyz_steps``), then ADPs (``adp_steps``) and occupancies, as a
    macro-cycle of ``Refinement.run`` with strategy 'alternate', re-phasing every
    ``rephase_every`` steps inside → full re-phase → record the cycle (log line).
    ``kick``/``kick_b``: (start, end) or one number (constant). ``selection``: atoms to kick
    (default: the refinement's movable atoms). Returns ``refinement.finish(timings)`` (a
    RefinementResult) or, with ``finish=False``, the list of CycleStats recorded.
    """
    ref = refinement
    o = ref.options
    k0, k1 = (kick, kick) if np.isscalar(kick) else kick
    b0, b1 = (kick_b, kick_b) if np.isscalar(kick_b) else kick_b
    kx = kick_schedule(k0, k1, cool, law)
    kb = kick_schedule(b0, b1, cool, law)
    steps = o.xyz_steps if steps is None else int(steps)
    settle = int(o.kick_settle)
    rng = np.random.default_rng(seed)
    sel = ref.movable.copy()
    if selection is not None:
        sel &= _selection_mask(ref.model, selection, ref.model.n_atoms, ref.model)
    is_h = ref.p_xyz.is_h | ref.model.is_hydrogen
    t0 = time.perf_counter()
    timings = {}
    recorded = []
    with ref.stop:
        ref.start(t0)
        first = ref.cycles[-1].cycle if ref.cycles else 0
        for i in range(cool):
            if ref.stop:
                break
            ref.cycle = i + 1
            if not o.fix_xyz and kx[i] > 0:
                kick_coordinates(ref.state, kx[i], sel, rng, hydrogens=is_h,
                                 hydrogen_parents=ref.p_xyz.hparent, place_hydrogens=ref.p_xyz.place_hydrogens)
            if not o.fix_b and kb[i] > 0:
                _kick_b_values(ref.state, kb[i], sel, rng, hydrogens=is_h)
                ref.p_adp.update_hydrogen_b(ref.state)
            if kx[i] > 0 and settle > 0 and not o.fix_xyz:
                # MAIN: "the distortions are removed in approximately 10 steps of minimization";
                # restraint-only steps remove them before the data see them
                ref.minimize_geometry(settle)
            ref.rephase(full=False)
            ref.macro_cycle(steps, strategy=o.kick_strategy)
            note = f"kick {kx[i]:.2f} Å, B {kb[i]:.1f} Å²" + (" interrupted" if ref.stop else "")
            recorded.append(ref.record(first + i + 1, t0, note))
    timings["kick_cooling"] = timings["total"] = time.perf_counter() - t0
    if not finish:
        return recorded
    return ref.finish(timings)


# --------------------------------------------------------------------- kick maps
def kick_amplitudes(n_models: int, max_amplitude: float) -> np.ndarray:
    """Amplitudes of an ensemble: evenly from 0 (the model itself) to ``max_amplitude``."""
    n = int(n_models)
    if n < 1:
        raise ValueError("the number of kicked models must be at least 1")
    return np.linspace(0.0, float(max_amplitude), n) if n > 1 else np.array([float(max_amplitude)])


def kick_map_coefficients(model, data, n_models: int = 50, max_amplitude: float = 0.8, seed: int = 1,
                          include_free: bool = False, bulk_solvent: bool = True, scale_shells="auto",
                          b_amplitude: float = 0.0):
    """σA-weighted map coefficients averaged over an ensemble of kicked models ("kick maps").

    Model i of ``n_models`` is the input with every non-hydrogen coordinate kicked by amplitude
    a_i (:func:`kick_amplitudes`: 0 … ``max_amplitude`` Å, uniform per coordinate, seeded) and,
    if ``b_amplitude``, B values by ±b_amplitude. For each: Fc (one calculator for the data and
    the missing reflections), the scale refitted from the input model's (no grid search; the
    solvent mask of the input model is kept), D and S from the test set (warm start), then
    2mFo−DFc, mFo−DFc and Fmodel. The complex coefficients and the FOM are averaged; missing
    reflections get the average D·Fm. Returns (MapCoefficients, statistics of the input model
    with 'kick' statistics added).
    """
    from ..xtal.fmodel import FModel
    from ..xtal.maps import MapCoefficients, missing_hkl, sigmaa_map_coefficients
    from ..xtal.scaling import cartesian_s, quad_forms
    from ..xtal.structure_factors import StructureFactorCalculator
    t0 = time.perf_counter()
    fm = FModel(model, data, bulk_solvent=bulk_solvent, scale_shells=scale_shells)
    base = AtomState.from_model(model)
    fm.update_all(base)
    stats = fm.statistics()
    base_scale = fm.scale
    base_sa = fm.sigmaa()
    d = data
    miss = missing_hkl(fm.cell, d.spacegroup, d.hkl, d.d_min, d.d_max)
    all_hkl = np.vstack([d.hkl, miss]).astype(np.int32) if len(miss) else d.hkl
    calc = StructureFactorCalculator(fm.cell, d.spacegroup, all_hkl, d.d_min)
    nd, nm = d.n, len(miss)
    s2m = np.asarray(fm.cell.calculate_1_d2_array(miss), dtype=float) if nm else np.zeros(0)
    q6m = quad_forms(cartesian_s(fm.cell, miss)) if nm else np.zeros((0, 6))
    fmask_m = fm.mask.fmask_at(miss) if nm and bulk_solvent and fm.mask is not None else np.zeros(nm, complex)
    bin_m = base_sa.bin_of(s2m) if nm else np.zeros(0, int)
    use_fo = np.ones(nd, bool) if include_free or not d.has_free else ~d.free
    amps = kick_amplitudes(n_models, max_amplitude)
    rng = np.random.default_rng(seed)
    is_h = model.is_hydrogen
    sum_fwt = np.zeros(nd + nm, complex)
    sum_del = np.zeros(nd + nm, complex)
    sum_fc = np.zeros(nd + nm, complex)
    sum_fom = np.zeros(nd + nm)
    r_work, r_free = [], []
    for a in amps:
        s = base.copy()
        kick_coordinates(s, a, None, rng, hydrogens=is_h)
        if b_amplitude > 0:
            kick_b(s, b_amplitude, None, rng, hydrogens=is_h)
        fc_all = calc.calculate(s, fm.elements)
        fm.fc = fc_all[:nd]
        fm.scale = base_scale.copy() if hasattr(base_scale, "copy") else _copy_scale(base_scale)
        fm.fit_scale(full=False)
        sa = fm.sigmaa(start=base_sa)
        f_model = fm.f_model
        fwt, delfwt, fom = sigmaa_map_coefficients(d.f_obs, d.sigma, f_model, d.centric, d.epsilon,
                                                   sa.D, sa.S, use_fo & ~fm.outliers)
        sum_fwt[:nd] += fwt
        sum_del[:nd] += delfwt
        sum_fom[:nd] += fom
        sum_fc[:nd] += f_model
        if nm:
            fm_m = fm.scale.fmodel(fc_all[nd:], fmask_m, s2m, q6m)
            sum_fwt[nd:] += sa.D_bin[bin_m] * fm_m
            sum_fc[nd:] += fm_m
        st = fm.statistics(n_shells=1)
        r_work.append(st["r_work"])
        r_free.append(st["r_free"])
    n = float(len(amps))
    nan = np.full(nm, np.nan)
    free = d.free.copy() if d.has_free else np.zeros(nd, bool)
    mc = MapCoefficients(fm.cell, d.spacegroup, all_hkl, sum_fwt / n, sum_del / n, sum_fc / n, sum_fom / n,
                         np.concatenate([d.f_obs, nan]), np.concatenate([d.sigma, nan]),
                         np.concatenate([free, np.zeros(nm, bool)]),
                         np.concatenate([np.ones(nd, bool), np.zeros(nm, bool)]),
                         {"sigmaa_from": base_sa.used, "D_bin": base_sa.D_bin.tolist(),
                          "S_bin": base_sa.S_bin.tolist(), "n_bins": len(base_sa.D_bin),
                          "include_free": include_free, "n_missing_filled": int(nm),
                          "kick": {"n_models": int(len(amps)), "max_amplitude": float(max_amplitude),
                                   "b_amplitude": float(b_amplitude), "seed": seed}})
    fm.scale = base_scale
    stats["kick"] = {"n_models": int(len(amps)), "amplitudes": [float(a) for a in amps],
                     "seed": seed, "r_work_mean": _mean(r_work), "r_free_mean": _mean(r_free),
                     "time": time.perf_counter() - t0}
    if base_sa.used != "test":
        stats.setdefault("warnings", []).append(
            "D and S estimated from all reflections (no usable test set)")
    return mc, stats


def _mean(values):
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _copy_scale(scale):
    import copy
    return copy.deepcopy(scale)
