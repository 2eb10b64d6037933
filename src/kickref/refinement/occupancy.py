"""User-defined occupancy groups (REFMAC/servalcat ``occupancy group id … / alts complete …``).

A *group* is a set of atoms (a selection) sharing one occupancy. Groups are tied in *sets*:
- ``complete``: the occupancies of the set's groups sum to exactly 1 (alternative conformers A, B);
- ``incomplete``: they sum to at most 1 (the rest is vacancy);
a group named in no set is a set of its own, incomplete (one occupancy in [0, 1]).

Parametrization (the constraint holds exactly for every parameter vector): each set has logits
z; its occupancies are a softmax, o_k = exp(z_k) / (Σ_j exp(z_j) + exp(0)), where the fixed
exp(0) is the last group (complete: K−1 free logits) or the vacancy (incomplete: K free logits).
Bounded logits (|z| ≤ 20) keep every occupancy in (0, 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.selection import select_atoms

Z_MAX = 20.0          # logit bound: occupancies down to e⁻²⁰ ≈ 2e-9
O_MIN = 1e-3          # starting occupancies are clipped to [O_MIN, 1 − O_MIN]


@dataclass
class OccupancySet:
    """Groups (atom-index arrays) whose occupancies are refined together."""
    groups: list
    complete: bool
    ids: tuple = ()

    @property
    def n_free(self) -> int:
        return len(self.groups) - 1 if self.complete else len(self.groups)


def parse_group(text: str) -> tuple[str, str]:
    """'ID:SELECTION' → (id, selection); the selection may itself contain ':' (altloc)."""
    gid, sep, sel = str(text).partition(":")
    if not sep or not gid.strip() or not sel.strip():
        raise InputError(None, f"occupancy group {text!r}: expected ID:SELECTION")
    return gid.strip(), sel.strip()


def _ids(item) -> tuple:
    return tuple(s.strip() for s in item.split(",") if s.strip()) if isinstance(item, str) \
        else tuple(str(s) for s in item)


def build_occupancy_sets(model, groups, complete=(), incomplete=()) -> list[OccupancySet]:
    """Occupancy sets from user groups. ``groups``: {id: selection} or ['ID:SELECTION', …];
    ``complete``/``incomplete``: lists of group ids ('1,2' or ('1', '2')). Raises InputError on
    overlapping groups, unknown ids, or a group in two sets."""
    pairs = list(groups.items()) if isinstance(groups, dict) else [parse_group(g) for g in groups]
    masks = {}
    for gid, sel in pairs:
        gid = str(gid)
        m = select_atoms(model, sel)
        masks[gid] = masks[gid] | m if gid in masks else m   # a repeated id adds atoms (REFMAC)
    clash = np.sum(list(masks.values()), axis=0) > 1
    if clash.any():
        raise InputError(None, f"occupancy groups overlap ({int(clash.sum())} atom(s) in two groups, "
                               f"e.g. {model.atom_label(int(np.flatnonzero(clash)[0]))})")
    used, sets = set(), []
    for items, full in [(complete, True), (incomplete, False)]:
        for item in items:
            ids = _ids(item)
            for g in ids:
                if g not in masks:
                    raise InputError(None, f"occupancy set {','.join(ids)}: no group {g!r}")
                if g in used:
                    raise InputError(None, f"occupancy group {g!r} is in two sets")
                used.add(g)
            if full and len(ids) < 2:
                raise InputError(None, f"complete occupancy set {','.join(ids)}: needs ≥ 2 groups")
            sets.append(OccupancySet([np.flatnonzero(masks[g]) for g in ids], full, ids))
    sets += [OccupancySet([np.flatnonzero(m)], False, (g,)) for g, m in masks.items() if g not in used]
    return sets


def user_occupancy_parameters(model, state, options, log=None):
    """:class:`GroupOccupancies` of ``options.occupancy_groups`` / ``_complete`` /
    ``_incomplete`` (RefineOptions), None without groups; the groups' atoms in ``state`` get the
    group's occupancy (single-valued) at once."""
    log = log or (lambda s: None)
    o = options
    if not o.occupancy_groups:
        if o.occupancy_complete or o.occupancy_incomplete:
            raise ValueError("occupancy sets given without occupancy groups")
        return None
    sets = build_occupancy_sets(model, o.occupancy_groups, o.occupancy_complete, o.occupancy_incomplete)
    p = GroupOccupancies(sets)
    x = p.get(state)
    p.set(x, state)
    for s, occ in zip(sets, p.occupancies(x)):
        kind = "complete (sum 1)" if s.complete else "incomplete (sum ≤ 1)"
        log(f"occupancy set {','.join(s.ids)} {kind}: " + ", ".join(
            f"group {i} {len(g)} atoms occ {v:.3f}" for i, g, v in zip(s.ids, s.groups, occ)))
    return p


class GroupOccupancies:
    """Parameters (kind 'occ', the interface of :class:`.parameters.Parameters`): the logits of
    every :class:`OccupancySet`; the atoms of a group all get the group's occupancy."""

    kind = "occ"

    def __init__(self, sets: list[OccupancySet]):
        self.sets = sets
        self.n = sum(s.n_free for s in sets)
        self.atoms = np.concatenate([g for s in sets for g in s.groups]) if sets else np.zeros(0, int)
        self.precond = None
        self._x = np.zeros(self.n)          # the logits last set (gradient and curvature there)

    # ------------------------------------------------------------------ math
    @staticmethod
    def _softmax(z, complete):
        """Occupancies of a set from its free logits (the reference logit 0 appended)."""
        u = np.append(z, 0.0)
        e = np.exp(u - u.max())
        o = e / e.sum()
        return o if complete else o[:-1]

    def _split(self, x):
        """The logits of each set."""
        return np.split(np.asarray(x, dtype=np.float64), np.cumsum([s.n_free for s in self.sets])[:-1])

    def occupancies(self, x) -> list[np.ndarray]:
        """Per set, the occupancies of its groups for the parameters ``x``."""
        return [self._softmax(z, s.complete) for s, z in zip(self.sets, self._split(x))]

    def _jacobians(self, x):
        """Per set, d o_k / d z_j (K × n_free): o_k (δ_kj − o_j)."""
        out = []
        for s, z in zip(self.sets, self._split(x)):
            o = self._softmax(z, s.complete)
            J = -np.outer(o, o[:s.n_free])
            J[np.arange(s.n_free), np.arange(s.n_free)] += o[:s.n_free]
            out.append(J)
        return out

    # ------------------------------------------------------------- interface
    def get(self, state) -> np.ndarray:
        """Logits from the state's mean group occupancies (clipped to (0, 1), normalized)."""
        z = []
        for s in self.sets:
            o = np.clip([float(np.mean(state.occ[g])) for g in s.groups], O_MIN, 1 - O_MIN)
            if s.complete:
                o = o / o.sum()
                ref = o[-1]
                o = o[:-1]
            else:
                if o.sum() > 1 - O_MIN:
                    o = o * (1 - O_MIN) / o.sum()
                ref = 1.0 - o.sum()
            z.append(np.clip(np.log(o / ref), -Z_MAX, Z_MAX))
        return np.concatenate(z) if z else np.zeros(0)

    def set(self, x, state):
        self._x = np.array(x, dtype=np.float64)
        for s, o in zip(self.sets, self.occupancies(x)):
            for g, ok in zip(s.groups, o):
                state.occ[g] = ok
        return state

    def gradient(self, g, state) -> np.ndarray:
        """dE/dz at the logits last :meth:`set` (the minimizer sets, then asks the gradient)."""
        out = []
        for s, J in zip(self.sets, self._jacobians(self._x)):
            G = np.array([float(np.sum(g.occ[a])) for a in s.groups])
            out.append(G @ J)
        return np.concatenate(out) if out else np.zeros(0)

    def set_curvature(self, c_atom: dict) -> None:
        """Curvature per logit from per-atom occupancy curvatures: Σ_k C_k (∂o_k/∂z_j)²."""
        co = c_atom["occ"]
        c = []
        for s, J in zip(self.sets, self._jacobians(self._x)):
            C = np.array([float(np.sum(co[a])) for a in s.groups])
            c.append(C @ J ** 2)
        c = np.concatenate(c) if c else np.zeros(0)
        pos = c[c > 0]
        self.precond = np.maximum(c, 0.05 * float(np.median(pos)) if len(pos) else 1.0)

    def max_shift(self) -> np.ndarray:
        return np.full(self.n, 2.0)

    def bounds(self, state):
        return [(-Z_MAX, Z_MAX)] * self.n

    def valid(self, state) -> bool:
        return True

    def project(self, state) -> None:
        pass
