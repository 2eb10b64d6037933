"""Observed diffraction data as flat numpy arrays.

Conventions
- ``hkl``: Miller indices (n, 3) int32, one per unique reflection in the reciprocal ASU.
- ``f_obs``, ``sigma``: amplitudes and their sigmas (same arbitrary scale as the file).
- ``free``: True for the test (free) set. ``has_free`` False when the file has no test set.
- ``d``: resolution of each reflection in Å; ``s2 = 1/d²`` in Å⁻².
- ``centric``: centric reflections; ``epsilon``: multiplicity factor ε (with centring).
- ``i_obs``, ``sigma_i``: the measured intensities and sigmas the amplitudes were converted from
  (French–Wilson), kept for intensity targets; None for amplitude data.
Reflections with NaN Fobs or status 'x' are not stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np


@dataclass
class Reflections:
    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    hkl: np.ndarray
    f_obs: np.ndarray
    sigma: np.ndarray
    free: np.ndarray
    has_free: bool = True
    path: str | None = None
    source: dict = field(default_factory=dict)   # labels used, conversion applied, warnings
    i_obs: np.ndarray | None = None
    sigma_i: np.ndarray | None = None

    def __post_init__(self):
        self.hkl = np.ascontiguousarray(self.hkl, dtype=np.int32)
        self.f_obs = np.ascontiguousarray(self.f_obs, dtype=np.float64)
        self.sigma = np.ascontiguousarray(self.sigma, dtype=np.float64)
        self.free = np.ascontiguousarray(self.free, dtype=bool)
        if self.i_obs is not None:
            self.i_obs = np.ascontiguousarray(self.i_obs, dtype=np.float64)
            self.sigma_i = np.ascontiguousarray(self.sigma_i, dtype=np.float64)
        self._derive()

    def _derive(self):
        self.s2 = self.cell.calculate_1_d2_array(self.hkl.astype(np.int32)).astype(np.float64)
        self.d = 1.0 / np.sqrt(self.s2)
        ops = self.spacegroup.operations()
        self.centric = np.asarray(ops.centric_flag_array(self.hkl), dtype=bool)
        self.epsilon = np.asarray(ops.epsilon_factor_array(self.hkl), dtype=np.float64)

    # ------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.hkl)

    @property
    def work(self) -> np.ndarray:
        """Mask of the work set (all reflections when there is no test set)."""
        return ~self.free if self.has_free else np.ones(self.n, dtype=bool)

    @property
    def has_intensities(self) -> bool:
        return self.i_obs is not None

    @property
    def d_min(self) -> float:
        return float(self.d.min())

    @property
    def d_max(self) -> float:
        return float(self.d.max())

    def subset(self, mask) -> "Reflections":
        """A copy holding only the reflections where ``mask`` is True."""
        mask = np.asarray(mask)
        return Reflections(self.cell, self.spacegroup, self.hkl[mask], self.f_obs[mask],
                           self.sigma[mask], self.free[mask], self.has_free, self.path,
                           dict(self.source),
                           None if self.i_obs is None else self.i_obs[mask],
                           None if self.sigma_i is None else self.sigma_i[mask])

    def resolution_cut(self, d_min: float | None = None, d_max: float | None = None) -> "Reflections":
        m = np.ones(self.n, dtype=bool)
        if d_min is not None:
            m &= self.d >= d_min * (1 - 1e-9)
        if d_max is not None:
            m &= self.d <= d_max * (1 + 1e-9)
        return self.subset(m)


def equal_count_bins(s2: np.ndarray, n_bins: int, used=None) -> tuple[np.ndarray, np.ndarray]:
    """Resolution bins of about equal count: (bin of every reflection, the n_bins−1 s² edges).

    ``s2`` = 1/d² (Å⁻²). Edges are equal-count quantiles of ``s2[used]`` (all reflections when
    ``used`` is None); every reflection, used or not, gets bin = number of edges ≤ its s²
    (0 = lowest resolution … n_bins−1), see :func:`bins_from_edges`.
    """
    s2 = np.asarray(s2)
    n_bins = max(1, int(n_bins))
    ref = s2 if used is None else s2[np.asarray(used, dtype=bool)]
    if n_bins == 1 or len(ref) == 0:
        edges = np.zeros(0)
    else:
        edges = np.quantile(ref, np.linspace(0, 1, n_bins + 1)[1:-1])
    return bins_from_edges(s2, edges), edges


def bins_from_edges(s2, edges: np.ndarray) -> np.ndarray:
    """Bin index (int64) of each s² (= 1/d², Å⁻²) for ascending bin edges: count of edges ≤ s²."""
    return np.searchsorted(edges, np.asarray(s2), side="right").astype(np.int64)


def hkl_keys(hkl) -> np.ndarray:
    """One int64 per Miller index (…, 3) for set operations (np.isin, np.unique); |h|,|k|,|l| < 1024."""
    h = np.asarray(hkl, dtype=np.int64) + 1024
    return (h[..., 0] << 22) | (h[..., 1] << 11) | h[..., 2]
