"""The refinement energy: a weighted sum of terms, each giving a value and its gradient.

Like OpenMM's forces (and MAIN's ``energy <term> on/off scale``), every term sees the same
per-atom state and returns the gradient with respect to the per-atom arrays; the minimizer
only ever sees the weighted sum (the parameter packing lives in ``refinement.parameters``).

Per-atom state (``AtomState``): ``xyz`` (n,3) Å, ``b_iso`` (n,) Å², ``u_aniso`` (n,6) Å²
(U11 U22 U33 U12 U13 U23, used where ``is_aniso``), ``occ`` (n,).
Gradients (``AtomGradient``) have the same shapes; a term leaves untouched parts at zero.
For anisotropic atoms the B terms act on B_eq = 8π²/3·trace(U); ``refinement.parameters``
carries dE/dB_eq over to U.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AtomState:
    xyz: np.ndarray
    b_iso: np.ndarray
    u_aniso: np.ndarray
    is_aniso: np.ndarray
    occ: np.ndarray

    @classmethod
    def from_model(cls, model) -> "AtomState":
        return cls(model.xyz.copy(), model.b_iso.copy(), model.u_aniso.copy(),
                   model.is_aniso.copy(), model.occ.copy())

    @property
    def n_atoms(self) -> int:
        return len(self.xyz)

    def b_eq(self) -> np.ndarray:
        """Per-atom B (Å²): B_eq of anisotropic atoms, B_iso of the others."""
        from ..model import b_equivalent
        return b_equivalent(self.b_iso, self.u_aniso, self.is_aniso)

    def copy(self) -> "AtomState":
        return AtomState(self.xyz.copy(), self.b_iso.copy(), self.u_aniso.copy(),
                         self.is_aniso.copy(), self.occ.copy())


class AtomGradient:
    """dE/d(per-atom parameter); all arrays allocated, zero where a term has no say."""

    __slots__ = ("xyz", "b_iso", "u_aniso", "occ")

    def __init__(self, n: int):
        self.xyz = np.zeros((n, 3))
        self.b_iso = np.zeros(n)
        self.u_aniso = np.zeros((n, 6))
        self.occ = np.zeros(n)

    def add(self, other: "AtomGradient", scale: float = 1.0) -> "AtomGradient":
        self.xyz += scale * other.xyz
        self.b_iso += scale * other.b_iso
        self.u_aniso += scale * other.u_aniso
        self.occ += scale * other.occ
        return self

    def expanded(self, n: int, index) -> "AtomGradient":
        """A gradient over ``n`` atoms holding this one's rows at ``index`` (zero elsewhere)."""
        g = AtomGradient(n)
        g.xyz[index] = self.xyz
        g.b_iso[index] = self.b_iso
        g.u_aniso[index] = self.u_aniso
        g.occ[index] = self.occ
        return g

    def norm_xyz(self) -> float:
        return float(np.sqrt((self.xyz ** 2).sum()))


class EnergyTerm:
    """Base class. Subclasses set ``name`` and implement :meth:`compute`.

    ``enabled`` switches the term on or off and ``scale`` multiplies it (MAIN:
    ``energy bond on scale 1``). ``kind`` is 'xray' (or 'density') for data terms and
    'geometry' for restraints; the automatic weight scales the data terms.
    """

    name = "term"
    kind = "geometry"

    def __init__(self, scale: float = 1.0, enabled: bool = True):
        self.scale = float(scale)
        self.enabled = bool(enabled)

    def compute(self, state: AtomState, gradient: bool = True):
        """Return (value, AtomGradient or None), unscaled."""
        raise NotImplementedError

    def value_and_gradient(self, state: AtomState):
        return self.compute(state, gradient=True)

    def value(self, state: AtomState) -> float:
        return self.compute(state, gradient=False)[0]

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {'on' if self.enabled else 'off'} scale {self.scale:g}>"


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
            v, g = t.compute(state, gradient=gradient)
            f = self.factor(t)
            parts[t.name] = v
            total += f * v
            if gradient and g is not None:
                grad.add(g, f)
        return total, grad, parts

    def compute_by_kind(self, state: AtomState, kind: str):
        """Unweighted (scale only) value and gradient of the enabled terms of one kind."""
        total = 0.0
        grad = AtomGradient(state.n_atoms)
        for t in self.terms:
            if t.enabled and t.kind == kind:
                v, g = t.compute(state, gradient=True)
                total += t.scale * v
                if g is not None:
                    grad.add(g, t.scale)
        return total, grad
