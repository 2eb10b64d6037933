"""Twin refinement's X-ray term: the twinned intensity likelihood with refined twin fractions.

T = Σ_work −ln P(Io | α, D·|Fm(R_j h)|, ε S) (:func:`kickref.xtal.twin.twin_nll`) over the work
observations whose twin mates are all measured (the others are left out and counted). Twin
fractions α, D and S (per resolution bin) are refined together on the work set by
:meth:`TwinTarget.fit`, at every re-phasing; amplitude data enter as Io = Fo², σ_I = 2·Fo·σ_F.
R factors are computed on twinned quantities, as REFMAC and servalcat report them:
R = Σ | Fo − √(Σ_j α_j |Fm(R_j h)|²) | / Σ Fo.
"""
from __future__ import annotations

import copy

import numpy as np
import scipy.optimize

from ..core.reflections import equal_count_bins
from ..xtal import twin as tw
from .xray import XrayTarget


class TwinTarget(XrayTarget):
    """Twinned X-ray term for the laws ``laws`` (gemmi.Op in h,k,l form)."""

    def __init__(self, fmodel, laws, fractions=None, scale: float = 1.0, enabled: bool = True):
        super().__init__(fmodel, "ls", scale, enabled)
        self.target = "twin"
        self.name = "xray_twin"
        d = fmodel.data
        if d.has_intensities:
            self.io, self.sig_i = d.i_obs, d.sigma_i
        else:
            self.io, self.sig_i = d.f_obs ** 2, np.maximum(2.0 * d.f_obs * d.sigma, 1e-6 * np.mean(d.f_obs) ** 2)
        self.set_laws(laws, fractions)

    @property
    def uses_sigmaa(self) -> bool:
        return False

    def set_laws(self, laws, fractions=None):
        """(Re)build the mates for ``laws``; fractions default to 0.5/(1 + n_laws) per law."""
        d = self.fmodel.data
        self.laws = list(laws)
        self.mates = tw.twin_mates(d.hkl, d.spacegroup, self.laws)
        self.complete = np.all(self.mates >= 0, axis=1)
        m = len(self.laws)
        if fractions is None:
            fractions = [0.5 / (1 + m)] * m
        self.alpha = np.concatenate([[1.0 - float(np.sum(fractions))], np.asarray(fractions, float)])
        use = d.work & self.complete
        n_bins = int(np.clip(use.sum() // 300, 1, 10))
        self.bins, _ = equal_count_bins(d.s2, n_bins, used=use)
        self.n_bins = n_bins
        self.D_bin = np.ones(n_bins)
        self.S_bin = None

    @property
    def fractions(self) -> np.ndarray:
        """Twin fractions of the laws (domain 0, the identity, excluded)."""
        return self.alpha[1:]

    def _arrays(self, sel, fm_abs):
        d = self.fmodel.data
        mt = self.mates[sel]
        return (self.io[sel], self.sig_i[sel], fm_abs[mt] ** 2, d.centric[mt], d.epsilon[mt], mt)

    def _select(self):
        return self.fmodel.work & self.complete

    def fit(self, fm_abs=None, steps: int = 200):
        """Refine α, D and S (per bin) by the twinned likelihood on the work set, |Fm| fixed."""
        if fm_abs is None:
            fm_abs = np.abs(self.fmodel.f_model)
        sel = self._select()
        io, sig, a, cen, eps, _ = self._arrays(sel, fm_abs)
        bins = self.bins[sel]
        nb, m = self.n_bins, len(self.laws)
        cnt = np.maximum(np.bincount(bins, minlength=nb), 1)
        if self.S_bin is None:
            resid = np.maximum(io - (self.alpha * a).sum(axis=1), 0.0) / eps[:, 0]
            mean_i = np.bincount(bins, weights=np.abs(io) / eps[:, 0], minlength=nb) / cnt
            self.S_bin = np.maximum(np.bincount(bins, weights=resid, minlength=nb) / cnt, 0.05 * mean_i) + 1e-12
        s0 = self.S_bin.copy()
        n = max(len(io), 1)

        def f(p):
            frac, D, t = p[:m], p[m:m + nb], p[m + nb:]
            S = s0 * np.exp(t)
            alpha = np.concatenate([[1.0 - frac.sum()], frac])
            r = tw.twin_nll(io, sig, a, cen, eps, alpha, D[bins], S[bins])
            g_frac = r.d_alpha[1:] - r.d_alpha[0]
            g_D = np.bincount(bins, weights=r.d_D, minlength=nb)
            g_S = np.bincount(bins, weights=r.d_S, minlength=nb) * S
            return r.value / n, np.concatenate([g_frac, g_D, g_S]) / n

        p0 = np.concatenate([self.alpha[1:], self.D_bin, np.zeros(nb)])
        bounds = [(0.0, 0.5)] * m + [(1e-3, 3.0)] * nb + [(-15.0, 8.0)] * nb
        res = scipy.optimize.minimize(f, p0, jac=True, method="L-BFGS-B", bounds=bounds,
                                      options={"maxiter": steps, "ftol": 1e-13, "gtol": 1e-9})
        frac = res.x[:m]
        self.alpha = np.concatenate([[1.0 - frac.sum()], frac])
        self.D_bin = res.x[m:m + nb]
        self.S_bin = s0 * np.exp(res.x[m + nb:])
        return self.alpha

    def drop_small(self, min_fraction: float = tw.TWIN_FRACTION_MIN) -> list:
        """Remove laws whose fraction is below ``min_fraction``; returns the removed laws."""
        small = [op for op, a in zip(self.laws, self.fractions) if a < min_fraction]
        if small:
            keep = [(op, a) for op, a in zip(self.laws, self.fractions) if a >= min_fraction]
            self.set_laws([op for op, _ in keep], [a for _, a in keep])
        return small

    def evaluate_fm(self, fm_abs):
        """(value, ∂T/∂|Fm|) over the work observations with complete twin sets."""
        if self.S_bin is None:
            raise RuntimeError("twin target needs its parameters: call fit() first")
        sel = self._select()
        io, sig, a, cen, eps, mt = self._arrays(sel, fm_abs)
        b = self.bins[sel]
        r = tw.twin_nll(io, sig, a, cen, eps, self.alpha, self.D_bin[b], self.S_bin[b])
        deriv = np.bincount(mt.ravel(), weights=(r.d_a * 2.0 * fm_abs[mt]).ravel(),
                            minlength=self.fmodel.data.n)
        return r.value, deriv

    def r_factors(self, fm_abs=None) -> dict:
        """R-work/R-free on twinned amplitudes (outliers and incomplete twin sets excluded)."""
        fmod = self.fmodel
        if fm_abs is None:
            fm_abs = np.abs(fmod.f_model)
        fo = fmod.data.f_obs
        out = {}
        for name, mask in (("r_work", fmod.work), ("r_free", fmod.free)):
            sel = mask & self.complete
            if not sel.any():
                out[name] = None
                continue
            fc = tw.twinned_amplitudes(fm_abs[self.mates[sel]] ** 2, self.alpha)
            out[name] = float(np.sum(np.abs(fo[sel] - fc)) / np.sum(fo[sel]))
        return out

    def detwinned_fmodel(self):
        """A shallow copy of the FModel whose data hold Fo detwinned in proportion to the model:
        I(h) = Io(h)·|Fm(h)|² / Σ_j α_j |Fm(R_j h)|² (negative Io → 0; σ scaled alike); reflections
        with unmeasured mates keep their Fo. Model-biased, as any detwinning with model
        intensities; for σA maps only."""
        fm = copy.copy(self.fmodel)
        d = self.fmodel.data
        a = np.abs(self.fmodel.f_model) ** 2
        c = self.complete
        ratio = np.ones(d.n)
        tw_int = (self.alpha * a[self.mates[c]]).sum(axis=1)
        ratio[c] = np.where(tw_int > 0, a[c] / np.maximum(tw_int, 1e-30), 1.0)
        data = d.subset(np.ones(d.n, bool))
        data.f_obs = np.where(c, np.sqrt(np.maximum(self.io, 0.0) * ratio), d.f_obs)
        data.sigma = np.where(c, d.sigma * np.sqrt(ratio), d.sigma)
        fm.data = data
        return fm

    def summary(self) -> dict:
        """Laws, fractions and counts for the log and JSON."""
        return {"laws": [tw.law_text(op) for op in self.laws],
                "fractions": [round(float(a), 4) for a in self.fractions],
                "n_incomplete_twin_sets": int((~self.complete).sum()),
                "r_on": "twinned amplitudes sqrt(sum_j alpha_j |Fm(R_j h)|^2) vs Fo"}
