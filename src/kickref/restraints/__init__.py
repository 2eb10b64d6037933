"""Stereochemical restraints: monomer library, topology, energy terms, validation.

Entry point: :func:`build_restraints` (model → :class:`Restraints`, in :mod:`.topology`);
``Restraints.terms()`` gives the EnergyTerm objects of :mod:`.terms` ('bond', 'angle',
'torsion', 'plane', 'chiral', 'nonbonded' of kind 'geometry'; 'b_similarity',
'adp_rigid_bond', 'adp_similarity', 'adp_kl' of kind 'adp').
"""
from .library import RestraintLibrary, load_library
from .restraints import KINDS, RestraintParameters, Restraints
from .topology import build_restraints

__all__ = ["build_restraints", "Restraints", "RestraintParameters", "RestraintLibrary",
           "load_library", "KINDS"]
