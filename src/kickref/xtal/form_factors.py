"""X-ray atomic form factors: IT92 four-Gaussian coefficients plus constant, through gemmi.

f(s) = Σ_g a_g exp(-b_g s²/4) + c, with s = 1/d (Å⁻¹), b_g in Å². Charges are ignored
(neutral atoms), as in most refinement programs' defaults.
"""
from __future__ import annotations

from functools import lru_cache

import gemmi
import numpy as np

N_GAUSS = 5  # four Gaussians + the constant, treated as a Gaussian with b = 0


@lru_cache(maxsize=None)
def _coefficients(symbol: str) -> tuple:
    el = gemmi.Element(symbol)
    it = el.it92
    if it is None or el.atomic_number == 0:
        raise ValueError(f"no IT92 form factor for element {symbol!r}")
    a = list(it.a) + [it.c]
    b = list(it.b) + [0.0]
    return tuple(a), tuple(b)


def gaussian_coefficients(elements) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom arrays a (n, 5) and b (n, 5) (electrons, Å²) for the element symbols given."""
    elements = np.asarray(elements, dtype=object)
    uniq, inv = np.unique(elements, return_inverse=True)
    a_u = np.array([_coefficients(str(e))[0] for e in uniq], dtype=np.float64).reshape(-1, N_GAUSS)
    b_u = np.array([_coefficients(str(e))[1] for e in uniq], dtype=np.float64).reshape(-1, N_GAUSS)
    return a_u[inv], b_u[inv]


def form_factor(elements, s2) -> np.ndarray:
    """f(s) for each element (rows) at s² = 1/d² (columns), electrons."""
    a, b = gaussian_coefficients(elements)
    s2 = np.asarray(s2, dtype=np.float64)
    return np.einsum("ng,ngk->nk", a, np.exp(-b[:, :, None] * s2[None, None, :] / 4.0))


def atomic_numbers(elements) -> np.ndarray:
    """Z per atom from element symbols (unknown symbols count as carbon)."""
    uniq, inv = np.unique(np.asarray(elements, dtype=str), return_inverse=True)
    z = []
    for e in uniq:
        el = gemmi.Element(e)
        z.append(el.atomic_number if el.atomic_number > 0 else 6)
    return np.asarray(z, dtype=np.float64)[inv]
