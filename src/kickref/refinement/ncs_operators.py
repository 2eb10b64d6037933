"""NCS operator optimization against a map (MAIN: "a mandatory step" before averaging).

For copy k of a group, the points x_i are the grid points of the reference copy's mask (all its
symmetry images brought into its own frame, :func:`.ncs_averaging.own_frame`) with the map values
a_i = ρ(x_i). The operator T_k is refined as a rigid body, T(θ)x = R(ω)(T_k x − c) + c + τ
(c the centroid of the mapped points; ω a rotation vector, τ a translation), to maximize

    CC(θ) = Σ (a_i − ā)(b_i − b̄) / √(Σ (a_i − ā)² Σ (b_i − b̄)²),   b_i = ρ(T(θ) x_i)

(scale- and offset-free, as averaging programs do). The gradient is analytic:
∂CC/∂b_i = (a_i − ā)/(S_a S_b) − CC (b_i − b̄)/S_b², ∂b_i/∂p_i = ∇ρ(p_i) from the cubic B-spline,
chained to the six parameters by :func:`~.rigid_body.minimize_rigid_body` (L-BFGS), on the
points as its "atoms".
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..core.state import AtomGradient, AtomState
from ..core.term import EnergyTerm
from ..xtal.bspline import bspline_coefficients, bspline_eval, grid_coordinates
from ..xtal.ncs import rotation_angle, superpose
from .energy import Energy
from .ncs_averaging import ncs_mask, own_frame
from .rigid_body import minimize_rigid_body


class MapCorrelationTerm(EnergyTerm):
    """−CC between fixed values ``a`` (n,) and the map interpolated at the n 'atom' positions
    of the state (Å); gradient with respect to those positions."""
    name = "map_correlation"
    kind = "density"

    def __init__(self, dmap, a, scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        self.dmap = dmap
        self.coef = bspline_coefficients(dmap.grid)
        self.a0 = np.asarray(a, float) - np.mean(a)
        self.sa = float(np.sqrt(np.sum(self.a0 ** 2)))
        # Cartesian gradient = (∂u/∂x)ᵀ ∇_u ρ, u = frac·x scaled by the grid size
        self.du_dx = np.array(dmap.cell.frac.mat.tolist()) * np.asarray(dmap.shape, float)[:, None]

    def compute(self, state, gradient: bool = True):
        u = grid_coordinates(state.xyz, self.dmap.cell, self.dmap.shape)
        b, gu = bspline_eval(self.coef, u, gradient)
        b0 = b - b.mean()
        sb = float(np.sqrt(np.sum(b0 ** 2))) or 1e-30
        cc = float(np.sum(self.a0 * b0)) / (self.sa * sb)
        g = None
        if gradient:
            g = AtomGradient(len(b))
            dcc_db = self.a0 / (self.sa * sb) - cc * b0 / sb ** 2
            g.xyz = -dcc_db[:, None] * (gu @ self.du_dx)
        return -cc, g


def _points_state(xyz) -> AtomState:
    n = len(xyz)
    return AtomState(np.array(xyz, float), np.zeros(n), np.zeros((n, 6)), np.zeros(n, bool), np.ones(n))


def reference_points(dmap, xyz, groups, g: int, mask_radius: float = 3.0, max_points: int = 200000, seed: int = 0):
    """(points (n, 3) Å in the reference copy's frame, map values there) of group ``g``'s
    reference mask (overlap points left out); at most ``max_points`` (a random subset)."""
    m = ncs_mask(dmap.shape, dmap.cell, dmap.spacegroup, xyz, groups, mask_radius)
    pts = np.flatnonzero((m.nearest >= 0) & ~m.overlap)
    z0, copy = own_frame(m, pts, xyz, dmap)
    sel = copy == m.copies.index((g, 0))
    pts, z0 = pts[sel], z0[sel]
    if len(pts) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(pts), max_points, replace=False))
        pts, z0 = pts[keep], z0[keep]
    return z0, np.asarray(dmap.grid, float).ravel()[pts]


def optimize_operator(dmap, x, a, copy, steps: int = 100):
    """Refine ``copy``'s operator (an NcsCopy) against ``dmap`` from reference-frame points ``x``
    with map values ``a`` (:func:`reference_points`). Returns (new NcsCopy, report: CC before and
    after, rotation change in degrees, shift of the mapped points' centroid in Å, evaluations)."""
    term = MapCorrelationTerm(dmap, a)
    state = _points_state(copy.transform(x))
    start = state.xyz.copy()
    r = minimize_rigid_body(Energy([term]), state, np.ones(len(x), bool), steps=steps)
    sub = np.linspace(0, len(x) - 1, min(len(x), 2000)).astype(int)
    R, t, _, _ = superpose(state.xyz[sub], x[sub], trim_cycles=0)
    new = dataclasses.replace(copy, rotation=R, translation=t)
    report = {"chain": copy.chain, "cc_start": -r["energy_start"], "cc_end": -r["energy_end"],
              "rotation_change_deg": rotation_angle(R @ copy.rotation.T),
              "translation_change": float(np.linalg.norm(state.xyz.mean(0) - start.mean(0))),
              "n_points": int(len(x)), "n_eval": r["n_eval"]}
    return new, report


def optimize_operators(dmap, xyz, groups, mask_radius: float = 3.0, steps: int = 100, max_points: int = 200000):
    """Every non-reference operator of every group refined against ``dmap`` (Å positions ``xyz``
    of the model atoms the groups index). Returns (new groups, reports)."""
    out, reports = [], []
    for g, grp in enumerate(groups):
        x, a = reference_points(dmap, xyz, groups, g, mask_radius, max_points)
        copies = [grp.copies[0]]
        for c in grp.copies[1:]:
            new, rep = optimize_operator(dmap, x, a, c, steps)
            copies.append(new)
            reports.append({"group": g, **rep})
        out.append(dataclasses.replace(grp, copies=copies))
    return out, reports
