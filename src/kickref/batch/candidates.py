"""Candidate refinements of one entry and the rule choosing among them (PDB-REDO style).

A candidate is a name and the ``kickref refine`` options it adds to the entry's own. The default
set varies the bond-RMSD target of the X-ray weight around kickref's default (0.008 Å at d_min ≥ 1.2 Å) and adds
one short run of MAIN's fast cooling with small kicks (0.3 Å: the kick amplitude that came
closest to plain refinement on the shared cases; README, "Kicking").

The choice (:func:`choose`):

1. a candidate is *acceptable* when it finished (not interrupted), its non-H bond RMSD is at most
   ``max_bond_rmsd`` (0.02 Å) and its R-free − R-work is at most the start's gap (0 when the
   start's is negative) + ``max_gap_increase`` (0.05);
2. among acceptable candidates the lowest R-free wins (ties: the earlier candidate);
3. never worse than the start: unless the winner's R-free is below the start model's R-free
   (kickref's calculator, same bulk solvent and scaling options, :func:`kickref.rfactor`), the
   start model is kept, and the reason says so;
4. without a test set there is no R-free to choose by: the first acceptable candidate (the
   default) is taken, and the start is kept only when its R-work is lower.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..core.errors import KickrefError

START = "start"                                  # the name of "keep the start model"


@dataclass(frozen=True)
class Candidate:
    """A refinement to try: ``name`` and the kickref refine options it adds (command-line text)."""
    name: str
    flags: str = ""

    def argv(self) -> list[str]:
        return shlex.split(self.flags)


DEFAULT_CANDIDATES = (
    Candidate("default", ""),
    Candidate("bond0.005", "--bond-rmsd 0.005"),
    Candidate("bond0.012", "--bond-rmsd 0.012"),
    Candidate("kick0.3", "--cool 5 --kick 0.3:0 --kick-b 2:0"),
)


def parse_candidate(text: str) -> Candidate:
    """'NAME=OPTIONS' (e.g. 'tight=--bond-rmsd 0.005'), or a default candidate's name."""
    name, sep, flags = str(text).partition("=")
    name = name.strip()
    if not sep:
        known = {c.name: c for c in DEFAULT_CANDIDATES}
        if name not in known:
            raise KickrefError(f"--candidates: {text!r} is neither NAME=OPTIONS nor one of "
                               f"{', '.join(known)}")
        return known[name]
    if not name or name == START or not all(ch.isalnum() or ch in "._+-" for ch in name):
        raise KickrefError(f"--candidates: bad candidate name {name!r} (letters, digits, ._+-; not 'start')")
    return Candidate(name, flags.strip())


@dataclass(frozen=True)
class ChoiceRule:
    """Limits of an acceptable candidate (see the module notes)."""
    max_bond_rmsd: float = 0.02                  # Å, non-H bonds
    max_gap_increase: float = 0.05               # R-free − R-work above the start's

    def as_dict(self) -> dict:
        return {"max_bond_rmsd": self.max_bond_rmsd, "max_gap_increase": self.max_gap_increase}


def choose(start: dict, results: dict, rule: ChoiceRule = ChoiceRule()) -> tuple[str, str]:
    """(name of the chosen candidate or :data:`START`, reason) from the start's R (``r_work``,
    ``r_free``) and each candidate's result (``status``, ``r_work``, ``r_free``, ``rmsd_bond``,
    ``interrupted``), in candidate order."""
    gap0 = max(0.0, (start["r_free"] - start["r_work"])) if start.get("r_free") is not None else 0.0
    ok, why_not = [], []
    for name, r in results.items():
        if r.get("status") != "ok" or r.get("interrupted"):
            why_not.append(f"{name}: {r.get('error') or 'interrupted'}")
        elif r["rmsd_bond"] > rule.max_bond_rmsd:
            why_not.append(f"{name}: bond RMSD {r['rmsd_bond']:.4f} > {rule.max_bond_rmsd}")
        elif r.get("r_free") is not None and r["r_free"] - r["r_work"] > gap0 + rule.max_gap_increase:
            why_not.append(f"{name}: R-free - R-work {r['r_free'] - r['r_work']:.4f} > "
                           f"{gap0 + rule.max_gap_increase:.4f}")
        else:
            ok.append(name)
    if not ok:
        return START, "start kept: no acceptable candidate (" + "; ".join(why_not) + ")"
    if start.get("r_free") is None:
        best = ok[0]
        if results[best]["r_work"] < start["r_work"]:
            return best, f"no test set: the first acceptable candidate ({best}), R-work below the start's"
        return START, "start kept: no test set, and the first acceptable candidate's R-work is not below the start's"
    best = min(ok, key=lambda n: (results[n]["r_free"], ok.index(n)))
    if results[best]["r_free"] < start["r_free"]:
        return best, (f"lowest R-free {results[best]['r_free']:.4f} of {len(ok)} acceptable candidate(s), "
                      f"start {start['r_free']:.4f}")
    return START, (f"start kept: no candidate beat the start's R-free {start['r_free']:.4f} "
                   f"(best {best} {results[best]['r_free']:.4f})")
