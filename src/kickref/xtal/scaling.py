"""Overall scaling of model to observed amplitudes: k, anisotropic B, flat bulk solvent, shells.

Fmodel(h) = k · exp(-¼ sᵀ B s) · k_shell(h) · (Fc(h) + k_sol · exp(-B_sol s²/4) · Fmask(h))

- s is the Cartesian reciprocal vector of h (|s| = 1/d, Å⁻¹); B is a symmetric 3×3 tensor
  (Å², Cartesian) restricted to the space group's point-group symmetry; reported as
  B11 B22 B33 B12 B13 B23.
- k_shell (optional, MAIN ``refl shel N``) is one factor per resolution shell, 1 by default.
- Fitted on the work set by least squares on amplitudes (``fit_ls``); the maximum-likelihood
  fit (``fit_ml``, D and S fixed) is used by :meth:`kickref.xtal.fmodel.FModel.fit_scale_ml`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.adp import mat_to_sym6, sym6_to_mat
from ..core.lbfgs import lbfgs
from ..core.linalg import matvec, vecmat
from ..core.reflections import bins_from_edges, equal_count_bins


def aniso_basis(cell, spacegroup) -> np.ndarray:
    """Orthonormal basis (m, 6) of symmetric Cartesian tensors invariant under the point group.

    Components in the order B11 B22 B33 B12 B13 B23; m is 1 (cubic) … 6 (triclinic).
    """
    orth = np.array(cell.orth.mat.tolist())
    frac = np.array(cell.frac.mat.tolist())
    rots = []
    for op in spacegroup.operations().sym_ops:
        R = np.array(op.rot, dtype=float) / op.DEN
        rots.append(orth @ R @ frac)
    P = np.zeros((6, 6))
    for j in range(6):
        e = np.zeros(6)
        e[j] = 1.0
        E = sym6_to_mat(e)
        acc = sum(Rc @ E @ Rc.T for Rc in rots) / len(rots)
        P[:, j] = mat_to_sym6(acc)
    u, sv, vt = np.linalg.svd(P)
    basis = u[:, sv > 1e-6].T
    # sign convention: make the largest component positive, for readability
    for b in basis:
        if b[np.argmax(np.abs(b))] < 0:
            b *= -1
    return basis


def cartesian_s(cell, hkl) -> np.ndarray:
    """Cartesian reciprocal vectors s (n, 3) in Å⁻¹ for Miller indices (n, 3)."""
    frac = np.array(cell.frac.mat.tolist())
    return np.asarray(hkl, dtype=float) @ frac


def quad_forms(s: np.ndarray) -> np.ndarray:
    """(n,6) products such that sᵀ B s = q · b6 for b6 = (B11 B22 B33 B12 B13 B23)."""
    x, y, z = s[:, 0], s[:, 1], s[:, 2]
    return np.stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z], axis=1)


@dataclass
class ScaleModel:
    k_overall: float = 1.0
    b_aniso: np.ndarray = field(default_factory=lambda: np.zeros(6))
    k_sol: float = 0.35
    b_sol: float = 46.0
    shell_edges: np.ndarray | None = None      # s² edges between shells (for k_shell)
    k_shell: np.ndarray | None = None
    method: str = "ls"

    def copy(self) -> "ScaleModel":
        return ScaleModel(self.k_overall, self.b_aniso.copy(), self.k_sol, self.b_sol,
                          None if self.shell_edges is None else self.shell_edges.copy(),
                          None if self.k_shell is None else self.k_shell.copy(), self.method)

    @property
    def b_iso_overall(self) -> float:
        return float(np.mean(self.b_aniso[:3]))

    def as_dict(self) -> dict:
        d = {"k_overall": float(self.k_overall), "b_aniso": [float(x) for x in self.b_aniso],
             "k_sol": float(self.k_sol), "b_sol": float(self.b_sol), "method": self.method}
        if self.k_shell is not None:
            d["k_shell"] = [float(x) for x in self.k_shell]
        return d

    # --------------------------------------------------------------------
    def solvent_factor(self, s2):
        return self.k_sol * np.exp(-self.b_sol * s2 / 4.0)

    def aniso_factor(self, q6):
        return np.exp(-0.25 * matvec(q6, self.b_aniso))

    def shell_factor(self, s2):
        if self.k_shell is None:
            return np.ones_like(s2)
        return self.k_shell[bins_from_edges(s2, self.shell_edges)]

    def total_factor(self, s2, q6):
        """Real scale applied to (Fc + solvent) per reflection."""
        return self.k_overall * self.aniso_factor(q6) * self.shell_factor(s2)

    def fmodel(self, fc, fmask, s2, q6):
        return self.total_factor(s2, q6) * (fc + self.solvent_factor(s2) * fmask)


def _k_ls(fo, fm):
    den = np.sum(fm * fm)
    return float(np.sum(fo * fm) / den) if den > 0 else 1.0


def fit_ls(fo, fc, fmask, s2, q6, basis, scale: ScaleModel | None = None,
           fit_solvent: bool = True, n_shells: int | None = None, grid_search: bool = True) -> ScaleModel:
    """Least-squares fit of k, aniso B (in ``basis``), k_sol, B_sol to |Fo| (arrays: work set).

    ``grid_search``: start from a coarse (k_sol, B_sol) grid; otherwise from ``scale``.
    """
    scale = scale.copy() if scale is not None else ScaleModel()
    scale.method = "ls"
    afc = np.abs(fc)
    have_mask = fmask is not None and fit_solvent and np.any(fmask != 0)
    m = len(basis)
    qb = q6 @ basis.T                                          # (n, m): sᵀ E_i s

    def lin_aniso(ks, bs):
        """Initial aniso and k by weighted linear fit of log ratio."""
        fp = np.abs(fc + ks * np.exp(-bs * s2 / 4.0) * fmask) if have_mask else afc
        ok = (fo > 0) & (fp > 0)
        y = np.log(fo[ok] / fp[ok])
        X = np.hstack([np.ones((ok.sum(), 1)), -0.25 * qb[ok]])
        w = np.sqrt(fo[ok])                                    # favour strong reflections
        coef, *_ = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)
        return coef[1:]

    def residual_parts(theta):
        ks, bs, p = theta[0], theta[1], theta[2:]
        E = np.exp(-bs * s2 / 4.0)
        C = fc + ks * E * fmask if have_mask else fc
        aC = np.abs(C)
        A = np.exp(-0.25 * matvec(qb, p))
        M = A * aC
        k = _k_ls(fo, M)
        r = fo - k * M
        return ks, bs, p, E, C, aC, A, M, k, r

    def target(theta):
        *_, k, r = residual_parts(theta)
        return float(np.sum(r * r))

    def grad(theta):
        ks, bs, p, E, C, aC, A, M, k, r = residual_parts(theta)
        g = np.zeros_like(theta)
        w = -2.0 * k * r                                       # dT/dM
        safe = np.maximum(aC, 1e-12)
        if have_mask:
            dC_dks = np.real(np.conj(C) * E * fmask) / safe
            dC_dbs = np.real(np.conj(C) * ks * E * (-s2 / 4.0) * fmask) / safe
            g[0] = np.sum(w * A * dC_dks)
            g[1] = np.sum(w * A * dC_dbs)
        g[2:] = -0.25 * vecmat(w * M, qb)
        return g

    # initial values: coarse grid over k_sol, B_sol (or the previous fit)
    best = None
    if not grid_search and scale is not None:
        p_prev = np.linalg.lstsq(basis.T, scale.b_aniso, rcond=None)[0]
        theta0 = np.concatenate([[scale.k_sol if have_mask else 0.0, scale.b_sol if have_mask else 0.0],
                                 p_prev])
    elif have_mask:
        for ks in np.arange(0.0, 0.61, 0.05):
            for bs in (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0):
                p = lin_aniso(ks, bs)
                th = np.concatenate([[ks, bs], p])
                t = target(th)
                if best is None or t < best[0]:
                    best = (t, th)
        theta0 = best[1]
    else:
        theta0 = np.concatenate([[0.0, 0.0], lin_aniso(0.0, 0.0)])
    lower = np.array([0.0, 0.0] + [-np.inf] * m)
    upper = np.array([1.0, 200.0] + [np.inf] * m) if have_mask else np.array([0.0, 0.0] + [np.inf] * m)
    # variables scaled to similar curvature: k_sol ~ 0.1, B_sol ~ 10 Å², aniso B ~ 1 Å²
    unit = np.array([0.1, 10.0] + [1.0] * m)
    f0 = max(target(theta0), 1e-30)
    res = lbfgs(lambda y: (target(y * unit) / f0, grad(y * unit) * unit / f0), theta0 / unit, 300,
                lower / unit, upper / unit, gtol=1e-9, ftol=1e-12, max_shift=np.full(len(unit), 0.5))
    theta = res.x * unit
    ks, bs, p, E, C, aC, A, M, k, r = residual_parts(theta)
    scale.k_sol = float(ks) if have_mask else 0.0
    scale.b_sol = float(bs) if have_mask else 0.0
    scale.b_aniso = p @ basis
    scale.k_overall = k
    scale.k_shell = None
    scale.shell_edges = None
    if n_shells:
        fit_shells(fo, fc, fmask, s2, q6, scale, n_shells)
    return scale


def fit_ml(fo, sig, fc, fmask, s2, q6, basis, centric, eps, D, S, scale: ScaleModel,
           fit_solvent: bool = True, n_iter: int = 100) -> ScaleModel:
    """Maximum-likelihood refit of k, aniso B, k_sol, B_sol (arrays: work set) from ``scale``.

    −Σ ln P(Fo; D·|Fm|) with D and S (per reflection) held fixed; shell factors of ``scale``
    are kept as they are.
    """
    from .sigmaa import ml_value_and_derivative
    scale = scale.copy()
    have_mask = fmask is not None and fit_solvent and np.any(fmask != 0)
    m = len(basis)
    qb = q6 @ basis.T
    shell = scale.shell_factor(s2)

    def parts(theta):
        lk, ks, bs, p = theta[0], theta[1], theta[2], theta[3:]
        E = np.exp(-bs * s2 / 4.0)
        C = fc + ks * E * fmask if have_mask else fc
        aC = np.abs(C)
        A = np.exp(lk - 0.25 * matvec(qb, p)) * shell
        M = A * aC
        v, dv = ml_value_and_derivative(fo, sig, M, centric, eps, D, S)
        return E, C, aC, A, M, float(np.sum(v)), dv

    def fun(theta):
        E, C, aC, A, M, v, w = parts(theta)
        g = np.zeros_like(theta)
        g[0] = np.sum(w * M)
        if have_mask:
            safe = np.maximum(aC, 1e-12)
            g[1] = np.sum(w * A * np.real(np.conj(C) * E * fmask) / safe)
            g[2] = np.sum(w * A * np.real(np.conj(C) * theta[1] * E * (-s2 / 4.0) * fmask) / safe)
        g[3:] = -0.25 * vecmat(w * M, qb)
        return v, g

    p0 = np.linalg.lstsq(basis.T, scale.b_aniso, rcond=None)[0]
    theta0 = np.concatenate([[np.log(max(scale.k_overall, 1e-12)), scale.k_sol if have_mask else 0.0,
                              scale.b_sol if have_mask else 0.0], p0])
    lower = np.array([-np.inf, 0.0, 0.0] + [-np.inf] * m)
    upper = np.array([np.inf, 1.0 if have_mask else 0.0, 200.0 if have_mask else 0.0] + [np.inf] * m)
    unit = np.array([0.01, 0.1, 10.0] + [1.0] * m)
    f0 = max(abs(fun(theta0)[0]), 1.0)

    def scaled(y):
        v, g = fun(y * unit)
        return v / f0, g * unit / f0

    res = lbfgs(scaled, theta0 / unit, n_iter, lower / unit, upper / unit, gtol=1e-9, ftol=1e-12,
                max_shift=np.full(len(unit), 0.5))
    theta = res.x * unit
    scale.k_overall = float(np.exp(theta[0]))
    scale.k_sol = float(theta[1]) if have_mask else 0.0
    scale.b_sol = float(theta[2]) if have_mask else 0.0
    scale.b_aniso = theta[3:] @ basis
    scale.method = "ml"
    return scale


def fit_shells(fo, fc, fmask, s2, q6, scale: ScaleModel, n_shells: int) -> ScaleModel:
    """Add one LS scale factor per resolution shell (MAIN ``refl shel N``), about equal counts."""
    bins, _ = equal_count_bins(s2, n_shells)
    edges = np.array([s2[bins == b].max() for b in range(n_shells - 1)]) if n_shells > 1 else np.zeros(0)
    scale.shell_edges = edges
    scale.k_shell = np.ones(n_shells)
    fm = np.abs(scale.fmodel(fc, fmask, s2, q6))
    ks = np.ones(n_shells)
    for b in range(n_shells):          # loop over shells (≤ ~20), not over reflections
        sel = bins == b
        ks[b] = _k_ls(fo[sel], fm[sel]) if sel.any() else 1.0
    scale.k_shell = ks
    return scale
