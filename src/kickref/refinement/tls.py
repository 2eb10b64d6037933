"""TLS groups in refinement: U_atom = U_TLS(T, L, S; origin) + B_res/8π²·I.

Each group's atoms (non-hydrogen, non-water) are anisotropic in the state, their U the sum of
the group's TLS tensor at the atom (:mod:`kickref.xtal.tls`, origin fixed at the group's
centre of mass at the start) and an isotropic residual B_res per atom. Two parameter sets
(the interface of :class:`.parameters.Parameters`, kind 'adp'):
- ``TLSParameters(tls, 'tls', …)``: the 20 TLS numbers of every group, residuals held;
- ``TLSParameters(tls, 'residual', …)``: the residual B of every TLS atom, TLS held.
Gradients by the chain rule from dE/dU_atom (U is linear in T, L, S: dE/dp = Σ_atoms Jᵀ dE/dU;
dE/dB_res = tr(dE/dU)/8π²). U_TLS depends on the coordinates: the Jacobians are recomputed
from the current coordinates by :meth:`TLSModel.refresh` before each ADP stage and at the end
of each macro-cycle (coordinates move with U held in between, as REFMAC does between its TLS
and individual-atom steps), so the written U is U_TLS at the written coordinates + residual.

Start: per group, B_res = the group's 10th-percentile B_eq (not above any atom's), and TLS
fitted by least squares to the remaining isotropic U of the atoms, B_eq − B_res, scaled down
until every atom's U is positive definite; then the residuals take up each atom's difference
(B_eq kept, except where that residual would be negative: 0 there).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.adp import EIGHT_PI2, min_eigenvalue
from ..core.errors import InputError
from ..core.selection import select_atoms
from ..xtal.tls import DEG, N_TLS, centre_of_mass, tls_jacobian, tls_tensors

MIN_GROUP_ATOMS = 30          # fewer atoms than this: no TLS group (20 parameters)
AUTO_MIN_RESIDUES = 10        # --tls auto: chains with at least this many polymer residues
B_RES_MAX = 500.0
_ISO = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def tls_group_atoms(model, spec, log=None) -> list[tuple[str, np.ndarray]]:
    """[(id, atom indices)] of the TLS groups: ``spec`` 'chain' (one group per chain: its
    non-water atoms), 'auto' (the same for chains with ≥ AUTO_MIN_RESIDUES polymer residues)
    or a list of selections / (id, selection) pairs. Hydrogens and waters are never in a group;
    groups under MIN_GROUP_ATOMS atoms are dropped (logged)."""
    log = log or (lambda s: None)
    usable = ~model.is_hydrogen & ~model.is_water
    chains = list(dict.fromkeys(model.chain))
    if spec in ("chain", "auto"):
        pairs = []
        for c in chains:
            m = usable & (model.chain == c)
            if spec == "auto":
                polymer = np.isin(model.atom_name, ["CA", "P"]) & m
                if len(np.unique(model.residue_index[polymer])) < AUTO_MIN_RESIDUES:
                    continue
            pairs.append((c, m))
    elif isinstance(spec, str):
        raise ValueError(f"tls must be 'chain', 'auto' or a list of selections, not {spec!r}")
    else:
        pairs = []
        for k, item in enumerate(spec, 1):
            gid, sel = (str(k), item) if isinstance(item, str) else (str(item[0]), item[1])
            pairs.append((gid, select_atoms(model, sel) & usable))
    out, seen = [], np.zeros(model.n_atoms, bool)
    for gid, m in pairs:
        if (m & seen).any():
            raise InputError(None, f"TLS group {gid} overlaps an earlier group")
        seen |= m
        if m.sum() < MIN_GROUP_ATOMS:
            log(f"TLS group {gid}: {int(m.sum())} atoms (< {MIN_GROUP_ATOMS}): no TLS")
            continue
        out.append((gid, np.flatnonzero(m)))
    return out


def start_tls(model, state, options, movable, log=None):
    """The :class:`TLSModel` of ``options.tls`` (RefineOptions) over the ``movable`` atoms, its
    atoms made anisotropic in ``state``; None without TLS (or with ``fix_b``)."""
    log = log or (lambda s: None)
    if not options.tls:
        return None
    if options.cool:
        raise ValueError("TLS refinement with kick cooling (cool > 0) is not supported")
    if options.fix_b:
        log("TLS: ADPs fixed (fix_b): no TLS refinement")
        return None
    groups = [(g, a[movable[a]]) for g, a in tls_group_atoms(model, options.tls, log)]
    groups = [(g, a) for g, a in groups if len(a)]
    if not groups:
        log("TLS: no groups")
        return None
    tls = TLSModel.start(state, model.element, groups)
    for gid, a in groups:
        log(f"TLS group {gid}: {len(a)} atoms")
    return tls


@dataclass
class TLSModel:
    """TLS groups: ``ids``, ``atoms`` (index arrays), ``origins`` (g, 3) Å, ``params`` (g, 20)
    internal units, ``b_res`` per atom of ``all_atoms`` (the groups' atoms in order) Å²."""
    ids: list
    atoms: list
    origins: np.ndarray
    params: np.ndarray
    b_res: np.ndarray

    def __post_init__(self):
        self.all_atoms = np.concatenate(self.atoms)
        self.bounds_ = np.cumsum([0] + [len(a) for a in self.atoms])
        self.jac = None

    def refresh(self, state) -> None:
        """Jacobians at the current coordinates; residuals re-read from the state's U traces
        (picks up B moved into the atoms by the overall-B transfer); state U made consistent."""
        if self.jac is not None:
            self.b_res = EIGHT_PI2 / 3.0 * (state.u_aniso[self.all_atoms, :3].sum(axis=1)
                                             - self.u_tls()[:, :3].sum(axis=1))
        self.jac = [tls_jacobian(state.xyz[a], o) for a, o in zip(self.atoms, self.origins)]
        self.write(state)

    def u_tls(self, params=None) -> np.ndarray:
        """(n_tls_atoms, 6) U_TLS at the atoms (the Jacobians of the last refresh)."""
        p = self.params if params is None else params
        return np.concatenate([J @ pk for J, pk in zip(self.jac, p)])

    def write(self, state, params=None, b_res=None) -> None:
        """Total U (TLS + residual) of the groups' atoms into ``state``."""
        b = self.b_res if b_res is None else b_res
        a = self.all_atoms
        state.u_aniso[a] = self.u_tls(params) + (b / EIGHT_PI2)[:, None] * _ISO
        state.is_aniso[a] = True
        state.b_iso[a] = EIGHT_PI2 / 3.0 * state.u_aniso[a, :3].sum(axis=1)

    def group_slices(self):
        return [slice(self.bounds_[k], self.bounds_[k + 1]) for k in range(len(self.atoms))]

    # ---------------------------------------------------------------- start
    @classmethod
    def start(cls, state, element, groups) -> "TLSModel":
        """Origins at the centres of mass; the TLS fitted to each group's B values (see module)."""
        origins, params, b_res = [], [], []
        beq = state.b_eq()
        for _, a in groups:
            o = centre_of_mass(state.xyz[a], element[a])
            J = tls_jacobian(state.xyz[a], o)
            b0 = min(float(np.percentile(beq[a], 10)), float(beq[a].min()) + 10.0)
            b0 = max(b0, 0.0)
            target = ((beq[a] - b0) / EIGHT_PI2)[:, None] * _ISO
            p, *_ = np.linalg.lstsq(J.reshape(-1, N_TLS), target.ravel(), rcond=None)
            for _ in range(30):                        # positive definite everywhere
                u = J @ p + (b0 / EIGHT_PI2) * _ISO
                if min_eigenvalue(u).min() > 1e-4:
                    break
                p = 0.5 * p
            else:
                p = np.zeros(N_TLS)
            u_tls = J @ p
            res = beq[a] - EIGHT_PI2 / 3.0 * u_tls[:, :3].sum(axis=1)
            res = np.maximum(res, 0.0)
            origins.append(o)
            params.append(p)
            b_res.append(res)
        m = cls([g for g, _ in groups], [a for _, a in groups], np.array(origins), np.array(params),
                np.concatenate(b_res))
        m.refresh(state)
        return m

    # ---------------------------------------------------------------- output
    def summary(self) -> list[str]:
        """One log line per group: atoms, mean B of the TLS part and of the residual (Å²),
        eigenvalues of T (Å²) and L (deg²)."""
        u = self.u_tls()
        out = []
        for gid, s, p in zip(self.ids, self.group_slices(), self.params):
            T, L, _ = tls_tensors(p)
            b_tls = EIGHT_PI2 / 3.0 * u[s, :3].sum(axis=1)
            out.append(f"TLS group {gid}: {s.stop - s.start} atoms, <B_TLS> {b_tls.mean():.1f} Å², "
                       f"<B_res> {self.b_res[s].mean():.1f} Å², T eig "
                       + " ".join(f"{v:.3f}" for v in np.linalg.eigvalsh(T)) + " Å², L eig "
                       + " ".join(f"{v:.2f}" for v in np.linalg.eigvalsh(L) / DEG ** 2) + " deg²")
        return out

    def records(self, model) -> list[dict]:
        """Per group: id, origin (Å), T (Å²), L (deg²), S (Å·deg) as 3×3 lists, and the residue
        ranges per chain [(chain, first seqid, last seqid)] (for PDB/mmCIF records)."""
        out = []
        for gid, a, o, p in zip(self.ids, self.atoms, self.origins, self.params):
            T, L, S = tls_tensors(p)
            ranges = []
            for c in dict.fromkeys(model.chain[a]):
                rows = a[model.chain[a] == c]
                ranges.append((str(c), str(model.seqid[rows[0]]), str(model.seqid[rows[-1]])))
            out.append({"id": str(gid), "origin": [float(v) for v in o], "T": T.tolist(),
                        "L": (L / DEG ** 2).tolist(), "S": (S / DEG).tolist(), "ranges": ranges})
        return out


class TLSParameters:
    """The TLS tensors ('tls') or the residual B ('residual') of a :class:`TLSModel` as the
    minimizer's vector. ``adp``: the individual-ADP :class:`.parameters.Parameters` (riding-H B
    and the per-atom dE/dU, :meth:`~.parameters.Parameters.atom_u_gradient`)."""

    kind = "adp"

    def __init__(self, tls: TLSModel, part: str, adp):
        if part not in ("tls", "residual"):
            raise ValueError(part)
        self.tls, self.part, self.adp = tls, part, adp
        self.n = N_TLS * len(tls.atoms) if part == "tls" else len(tls.all_atoms)
        self.precond = None

    def get(self, state) -> np.ndarray:
        return self.tls.params.ravel().copy() if self.part == "tls" else self.tls.b_res.copy()

    def set(self, x, state):
        """Write U (and riding-H B) for ``x``; the last call's ``x`` becomes the model's value
        (the minimizer's final call sets the accepted point)."""
        if self.part == "tls":
            self.tls.params = np.asarray(x, dtype=np.float64).reshape(-1, N_TLS).copy()
        else:
            self.tls.b_res = np.asarray(x, dtype=np.float64).copy()
        self.tls.write(state)
        self.adp.update_hydrogen_b(state)
        return state

    def gradient(self, g, state) -> np.ndarray:
        gu = self.adp.atom_u_gradient(g)[self.tls.all_atoms]
        if self.part == "residual":
            return gu[:, :3].sum(axis=1) / EIGHT_PI2
        return np.concatenate([np.einsum("nkp,nk->p", J, gu[s])
                               for J, s in zip(self.tls.jac, self.tls.group_slices())])

    def set_curvature(self, c_atom: dict) -> None:
        """From per-atom B curvatures: U components of an atom ≈ (8π²)²·c_B·(1/5 diagonal,
        4/15 off-diagonal), summed over the atoms through J² (TLS)."""
        cb = c_atom["b"][self.tls.all_atoms]
        if self.part == "residual":
            c = cb                         # U = B_res/8π²·I: as an isotropic atom's B
        else:
            w = EIGHT_PI2 ** 2 * np.array([1 / 5, 1 / 5, 1 / 5, 4 / 15, 4 / 15, 4 / 15])
            c = np.concatenate([np.einsum("nkp,nk->p", J ** 2, cb[s][:, None] * w)
                                for J, s in zip(self.tls.jac, self.tls.group_slices())])
        pos = c[c > 0]
        self.precond = np.maximum(c, 1e-3 * float(np.median(pos)) if len(pos) else 1.0)

    def max_shift(self) -> np.ndarray:
        if self.part == "residual":
            return np.full(self.n, 10.0)
        # T 0.05 Å², L 2 deg², S 0.1 Å·deg per step
        one = np.r_[np.full(6, 0.05), np.full(6, 2 * DEG ** 2), np.full(8, 0.1 * DEG)]
        return np.tile(one, len(self.tls.atoms))

    def bounds(self, state):
        if self.part == "residual":
            return [(0.0, B_RES_MAX)] * self.n
        return None

    def valid(self, state) -> bool:
        return bool(np.all(min_eigenvalue(state.u_aniso[self.tls.all_atoms]) > 1e-4))

    def project(self, state) -> None:
        pass
