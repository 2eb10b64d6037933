"""The refinement energy: a weighted sum of terms, each giving a value and its gradient.

Like OpenMM's forces (and MAIN's ``energy <term> on/off scale``), every term
(:class:`kickref.core.term.EnergyTerm`) sees the same per-atom state
(:class:`kickref.core.state.AtomState`); the minimizer only ever sees the weighted sum (the
parameter packing lives in ``refinement.parameters``).
"""
from __future__ import annotations

from ..core.profile import phase
from ..core.state import AtomGradient, AtomState

PHASE = {"geometry": "restraints", "adp": "restraints"}     # profile phase of a term kind, else "target"
from ..core.term import EnergyTerm


class Energy:
    """Σ_k weight(kind_k) · scale_k · term_k. ``weights`` maps kind → factor (e.g. {'xray': w})."""

    def __init__(self, terms=(), weights: dict | None = None):
        self.terms = list(terms)
        self.weights = dict(weights or {})

    def add(self, term: EnergyTerm) -> EnergyTerm:
        self.terms.append(term)
        return term

    def __getitem__(self, name: str) -> EnergyTerm:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)

    def factor(self, term: EnergyTerm) -> float:
        return term.scale * self.weights.get(term.kind, 1.0)

    def compute(self, state: AtomState, gradient: bool = True):
        """Return (total value, AtomGradient or None, {term name: unscaled value})."""
        total = 0.0
        grad = AtomGradient(state.n_atoms) if gradient else None
        parts = {}
        for t in self.terms:
            if not t.enabled:
                continue
            with phase(PHASE.get(t.kind, "target")):
                v, g = t.compute(state, gradient=gradient)
            f = self.factor(t)
            parts[t.name] = v
            total += f * v
            if gradient and g is not None:
                grad.add(g, f)
        return total, grad, parts
