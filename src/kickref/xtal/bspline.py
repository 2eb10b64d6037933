"""Periodic cubic B-spline interpolation of full-cell grids (values and gradients).

The spline is interpolating (it passes through the grid values; C² smooth). Positions are
given in grid units (:func:`grid_coordinates`); gradients come back per grid unit.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
import scipy.fft

from .structure_factors import N_THREADS


def bspline_coefficients(grid) -> np.ndarray:
    """Periodic cubic B-spline coefficients c such that Σ c·β³ passes through the grid values
    (prefilter by division in Fourier space by (4 + 2cos(2πk/n))/6 per axis)."""
    g = np.asarray(grid, dtype=np.float64)
    n0, n1, n2 = g.shape
    X = scipy.fft.rfftn(g, workers=N_THREADS)
    b0 = (4.0 + 2.0 * np.cos(2 * np.pi * np.arange(n0) / n0)) / 6.0
    b1 = (4.0 + 2.0 * np.cos(2 * np.pi * np.arange(n1) / n1)) / 6.0
    b2 = (4.0 + 2.0 * np.cos(2 * np.pi * np.arange(n2 // 2 + 1) / n2)) / 6.0
    X /= b0[:, None, None] * b1[None, :, None] * b2[None, None, :]
    return np.ascontiguousarray(scipy.fft.irfftn(X, s=g.shape, workers=N_THREADS))


def grid_coordinates(xyz, cell, shape) -> np.ndarray:
    """Cartesian positions (Å, n×3) → grid coordinates (fractional × grid size)."""
    frac = np.array(cell.frac.mat.tolist())
    return (xyz @ frac.T) * np.asarray(shape, dtype=np.float64)[None, :]


@nb.njit(cache=True, inline="always")
def _weights(t, w, d):
    s = 1.0 - t
    w[0] = s * s * s / 6.0
    w[1] = (3.0 * t * t * t - 6.0 * t * t + 4.0) / 6.0
    w[2] = (-3.0 * t * t * t + 3.0 * t * t + 3.0 * t + 1.0) / 6.0
    w[3] = t * t * t / 6.0
    d[0] = -0.5 * s * s
    d[1] = 1.5 * t * t - 2.0 * t
    d[2] = -1.5 * t * t + t + 0.5
    d[3] = 0.5 * t * t


@nb.njit(cache=True)
def bspline_eval(coef, u, want_grad):
    """Values and gradients (per grid unit) of the periodic cubic B-spline at grid coordinates u."""
    n0, n1, n2 = coef.shape
    n = u.shape[0]
    val = np.empty(n)
    grad = np.zeros((n, 3))
    w0 = np.empty(4)
    w1 = np.empty(4)
    w2 = np.empty(4)
    d0 = np.empty(4)
    d1 = np.empty(4)
    d2 = np.empty(4)
    for a in range(n):
        f0 = math.floor(u[a, 0])
        f1 = math.floor(u[a, 1])
        f2 = math.floor(u[a, 2])
        _weights(u[a, 0] - f0, w0, d0)
        _weights(u[a, 1] - f1, w1, d1)
        _weights(u[a, 2] - f2, w2, d2)
        b0 = int(f0) - 1
        b1 = int(f1) - 1
        b2 = int(f2) - 1
        v = 0.0
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        for p in range(4):
            i = (b0 + p) % n0
            for q in range(4):
                j = (b1 + q) % n1
                v_q = 0.0
                dv_q = 0.0
                for r in range(4):
                    c = coef[i, j, (b2 + r) % n2]
                    v_q += w2[r] * c
                    dv_q += d2[r] * c
                v += w0[p] * w1[q] * v_q
                if want_grad:
                    g0 += d0[p] * w1[q] * v_q
                    g1 += w0[p] * d1[q] * v_q
                    g2 += w0[p] * w1[q] * dv_q
        val[a] = v
        grad[a, 0] = g0
        grad[a, 1] = g1
        grad[a, 2] = g2
    return val, grad
