"""Model structure factors by FFT, and their gradients by the gradient-map method.

Conventions
- F(h) = Σ_atoms f(s) · occ · exp(-B s²/4) · exp(2πi h·x)   (x fractional, s = 1/d, B in Å²);
  anisotropic atoms use exp(-2π² sᵀ U s) with Cartesian U in Å².
- Only the atoms given (one asymmetric unit) are spread on a P1 grid; the space-group
  symmetry is applied in reciprocal space:  F(h) = Σ_j exp(2πi h·t_j) G(R_jᵀ h),
  G being the transform of the ASU density. The grid therefore needs no symmetry-compatible size.
- Atoms are blurred by an extra B (``blur``) so that they are sampled well; the blur is undone
  in reciprocal space.
- Gradients: for a real target T(F) and D(h) = ∂T/∂A + i ∂T/∂B (F = A + iB), the gradient map
  M(x) = Re Σ_h Σ_j c_h e^{2πi h·t_j} conj(D(h)) e^{2πi (R_jᵀh)·x} is built by one inverse FFT and
  gathered at the atoms with the same Gaussian kernel that spreads the density.
"""
from __future__ import annotations

import math
import os

import numpy as np
import scipy.fft

from ..core.adp import EIGHT_PI2, min_eigenvalue, sym6_to_mat
from ..core.profile import phase
from ..core.state import AtomGradient, AtomState
from . import density_kernels as K
from .form_factors import N_GAUSS, gaussian_coefficients

FOUR_PI2 = 4.0 * math.pi ** 2
N_THREADS = max(1, min(os.cpu_count() or 1, 8))


def fft_size(n: int) -> int:
    """Smallest even size ≥ n with only factors 2, 3 and 5."""
    m = max(2, int(n))
    while True:
        m = scipy.fft.next_fast_len(m, real=True)
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1 and m % 2 == 0:
            return m
        m += 1


def ops_arrays(spacegroup):
    """Rotation matrices R (nops,3,3) acting on fractional coordinates and translations t (nops,3)."""
    ops = list(spacegroup.operations())
    den = float(ops[0].DEN) if hasattr(ops[0], "DEN") else 24.0
    R = np.array([op.rot for op in ops], dtype=np.float64) / den
    t = np.array([op.tran for op in ops], dtype=np.float64) / den
    return R, t


class ReciprocalLookup:
    """Maps reflections × symmetry operators to entries of a half-complex (rfftn) grid."""

    def __init__(self, hkl, shape, R, t):
        hkl = np.asarray(hkl, dtype=np.int64)
        n0, n1, n2 = shape
        self.shape = shape
        self.half_shape = (n0, n1, n2 // 2 + 1)
        nref, nops = len(hkl), len(R)
        Ri = np.rint(R).astype(np.int64)
        # k = Rᵀ h for each op, as rows: k = h @ R
        k = np.einsum("ni,oij->noj", hkl, Ri)                      # (nref, nops, 3)
        phase = 2.0 * np.pi * np.einsum("ni,oi->no", hkl.astype(np.float64), t)
        self.phase = np.exp(1j * phase)                            # (nref, nops)
        k2 = np.mod(k[..., 2], n2)
        stored = k2 <= n2 // 2
        kk = np.where(stored[..., None], k, -k)
        i0 = np.mod(kk[..., 0], n0)
        i1 = np.mod(kk[..., 1], n1)
        i2 = np.mod(kk[..., 2], n2)
        h2 = n2 // 2 + 1
        self.index = (i0 * n1 + i1) * h2 + i2                     # flat index into half grid
        self.stored = stored                                       # True: value = conj(X[index])
        boundary = stored & ((i2 == 0) | ((n2 % 2 == 0) & (i2 == n2 // 2)))
        self.boundary = boundary
        # index of -k for boundary entries (also in the stored half)
        j0 = np.mod(-kk[..., 0], n0)
        j1 = np.mod(-kk[..., 1], n1)
        self.index_neg = (j0 * n1 + j1) * h2 + i2
        self.nref, self.nops = nref, nops

    def gather(self, X: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """Σ_j phase_j · G(R_jᵀ h) for each h, from the rfftn output X (G = conj of the DFT).
        ``index``: flat indices into X to use instead of :attr:`index` (for a truncated X, see
        :meth:`truncated`)."""
        flat = X.reshape(-1)
        v = flat[self.index if index is None else index]
        v = np.where(self.stored, np.conj(v), v)
        return np.einsum("no,no->n", v, self.phase)

    def truncated(self) -> tuple[int, np.ndarray]:
        """(m, index): the number m of leading entries along the half grid's last axis that the
        reflections use, and the flat indices into a half grid cut to (n0, n1, m)."""
        h2 = self.half_shape[2]
        i2 = self.index % h2
        m = int(i2.max()) + 1 if i2.size else 1
        return m, (self.index // h2) * m + i2

    def scatter(self, coef: np.ndarray) -> np.ndarray:
        """Half-complex array Y such that N·irfftn(Y) = Re Σ_{h,j} conj(coef_h) e^{-2πi h·t_j}…

        Precisely: for each (h, j) with v = conj(coef_h)·phase_j it adds Re(v e^{2πi k·x}),
        k = R_jᵀ h, to the real-space map.
        """
        out = np.zeros(int(np.prod(self.half_shape)), dtype=np.complex128)
        K.scatter_half(out, self.index, self.stored, self.boundary, self.index_neg,
                       np.ascontiguousarray(coef, dtype=np.complex128), self.phase)
        return out.reshape(self.half_shape)


class StructureFactorCalculator:
    """FFT structure factors for a fixed set of reflections.

    ``calc = StructureFactorCalculator(cell, spacegroup, hkl, d_min)``;
    ``fc = calc.calculate(state, elements)``  (complex, electrons);
    ``grad = calc.gradient(state, elements, dT_dF)``  (AtomGradient).
    ``rate``: grid points per d_min/2 (1.5 → spacing ≈ d_min/3); ``cutoff``: density cut-off in e/Å³.
    """

    def __init__(self, cell, spacegroup, hkl, d_min=None, rate: float = 1.5,
                 cutoff: float = 1e-4, blur_factor: float = 6.0, dtype=np.float32):
        self.cell = cell
        self.spacegroup = spacegroup
        self.hkl = np.asarray(hkl, dtype=np.int32)
        s2 = cell.calculate_1_d2_array(self.hkl)
        self.s2 = np.asarray(s2, dtype=np.float64)
        self.d_min = float(d_min) if d_min else float(1.0 / math.sqrt(self.s2.max()))
        self.rate = rate
        self.cutoff = cutoff
        self.blur_factor = blur_factor
        self.dtype = np.dtype(dtype)       # grid precision: float32 halves FFT time and memory
        self.orth = np.array(cell.orth.mat.tolist())
        self.frac = np.array(cell.frac.mat.tolist())
        hmax = np.abs(self.hkl).max(axis=0)
        edge = np.sqrt((self.orth ** 2).sum(axis=0))           # |a_i|, Å
        h_lim = edge / self.d_min                                 # largest |h_i| possible at d_min
        self.shape = tuple(fft_size(max(2 * int(h) + 1, math.ceil(2 * rate * hl)))
                           for h, hl in zip(hmax, h_lim))
        self.n_points = int(np.prod(self.shape))
        N = np.array(self.shape, dtype=np.float64)
        self.step = self.orth / N[None, :]                  # columns: Cartesian step per grid axis
        self.metric = self.step.T @ self.step
        self.recip_len = np.sqrt((self.frac ** 2).sum(axis=1)) * N
        R, t = ops_arrays(spacegroup)
        self.lookup = ReciprocalLookup(self.hkl, self.shape, R, t)
        self.volume = cell.volume
        self._ff_cache = None
        self._aniso_cache = None

    # --------------------------------------------------------------- atoms
    def _form_factors(self, elements):
        key = id(elements)
        if self._ff_cache is None or self._ff_cache[0] != key or len(self._ff_cache[1]) != len(elements):
            a, b = gaussian_coefficients(elements)
            self._ff_cache = (key, a, b)
        return self._ff_cache[1], self._ff_cache[2]

    def blur_for(self, state: AtomState) -> float:
        """Extra B (Å²) so that the sharpest atom is still sampled accurately on the grid."""
        b = state.b_iso.copy()
        if state.is_aniso.any():
            u = state.u_aniso[state.is_aniso]
            b[state.is_aniso] = EIGHT_PI2 * min_eigenvalue(u)
        bmin = float(b.min()) if len(b) else 0.0
        # aliases sit ≥ (2·rate − 1)/d_min away; their damping relative to the highest-resolution
        # reflection is exp(−B_total·((2·rate − 1)² − 1)/(4·d_min²))
        target = self.blur_factor * self.d_min ** 2 * 3.0 / ((2.0 * self.rate - 1.0) ** 2 - 1.0)
        return max(0.0, target - bmin)

    def prepare(self, state: AtomState, elements, blur: float, unit_occ: bool = False):
        """Per-atom Gaussian amplitudes, quadratic forms (grid units), radii and centres."""
        a, b = self._form_factors(elements)
        n = state.n_atoms
        occ = np.ones(n) if unit_occ else state.occ
        iso = ~state.is_aniso
        amp = np.empty((n, N_GAUSS))
        quad = np.empty((n, N_GAUSS, 6))
        lam_max = np.empty((n, N_GAUSS))
        # isotropic atoms
        bt = b[iso] + (state.b_iso[iso] + blur)[:, None]          # (ni, G) total B
        bt = np.maximum(bt, 1e-3)
        amp[iso] = occ[iso, None] * a[iso] * (4.0 * math.pi / bt) ** 1.5
        g = self.metric
        g6 = np.array([g[0, 0], g[1, 1], g[2, 2], g[0, 1], g[0, 2], g[1, 2]])
        quad[iso] = (FOUR_PI2 / bt)[:, :, None] * g6[None, None, :]
        lam_max[iso] = bt
        # anisotropic atoms
        self._aniso_B = None
        if state.is_aniso.any():
            ia = state.is_aniso
            u = state.u_aniso[ia]
            c = self._aniso_cache
            if (c is not None and c[0] == blur and c[1].shape == u.shape and np.array_equal(c[1], u)
                    and np.array_equal(c[2], ia)):
                _, _, _, Bm, Binv, sqdet, quad_a, lam_a = c      # ADPs unchanged: reuse
            else:
                U = sym6_to_mat(u)                                 # (na,3,3)
                Bm = (b[ia] + blur)[:, :, None, None] * np.eye(3) + EIGHT_PI2 * U[:, None]
                sqdet = np.sqrt(np.maximum(np.linalg.det(Bm), 1e-9))
                Binv = np.linalg.inv(Bm)
                P = FOUR_PI2 * Binv
                Q = np.einsum("ai,ngab,bj->ngij", self.step, P, self.step)
                quad_a = np.stack([Q[..., 0, 0], Q[..., 1, 1], Q[..., 2, 2],
                                   Q[..., 0, 1], Q[..., 0, 2], Q[..., 1, 2]], axis=-1)
                lam_a = np.linalg.eigvalsh(Bm)[..., -1]
                self._aniso_cache = (blur, u.copy(), ia.copy(), Bm, Binv, sqdet, quad_a, lam_a)
            amp[ia] = occ[ia, None] * a[ia] * (4.0 * math.pi) ** 1.5 / sqdet
            quad[ia] = quad_a
            lam_max[ia] = lam_a
            self._aniso_B = (Bm, Binv)
        # radius where each Gaussian falls below cutoff / N_GAUSS
        ratio = np.abs(amp) * N_GAUSS / self.cutoff
        if unit_occ:
            ratio = ratio * np.maximum(state.occ, 1e-3)[:, None]
        r2 = lam_max / FOUR_PI2 * np.log(np.maximum(ratio, 1.0))
        radius = np.sqrt(r2.max(axis=1))
        frac = state.xyz @ self.frac.T
        centers = frac * np.array(self.shape, dtype=np.float64)[None, :]
        return amp, quad, radius, centers, bt if not state.is_aniso.any() else None

    # ------------------------------------------------------------ forward
    def density(self, state: AtomState, elements, blur: float | None = None) -> np.ndarray:
        """Blurred density (e/Å³) of the given atoms on the P1 grid (no symmetry)."""
        if blur is None:
            blur = self.blur_for(state)
        amp, quad, radius, centers, _ = self.prepare(state, elements, blur)
        grid = np.zeros(self.shape, dtype=self.dtype)
        if N_THREADS > 1 and state.n_atoms > 2000:
            K.spread_parallel(grid, centers, amp, quad, radius, self.metric, self.recip_len, N_THREADS)
        else:
            K.spread(grid, centers, amp, quad, radius, self.metric, self.recip_len)
        return grid

    def calculate(self, state: AtomState, elements) -> np.ndarray:
        """Complex structure factors Fc(h) (electrons) of the atoms and their symmetry mates."""
        with phase("fc"):
            blur = self.blur_for(state)
            grid = self.density(state, elements, blur)
            X = scipy.fft.rfftn(grid, workers=N_THREADS)
            del grid                                   # not needed for the gather (memory)
            G = self.lookup.gather(X)
            return G * (self.volume / self.n_points) * np.exp(blur * self.s2 / 4.0)

    # ----------------------------------------------------------- gradient
    def gradient_map(self, dT_dF: np.ndarray, blur: float) -> np.ndarray:
        coef = dT_dF * (self.volume / self.n_points) * np.exp(blur * self.s2 / 4.0)
        Y = self.lookup.scatter(coef)
        if self.dtype == np.float32:
            Y = Y.astype(np.complex64)
        # Y is scratch: transformed in place (no copy), and the map scaled in place
        gmap = scipy.fft.irfftn(Y, s=self.shape, workers=N_THREADS, overwrite_x=True)
        del Y
        gmap *= np.float32(self.n_points)
        return gmap

    def gradient(self, state: AtomState, elements, dT_dF: np.ndarray, want=("xyz", "adp", "occ")) -> AtomGradient:
        """dT/d(xyz, B, U, occ) for a target T with D(h) = ∂T/∂Re F + i ∂T/∂Im F.

        ``want``: which parts to compute ('xyz', 'adp', 'occ'); the others are left at zero.
        """
        with phase("gradient"):
            blur = self.blur_for(state)
            gmap = self.gradient_map(dT_dF, blur)
            return self.gather_gradient(state, elements, gmap, blur, want)

    def gather_gradient(self, state: AtomState, elements, gmap: np.ndarray, blur: float,
                        want=("xyz", "adp", "occ")) -> AtomGradient:
        """Gradient of Σ_x gmap(x)·ρ(x) with respect to the atom parameters."""
        a, b = self._form_factors(elements)
        amp, quad, radius, centers, _ = self.prepare(state, elements, blur, unit_occ=True)
        n = state.n_atoms
        grad = AtomGradient(n)
        occ = state.occ
        iso = ~state.is_aniso
        if iso.any():
            ii = np.flatnonzero(iso)
            bt = np.maximum(b[ii] + (state.b_iso[ii] + blur)[:, None], 1e-3)   # (ni,G)
            p = FOUR_PI2 / bt
            O, X, B = K.gather_iso(gmap, centers[ii], amp[ii], quad[ii], radius[ii], self.metric,
                                   self.recip_len, self.step, 2.0 * p, -1.5 / bt, p / bt)
            grad.occ[ii] = O
            grad.xyz[ii] = occ[ii, None] * X
            grad.b_iso[ii] = occ[ii] * B
        if state.is_aniso.any():
            ia = np.flatnonzero(state.is_aniso)
            S0, S1, S2 = K.gather(gmap, centers[ia], amp[ia], quad[ia], radius[ia], self.metric,
                                  self.recip_len, self.step, np.ones(len(ia), bool), "xyz" in want,
                                  "adp" in want)
            Bm, Binv = self._aniso_B
            P = FOUR_PI2 * Binv                                       # (na,G,3,3)
            grad.occ[ia] = S0.sum(axis=1)
            grad.xyz[ia] = occ[ia, None] * 2.0 * np.einsum("ngij,ngj->ni", P, S1)
            if "adp" not in want:
                return grad
            M2 = sym6_to_mat(S2)                                      # (na,G,3,3)
            D = -0.5 * Binv * S0[:, :, None, None] + FOUR_PI2 * Binv @ M2 @ Binv
            D = D.sum(axis=1) * occ[ia, None, None]                    # (na,3,3)
            grad.u_aniso[ia] = EIGHT_PI2 * np.stack(
                [D[:, 0, 0], D[:, 1, 1], D[:, 2, 2],
                 2 * D[:, 0, 1], 2 * D[:, 0, 2], 2 * D[:, 1, 2]], axis=-1)
        return grad
