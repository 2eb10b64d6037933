"""Outputs of a refinement: model (PDB + mmCIF), map coefficients (MTZ), log, JSON, plot.

``write_refinement_outputs(result, prefix)`` writes PREFIX.pdb, PREFIX.cif, PREFIX.mtz,
PREFIX.json, PREFIX.log and PREFIX.png (the plot needs matplotlib; skipped with a note
otherwise). Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from .files import atomic_path, json_ready, write_json_atomic, write_text_atomic
from .maps import write_map_coefficients
from .models import write_model


def summary_dict(result, inputs: dict | None = None) -> dict:
    s = result.statistics
    return json_ready({
        "program": "kickref",
        "inputs": inputs or {},
        "interrupted": result.interrupted,
        "final": {k: s.get(k) for k in ("r_work", "r_free", "r_all", "r_work_cctbx", "r_free_cctbx",
                                         "rmsd_bond", "rmsd_angle", "n_refl", "n_work", "n_free",
                                         "n_outliers", "d_min", "d_max")},
        "scale": s.get("scale"),
        "geometry": result.geometry,
        "cycles": [asdict(c) for c in result.cycles],
        "options": result.options.as_dict(),
        "timings": result.timings,
        "shells": s.get("shells"),
        "maps": getattr(result.map_coefficients, "info", None),
    })


def remarks(result) -> dict:
    s = result.statistics
    return {"r_work": s.get("r_work"), "r_free": s.get("r_free"), "rmsd_bond": s.get("rmsd_bond"),
            "rmsd_angle": s.get("rmsd_angle"), "d_min": s.get("d_min"), "d_max": s.get("d_max"),
            "n_refl": s.get("n_refl"), "n_free": s.get("n_free")}


def plot_cycles(cycles, path, title: str = "") -> bool:
    """R-work/R-free and bond RMSD per macro-cycle as a PNG; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    x = [c.cycle for c in cycles]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(x, [c.r_work for c in cycles], "o-", label="R-work")
    if any(c.r_free is not None for c in cycles):
        ax[0].plot(x, [c.r_free for c in cycles], "s-", label="R-free")
    ax[0].set_xlabel("macro-cycle")
    ax[0].set_ylabel("R")
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    ax[1].plot(x, [c.rmsd_bond for c in cycles], "o-", color="C2", label="bond RMSD (Å)")
    ax[1].set_xlabel("macro-cycle")
    ax[1].set_ylabel("bond RMSD (Å)")
    ax2 = ax[1].twinx()
    ax2.plot(x, [c.rmsd_angle for c in cycles], "^--", color="C3", label="angle RMSD (°)")
    ax2.set_ylabel("angle RMSD (°)")
    ax[1].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def output_paths(prefix) -> dict:
    """PREFIX.pdb .cif .mtz .json .log .png; a prefix given with one of these extensions
    (``-o refined.pdb``) is taken without it."""
    p = str(prefix)
    for ext in (".pdb", ".cif", ".mmcif", ".mtz", ".json", ".log", ".png", ".ent"):
        if p.lower().endswith(ext):
            p = p[: -len(ext)]
            break
    return {k: f"{p}.{k}" for k in ("pdb", "cif", "mtz", "json", "log", "png")}


def write_refinement_outputs(result, prefix, log_lines=(), inputs: dict | None = None) -> dict:
    """Write every output; returns {kind: path} of what was written."""
    paths = output_paths(prefix)
    Path(paths["pdb"]).parent.mkdir(parents=True, exist_ok=True)
    rem = remarks(result)
    write_model(result.model, paths["pdb"], remarks=rem)
    write_model(result.model, paths["cif"], remarks=rem)
    if result.map_coefficients is not None:
        write_map_coefficients(result.map_coefficients, paths["mtz"])
    else:
        paths.pop("mtz")
    write_json_atomic(paths["json"], summary_dict(result, inputs))
    write_text_atomic(paths["log"], "\n".join(log_lines) + "\n")
    if not plot_cycles(result.cycles, paths["png"], title=Path(paths["pdb"]).stem):
        print("note: matplotlib not installed; no plot written", file=sys.stderr)
        paths.pop("png")
    return paths
