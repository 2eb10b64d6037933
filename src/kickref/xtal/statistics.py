"""R factors: R = Σ| |Fo| − |Fmodel| | / Σ|Fo| over the work set, the test set and all."""
from __future__ import annotations

import numpy as np

from ..core.reflections import equal_count_bins


def r_value(fo, fm, own_scale: bool = False) -> float | None:
    """Σ|Fo − Fm|/ΣFo; with ``own_scale`` Fm is first rescaled by k = ΣFo·Fm/ΣFm²."""
    s = np.sum(fo)
    if not len(fo) or s <= 0:
        return None
    if own_scale:
        den = np.sum(fm * fm)
        fm = fm * (np.sum(fo * fm) / den if den > 0 else 1.0)
    return float(np.sum(np.abs(fo - fm)) / s)


def r_factors(fo, fm, free=None, per_set_scale: bool = False) -> dict:
    """R_work, R_free (None without a test set) and R_all; ``fm`` are scaled |Fmodel|.

    ``per_set_scale``: rescale each set by its own LS factor first (cctbx's convention).
    """
    o = per_set_scale
    if free is None:
        r = r_value(fo, fm, o)
        return {"r_work": r, "r_free": None, "r_all": r}
    return {"r_work": r_value(fo[~free], fm[~free], o), "r_free": r_value(fo[free], fm[free], o),
            "r_all": r_value(fo, fm, o)}


def r_factor_table(fo, fm, free, s2, n_shells: int = 10) -> list[dict]:
    """Per-shell R factors, shells of about equal count (lowest resolution first)."""
    n_shells = int(max(1, min(n_shells, len(fo) // 50 or 1)))
    bins, _ = equal_count_bins(s2, n_shells)
    rows = []
    for b in range(n_shells):
        sel = bins == b
        d = 1.0 / np.sqrt(s2[sel])
        row = {"d_max": float(d.max()), "d_min": float(d.min()), "n": int(sel.sum())}
        if free is None:
            row["r_work"] = r_value(fo[sel], fm[sel])
            row["n_free"] = 0
            row["r_free"] = None
        else:
            w, f = sel & ~free, sel & free
            row["n_free"] = int(f.sum())
            row["r_work"] = r_value(fo[w], fm[w])
            row["r_free"] = r_value(fo[f], fm[f])
        rows.append(row)
    return rows
