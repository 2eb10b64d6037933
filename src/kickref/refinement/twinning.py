"""Setting up twin refinement: laws (from the lattice or forced), twin tests, first fractions.

:func:`twin_target` reports the L-test and, per law, the H-test estimate of α before
refinement, fits the fractions to the starting model, and in 'auto' mode drops laws whose
fraction stays below :data:`kickref.xtal.twin.TWIN_FRACTION_MIN`; it returns the
:class:`~kickref.targets.twin.TwinTarget` or None when no law is left (untwinned refinement).
"""
from __future__ import annotations

import numpy as np

from ..targets.twin import TwinTarget
from ..xtal import twin as tw


def twin_tests(data, laws) -> dict:
    """L-test on the data and H-test α per law (intensities, or Fo² for amplitude data)."""
    if data.has_intensities:
        io, sig = data.i_obs, data.sigma_i
    else:
        io, sig = data.f_obs ** 2, 2.0 * data.f_obs * data.sigma
    out = {"l_test": tw.l_test(io, data.hkl, data.centric), "h_test": {}}
    if laws:
        mates = tw.twin_mates(data.hkl, data.spacegroup, laws)
        for j, op in enumerate(laws):
            out["h_test"][tw.law_text(op)] = tw.h_test(io, sig, data.centric, mates[:, j + 1])
    return out


def twin_target(fmodel, state, twin: str | None, laws_text=(), log=print) -> TwinTarget | None:
    """The twinned X-ray term for ``twin`` = 'auto' (laws from the lattice) or forced
    ``laws_text`` ("k,h,-l", ...); None when no law applies."""
    d = fmodel.data
    forced = [tw.parse_twin_law(t) for t in laws_text]
    laws = forced or tw.twin_laws(d.cell, d.spacegroup)
    tests = twin_tests(d, laws)
    lt = tests["l_test"]
    if lt["n_pairs"]:
        log(f"twin L-test: <|L|> {lt['mean_abs_L']:.3f}, <L^2> {lt['mean_L2']:.3f} over {lt['n_pairs']} "
            f"acentric pairs (untwinned 0.500/0.333, perfect twin 0.375/0.200)")
    if not laws:
        log(f"twin: no twin law for the lattice of {d.spacegroup.hm} ({d.cell.parameters}): untwinned refinement")
        return None
    for name, h in tests["h_test"].items():
        a = "-" if h["alpha_h"] is None else f"{h['alpha_h']:.3f}"
        log(f"twin law {name}: H-test alpha {a} ({h['n_pairs']} acentric pairs)")
    reject = fmodel.reject_outliers
    fmodel.reject_outliers = False            # the untwinned outlier model does not hold
    fmodel.outliers[:] = False
    fmodel.update_all(state)
    term = TwinTarget(fmodel, laws)
    term.tests = tests
    term.fit()
    if not forced:
        dropped = term.drop_small()
        for op in dropped:
            log(f"twin law {tw.law_text(op)} dropped: fraction below {tw.TWIN_FRACTION_MIN}")
        if not term.laws:
            log("twin: no twin fraction above the threshold: untwinned refinement")
            fmodel.reject_outliers = reject
            return None
        if dropped:
            term.fit()
    n_inc = int((~term.complete).sum())
    log("twin refinement: " + ", ".join(f"{tw.law_text(op)} fraction {a:.3f}"
                                        for op, a in zip(term.laws, term.fractions))
        + (f"; {n_inc} reflections with unmeasured twin mates left out of the target" if n_inc else ""))
    return term


def twin_note(term) -> str:
    """Short per-cycle note: the current fractions."""
    return "twin " + " ".join(f"{a:.3f}" for a in np.atleast_1d(term.fractions))
