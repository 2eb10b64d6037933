"""Data weight against the restraints, and chunked minimization: shared by every driver.

Every driver (reciprocal-space refinement in :mod:`.protocol`, kicking through its stages,
real-space refinement in :mod:`.real_space`, density combination in :mod:`.density_combination`)
minimizes w·T_data + restraints, with w set and adjusted here:

- :func:`initial_weight`: for the ML X-ray target, w = exp(0.91·d_min + 0.22) (d_min in Å; an
  empirical resolution dependence, the one servalcat uses for its ML target, on the same
  nats-vs-χ² footing as ours; it matched the weights the bond-RMSD adjustment settled at on the
  shared cases within a factor of ~1.5). For any other data term (LS, difference map, density):
  from gradient sizes, w·|∇T|_rms ≈ δ/σ² with δ the bond-RMSD target and σ = 0.02 Å.
- :func:`adjust_weight`: w ← w·clip(δ / rmsd_bond, 0.33, 3) (MAIN ``min adjust bond``), with
  rmsd_bond the RMSD over bonds between non-hydrogen atoms (:func:`heavy_rmsd`).
- :func:`minimize_in_chunks`: L-BFGS in chunks; after each a re-phase callback (Fc and scales,
  the blur of a density term, a re-combination) and, every ``weight_every`` steps, the weight
  adjustment.

Default bond-RMSD targets δ (Å), one per mode:

- :data:`BOND_RMSD_REFINE` = 0.008 for refinement against X-ray data (``kickref refine``,
  :class:`~kickref.refinement.protocol.RefineOptions`): chosen by measurement, MAIN's 0.02 gave
  higher R-free on the shared cases (see the README).
  At atomic resolution (d_min ≤ 1.2 Å, Sheldrick's criterion) the data determine bond lengths
  about as well as the library does, and forcing 0.008 Å distorts the model against them (6mw0,
  0.78 Å: R-work 0.138 → 0.228 by cctbx): :func:`bond_rmsd_for_resolution` raises the target
  linearly to :data:`BOND_RMSD_ATOMIC` = 0.02 Å at d_min ≤ 0.9 Å; at d_min ≥ 1.2 Å (every other
  shared case) it is 0.008. ``RefineOptions.bond_rmsd = None`` (the default) means this rule.
- ADP restraints at atomic resolution (:func:`adp_restraints_for_resolution`): the default
  KL-divergence restraint measures *relative* U differences, so it is tightest for the
  well-ordered, low-B atoms that atomic-resolution data determine best; on 6mw0 (0.78 Å, B ≈ 7 Å²,
  with a random 10 % test set) ADP refinement under it raised R-work and R-free cycle after cycle
  (coordinates fixed: R-work 0.133 → 0.142, R-free 0.138 → 0.155 over 16 cycles) and a lower
  KL weight only slowed that drift (×0.27: R-free 0.145 after 16 cycles), while the absolute
  restraints ('simple': U similarity and rigid bond, as SHELXL's SIMU/RIGU at atomic resolution)
  were stable (R-work 0.123, R-free 0.139). So below d_min 1.2 Å (Sheldrick's criterion) the
  default is 'simple'; at d_min ≥ 1.2 Å it stays 'kl' (every other shared case: unchanged).
- :data:`BOND_RMSD_MAP` = 0.02 for real-space refinement and density combination: MAIN's
  ``min adjust bond 0.02`` from the seed's ``dens_comb`` macro; not re-measured for these modes.
"""
from __future__ import annotations

import numpy as np

from .minimize import minimize_energy
from .parameters import Parameters

BOND_RMSD_REFINE = 0.008     # Å, refinement against X-ray data (measured; see the module docstring)
BOND_RMSD_ATOMIC = 0.02      # Å, refinement against X-ray data with d_min ≤ 0.9 Å
ATOMIC_RESOLUTION = (0.9, 1.2)   # Å: d_min range over which the target goes from 0.02 to 0.008
BOND_RMSD_MAP = 0.02         # Å, real space and density combination (MAIN's dens_comb value)
SIGMA_BOND = 0.02            # Å, bond σ of the gradient-ratio rule


def bond_rmsd_for_resolution(d_min: float) -> float:
    """Default bond-RMSD target (Å) of refinement against X-ray data of resolution ``d_min`` (Å):
    :data:`BOND_RMSD_REFINE` at d_min ≥ 1.2 Å, :data:`BOND_RMSD_ATOMIC` at ≤ 0.9 Å, linear
    between (see the module docstring)."""
    lo, hi = ATOMIC_RESOLUTION
    t = float(np.clip((hi - float(d_min)) / (hi - lo), 0.0, 1.0))
    return BOND_RMSD_REFINE + t * (BOND_RMSD_ATOMIC - BOND_RMSD_REFINE)


def adp_restraints_for_resolution(d_min: float) -> str:
    """Default ADP restraint kind of refinement against X-ray data of resolution ``d_min`` (Å):
    'kl' at d_min ≥ 1.2 Å, 'simple' (absolute U differences) at atomic resolution below it (see
    the module docstring)."""
    return "kl" if float(d_min) >= ATOMIC_RESOLUTION[1] else "simple"


def initial_weight(term, state, atoms, bond_rmsd: float, d_min: float | None = None) -> float:
    """Starting data weight for ``term`` (see the module docstring).

    ``d_min`` (Å): given for the ML X-ray target, whose weight follows the resolution rule;
    otherwise the gradient-ratio rule over the ``atoms`` (indices; empty: all), using the term's
    unscaled gradient and its ``scale``.
    """
    if d_min is not None:
        return float(np.exp(0.9104 * d_min + 0.2162))
    _, g = term.compute(state)
    gx = g.xyz[atoms] if len(atoms) else g.xyz
    g_rms = float(np.sqrt(np.mean(gx ** 2))) or 1.0
    return 0.5 * 2.0 * bond_rmsd / (SIGMA_BOND ** 2 * g_rms * term.scale)


def adjust_weight(weight: float, rmsd_bond: float, bond_rmsd: float) -> float:
    """The weight moved toward the bond-RMSD target: w·clip(bond_rmsd / rmsd_bond, 0.33, 3)
    (unchanged when rmsd_bond ≤ 0, e.g. no bonds between non-H atoms)."""
    if rmsd_bond <= 0:
        return weight
    return weight * float(np.clip(bond_rmsd / rmsd_bond, 0.33, 3.0))


def heavy_rmsd(restraints, state, kind: str = "bond") -> float:
    """RMS deviation (Å or degrees) over the ``kind`` restraints ('bond', 'angle') between
    non-hydrogen atoms only (:meth:`~kickref.restraints.Restraints.rmsd_non_h`); 0 when none."""
    return restraints.rmsd_non_h(kind, state)


def xyz_parameters(state, restraints, movable) -> Parameters:
    """Coordinate parameters of the ``movable`` atoms; hydrogens with a parent in the restraints
    (``hydrogen_parents`` ≥ 0) ride on it (placed by ``restraints.place_hydrogens``); atoms on
    special positions (``restraints.site_symmetry``) stay on their symmetry elements."""
    hp = getattr(restraints, "hydrogen_parents", None)
    place = restraints.place_hydrogens if hp is not None and (np.asarray(hp) >= 0).any() else None
    return Parameters("xyz", state, movable, hp, place,
                      site_symmetry=getattr(restraints, "site_symmetry", None))


def restraint_terms(restraints) -> list:
    """The restraint terms for a minimization with riding hydrogens: the bonded restraints of
    riding H (``hydrogen_parents`` ≥ 0) are left out, as they would only fight the constraint
    (through an approximate chain rule); contacts still count."""
    hp = getattr(restraints, "hydrogen_parents", None)
    riding = hp is not None and (np.asarray(hp) >= 0).any()
    return (restraints.without_atoms(np.asarray(hp) >= 0) if riding else restraints).terms()


def equal_chunk(steps: int, limit: int) -> int:
    """Chunk length splitting ``steps`` into equal chunks of at most ``limit`` (≥ 1) steps (a
    short tail chunk would waste the minimizer's curvature memory)."""
    limit = max(1, limit)
    n_chunks = -(-steps // limit)
    return -(-steps // max(n_chunks, 1))


class BondWeight:
    """A data weight ``value`` adjusted toward ``bond_rmsd`` (Å) unless ``fixed``."""

    def __init__(self, value: float, bond_rmsd: float, fixed: bool = False):
        self.value = float(value)
        self.bond_rmsd = float(bond_rmsd)
        self.fixed = fixed

    def adjust(self, rmsd_bond: float) -> None:
        if not self.fixed:
            self.value = adjust_weight(self.value, rmsd_bond, self.bond_rmsd)


def minimize_in_chunks(energy, params, state, steps: int, chunk: int, kind: str, weight, stop,
                       rephase=None, adjust=None, weight_every: int = 100, prepare=None,
                       report=None, on_eval=None, stop_at_convergence: bool = True) -> int:
    """``steps`` L-BFGS steps on ``params`` in chunks of ``chunk`` (the last may be shorter).

    Before each chunk ``energy.weights[kind] = weight()`` and ``prepare(params)`` (e.g.
    preconditioning); after it, unless interrupted: ``rephase()``, then ``adjust()`` once
    ``weight_every`` steps have passed since the last adjustment, then ``report(done, used)``
    (steps done, weight used in the chunk). Ends early on ``stop`` or, with
    ``stop_at_convergence``, when the minimizer converged within a chunk. Returns the number of
    energy evaluations.
    """
    done = n_eval = since = 0
    while done < steps and not stop and params.n:
        n = min(chunk, steps - done)
        used = weight()
        energy.weights[kind] = used
        if prepare is not None:
            prepare(params)
        res = minimize_energy(energy, params, state, n, stop, on_eval=on_eval)
        done += n
        n_eval += res.n_eval
        since += n
        if stop:
            break
        if rephase is not None:
            rephase()
        if adjust is not None and since >= weight_every:
            adjust()
            since = 0
        if report is not None:
            report(done, used)
        if stop_at_convergence and res.n_iter < n and "CONVERG" in res.message.upper():
            break            # converged within the chunk
    return n_eval
