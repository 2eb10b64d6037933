"""An interactive refinement session: MAIN's commands as methods (what ``kickref macro`` calls).

A :class:`Session` holds a model (with riding hydrogens and restraints, as ``kickref refine``
prepares it), optional data, named map slots, keys (named atom masks), macro variables, the
energy switches and the minimizer settings. Each MAIN command is one method; a macro sentence
and a method call are two spellings of one thing::

    s = kickref.Session("part.pdb", "data.mtz", maps={"MAP_ORIG": "mir.ccp4"})
    s.set_b(28.0)                                      # set temp sele all end = 28.0
    s.key("model_part", "segm name DM_* end")          # key model_part select segm name DM_* end
    s.energy("density", on=True, map="MAP_FO", scale=800)
    s.minimize("work_set", steps=120, phase_steps=15, phase_macro="dens_comb.cmds")

Selections are MAIN selection text (with or without ``select``/``end``), a key name, a boolean
mask or atom indices; None means all atoms. Units: Å, Å², degrees.
"""
from __future__ import annotations

import numpy as np

from .api import _load_map, _prepared_model, load_inputs
from .core.adp import EIGHT_PI2
from .core.errors import KickrefError
from .refinement.minimize import StopFlag
from .refinement.weighting import BOND_RMSD_MAP
from .xtal.density_map import DensityMap

# MAIN energy term → kickref restraint kinds (None: no kickref term)
ENERGY_TERMS = {"bond": ("bond",), "angle": ("angle",), "dihedral": ("torsion",), "torsion": ("torsion",),
                "improper": ("chiral", "plane"), "chiral": ("chiral",), "plane": ("plane",),
                "vdw": ("nonbonded",), "nonbonded": ("nonbonded",),
                "b-values": ("b_similarity", "adp_rigid_bond", "adp_similarity", "adp_kl"),
                "electrostatics": None, "hbond": None, "con_dihe": None}
DC_DEFAULTS = {"RAD_SOLV": 4.5, "RAD_COMB": 2.8, "WEIGHT_FC": 1.1}


class Session:
    """MAIN's session state and commands (see the module docstring).

    ``model``/``data``: paths or loaded objects (data optional). ``maps``: {slot: DensityMap, a
    CCP4/MRC path, or (FILE, F, PHI) map coefficients}. ``variables``: {NAME: value} (``--var``).
    ``hydrogens``: add (default, as refine) | keep | remove. ``seed``: of the kicks' generator.
    ``log(str)``: the log; ``stop``: a StopFlag ending minimizations after the current step;
    ``lenient``: unsupported MAIN commands become warnings instead of errors.
    """

    def __init__(self, model, data=None, *, maps=None, variables=None, monlib=None, ligands=(),
                 allow_unknown: bool = False, hydrogens: str = "add", seed: int = 0, log=None,
                 stop=None, lenient: bool = False):
        self.log = log or (lambda s: None)
        self.stop = stop if stop is not None else StopFlag()
        self.lenient = lenient
        if data is not None:
            model, data = load_inputs(model, data, hydrogens="remove" if hydrogens == "remove" else "keep")
        self.model, self.restraints = _prepared_model(model, hydrogens, monlib, ligands, allow_unknown)
        self.data = data
        self.maps: dict = {}
        self.made_maps: list = []          # slots written by make map / combine density
        for name, m in (maps or {}).items():
            self.add_map(name, m)
        self.variables = {k: str(v) for k, v in (variables or {}).items()}
        self.keys = {"work_set": np.ones(self.model.n_atoms, bool)}
        self.density = {"on": False, "map": None, "scale": 1.0, "mode": "interpolation"}
        self.bond_rmsd = BOND_RMSD_MAP
        self.n_shells = 15
        self.rng = np.random.default_rng(seed)
        self.data_weight = np.ones(self.model.n_atoms)
        self.charge = np.zeros(self.model.n_atoms)
        self.history: list = []
        self.interpreter = None             # set by kickref.macro.interpreter.Interpreter
        self._combination = None            # (DensityCombination, AtomState) during a dens_comb minimize
        self._combined = None               # the stats of the phase macro's combine density

    # ----------------------------------------------------------------- helpers
    def mask(self, selection) -> np.ndarray:
        """Boolean atom mask of ``selection`` (see the module docstring)."""
        from .core.selection import resolve_selection
        n = self.model.n_atoms
        if isinstance(selection, str):
            if selection in self.keys:
                return self.keys[selection].copy()
            return self.select(selection)
        return resolve_selection(selection, n)

    def select(self, text: str, where: str = "<api>") -> np.ndarray:
        """Mask of a MAIN selection (``select … end`` optional)."""
        from .macro.lexer import tokenize
        from .macro.selection import evaluate
        toks = tokenize(text)
        if toks and toks[0].lower() in ("select", "sele", "selec"):
            toks = toks[1:]
        if toks and toks[-1].lower() == "end":
            toks = toks[:-1]
        return evaluate(toks, self.model, self.keys, where, warn=self.warn)

    def warn(self, message: str) -> None:
        import warnings
        warnings.warn(message, stacklevel=2)

    def unsupported(self, what: str) -> None:
        """A recognised MAIN command kickref does not do: an error, or a warning when lenient."""
        if not self.lenient:
            raise KickrefError(f"unsupported in kickref: {what}")
        self.warn(f"unsupported in kickref (ignored): {what}")

    def add_map(self, name: str, source) -> DensityMap:
        """Put a map in slot ``name``: a DensityMap, a CCP4/MRC path or (FILE, F, PHI)."""
        if isinstance(source, DensityMap):
            dmap = source
        elif isinstance(source, (tuple, list)):
            dmap = _load_map(None, tuple(source), self.model)
        else:
            dmap = _load_map(str(source), None, self.model)
        self.maps[name] = dmap
        return dmap

    def number(self, name: str, default: float) -> float:
        """Variable ``name`` as a number (``default`` when undefined)."""
        v = self.variables.get(name)
        if v is None:
            return default
        try:
            return float(v)
        except ValueError:
            raise KickrefError(f"variable {name} = {v!r} is not a number") from None

    # ---------------------------------------------------------------- variables, keys
    def set_variable(self, name: str, value) -> None:
        """``set vari NAME = value`` (values are kept as text)."""
        self.variables[name] = str(value)

    def key(self, name: str, selection) -> np.ndarray:
        """``key NAME select … end``: store the mask (a snapshot; not re-evaluated later)."""
        m = self.mask(selection)
        if len(name) > 10:
            self.warn(f"key name {name!r} is longer than MAIN's 10 characters")
        if not m.any():
            self.warn(f"key {name} selects no atoms")
        self.keys[name] = m
        self.log(f"  -> key {name}: {int(m.sum())} atoms")
        return m

    def drop_key(self, name: str) -> None:
        """``key NAME drop``."""
        if self.keys.pop(name, None) is None:
            raise KickrefError(f"no key {name!r}")

    def clear_keys(self) -> None:
        """``key DUMMY initialize``: delete every key."""
        self.keys.clear()

    # ------------------------------------------------------------------- energy
    def energy(self, term: str, on: bool | None = None, scale: float | None = None,
               map: str | None = None, mode: str | None = None) -> None:
        """``energy TERM [on|off] [scale X]``; TERM a MAIN term (bond angle dihedral improper vdw
        b-values density all …) or a kickref restraint kind. ``density``: ``map`` slot and
        ``mode`` (interpolation | convolution). Naming a term without off turns it on."""
        if term == "all":
            for t in ("bond", "angle", "torsion", "chiral", "plane", "nonbonded", "density"):
                self.energy(t, on=on, scale=scale)
            return
        if term == "density":
            d = self.density
            d["on"] = True if on is None else on
            d["scale"] = d["scale"] if scale is None else float(scale)
            d["map"] = map or d["map"]
            d["mode"] = mode or d["mode"]
            self.log(f"  -> density target {'on' if d['on'] else 'off'}, map {d['map']}, scale {d['scale']:g}, "
                     f"{d['mode']}")
            return
        kinds = ENERGY_TERMS.get(term, (term,) if term in self._kinds() else "?")
        if kinds == "?":
            raise KickrefError(f"unknown energy term {term!r}")
        if kinds is None:
            self.log(f"  -> {term}: no such term in kickref (restraints from the monomer library, "
                     "non-bonded repulsion only); ignored")
            return
        sw = self.restraints.switches
        for k in kinds:
            t = self.restraints.term(k)
            en, sc = sw.get(k, (t.enabled, t.scale))
            sw[k] = (True if on is None else on, sc if scale is None else float(scale))
        self.log("  -> " + ", ".join(f"{k} {'on' if sw[k][0] else 'off'} scale {sw[k][1]:g}" for k in kinds))

    @staticmethod
    def _kinds():
        from .restraints.restraints import KINDS
        return KINDS

    def compute_energy(self) -> tuple:
        """(total, {term: value}) of the enabled geometry restraints as the minimizers see them
        (riding hydrogens' bonded restraints left out) and the density target when on (weight 1),
        at the current coordinates."""
        from .core.state import AtomState
        from .refinement.energy import Energy
        from .refinement.weighting import restraint_terms
        state = AtomState.from_model(self.model)
        terms = [t for t in restraint_terms(self.restraints) if t.kind == "geometry"]
        if self.density["on"]:
            terms.append(self._density_term(None))
        total, _, parts = Energy(terms).compute(state, gradient=False)
        return total, parts

    def _density_term(self, selection):
        from .targets.density import DensityTarget
        t = DensityTarget(self._slot(self.density["map"]), self.model, self.density["mode"], selection=selection)
        t.scale = self.density["scale"]
        return t

    def _slot(self, name) -> DensityMap:
        if name is None:
            raise KickrefError("the density term has no map (energy density map NAME)")
        if name not in self.maps:
            raise KickrefError(f"no map {name!r} (maps: {', '.join(self.maps) or 'none'})")
        return self.maps[name]

    # ----------------------------------------------------------- per-atom values
    def kick_coordinates(self, amplitude: float, selection=None) -> None:
        """``set coor kick A sele … end``: uniform ±A Å per component (riding H follow)."""
        from .refinement.kick import kick_coordinates
        m = self.mask(selection)
        hp = getattr(self.restraints, "hydrogen_parents", None)
        place = self.restraints.place_hydrogens if hp is not None and (np.asarray(hp) >= 0).any() else None
        kick_coordinates(self.model, float(amplitude), m, self.rng, place_hydrogens=place)
        self.log(f"  -> coordinates of {int((m & ~self.model.is_hydrogen).sum())} atoms kicked by ±{amplitude:g} Å")

    def kick_b(self, amplitude: float, selection=None) -> None:
        """``set temp kick A sele … end``: B += uniform[−A, A] Å² (B ≥ 1)."""
        from .refinement.kick import kick_b
        m = self.mask(selection)
        kick_b(self.model, float(amplitude), m, self.rng)
        self.log(f"  -> B of {int((m & ~self.model.is_hydrogen).sum())} atoms kicked by ±{amplitude:g} Å²")

    def set_b(self, value: float, selection=None) -> None:
        """``set temp sele … end = B``: B_iso = B (Å²); anisotropic atoms: U scaled to B_eq = B."""
        m = self.mask(selection)
        mdl = self.model
        iso = m & ~mdl.is_aniso
        mdl.b_iso[iso] = float(value)
        ani = np.flatnonzero(m & mdl.is_aniso)
        if len(ani):
            beq = EIGHT_PI2 / 3.0 * mdl.u_aniso[ani, :3].sum(axis=1)
            mdl.u_aniso[ani] *= (float(value) / np.maximum(beq, 1e-6))[:, None]
            mdl.b_iso[ani] = float(value)
        self.log(f"  -> B = {value:g} Å² for {int(m.sum())} atoms")

    def set_weight(self, value: float, selection=None) -> None:
        """``set weigh sele … end v``: the crystallographic weight of the atoms (stored; kickref
        uses it only to check it is 1 on the atoms a minimization moves — riding hydrogens
        have no parameters of their own, so their weight has no effect)."""
        m = self.mask(selection)
        self.data_weight[m] = float(value)
        self.log(f"  -> crystallographic weight {value:g} for {int(m.sum())} atoms"
                 + (" (riding hydrogens: no effect)" if m.any() and self.model.is_hydrogen[m].all() else ""))

    def set_charge(self, value: float, selection=None) -> None:
        """``set charge sele … end q``: stored only (kickref has no electrostatics)."""
        m = self.mask(selection)
        self.charge[m] = float(value)
        self.log(f"  -> charge {value:g} for {int(m.sum())} atoms (stored; no electrostatics in kickref)")

    def define_impropers(self) -> None:
        """``define impr by topo init``: nothing to do (impropers = the monomer library's
        chirality and plane restraints, built when the session starts)."""
        self.log("  -> impropers come from the monomer library (chirality + planes); nothing to redefine")

    # ----------------------------------------------------------------------- maps
    def make_map(self, name: str, operation: str, *values, source: str | None = None) -> DensityMap:
        """``make map M zero`` | ``set LO HI V`` (points with LO ≤ value ≤ HI become V) |
        ``from N copy`` (M := N, Fourier-resampled when the grids differ). A new slot gets the
        grid of the first map loaded."""
        if operation == "copy":
            src = self._slot(source)
            old = self.maps.get(name)
            if old is not None and old.shape != src.shape:
                src = DensityMap(src.resampled(old.shape, src.resolution), old.cell, old.spacegroup,
                                 src.d_min, name)
            new = DensityMap(np.array(src.grid, dtype=np.float64), src.cell, src.spacegroup, src.d_min, name)
        else:
            base = self.maps.get(name)
            if base is None:
                if not self.maps:
                    raise KickrefError(f"make map {name}: no map loaded to take a grid from")
                base = next(iter(self.maps.values()))
                base = DensityMap(np.zeros(base.shape), base.cell, base.spacegroup, base.d_min, name)
            g = np.array(base.grid, dtype=np.float64)
            if operation == "zero":
                g[:] = 0.0
            elif operation == "set":
                lo, hi, v = (float(x) for x in values)
                g[(g >= lo) & (g <= hi)] = v
            else:
                raise KickrefError(f"unsupported make map operation {operation!r}")
            new = DensityMap(g, base.cell, base.spacegroup, base.d_min, name)
        self.maps[name] = new
        if name not in self.made_maps:
            self.made_maps.append(name)
        self.log(f"  -> map {name}: {operation}" + (f" from {source}" if source else "")
                 + f" (grid {'x'.join(map(str, new.shape))})")
        return new

    def reflection_shells(self, n: int) -> None:
        """``refl shel N``: resolution shells of the density combination's scaling."""
        self.n_shells = int(n)
        self.log(f"  -> {self.n_shells} resolution shells")

    def adjust_bond(self, rmsd: float) -> None:
        """``min adjust bond R``: bond-RMSD target (Å) of the weight adjustment (default 0.02)."""
        self.bond_rmsd = float(rmsd)
        self.log(f"  -> bond RMSD target {self.bond_rmsd:g} Å")

    # ------------------------------------------------------------------- macros
    def run_macro(self, path) -> None:
        """Run the macro file ``path`` (``kickref macro FILE``'s work, without the outputs)."""
        from .macro.interpreter import Interpreter
        (self.interpreter or Interpreter(self)).run_file(path)

    def include(self, name: str) -> None:
        """``<NAME``: run a macro (a file, or a built-in; see :mod:`kickref.io.macros`)."""
        if self.interpreter is None:
            from .macro.interpreter import Interpreter
            Interpreter(self)
        self.interpreter.include(name)

    def combine_density(self, source: str = "MAP_ORIG", target: str = "MAP_FO") -> dict:
        """``combine density SOURCE into TARGET`` (kickref): one density combination of the
        running ``minimize … phase macro`` (only there); TARGET gets MAP_FO."""
        if self._combination is None:
            raise KickrefError("combine density runs only in the phase macro of a minimize with the "
                               "density term on")
        dc, state = self._combination
        stats = dc.update(state)
        self.maps[target] = dc.fo_map()
        if target not in self.made_maps:
            self.made_maps.append(target)
        self._combined = stats
        self.log(f"  -> combined {source} with the model map: R(comb) {stats['r_combined']:.4f}, "
                 f"CC(model map) {stats['cc_model_map']:.3f}; map {target} = Fo with the combined phases")
        return stats

    # ----------------------------------------------------------------- minimize
    def minimize(self, selection=None, steps: int = 50, write: int = 1, phase_steps: int | None = None,
                 phase_macro: str | None = None, gain: float | None = None, by: str = "conjugated") -> dict:
        """``minimize [sele … end] step N writ K phase steps P gain G phase macro F [by body]``.

        - ``by='body'``: the selected atoms as one rigid body (6 parameters) against the
          restraints (+ the density target when on), weight from the bond target;
        - density term on and a phase macro: density combination (MAIN dens_comb;
          :func:`~kickref.refinement.density_combination.run_density_combination`) of the atoms
          in both the selection and key model_part, envelope key model_mask, external map slot
          MAP_ORIG (or the variable's value), RAD_SOLV (or RAD_MASK), RAD_COMB, WEIGHT_FC, the
          density scale, ``refl shel`` shells and the bond target; the phase macro runs at the
          start and every ``phase_steps`` steps and must ``combine density``;
        - density term on, no phase macro: real-space refinement toward the map slot;
        - otherwise: the restraints alone.
        ``write`` (print interval) and ``gain`` (MAIN's R-value gain) are logged, not used.
        """
        m = self.mask(selection)
        moving = m & ~self.model.is_hydrogen
        if (self.data_weight[moving] != 1).any():
            self.unsupported("set weigh other than 1 on atoms that move (only riding hydrogens may have it)")
        if gain is not None:
            self.log(f"  -> gain {gain:g}: MAIN's R-value gain is not used by kickref")
        if by == "body":
            return self._minimize_body(m, steps)
        if self.density["on"] and phase_macro:
            return self._minimize_dens_comb(m, steps, phase_steps or steps, phase_macro)
        if self.density["on"]:
            from .refinement.real_space import refine_against_map
            dmap = self._slot(self.density["map"])
            self.log(f"  -> real-space refinement of {int(m.sum())} atoms toward map {self.density['map']}, "
                     f"{steps} steps")
            info = refine_against_map(self.model, dmap, self.restraints, self.density["mode"], selection=m,
                                      steps=steps, chunk=phase_steps or 25, bond_rmsd=self.bond_rmsd,
                                      log=self.log, stop=self.stop)
            self.history.append({"minimize": "real-space", **info})
            return info
        return self._minimize_restraints(m, steps)

    def _minimize_restraints(self, m, steps) -> dict:
        from .core.state import AtomState
        from .refinement.energy import Energy
        from .refinement.minimize import minimize_energy
        from .refinement.weighting import heavy_rmsd, restraint_terms, xyz_parameters
        state = AtomState.from_model(self.model)
        energy = Energy([t for t in restraint_terms(self.restraints) if t.kind == "geometry"])
        params = xyz_parameters(state, self.restraints, m)
        with self.stop:
            res = minimize_energy(energy, params, state, int(steps), self.stop)
        self.model.xyz[:] = state.xyz
        info = {"minimize": "restraints", "steps": res.n_iter, "rmsd_bond": heavy_rmsd(self.restraints, state),
                "interrupted": bool(self.stop)}
        self.log(f"  -> restraints only: {res.n_iter} steps, rmsBOND {info['rmsd_bond']:.4f}")
        self.history.append(info)
        return info

    def _minimize_body(self, m, steps) -> dict:
        from .core.state import AtomState
        from .refinement.energy import Energy
        from .refinement.rigid_body import minimize_rigid_body
        from .refinement.weighting import initial_weight, restraint_terms
        hp = np.asarray(getattr(self.restraints, "hydrogen_parents", None)
                        if getattr(self.restraints, "hydrogen_parents", None) is not None
                        else np.full(self.model.n_atoms, -1))
        body = m | ((hp >= 0) & m[np.maximum(hp, 0)])          # riding H move with their parents
        state = AtomState.from_model(self.model)
        terms = [t for t in restraint_terms(self.restraints) if t.kind == "geometry"]
        weights = {}
        if self.density["on"]:
            dt = self._density_term(body)
            terms.append(dt)
            weights["density"] = initial_weight(dt, state, np.flatnonzero(body), self.bond_rmsd)
        with self.stop:
            info = minimize_rigid_body(Energy(terms, weights), state, body, int(steps), self.stop)
        self.model.xyz[:] = state.xyz
        self.log(f"  -> rigid body of {int(body.sum())} atoms: rotation {info['rotation_deg']:.3f}°, "
                 f"translation {np.linalg.norm(info['translation']):.3f} Å, energy {info['energy_start']:.4g} "
                 f"-> {info['energy_end']:.4g}")
        self.history.append({"minimize": "rigid body", **info})
        return info

    def _minimize_dens_comb(self, m, steps, every, phase_macro) -> dict:
        from .refinement.density_combination import run_density_combination
        part = m & self.keys.get("model_part", np.ones(self.model.n_atoms, bool))
        envelope = self.keys.get("model_mask")
        source = self.variables.get("MAP_ORIG", "MAP_ORIG")
        rad_mask = self.number("RAD_SOLV", self.number("RAD_MASK", DC_DEFAULTS["RAD_SOLV"]))
        rad_comb = self.number("RAD_COMB", DC_DEFAULTS["RAD_COMB"])
        weight_fc = self.number("WEIGHT_FC", DC_DEFAULTS["WEIGHT_FC"])
        self.log(f"  -> density combination: {int(part.sum())} atoms move (selection ∩ key model_part), "
                 f"envelope {'key model_mask' if envelope is not None else 'the moving atoms'}, map {source}, "
                 f"{steps} steps, re-phase every {every}, RAD_SOLV {rad_mask:g} RAD_COMB {rad_comb:g} "
                 f"WEIGHT_FC {weight_fc:g}, density scale {self.density['scale']:g}, bond target "
                 f"{self.bond_rmsd:g} Å, {self.n_shells} shells; phase macro {phase_macro}")

        def recombine(dc, state):
            self._combination, self._combined = (dc, state), None
            try:
                self.include(phase_macro)
            finally:
                self._combination = None
            if self._combined is None:
                raise KickrefError(f"phase macro {phase_macro} did not combine the maps (combine density)")
            return self._combined

        res = run_density_combination(self.model, self._slot(source), self.restraints, data=self.data,
                                      part=part, envelope=envelope, rad_mask=rad_mask, rad_comb=rad_comb,
                                      weight_fc=weight_fc, dens_scale=self.density["scale"], steps=int(steps),
                                      recombine_every=int(every), bond_rmsd=self.bond_rmsd,
                                      n_shells=self.n_shells, log=self.log, stop=self.stop, recombine=recombine)
        self.maps["MAP_COMBINED"] = res.combined_map
        info = {"minimize": "density combination", "history": res.history, "weight": res.weight,
                "interrupted": res.interrupted}
        self.history.append(info)
        return info
