"""Diagonal preconditioning of the minimizer: per-atom curvature estimates.

The minimizer works on y = √c·x, where c estimates the diagonal of the Hessian of the total
energy for each parameter, so that heavy and light, sharp and smeared atoms, coordinates and
B values all have comparable curvature.

X-ray part (Gauss–Newton, phases random relative to the atom's own contribution):
  c_x(a) ≈ ½ Σ_h W_h k_h² n_sym · g(s_h) · occ_a² f_a(s_h)² exp(−B_a s_h²/2)
with g = 4π²s²/3 for one Cartesian coordinate, (s²/4)² for B and 1 for the occupancy,
W_h the expected curvature of the target per |Fm| (LS: 2; ML acentric 2D²/V, centric D²/V) and
k_h the scale. Sums over reflections are done in resolution bins.
Restraint part: bonds give 2/(3σ²) per coordinate of each bonded atom (angles add ~30 %);
B-similarity pairs give 2/σ² per atom and pair.
"""
from __future__ import annotations

import numpy as np

from ..core.linalg import matvec
from ..xtal.form_factors import form_factor

FOUR_PI2 = 4.0 * np.pi ** 2


def xray_curvatures(xray, state, n_bins: int = 40) -> dict:
    """Per-atom X-ray curvature estimates {'xyz': (n,), 'b': (n,), 'occ': (n,)} (unweighted)."""
    fm = xray.fmodel
    d = fm.data
    sel = fm.work
    k = fm.scale_factor[sel]
    s2 = fm.s2[sel]
    if xray.target == "ls" or xray.D is None:
        W = np.full(len(s2), 2.0)
    else:
        D, S = xray.D[sel], xray.S[sel]
        V = d.epsilon[sel] * S + d.sigma[sel] ** 2
        W = np.where(d.centric[sel], 1.0, 2.0) * D * D / V
    wk = W * k * k
    edges = np.quantile(s2, np.linspace(0, 1, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, s2, side="right") - 1, 0, n_bins - 1)
    A = np.bincount(idx, weights=wk, minlength=n_bins)
    s2b = np.bincount(idx, weights=wk * s2, minlength=n_bins) / np.maximum(A, 1e-300)
    nsym = len(fm.sf.lookup.phase[0]) if fm.sf.lookup.nref else 1
    elements = fm.elements
    uniq, inv = np.unique(elements, return_inverse=True)
    f2 = form_factor(uniq, s2b) ** 2                                   # (n_el, bins)
    b = state.b_eq()
    damp = np.exp(-np.outer(np.maximum(b, 0.0), s2b) / 2.0)             # (n, bins)
    base = 0.5 * nsym * (state.occ ** 2)[:, None] * f2[inv] * damp * A[None, :]
    return {"xyz": matvec(base, FOUR_PI2 * s2b / 3.0),           # not base @ …: BLAS-thread-dependent bits
            "b": matvec(base, (s2b / 4.0) ** 2),
            "occ": base.sum(axis=1) / np.maximum(state.occ ** 2, 1e-6)}


def restraint_curvatures(restraints, n_atoms: int) -> dict:
    """Per-atom curvature of the restraint energy: {'xyz': (n,), 'b': (n,)}."""
    cx = np.zeros(n_atoms)
    bonds = getattr(restraints, "bonds", None)
    if bonds is not None and len(bonds):
        w = 2.0 / (3.0 * bonds.sigma ** 2)
        np.add.at(cx, bonds.idx[:, 0], w)
        np.add.at(cx, bonds.idx[:, 1], w)
    cx *= 1.3                                   # angles, planes, ... add roughly a third
    cb = np.zeros(n_atoms)
    pairs = getattr(restraints, "b_pairs", None)
    if pairs is not None and len(pairs):
        w = 2.0 / pairs.sigma ** 2
        np.add.at(cb, pairs.idx[:, 0], w)
        np.add.at(cb, pairs.idx[:, 1], w)
    return {"xyz": cx, "b": cb}
