"""The energy-term base class (an OpenMM Force; MAIN's ``energy <term> on/off scale``).

A term owns its data (restraint arrays, observed data, a map) and computes its value and the
gradient with respect to the per-atom state (:mod:`kickref.core.state`); the minimizer sees only
the weighted sum of terms (:class:`kickref.refinement.energy.Energy`).
"""
from __future__ import annotations

from .state import AtomState


class EnergyTerm:
    """Base class. Subclasses set ``name`` and implement :meth:`compute`.

    ``enabled`` switches the term on or off and ``scale`` multiplies it (MAIN:
    ``energy bond on scale 1``). ``kind`` is 'xray' (or 'density') for data terms, 'geometry'
    for coordinate restraints and 'adp' for ADP restraints; the automatic weight scales the
    data terms.
    """

    name = "term"
    kind = "geometry"

    def __init__(self, scale: float = 1.0, enabled: bool = True):
        self.scale = float(scale)
        self.enabled = bool(enabled)

    def compute(self, state: AtomState, gradient: bool = True):
        """Return (value, AtomGradient or None), unscaled."""
        raise NotImplementedError

    def value(self, state: AtomState) -> float:
        return self.compute(state, gradient=False)[0]

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {'on' if self.enabled else 'off'} scale {self.scale:g}>"
