"""Rigid-body minimization (MAIN's ``minimize … by body``): one body, 6 parameters.

The selected atoms move as x = c + R(ω)(x₀ − c) + t, with c their centroid at the start, ω a
rotation vector (radians) and t a translation (Å); the energy is any
:class:`~kickref.refinement.energy.Energy`, its atom gradients g chained to the parameters
(∂E/∂t = Σ g, ∂E/∂ω_k = Σ g·(∂R/∂ω_k)(x₀ − c)), minimized by scipy's L-BFGS-B.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from .minimize import StopFlag

_H = 1e-6          # rad, step of the central difference of R(ω) (a 3×3 matrix: error ~1e-12)


def rotation_derivatives(w: np.ndarray) -> list:
    """[∂R/∂ω_k for k = 0, 1, 2] of the rotation matrix R(ω) of the rotation vector ω (radians)."""
    out = []
    for k in range(3):
        e = np.zeros(3)
        e[k] = _H
        out.append((Rotation.from_rotvec(w + e).as_matrix() - Rotation.from_rotvec(w - e).as_matrix()) / (2 * _H))
    return out


def minimize_rigid_body(energy, state, body, steps: int = 50, stop=None) -> dict:
    """Move the ``body`` atoms (bool mask) of ``state`` (in place) as one rigid body to lower
    ``energy``; at most ``steps`` L-BFGS iterations. Returns {'rotation_deg', 'translation' (Å),
    'energy_start', 'energy_end', 'n_eval', 'interrupted'}; the body ends at the lowest energy
    evaluated (also when ``stop`` ends the run)."""
    stop = stop if stop is not None else StopFlag()
    idx = np.flatnonzero(body)
    x0 = state.xyz[idx].copy()
    c = x0.mean(axis=0)
    d = x0 - c
    n_eval = [0]
    best = [np.zeros(6), np.inf]             # the lowest point evaluated (kept when interrupted)

    def place(p):
        state.xyz[idx] = c + d @ Rotation.from_rotvec(p[:3]).as_matrix().T + p[3:]

    def fun(p):
        if stop:
            raise StopIteration
        place(p)
        e, g, _ = energy.compute(state)
        n_eval[0] += 1
        if e < best[1]:
            best[0], best[1] = p.copy(), e
        gi = g.xyz[idx]
        grad = np.empty(6)
        grad[3:] = gi.sum(axis=0)
        for k, dr in enumerate(rotation_derivatives(p[:3])):
            grad[k] = float(np.sum(gi * (d @ dr.T)))
        return e, grad

    e0 = fun(np.zeros(6))[0]
    try:
        minimize(fun, np.zeros(6), jac=True, method="L-BFGS-B", options={"maxiter": int(steps)})
    except StopIteration:
        pass
    p = best[0]
    place(p)
    e1 = energy.compute(state, gradient=False)[0]
    return {"rotation_deg": float(np.degrees(np.linalg.norm(p[:3]))), "translation": p[3:].tolist(),
            "energy_start": float(e0), "energy_end": float(e1), "n_eval": n_eval[0], "interrupted": bool(stop)}
