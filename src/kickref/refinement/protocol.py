"""Restrained refinement: macro-cycles of coordinate, ADP and occupancy minimization.

One macro-cycle (after MAIN's REF_XYZ / REF_B / REF_OCCU):
  0. with TLS groups (refinement.tls): T, L, S, the residual B held;
  1. coordinates: L-BFGS on w·X + geometry, in chunks of ``rephase_every`` steps; after each
     chunk Fc, scale and likelihood parameters are brought up to date ("re-phase") and the
     X-ray weight w is re-adjusted from the bond RMSD (MAIN ``min adjust bond 0.02``, every
     ``weight_every`` steps and at each macro-cycle);
  2. ADPs: L-BFGS on w_B·X + ADP restraints;
  3. occupancies of altloc groups (sums kept), of the user's occupancy groups
     (refinement.occupancy) and, if asked, of partial ligands/waters;
  4. full re-phase: solvent mask, bulk solvent and scale (LS or ML), outliers, D and S.
Interrupting (Ctrl-C, or ``stop.set()``) ends the run after the current step with a valid model.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..core.errors import KickrefError
from ..core.profile import phase
from ..core.selection import select_atoms  # noqa: F401 (re-exported)
from ..xtal.fmodel import FModel
from ..core.state import AtomState
from .energy import Energy
from .minimize import StopFlag, minimize_energy
from ..core.adp import EIGHT_PI2
from .parameters import B_MIN, CombinedParameters, Parameters, find_occupancy_groups
from .weighting import (BOND_RMSD_REFINE, adjust_weight, adp_restraints_for_resolution,
                        bond_rmsd_for_resolution, equal_chunk,
                        initial_weight, minimize_in_chunks, restraint_terms, xyz_parameters)


@dataclass
class RefineOptions:
    target: str = "ml"                 # 'ml' (D, S from the test set; free kick when it has < 50
                                       # reflections), 'ml-free-kick' (MAIN's default), 'ls',
                                       # 'mli' (intensity likelihood for intensity data; D, S fitted
                                       # by it, on the test set as 'ml'),
                                       # 'difference-map' (Fo−Fc map, re-phased every N steps)
    cycles: int = 8                    # macro-cycles (at most: see convergence)
    xyz_steps: int = 25                # L-BFGS iterations per macro-cycle for coordinates (+ADPs)
    adp_steps: int = 25                # ... for ADPs
    occ_steps: int = 10
    rephase_every: int = 20            # steps between re-phasings inside a stage
    weight_every: int = 100            # steps between X-ray weight adjustments (MAIN default)
    bond_rmsd: float | None = None     # Å, target of the weight adjustment (non-H bonds); None:
                                       # by resolution, 0.008 at d_min ≥ 1.2 Å (measured; MAIN: 0.02)
                                       # up to 0.02 at ≤ 0.9 Å (weighting.bond_rmsd_for_resolution)
    weight: float | None = None        # fixed X-ray weight (no adjustment)
    adp_weight: float = 0.6            # scale of the ADP restraints
    adp: str = "auto"                  # keep | iso | aniso | auto (aniso for all non-H atoms when
                                       # at least half of them come anisotropic, else keep)
    refine_occupancy: bool = False     # partial single-conformer ligands/waters too
    occupancy_groups: object = ()      # user groups: {id: selection} or ('ID:SELECTION', ...);
                                       # one occupancy per group (refinement.occupancy)
    occupancy_complete: tuple = ()     # sets of group ids summing to exactly 1: ('1,2', ...)
    occupancy_incomplete: tuple = ()   # sets of group ids summing to at most 1
    tls: object = None                 # TLS groups (refinement.tls): 'chain', 'auto' or a list of
                                       # selections / (id, selection); None: no TLS
    tls_steps: int = 25                # L-BFGS steps per cycle for the TLS tensors
    fix_xyz: bool = False
    fix_b: bool = False
    selection: str | None = None       # gemmi selection of the atoms that move (MINIMIZE)
    free_kick: float = 0.1             # Å, kick for the ML free-kick estimate of D and S
    seed: int = 1
    scale_shells: object = "auto"
    bulk_solvent: bool = True
    convergence: float = 2e-3          # stop when R-work changes less than this over a cycle
    min_cycles: int = 3
    precondition: bool = True          # diagonal preconditioning from curvature estimates
    strategy: str = "auto"             # 'combined': xyz and ADPs in one minimization; 'alternate':
                                       # coordinates, then ADPs; 'auto': alternate for a cycle that
                                       # starts with R-work > far_r_work, combined otherwise
    far_r_work: float = 0.25           # 'auto': above this R-work the model is far from the data
    adp_restraints: str = "auto"       # 'kl': KL-divergence similarity of neighbours (+ rigid bond);
                                       # 'simple': B similarity of bonded atoms, U similarity;
                                       # 'auto': kl at d_min ≥ 1.2 Å, simple below
                                       # (weighting.adp_restraints_for_resolution)
    term_scales: dict = field(default_factory=dict)   # {term name: scale}; 0 switches a term off
    h_b_factor: float = 1.2            # B of a riding H = this × B_eq of its parent
    scale_target: str = "ls"           # bulk solvent and aniso scale fitted by 'ls' or refitted by 'ml'
    adp_iso_factor: object = "auto"    # relative weight of ADP restraints between two isotropic
                                       # atoms; auto: 0.5·(d_min/2.3 Å)³ within [0.15, 0.5] (looser
                                       # at high resolution, where more data back each B)
    cool: int = 0                      # kick cooling cycles (MAIN fast cooling); 0: plain cycles
    kick: object = (0.8, 0.0)          # coordinate kick amplitude (start, end), Å
    kick_b: object = (5.0, 0.0)        # B kick amplitude (start, end), Å²
    kick_settle: int = 0               # restraint-only steps after each coordinate kick
    kick_strategy: str = "alternate"   # minimization after a kick: coordinates then ADPs
                                       # ('alternate'), or as the plain cycles ('combined': the
                                       # B values of kicked atoms inflate to hide the kick; 5e5z
                                       # <B> 4.6 → 11.7 Å² in one cycle)
    kick_law: str = "linear"           # linear | square | exponential
    overall_b_to_atoms: bool = True    # at each full re-phase move the isotropic part of the
                                       # scale's anisotropic B into the atoms' B (and B_sol)
    twin: str | None = None            # 'auto': twin laws from the lattice, fractions refined, laws
                                       # below 0.03 dropped (refinement.twinning); None: untwinned
    twin_laws: tuple = ()              # forced twin laws in h,k,l ("k,h,-l"); implies twinning
    ncs: str = "auto"                  # NCS restraints (ncs_local, ncs_b): on | off | auto (on when
                                       # NCS groups are found: measured on 4iid, see the README)
    ncs_groups: object = None          # chain lists [["A", "B"], ...] (first: reference); None: detect
    ncs_sigma: float = 0.224           # Å, σ of the local NCS distance differences
    ncs_b_sigma: float = 5.0           # Å², σ of the NCS B differences (after the per-copy offset)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CycleStats:
    cycle: int
    r_work: float | None
    r_free: float | None
    target: float
    target_kind: str
    rmsd_bond: float
    rmsd_angle: float
    weight: float
    time: float
    n_eval: int
    k_sol: float = 0.0
    b_sol: float = 0.0
    mean_b: float = 0.0
    note: str = ""


@dataclass
class RefinementResult:
    model: object                      # refined kickref Model
    cycles: list
    options: RefineOptions
    statistics: dict                   # final rfactor-style statistics
    geometry: dict
    map_coefficients: object = None
    interrupted: bool = False
    timings: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    profile: object = None             # kickref.core.profile.Profile of the run (api.refine)
    ncs: dict = None                   # NCS groups and whether/how they were restrained

    @property
    def r_work(self):
        return self.statistics.get("r_work")

    @property
    def r_free(self):
        return self.statistics.get("r_free")


class Refinement:
    """Set up once, then :meth:`run`. ``restraints`` from :func:`kickref.restraints.build_restraints`."""

    def __init__(self, model, data, restraints, options: RefineOptions | None = None, log=None,
                 progress=None):
        self.log = log or (lambda s: None)
        o = options or RefineOptions()
        if o.bond_rmsd is None:
            o = replace(o, bond_rmsd=bond_rmsd_for_resolution(data.d_min))
            if o.bond_rmsd != BOND_RMSD_REFINE:
                self.log(f"bond RMSD target {o.bond_rmsd:.4f} Å (atomic resolution: d_min {data.d_min:.2f} Å)")
        self.options = o
        self.model = model
        self.data = data
        self.restraints = restraints
        self.progress = progress
        self.stop = StopFlag()
        self._apply_adp_mode(o.adp)
        self.state = AtomState.from_model(model)
        self.movable = select_atoms(model, o.selection)
        self.fmodel = FModel(model, data, bulk_solvent=o.bulk_solvent, scale_shells=o.scale_shells)
        from ..targets.xray import XrayTarget
        if o.target not in ("ml", "ml-free-kick", "ls", "difference-map", "mli"):
            raise ValueError(f"unknown target {o.target!r}")
        target = o.target if o.target in ("ls", "mli") else "ml"
        self.xray = XrayTarget(self.fmodel, target)
        if o.twin or o.twin_laws:
            from .twinning import twin_target
            self.xray = twin_target(self.fmodel, self.state, o.twin, o.twin_laws, self.log) or self.xray
        data_term = self.xray
        self.difference_map = None
        if o.target == "difference-map":
            # the minimizer follows the Fo−Fc map; the ML term is kept for statistics only
            from ..targets.difference_map import DifferenceMapTarget
            self.difference_map = data_term = DifferenceMapTarget(self.fmodel)
        f = o.adp_iso_factor
        if f == "auto":
            f = float(np.clip(0.5 * (data.d_min / 2.3) ** 3, 0.15, 0.5))
        restraints.params.adp_kl_iso_factor = float(f)
        terms = restraint_terms(restraints)          # without the bonded ones of riding H
        if o.adp_restraints == "auto":
            o = self.options = replace(o, adp_restraints=adp_restraints_for_resolution(data.d_min))
            if o.adp_restraints != "kl":
                self.log(f"ADP restraints: {o.adp_restraints} (absolute U differences; atomic "
                         f"resolution: d_min {data.d_min:.2f} Å)")
        if o.adp_restraints not in ("kl", "simple"):
            raise ValueError(f"adp_restraints must be auto, kl or simple, not {o.adp_restraints!r}")
        off = ({"b_similarity", "adp_similarity"} if o.adp_restraints == "kl" else {"adp_kl"})
        for t in terms:
            if t.name in off:
                t.enabled = False
        for t in terms:                    # MAIN: energy <term> on/off scale
            if t.name in o.term_scales:
                t.scale = float(o.term_scales[t.name])
                t.enabled = t.scale != 0.0
        terms += self._ncs_terms(restraints)
        self.geometry_terms = [t for t in terms if t.kind == "geometry"]
        self.adp_terms = [t for t in terms if t.kind == "adp"]
        self.e_xyz = Energy([data_term] + self.geometry_terms, weights={"xray": 1.0})
        self.e_adp = Energy([data_term] + self.adp_terms, weights={"xray": 1.0, "adp": o.adp_weight})
        self.e_occ = Energy([data_term], weights={"xray": 1.0})
        self.e_all = Energy([data_term] + self.geometry_terms + self.adp_terms,
                            weights={"xray": 1.0, "adp": o.adp_weight})
        self.weight = o.weight
        self.cycles: list[CycleStats] = []
        self.n_eval = 0
        self.cycle = 0                     # macro-cycle under way (0: start), for progress(n_eval, cycle)
        hp = getattr(restraints, "hydrogen_parents", None)
        site = getattr(restraints, "site_symmetry", None)
        self.p_xyz = xyz_parameters(self.state, restraints, self.movable)
        from .tls import start_tls
        self.tls = start_tls(model, self.state, o, self.movable, self.log)
        single_b = None
        if self.tls is not None:              # residual B: one parameter, restrained as isotropic
            single_b = np.zeros(model.n_atoms, bool)
            single_b[self.tls.all_atoms] = True
        restraints.params.adp_single_b = single_b
        adp_movable = self.movable.copy()
        if self.tls is not None:
            adp_movable[self.tls.all_atoms] = False       # their ADPs: TLS + residual B
        self.p_adp = Parameters("adp", self.state, adp_movable, hp, h_b_factor=o.h_b_factor,
                                site_symmetry=site)
        if self.tls is not None:
            from .tls import TLSParameters
            self.p_tls = TLSParameters(self.tls, "tls", self.p_adp)
            self.p_res = TLSParameters(self.tls, "residual", self.p_adp)
        if self.p_xyz.site is not None and not o.fix_xyz:
            r = np.linalg.norm(self.p_xyz.site.residual, axis=1)
            self.log(f"special positions: {len(r)} atom(s) move along their symmetry elements only "
                     f"(largest start offset from the element {r.max():.3f} Å, kept)")
        from .occupancy import user_occupancy_parameters
        user_occ = user_occupancy_parameters(model, self.state, o, self.log)
        auto = self.movable.copy()
        if user_occ is not None:
            auto[user_occ.atoms] = False      # the user's groups replace the automatic ones
        self.occ_groups = find_occupancy_groups(model, auto, o.refine_occupancy,
                                                getattr(restraints, "site_symmetry_order", None))
        self.p_occ = Parameters("occ", self.state, self.movable, hp, occupancy_groups=self.occ_groups)
        if user_occ is not None:
            self.p_occ = CombinedParameters([self.p_occ, user_occ])

    def adp_parameters(self):
        """The ADP parameters of a coordinate+ADP or ADP stage: individual ADPs and, with TLS,
        the residual B of the TLS groups' atoms (U_TLS refreshed at the current coordinates)."""
        if self.tls is None:
            return self.p_adp
        self.tls.refresh(self.state)
        return CombinedParameters([self.p_adp, self.p_res])

    # ----------------------------------------------------------------- setup
    def _ncs_terms(self, restraints) -> list:
        """NCS groups (given or detected) and, when there are any, their restraint terms
        (``ncs`` auto or on: the same, 'on' warns when there is nothing to restrain); sets
        :attr:`ncs` (the summary's ``ncs`` entry) and :attr:`ncs_restraints`."""
        from ..restraints.ncs import ncs_terms
        from ..xtal.ncs import detect_ncs, format_groups, groups_from_chains
        o = self.options
        self.ncs_restraints = []
        if o.ncs not in ("auto", "on", "off"):
            raise ValueError(f"ncs must be auto, on or off, not {o.ncs!r}")
        self.ncs = {"mode": o.ncs, "used": False, "groups": []}
        if o.ncs == "off":
            return []
        try:
            groups = groups_from_chains(self.model, o.ncs_groups) if o.ncs_groups else detect_ncs(self.model)
        except ValueError as e:                  # a given group names a chain the model lacks
            raise KickrefError(str(e)) from None
        self.ncs["groups"] = [g.as_dict() for g in groups]
        for line in format_groups(groups):
            self.log(line)
        self.ncs["used"] = bool(groups)
        if not groups:
            if o.ncs == "on":
                warnings.warn("--ncs on: no NCS groups found (nothing to restrain)", stacklevel=2)
            return []
        self.ncs_restraints = list(ncs_terms(groups, restraints, self.state, o.ncs_sigma, o.ncs_b_sigma))
        for t in self.ncs_restraints:
            if t.name in o.term_scales:
                t.scale = float(o.term_scales[t.name])
                t.enabled = t.scale != 0.0
        self.log(f"NCS restraints on: {len(self.ncs_restraints[0])} local distance pairs "
                 f"(σ {o.ncs_sigma} Å), {len(self.ncs_restraints[1])} B pairs (σ {o.ncs_b_sigma} Å²)")
        return self.ncs_restraints

    def update_ncs(self):
        """Rebuild the local NCS pair list and the B offsets for the current model; log them."""
        if not self.ncs_restraints:
            return
        local, b = self.ncs_restraints
        local.update(self.state.xyz)
        b.update(self.state)
        st = local.statistics(self.state)
        self.ncs["local"] = st
        self.ncs["b_offsets"] = b.offsets.tolist()
        self.log(f"NCS: {st['n_pairs']} pairs, RMS Δd {st['rms_delta']:.3f} Å, {st['n_outliers']} beyond 3σ; "
                 f"B offsets {' '.join(f'{v:.1f}' for v in b.offsets)} Å²")

    def _apply_adp_mode(self, mode):
        m = self.model
        if mode == "auto":
            heavy = ~m.is_hydrogen
            frac = float(m.is_aniso[heavy].mean()) if heavy.any() else 0.0
            mode = "aniso" if frac >= 0.5 else "keep"
            if mode == "aniso" and not m.is_aniso[heavy].all():
                self.log(f"ADPs: {frac:.0%} of the non-H atoms come anisotropic: all refined anisotropically "
                         f"(--adp keep to keep the others isotropic)")
        if mode == "iso":
            if m.is_aniso.any():
                m.b_iso[:] = m.b_eq_from_u()
                m.is_aniso[:] = False
        elif mode == "aniso":
            iso = ~m.is_aniso & ~m.is_hydrogen
            u = np.maximum(m.b_iso[iso], B_MIN) / EIGHT_PI2     # B = 0 in some deposited files
            m.u_aniso[iso] = np.column_stack([u, u, u, 0 * u, 0 * u, 0 * u])
            m.is_aniso[iso] = True
        elif mode != "keep":
            raise ValueError(f"adp must be auto, keep, iso or aniso, not {mode!r}")

    # --------------------------------------------------------------- phasing
    def rephase(self, full: bool = True):
        """Bring Fc, scale and the likelihood parameters up to date; ``full`` also recomputes
        the solvent mask, searches k_sol/B_sol afresh and re-flags outliers (once per cycle)."""
        fm = self.fmodel
        if full and self.p_xyz.place_hydrogens is not None and not self.options.fix_xyz and self.cycles:
            # riding H back onto ideal positions for the current heavy-atom geometry
            self.restraints.update_riding(self.state.xyz)
            self.state.xyz[:] = self.restraints.place_hydrogens(self.state.xyz)
        fm.update_all(self.state, mask=full, scale=True, full=full)
        if full and self.options.overall_b_to_atoms:
            self.overall_b_to_atoms()
        if full and self.cycles:
            self.update_ncs()
        if self.xray.uses_sigmaa:
            prev = None if full else getattr(self, "sigmaa", None)
            if self.use_free_kick:
                from ..targets.xray import free_kick_sigmaa
                sa = free_kick_sigmaa(fm, self.state, self.options.free_kick, seed=self.options.seed,
                                      start=prev, intensities=self.xray.intensity_sigmaa)
            else:
                sa = fm.sigmaa("test", start=prev, intensities=self.xray.intensity_sigmaa)
            self.xray.set_sigmaa(sa)
            self.sigmaa = sa
            if full and self.options.scale_target == "ml":
                fm.fit_scale_ml(sa)                     # ML refit of k_sol, B_sol, aniso B, k
        if self.xray.target == "twin":
            self.xray.fit()
        if self.difference_map is not None:
            self.difference_map.update_map(self.state, getattr(self, "sigmaa", None))

    def overall_b_to_atoms(self, min_shift: float = 0.05) -> float:
        """Move the isotropic part b = tr(B_scale)/3 of the scale's anisotropic B into the atoms
        (B += b for every non-H atom, U += b/8π² on the diagonal; riding H follow) and into
        B_sol, leaving F_model unchanged. Returns the b moved (Å²).

        Atomic B values and the scale's overall B are interchangeable for F_model; left free,
        the alternation of atom minimization (ML, D and S fixed) with the scale, D and S refits
        lets the overall B leak from the atoms into the scale, cycle after cycle (0.8 Å-shaken
        3zt9: mean B 28 → 15 Å² and scale B 0.7 → 10 Å² over 14 cycles, R-work rising from
        0.139 to 0.146). phenix.refine does the same ("apply back trace"). Skipped when ADPs
        are fixed or only a selection moves (the fixed atoms would not follow)."""
        o = self.options
        heavy = ~self.model.is_hydrogen
        if o.fix_b or not (self.p_adp.n or self.tls is not None) or not self.movable[heavy].all():
            return 0.0
        fm = self.fmodel
        st = self.state
        b = fm.scale.b_iso_overall
        beq = st.b_eq()
        ani = st.is_aniso
        b = max(b, B_MIN - float(beq[heavy].min()))          # no atom below the B bound
        if abs(b) < min_shift:
            return 0.0
        iso = heavy & ~ani
        st.b_iso[iso] += b
        an = heavy & ani
        st.u_aniso[an, :3] += b / EIGHT_PI2
        st.b_iso[an] = beq[an] + b
        self.p_adp.update_hydrogen_b(st)
        fm.scale.b_aniso[:3] -= b
        fm.scale.b_sol += b
        fm.update_fc(st)
        return float(b)

    @property
    def use_free_kick(self) -> bool:
        return (self.options.target == "ml-free-kick" or not self.data.has_free
                or self.fmodel.free.sum() < 50)

    def geometry_rmsd(self):
        """Bond and angle RMSD over restraints between non-hydrogen atoms, and the statistics of
        all restraints (with hydrogens) plus those two as 'rmsd_bond_non_h', 'rmsd_angle_non_h'."""
        with phase("restraints"):
            st = self.restraints.statistics(self.state)
        out = [st[kind]["rmsd_non_h"] for kind in ("bond", "angle")]
        st["rmsd_bond_non_h"], st["rmsd_angle_non_h"] = out
        return out[0], out[1], st

    # -------------------------------------------------------------- weights
    def initial_weight(self) -> float:
        """Starting X-ray weight (:func:`.weighting.initial_weight`: the resolution rule for the
        ML X-ray target, the gradient ratio for LS and the difference map)."""
        term = self.e_xyz.terms[0]
        ml = term is self.xray and self.xray.uses_sigmaa
        return initial_weight(term, self.state, self.p_xyz.atoms, self.options.bond_rmsd,
                              self.data.d_min if ml else None)

    def adjust_weight(self, rmsd_bond: float):
        """Move the weight toward the bond-RMSD target (not when the weight is fixed)."""
        if self.options.weight is not None:
            return
        self.weight = adjust_weight(self.weight, rmsd_bond, self.options.bond_rmsd)

    # ---------------------------------------------------------------- stages
    def precondition(self, params, name):
        """Set the parameters' curvature estimates for the current weights (see preconditioning)."""
        from .preconditioning import restraint_curvatures, xray_curvatures
        with phase("precondition"):
            cx = xray_curvatures(self.xray, self.state)
            if not hasattr(self, "_restraint_curv"):
                self._restraint_curv = restraint_curvatures(self.restraints, self.state.n_atoms)
            cr = self._restraint_curv
            w = self.weight
            c = {"xyz": w * cx["xyz"] + cr["xyz"],
                 "b": w * cx["b"] + self.options.adp_weight * cr["b"],
                 "occ": w * cx["occ"]}
            params.set_curvature(c)

    def _stage(self, energy, params, steps, name, adjust=False):
        self.xray.want = tuple(name.split("+"))
        if self.difference_map is not None:
            self.difference_map.want = self.xray.want
        o = self.options
        prepare = (lambda p: self.precondition(p, name)) if o.precondition else None
        n_eval = minimize_in_chunks(
            energy, params, self.state, steps, equal_chunk(steps, min(o.rephase_every, o.weight_every)),
            "xray", lambda: self.weight, self.stop, rephase=lambda: self.rephase(full=False),
            adjust=(lambda: self.adjust_weight(self.geometry_rmsd()[0])) if adjust else None,
            weight_every=o.weight_every, prepare=prepare, on_eval=self._on_eval)
        self.xray.want = ("xyz", "adp", "occ")
        return n_eval

    def _on_eval(self, value, parts):
        self.n_eval += 1
        if self.progress is not None:
            self.progress(self.n_eval, self.cycle)

    # ------------------------------------------------------------------ run
    def record(self, cycle, t0, note=""):
        fm = self.fmodel
        with phase("statistics"):
            st = fm.statistics()
        if self.xray.target == "twin":
            from .twinning import twin_note
            st.update(self.xray.r_factors())
            note = " ".join(x for x in (twin_note(self.xray), note) if x)
        b, a, _ = self.geometry_rmsd()
        with phase("statistics"):
            value, _ = self.xray.compute(self.state, gradient=False)
        heavy = ~self.model.is_hydrogen
        beq = self.state.b_eq()
        c = CycleStats(cycle, st["r_work"], st["r_free"], value,
                       "LS" if self.xray.target == "ls" else "-LL", b, a, float(self.weight or 0),
                       time.perf_counter() - t0, self.n_eval, fm.scale.k_sol, fm.scale.b_sol,
                       float(np.mean(beq[heavy])), note)
        self.cycles.append(c)
        self.log(format_cycle(c))
        return c

    def macro_cycle(self, steps: int | None = None, strategy: str | None = None):
        """One macro-cycle: coordinates and ADPs (together or in turn: ``strategy``, default the
        options'), occupancies, full re-phase."""
        o = self.options
        steps = o.xyz_steps if steps is None else int(steps)
        strategy = self.cycle_strategy(strategy)
        combined = strategy == "combined" and not o.fix_xyz and not o.fix_b and self.p_xyz.n > 0
        if self.tls is not None and not o.fix_b and not self.stop:
            # TLS first, residual B held (REFMAC, PDB-REDO); residual B with the ADPs below
            self.tls.refresh(self.state)
            self.e_adp.weights["adp"] = o.adp_weight
            self._stage(self.e_adp, self.p_tls, o.tls_steps, "adp")
        if combined:
            # coordinates, ADPs and occupancies in one minimization (occupancies: few parameters,
            # a separate stage cost as many structure-factor evaluations as the rest)
            parts = [self.p_xyz, self.adp_parameters()] + ([self.p_occ] if self.p_occ.n else [])
            both = CombinedParameters(parts)
            self.e_all.weights["adp"] = o.adp_weight
            self._stage(self.e_all, both, steps, "+".join(p.kind for p in both.parts), adjust=True)
        elif not o.fix_xyz and self.p_xyz.n:
            self._stage(self.e_xyz, self.p_xyz, steps, "xyz", adjust=True)
        if (combined or (not o.fix_xyz and self.p_xyz.n)) and not self.stop:
            self.adjust_weight(self.geometry_rmsd()[0])
        if not combined and not o.fix_b and (self.p_adp.n or self.tls is not None) and not self.stop:
            self.e_adp.weights["adp"] = o.adp_weight
            self._stage(self.e_adp, self.adp_parameters(), o.adp_steps, "adp")
        if self.p_occ.n and not self.stop and not combined:
            self._stage(self.e_occ, self.p_occ, o.occ_steps, "occ")
        if self.tls is not None:
            self.tls.refresh(self.state)        # U_TLS at the coordinates the cycle ends with
        self.rephase(full=True)

    def cycle_strategy(self, strategy: str | None = None) -> str:
        """'combined' or 'alternate' for the next macro-cycle. 'auto': alternate while the model is
        far from the data (R-work of the last record > ``far_r_work``): large coordinate shifts
        are then needed, and the joint xyz+ADP minimization takes them slowly (0.8 Å-shaken 3zt9:
        R-free 0.186 after 8 cycles starting with one alternating cycle, 0.241 all combined);
        near convergence the combined minimization is cheaper per cycle."""
        strategy = strategy or self.options.strategy
        if strategy == "auto":
            r = self.cycles[-1].r_work if self.cycles else None
            strategy = "alternate" if r is not None and r > self.options.far_r_work else "combined"
        if strategy not in ("combined", "alternate"):
            raise ValueError(f"strategy must be auto, combined or alternate, not {strategy!r}")
        return strategy

    def start(self, t0):
        """Initial re-phase, weight and the cycle-0 record (once); regularizes a distorted start."""
        if self.cycles:
            return
        self.rephase()
        if self.weight is None:
            self.weight = self.initial_weight()
        self.log(format_header())
        self.record(0, t0, "start")
        self.regularize(t0)

    def minimize_geometry(self, steps: int):
        """``steps`` L-BFGS steps on the coordinates with the restraints alone (no structure
        factors: cheap)."""
        minimize_energy(Energy(self.geometry_terms), self.p_xyz, self.state, steps, self.stop,
                        on_eval=self._on_eval)

    def regularize(self, t0, max_steps: int = 100):
        """When the starting geometry is far from ideal (bond RMSD > max(0.05 Å, 3 × target)),
        minimize the restraint energy alone until the bonds are within twice the target (at most
        ``max_steps``): otherwise the weight adjustment would first drive the X-ray weight down
        and the data would barely move the atoms for several cycles."""
        o = self.options
        bond = self.geometry_rmsd()[0]
        if o.fix_xyz or not self.p_xyz.n or bond <= max(0.05, 3 * o.bond_rmsd):
            return
        done = 0
        while done < max_steps and not self.stop and bond > 2 * o.bond_rmsd:
            self.minimize_geometry(25)
            done += 25
            bond = self.geometry_rmsd()[0]
        self.rephase(full=True)
        self.record(0, t0, f"regularized ({done} steps)")

    def run(self) -> RefinementResult:
        """Macro-cycles until ``cycles`` or convergence; with ``cool`` > 0, MAIN's kick cooling."""
        o = self.options
        t0 = time.perf_counter()
        if o.cool > 0:
            from .kick import run_kick_cooling
            return run_kick_cooling(self, o.kick, o.kick_b, o.cool, o.kick_law, seed=o.seed)
        timings = {}
        with self.stop:
            self.start(t0)
            for cycle in range(1, o.cycles + 1):
                if self.stop:
                    break
                self.cycle = cycle
                self.macro_cycle()
                self.record(cycle, t0, "interrupted" if self.stop else "")
                if self._converged(cycle):
                    break
        timings["total"] = time.perf_counter() - t0
        return self.finish(timings)

    def _converged(self, cycle):
        """Stop when R-work changed by less than ``convergence`` over the last cycle (the test
        set takes no part in the decision)."""
        if cycle < self.options.min_cycles or len(self.cycles) < 2:
            return False
        a, b = self.cycles[-2], self.cycles[-1]
        return abs((a.r_work or 0) - (b.r_work or 0)) < self.options.convergence

    def finish(self, timings) -> RefinementResult:
        """Copy the state into the model, compute final statistics and map coefficients."""
        from ..xtal.maps import compute_map_coefficients
        with phase("outputs"):
            m = self.model
            m.xyz[:] = self.state.xyz
            m.b_iso[:] = self.state.b_iso
            m.u_aniso[:] = self.state.u_aniso
            m.is_aniso[:] = self.state.is_aniso
            m.occ[:] = self.state.occ
            if self.tls is not None:
                m.meta["tls"] = self.tls.records(m)
                for line in self.tls.summary():
                    self.log(line)
            stats = self.fmodel.statistics()
            if self.xray.target == "twin":
                stats.update(self.xray.r_factors())
                stats["twin"] = {**self.xray.summary(), "tests": self.xray.tests}
            b, a, geo = self.geometry_rmsd()
            stats["rmsd_bond"], stats["rmsd_angle"] = b, a
            twin = self.xray.target == "twin"
            mc = compute_map_coefficients(self.xray.detwinned_fmodel() if twin else self.fmodel, self.state)
        return RefinementResult(m, self.cycles, self.options, stats, geo, mc, bool(self.stop), timings,
                                ncs=self.ncs)


def format_header() -> str:
    return (" cycle  R-work  R-free     target   kind  rmsBOND rmsANGLE   weight  k_sol  B_sol  <B>    time")


def format_cycle(c: CycleStats) -> str:
    fr = lambda v: "   -  " if v is None else f"{v:.4f}"
    return (f"{c.cycle:6d}  {fr(c.r_work)}  {fr(c.r_free)} {c.target:11.1f}  {c.target_kind:>4s}  "
            f"{c.rmsd_bond:7.4f} {c.rmsd_angle:8.3f} {c.weight:8.3g}  {c.k_sol:5.3f} {c.b_sol:6.1f} "
            f"{c.mean_b:5.1f} {c.time:7.1f}s {c.note}")
