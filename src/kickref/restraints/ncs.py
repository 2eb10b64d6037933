"""NCS restraint terms: local distance similarity (``ncs_local``) and B similarity (``ncs_b``).

Both act on the copies of the NCS groups of :mod:`kickref.xtal.ncs` (``NcsGroup.atoms``: model
atom indices, row k = copy k, −1 where a copy lacks the atom), over every copy pair k < l, with
the robust loss (Geman–McClure; servalcat's local NCS uses this Barron α = −2 form)

    ρ(z) = z² / (1 + z²/z0²),   ρ′(z) = 2z / (1 + z²/z0²)²

quadratic (kickref's Σz² restraint convention) for small z and saturating at z0², so copies that
really differ (a flipped side chain, a hinge) are not pulled together.

``ncs_local`` (kind 'geometry'; REFMAC/servalcat local NCS): for each pair (a, b) of atoms of one
chain copy within ``d_max`` Å in both copies k and l and not 1-2 or 1-3 neighbours,
z = (d^k_ab − d^l_ab)/σ. Only interatomic distances enter, so the term is invariant to any rigid
motion of a copy (no operators needed). The pair list is built by :meth:`LocalNcsTerm.update`
(at each macro-cycle). Defaults σ = 0.224 Å and z0 = 2, d_max = 4.2 Å: servalcat's effective
function (its ``ncsr_sigma`` 0.05 enters as a weight w/σ, so σ_eff = √0.05 Å).

``ncs_b`` (kind 'adp'): for each atom matched in copies k and l, z = ((B_k − B_l) − δ_kl)/σ_B with
δ_kl the median B difference of the two copies (set by :meth:`NcsBTerm.update`; 0 with
``offset=False``), σ_B = 5 Å². B is B_eq for anisotropic atoms (gradient in ``b_iso``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.spatial import cKDTree

from ..core.state import AtomGradient
from ..core.term import EnergyTerm
from .graph import neighbour_keys, pair_keys


@njit(cache=True)
def _robust(z, z0):
    """(ρ(z), ρ′(z)) of the Geman–McClure loss (module docstring)."""
    q = 1.0 + z * z / (z0 * z0)
    return z * z / q, 2.0 * z / (q * q)


@njit(cache=True)
def _local_kernel(xyz, pairs, sigma, z0, delta, grad, g):
    """Σ ρ((d_k − d_l)/σ) over ``pairs`` rows (a_k, b_k, a_l, b_l): the distance of atoms a_k, b_k
    against that of a_l, b_l (each ≥ 0.02 Å); gradient added into g; d_k − d_l into delta."""
    v = 0.0
    u = np.empty((2, 3))
    d = np.empty(2)
    for p in range(pairs.shape[0]):
        for c in range(2):                      # c = 0: copy k's pair, 1: copy l's
            s = 0.0
            for m in range(3):
                u[c, m] = xyz[pairs[p, 2 * c], m] - xyz[pairs[p, 2 * c + 1], m]
                s += u[c, m] * u[c, m]
            d[c] = max(math.sqrt(s), 0.02)
        delta[p] = d[0] - d[1]
        r, dr = _robust(delta[p] / sigma, z0)
        v += r
        if grad:
            for c in range(2):
                f = (1.0 - 2.0 * c) * dr / (sigma * d[c])   # ∂E/∂d_k = ρ′/σ, ∂E/∂d_l = −ρ′/σ
                for m in range(3):
                    g[pairs[p, 2 * c], m] += f * u[c, m]
                    g[pairs[p, 2 * c + 1], m] -= f * u[c, m]
    return v


@njit(cache=True)
def _b_kernel(b, ia, ib, offset, sigma, z0, grad, g):
    """Σ ρ(((b[ia] − b[ib]) − offset)/σ); gradient added into g."""
    v = 0.0
    for p in range(ia.shape[0]):
        r, dr = _robust((b[ia[p]] - b[ib[p]] - offset[p]) / sigma, z0)
        v += r
        if grad:
            g[ia[p]] += dr / sigma
            g[ib[p]] -= dr / sigma
    return v


def copy_pairs(groups):
    """(group, k, l) for every copy pair k < l of every group."""
    return [(g, k, l) for g in groups for k in range(len(g.copies)) for l in range(k + 1, len(g.copies))]


class LocalNcsTerm(EnergyTerm):
    """Local NCS: similar short interatomic distances in the copies (module docstring).

    ``groups``: NcsGroup list; ``exclude``: sorted keys (:func:`~.graph.pair_keys`, n atoms) of
    atom pairs never restrained (1-2 and 1-3 neighbours); σ Å, z0, d_max Å."""
    name = "ncs_local"
    kind = "geometry"
    unit = "Å"

    def __init__(self, groups, n_atoms: int, exclude=None, sigma: float = 0.224, z0: float = 2.0,
                 d_max: float = 4.2, scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        self.groups = groups
        self.n_atoms = int(n_atoms)
        self.exclude = np.zeros(0, np.int64) if exclude is None else np.asarray(exclude, np.int64)
        self.sigma, self.z0, self.d_max = float(sigma), float(z0), float(d_max)
        self.pairs = np.zeros((0, 4), np.int64)          # (ka, kb, la, lb) model atom indices

    def __len__(self):
        return len(self.pairs)

    def update(self, xyz) -> int:
        """Rebuild the pair list for positions ``xyz`` (n, 3) Å; returns the number of pairs."""
        xyz = np.asarray(xyz, dtype=np.float64)
        out = []
        for g, k, l in copy_pairs(self.groups):
            both = (g.atoms[k] >= 0) & (g.atoms[l] >= 0)
            ak, al = g.atoms[k, both], g.atoms[l, both]
            if len(ak) < 2:
                continue
            p = cKDTree(xyz[ak]).query_pairs(self.d_max, output_type="ndarray")
            if not len(p):
                continue
            dl = np.linalg.norm(xyz[al[p[:, 0]]] - xyz[al[p[:, 1]]], axis=1)
            p = p[dl <= self.d_max]
            for ref in (ak, al):                 # 1-2 / 1-3 neighbours in either copy
                keys = pair_keys(ref[p[:, 0]], ref[p[:, 1]], self.n_atoms)
                p = p[~np.isin(keys, self.exclude)]
            out.append(np.column_stack([ak[p[:, 0]], ak[p[:, 1]], al[p[:, 0]], al[p[:, 1]]]))
        self.pairs = np.ascontiguousarray(np.concatenate(out)) if out else np.zeros((0, 4), np.int64)
        return len(self.pairs)

    def evaluate(self, state, gradient: bool = True):
        """(value, AtomGradient or None, Δ = d^k − d^l per pair in Å)."""
        xyz = np.ascontiguousarray(state.xyz, dtype=np.float64)
        g = AtomGradient(state.n_atoms) if gradient else None
        gx = g.xyz if gradient else np.zeros((1, 3))
        delta = np.zeros(len(self.pairs))
        v = _local_kernel(xyz, self.pairs, self.sigma, self.z0, delta, gradient, gx)
        return float(v), g, delta

    def compute(self, state, gradient: bool = True):
        v, g, _ = self.evaluate(state, gradient)
        return v, g

    def statistics(self, state) -> dict:
        """Number of pairs, RMS of Δ (Å) and the pairs with |Δ| > 3σ ('outliers')."""
        d = self.evaluate(state, False)[2]
        return {"n_pairs": int(len(d)), "rms_delta": float(np.sqrt(np.mean(d ** 2))) if len(d) else 0.0,
                "n_outliers": int((np.abs(d) > 3 * self.sigma).sum())}


class NcsBTerm(EnergyTerm):
    """NCS B similarity with a per-copy-pair offset (module docstring); σ_B Å², z0."""
    name = "ncs_b"
    kind = "adp"
    unit = "Å²"

    def __init__(self, groups, sigma: float = 5.0, z0: float = 2.0, offset: bool = True,
                 scale: float = 1.0, enabled: bool = True):
        super().__init__(scale, enabled)
        self.groups = groups
        self.sigma, self.z0, self.use_offset = float(sigma), float(z0), bool(offset)
        ia, ib, which = [], [], []
        for n, (g, k, l) in enumerate(copy_pairs(groups)):
            both = (g.atoms[k] >= 0) & (g.atoms[l] >= 0)
            ia.append(g.atoms[k, both])
            ib.append(g.atoms[l, both])
            which.append(np.full(int(both.sum()), n))
        cat = lambda a: np.concatenate(a).astype(np.int64) if a else np.zeros(0, np.int64)
        self.ia, self.ib, self.pair_of = cat(ia), cat(ib), cat(which)
        self.offset = np.zeros(len(self.ia))
        self.offsets = np.zeros(len(ia))     # δ per copy pair, Å²

    def __len__(self):
        return len(self.ia)

    def update(self, state) -> None:
        """Set δ_kl to the median B difference of each copy pair (with ``offset``; else 0)."""
        if not self.use_offset or not len(self.ia):
            return
        b = state.b_eq()
        d = b[self.ia] - b[self.ib]
        self.offsets = np.array([np.median(d[self.pair_of == n]) for n in range(len(self.offsets))])
        self.offset = self.offsets[self.pair_of]

    def compute(self, state, gradient: bool = True):
        b = np.ascontiguousarray(state.b_eq(), dtype=np.float64)
        g = AtomGradient(state.n_atoms) if gradient else None
        gb = g.b_iso if gradient else np.zeros(1)
        v = _b_kernel(b, self.ia, self.ib, self.offset, self.sigma, self.z0, gradient, gb)
        return float(v), g


def ncs_terms(groups, restraints, state, sigma: float = 0.224, b_sigma: float = 5.0):
    """(LocalNcsTerm, NcsBTerm) for ``groups``, 1-2 and 1-3 neighbours of ``restraints``' bond
    graph excluded, pair list and B offsets set for ``state``."""
    n = state.n_atoms
    exclude = np.unique(np.concatenate(neighbour_keys(restraints.bonds.idx, n, order=2)))
    local = LocalNcsTerm(groups, n, exclude, sigma=sigma)
    local.update(state.xyz)
    b = NcsBTerm(groups, sigma=b_sigma)
    b.update(state)
    return local, b
