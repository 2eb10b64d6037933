"""Real-space refinement: coordinates toward a map (density target + geometry, no Fobs).

The weight of the density term against the restraints is set and adjusted as for every driver
(:mod:`.weighting`; default bond-RMSD target :data:`~.weighting.BOND_RMSD_MAP`, 0.02 Å).
"""
from __future__ import annotations

from ..core.state import AtomState
from ..targets.density import DensityTarget
from ..xtal.density_map import DensityMap
from .energy import Energy
from .minimize import StopFlag
from .weighting import (BOND_RMSD_MAP, BondWeight, heavy_rmsd, initial_weight, minimize_in_chunks,
                        restraint_terms, xyz_parameters)


def refine_against_map(model, density_map: DensityMap, restraints, mode: str = "interpolation",
                       selection=None, steps: int = 100, chunk: int = 25, weight: float | None = None,
                       bond_rmsd: float = BOND_RMSD_MAP, weight_every: int = 50, d_min: float | None = None,
                       log=None, stop=None) -> dict:
    """Real-space refinement of the coordinates of ``model`` (in place) toward a map, no Fobs.

    Energy: w·DensityTarget(mode) + geometry restraints; only the ``selection`` atoms move and
    feel the map (MAIN's MINIMIZE on the active set; None: REFINE, all atoms); riding hydrogens
    follow their parents. ``steps`` L-BFGS steps in chunks of ``chunk``; after each the blur is
    refreshed (convolution mode) and, every ``weight_every`` steps, w is adjusted toward the
    bond-RMSD target ``bond_rmsd`` (Å) unless ``weight`` is given.
    Returns {'history': [...], 'weight': w, 'interrupted': bool}.
    """
    log = log or (lambda s: None)
    stop = stop if stop is not None else StopFlag()
    state = AtomState.from_model(model)
    term = DensityTarget(density_map, model, mode, selection=selection, d_min=d_min)
    geometry = [t for t in restraint_terms(restraints) if t.kind == "geometry"]
    energy = Energy([term] + geometry, weights={"density": 1.0})
    params = xyz_parameters(state, restraints, term.selection)
    w0 = initial_weight(term, state, params.atoms, bond_rmsd) if weight is None else float(weight)
    w = BondWeight(w0, bond_rmsd, fixed=weight is not None)
    history = [{"step": 0, "target": term.value(state), "rmsd_bond": heavy_rmsd(restraints, state),
                "weight": w.value}]

    def report(done, used):
        rb = heavy_rmsd(restraints, state)
        history.append({"step": done, "target": term.value(state), "rmsd_bond": rb, "weight": used})
        log(f"  step {done:5d}  density target {history[-1]['target']:.1f}  rmsBOND {rb:.4f}  weight {used:.3g}")

    with stop:
        minimize_in_chunks(energy, params, state, steps, chunk, "density", lambda: w.value, stop,
                           rephase=lambda: term.update(state),
                           adjust=lambda: w.adjust(heavy_rmsd(restraints, state)),
                           weight_every=weight_every, report=report)
    model.xyz[:] = state.xyz
    return {"history": history, "weight": w.value, "interrupted": bool(stop)}
