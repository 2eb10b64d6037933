"""X-ray targets as energy terms: least squares, amplitude and intensity maximum likelihood.

Both act on the work reflections (outliers excluded) of an :class:`~kickref.xtal.fmodel.FModel`
with its scale (k, aniso B, bulk solvent, shells) held fixed between re-phasings:
  Fm(h) = k_total(h) · (Fc(h) + k_sol·exp(−B_sol s²/4)·Fmask(h)).

- ``least_squares``: T = Σ (|Fo| − |Fm|)²                        (units: Fo²)
- ``maximum_likelihood``: T = −Σ ln P(|Fo| ; D·|Fm|, ε·S + σ²)    (Rice / Woolfson, nats)
  with D and S per resolution bin (see :mod:`kickref.xtal.sigmaa`), set by :meth:`set_sigmaa`.
- ``mli``: T = −Σ ln P(Io ; D·|Fm|, ε·S, σ_I)  (measured intensities, the measurement error
  integrated out; :mod:`kickref.xtal.intensity_likelihood`), D and S fitted by the same
  likelihood.

Gradients with respect to atomic parameters come from the gradient-map method:
∂T/∂Fc = ∂T/∂|Fm| · k_total · Fm/|Fm| is transformed to a map and gathered at the atoms.
"""
from __future__ import annotations

import numpy as np

from ..core.profile import phase
from ..core.state import AtomState

from ..core.term import EnergyTerm
from ..xtal.intensity_likelihood import mli_value_and_derivative
from ..xtal.sigmaa import ml_value_and_derivative  # noqa: F401 (part of this module's API)

TARGETS = ("ml", "ls", "mli")


class XrayTarget(EnergyTerm):
    """X-ray term; ``target`` is 'ml' (amplitude maximum likelihood), 'mli' (intensity maximum
    likelihood; needs the data's intensities) or 'ls' (least squares)."""


    kind = "xray"

    def __init__(self, fmodel, target: str = "ml", scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        if target not in TARGETS:
            raise ValueError(f"unknown X-ray target {target!r}")
        if target == "mli" and not fmodel.data.has_intensities:
            raise ValueError("the intensity target (mli) needs intensity data (I, SIGI)")
        self.fmodel = fmodel
        self.target = target
        self.name = f"xray_{target}"
        self.D = None
        self.S = None
        self.want = ("xyz", "adp", "occ")      # gradient parts to compute (a stage may narrow it)

    @property
    def uses_sigmaa(self) -> bool:
        """True for the likelihood targets (they need D and S)."""
        return self.target != "ls"

    @property
    def intensity_sigmaa(self) -> bool:
        """True when D and S are to be fitted by the intensity likelihood."""
        return self.target == "mli"

    def set_sigmaa(self, sigmaa) -> None:
        self.D = sigmaa.D
        self.S = sigmaa.S

    def _select(self):
        return self.fmodel.work

    def evaluate_fm(self, fm_abs):
        """(value, ∂T/∂|Fm|) over the selected reflections; arrays on the full set."""
        d = self.fmodel.data
        sel = self._select()
        deriv = np.zeros(d.n)
        if self.target == "ls":
            diff = d.f_obs[sel] - fm_abs[sel]
            deriv[sel] = -2.0 * diff
            return float(np.sum(diff * diff)), deriv
        if self.D is None:
            raise RuntimeError("ML target needs D and S: call set_sigmaa() first")
        if self.target == "mli":
            nll, dd = mli_value_and_derivative(d.i_obs[sel], d.sigma_i[sel], fm_abs[sel], d.centric[sel],
                                               d.epsilon[sel], self.D[sel], self.S[sel])
        else:
            nll, dd = ml_value_and_derivative(d.f_obs[sel], d.sigma[sel], fm_abs[sel], d.centric[sel],
                                              d.epsilon[sel], self.D[sel], self.S[sel])
        deriv[sel] = dd
        return float(np.sum(nll)), deriv

    def compute(self, state: AtomState, gradient: bool = True):
        fmod = self.fmodel
        fc = fmod.sf.calculate(state, fmod.elements)
        k = fmod.scale_factor
        fm = k * (fc + fmod.scale.solvent_factor(fmod.s2) * fmod.fmask)
        afm = np.abs(fm)
        value, deriv = self.evaluate_fm(afm)
        if not gradient:
            return value, None
        unit = np.where(afm > 0, fm / np.maximum(afm, 1e-30), 0)
        dT_dFc = deriv * k * unit
        return value, fmod.sf.gradient(state, fmod.elements, dT_dFc, self.want)


def kicked_state(state: AtomState, amplitude: float, rng, movable=None, b_amplitude: float = 0.0):
    """Copy of ``state`` with coordinates displaced at random: each atom by an isotropic Gaussian
    with RMS displacement ``amplitude`` (Å); B values by a uniform ±``b_amplitude`` (Å²)."""
    s = state.copy()
    n = state.n_atoms
    sel = np.ones(n, bool) if movable is None else movable
    m = int(sel.sum())
    if amplitude > 0:
        s.xyz[sel] += rng.normal(0.0, amplitude / np.sqrt(3.0), size=(m, 3))
    if b_amplitude > 0:
        s.b_iso[sel] = np.maximum(s.b_iso[sel] + rng.uniform(-b_amplitude, b_amplitude, m), 1.0)
    return s


def free_kick_sigmaa(fmodel, state: AtomState, amplitude: float = 0.1, seed: int = 0, n_kicks: int = 1,
                     start=None, intensities: bool = False):
    """ML "free kick" (after Pražnikar & Turk 2014): D and S from the *work* set, computed with
    a randomly displaced copy of the model, so that the work set's fit to the model does not
    bias them and the test set stays untouched. Averages ``n_kicks`` kicked models' |Fm|.
    ``intensities``: fitted by the intensity likelihood (MLI) to the data's I, σ_I."""
    rng = np.random.default_rng(seed)
    fms = []
    for _ in range(n_kicks):
        ks = kicked_state(state, amplitude, rng)
        fc = fmodel.sf.calculate(ks, fmodel.elements)
        fms.append(np.abs(fmodel.scale_factor * (fc + fmodel.scale.solvent_factor(fmodel.s2) * fmodel.fmask)))
    from ..xtal import sigmaa as sa
    fm = np.mean(fms, axis=0) if n_kicks > 1 else fms[0]
    d = fmodel.data
    with phase("scale"):
        return sa.estimate_sigmaa(d.f_obs, d.sigma, fm, d.centric, d.epsilon, d.s2, fmodel.work,
                                  min_per_bin=500, used="work (free kick)", start=start,
                                  intensities=(d.i_obs, d.sigma_i) if intensities else None)
