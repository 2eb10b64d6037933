"""A synthetic merohedrally twinned data set from a shared model (tests and benchmarks).

The model's atoms (Cartesian, unchanged) are placed in a P 1 21 1 cell with β = 90° — an
orthorhombic lattice metric, so the two-fold about a* (twin law "h,-k,-l") is a lattice symmetry
outside the point group 2 — large enough that symmetry copies do not touch. Intensities
I(h) = |F(h)|² of the true model (flat bulk solvent on) are twinned with fraction α,

    Io(h) = (1 − α)·I(h) + α·I(R h) + noise,   σ_I = 0.03·Io_true + 0.02·<Io_true>,

and the test set (10 %) is chosen by twin pairs (both mates free or both work), so that the
free R stays free under twinning. The refinement starts from the true model shaken by ``shake``
Å (RMS).
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from ..core.model import Model
from ..core.reflections import Reflections
from ..core.state import AtomState
from ..io.models import read_model
from ..xtal.bulk_solvent import SolventMask
from ..xtal.twin import parse_twin_law, twin_mates
from ..xtal.structure_factors import StructureFactorCalculator

TWIN_LAW = "h,-k,-l"
K_SOL, B_SOL = 0.35, 46.0


@dataclass
class TwinnedCase:
    true_model: Model
    start_model: Model
    data: Reflections          # twinned intensities (i_obs, sigma_i) with French–Wilson-like F
    law: str
    alpha: float


def _boxed(model: Model, margin: float) -> Model:
    """The model in a P 1 21 1 cell with β = 90°, edges = extent + ``margin`` (Å), atoms
    centred at (¼, ½, ¼) so that the 2₁ copy sits half a cell away in x and z."""
    xyz = model.xyz
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    a, b, c = (hi - lo) + margin
    a, c = max(a, 1.08 * c), max(c, 1.08 * a) if a < c else c   # a ≠ c: one law only
    st = model.sync_structure().clone()
    st.cell = gemmi.UnitCell(round(float(a), 2), round(float(b), 2), round(float(c), 2), 90, 90, 90)
    st.spacegroup_hm = "P 1 21 1"
    shift = np.array([0.25 * a, 0.5 * b, 0.25 * c]) - 0.5 * (lo + hi)
    for m in st:
        for ch in m:
            for r in ch:
                for at in r:
                    at.pos = gemmi.Position(*(np.array(at.pos.tolist()) + shift))
    st.setup_entities()
    return Model.from_structure(st)


def make_twinned_case(model_path, alpha: float = 0.3, d_min: float = 1.8, shake: float = 0.25,
                      margin: float = 8.0, seed: int = 0) -> TwinnedCase:
    """Build the twinned data set and the shaken start (see the module docstring)."""
    true = _boxed(read_model(model_path), margin)
    cell, sg = true.cell, gemmi.SpaceGroup("P 1 21 1")
    hkl = np.asarray(gemmi.make_miller_array(cell, sg, d_min), dtype=np.int32)
    fc = StructureFactorCalculator(cell, sg, hkl, d_min).calculate(AtomState.from_model(true), true.element)
    s2 = cell.calculate_1_d2_array(hkl)
    fmask = SolventMask(cell, sg, hkl, d_min).fmask(true.sync_structure())
    i_true = np.abs(fc + K_SOL * np.exp(-0.25 * B_SOL * s2) * fmask) ** 2
    law = parse_twin_law(TWIN_LAW)
    mates = twin_mates(hkl, sg, [law])[:, 1]
    assert np.all(mates >= 0), "complete data: every twin mate is present"
    i_tw = (1 - alpha) * i_true + alpha * i_true[mates]
    rng = np.random.default_rng([seed, 1])
    sig = 0.03 * i_tw + 0.02 * i_tw.mean()
    io = i_tw + sig * rng.standard_normal(len(hkl))
    pair = np.minimum(np.arange(len(hkl)), mates)                    # one id per twin pair
    free = np.random.default_rng([seed, 2]).random(len(hkl))[pair] < 0.1
    f_obs = np.sqrt(np.maximum(io, 0.0))
    sig_f = sig / (2 * np.maximum(f_obs, np.sqrt(sig)))
    data = Reflections(cell, sg, hkl, f_obs, sig_f, free, True, None,
                       {"data_type": "intensity", "synthetic": f"twin {TWIN_LAW} alpha {alpha}"},
                       io, sig)
    start = true.copy()
    start.xyz[:] += np.random.default_rng([seed, 3]).normal(0, shake / np.sqrt(3), start.xyz.shape)
    return TwinnedCase(true, start, data, TWIN_LAW, alpha)
