"""Energy terms of the restraints (one per restraint kind), for :class:`kickref.refinement.energy.Energy`.

Each value is Σ ((actual − ideal)/σ)² over the restraints of the kind (dimensionless);
the gradient is with respect to the per-atom arrays in Model atom order. B terms act on
B_eq for anisotropic atoms (gradient in ``AtomGradient.b_iso``); ADP terms act on U.
"""
from __future__ import annotations

from ..core.state import AtomGradient

from ..core.term import EnergyTerm


class RestraintTerm(EnergyTerm):
    kind = "geometry"
    restraint_kind = ""

    def __init__(self, restraints, scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        self.restraints = restraints
        self.name = self.restraint_kind

    def compute(self, state, gradient: bool = True):
        v, parts, _ = self.restraints.evaluate(self.restraint_kind, state, grad=gradient)
        if not gradient:
            return float(v), None
        g = AtomGradient(state.n_atoms)
        for key, arr in parts.items():
            setattr(g, key, arr)
        return float(v), g


class BondTerm(RestraintTerm):
    restraint_kind = "bond"


class AngleTerm(RestraintTerm):
    restraint_kind = "angle"


class TorsionTerm(RestraintTerm):
    restraint_kind = "torsion"


class PlaneTerm(RestraintTerm):
    restraint_kind = "plane"


class ChiralTerm(RestraintTerm):
    restraint_kind = "chiral"


class NonbondedTerm(RestraintTerm):
    restraint_kind = "nonbonded"


class BSimilarityTerm(RestraintTerm):
    restraint_kind = "b_similarity"
    kind = "adp"


class RigidBondTerm(RestraintTerm):
    restraint_kind = "adp_rigid_bond"
    kind = "adp"


class ADPSimilarityTerm(RestraintTerm):
    restraint_kind = "adp_similarity"
    kind = "adp"


class ADPKLTerm(RestraintTerm):
    """KL-divergence similarity of neighbouring atoms' ADPs (see :mod:`kickref.restraints.adp_kl`)."""
    restraint_kind = "adp_kl"
    kind = "adp"
