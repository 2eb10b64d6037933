"""Outputs of a run, written as one set: model (PDB + mmCIF), map coefficients (MTZ), log, JSON, plot.

:class:`OutputSet` is opened before any computation (paths checked, lock taken) and
committed at the end. What it guarantees, with POSIX renames (each atomic by itself, a group
of them not):

- every file is first written to ``.kickref-PID-NAME`` in the directory of NAME; a kill while
  writing them leaves the earlier set untouched (its leftovers are deleted by the next run on
  the same outputs, and the ``.kickref-`` names are never taken for outputs);
- then a journal ``.kickref-commit-PREFIX.lock`` (written atomically) lists the renames, in the
  order the files were asked for (the JSON summary last), and the files of the set that this run
  did not write (deleted, so that no file of an earlier run stays beside the new ones); the
  renames and deletions follow, and the journal is removed;
- a kill between the journal and its removal (a few renames: microseconds; Ctrl-C and SIGTERM
  are held back by the command line meanwhile, so only SIGKILL or a crash can do it) leaves
  a mix on disk until the next run on the same outputs, which first completes the renames
  (roll-forward) and so restores the new set. Without a journal the set on disk is complete.

``PREFIX.lock`` (created with O_EXCL, holding the PID) refuses a second run on the same
outputs while one is running; it is removed at the end (a killed run's lock is taken over).
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

from ..core.errors import InputError
from ..core.profile import format_table, phase
from .files import (TEMP_PREFIX, acquire_lock, atomic_path, check_output_paths, json_ready, release_lock,
                    remove_stale_temps, write_json_atomic, write_text_atomic)
from .maps import write_map_coefficients
from .models import pdb_limitation, write_model

EXTENSIONS = (".pdb", ".cif", ".mmcif", ".mtz", ".json", ".log", ".png", ".ent")


class OutputSet:
    """The files ``paths`` ({kind: path}) of one run, written as a unit (see the module notes).

    ``with OutputSet(paths, inputs, lock) as out:`` checks the paths (InputError), takes the
    lock, completes an interrupted commit and removes stale temporary files; write each file to
    ``out.temp(kind)``, then ``out.commit()``. Leaving the block removes uncommitted temporary
    files and the lock.
    """

    def __init__(self, paths: dict, inputs=(), lock=None):
        self.paths = {k: str(v) for k, v in paths.items() if v is not None}
        self.inputs = [str(i) for i in inputs if i is not None]
        self.lock = str(lock)
        self.journal = str(Path(self.lock).with_name(f"{TEMP_PREFIX}commit-{Path(self.lock).name}"))
        self.temps: dict[str, str] = {}
        self._locked = False

    def __enter__(self):
        check_output_paths(list(self.paths.values()) + [self.lock], self.inputs)
        acquire_lock(self.lock)
        self._locked = True
        try:
            self._roll_forward()
            for d in {Path(p).parent for p in self.paths.values()}:
                remove_stale_temps(d)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if not os.path.exists(self.journal):      # an unfinished commit is completed by the next run
            for t in self.temps.values():
                with contextlib.suppress(OSError):
                    os.unlink(t)
        self.temps.clear()
        if self._locked:
            release_lock(self.lock)
            self._locked = False
        return False

    def add(self, kind: str, path) -> str:
        """Add an output found during the run (checked as those given at the start)."""
        check_output_paths([str(path)], self.inputs)
        self.paths[kind] = str(path)
        return str(path)

    def temp(self, kind: str) -> str:
        """The temporary path to write the ``kind`` file to."""
        p = Path(self.paths[kind])
        self.temps[kind] = t = str(p.with_name(f"{TEMP_PREFIX}{os.getpid()}-{p.name}"))
        return t

    def commit(self) -> dict:
        """Rename the temporary files onto their names; returns {kind: path} of those written."""
        written = {k: self.paths[k] for k, t in self.temps.items() if os.path.exists(t)}
        for k in written:
            _fsync(self.temps[k])
        plan = {"rename": [[self.temps[k], p] for k, p in written.items()],
                "remove": [p for k, p in self.paths.items() if k not in written]}
        write_text_atomic(self.journal, json.dumps(plan, indent=1) + "\n")
        _fsync(self.journal)
        _apply(plan)
        os.unlink(self.journal)
        self.temps.clear()
        return written

    def _roll_forward(self):
        """Complete the commit of a run killed between its journal and the journal's removal."""
        if not os.path.exists(self.journal):
            return
        try:
            plan = json.loads(Path(self.journal).read_text())
        except (OSError, ValueError) as e:
            raise InputError(self.journal, f"unreadable commit journal of an earlier run ({e}); "
                                           "check the outputs and delete it") from None
        _apply(plan)
        os.unlink(self.journal)
        warnings.warn(f"{self.journal}: completed the outputs of an earlier run killed while renaming them",
                      stacklevel=2)


def _apply(plan: dict) -> None:
    """Deletions, then renames (idempotent: a step already done is skipped), then the
    directories synced."""
    for p in plan["remove"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    for tmp, final in plan["rename"]:
        if os.path.exists(tmp):
            os.replace(tmp, final)
    for d in {str(Path(f).parent) for _, f in plan["rename"]}:
        _fsync(d)


def _fsync(path) -> None:
    """Flush a file or directory to disk (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def summary_dict(result, inputs: dict | None = None, profile: dict | None = None) -> dict:
    """The JSON summary. Bond/angle RMSDs: ``_non_h`` over restraints between non-hydrogen
    atoms (what REFMAC reports and the weight targets), ``_all`` over all restraints.
    ``profile``: time and memory per phase (:meth:`kickref.core.profile.Profile.as_dict`)."""
    s, geo = result.statistics, result.geometry
    final = {k: s.get(k) for k in ("r_work", "r_free", "r_all", "r_work_cctbx", "r_free_cctbx", "n_refl",
                                    "n_work", "n_free", "n_outliers", "d_min", "d_max")}
    final.update(rmsd_bond_non_h=s.get("rmsd_bond"), rmsd_angle_non_h=s.get("rmsd_angle"),
                 rmsd_bond_all=geo.get("bond", {}).get("rmsd"), rmsd_angle_all=geo.get("angle", {}).get("rmsd"))
    cycles = []
    for c in result.cycles:
        d = asdict(c)
        d["rmsd_bond_non_h"], d["rmsd_angle_non_h"] = d.pop("rmsd_bond"), d.pop("rmsd_angle")
        cycles.append(d)
    return json_ready({
        "program": "kickref",
        "inputs": inputs or {},
        "interrupted": result.interrupted,
        "final": final,
        "scale": s.get("scale"),
        "geometry": geo,
        "cycles": cycles,
        "options": result.options.as_dict(),
        "timings": result.timings,
        "profile": profile,
        "shells": s.get("shells"),
        "maps": getattr(result.map_coefficients, "info", None),
        "tls": getattr(result.model, "meta", {}).get("tls"),   # TLS groups (T Å², L deg², S Å·deg)
        "twin": s.get("twin"),
        "ncs": getattr(result, "ncs", None),
    })


def remarks(result) -> dict:
    s = result.statistics
    return {"r_work": s.get("r_work"), "r_free": s.get("r_free"), "rmsd_bond": s.get("rmsd_bond"),
            "rmsd_angle": s.get("rmsd_angle"), "d_min": s.get("d_min"), "d_max": s.get("d_max"),
            "n_refl": s.get("n_refl"), "n_free": s.get("n_free")}


def plot_cycles(cycles, path, title: str = "") -> bool:
    """R-work/R-free and non-H bond/angle RMSDs per macro-cycle as a PNG; False when matplotlib
    is missing."""
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
    ax[1].set_ylabel("bond RMSD, non-H (Å)")
    ax2 = ax[1].twinx()
    ax2.plot(x, [c.rmsd_angle for c in cycles], "^--", color="C3", label="angle RMSD (°)")
    ax2.set_ylabel("angle RMSD, non-H (°)")
    ax[1].grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def output_paths(prefix) -> dict:
    """PREFIX.pdb .cif .mtz .json .log .png; a prefix given with one of these extensions
    (``-o refined.pdb``) is taken without it. InputError for an empty prefix or a directory
    (``-o ''``, ``-o out/``)."""
    p = str(prefix)
    if not p:
        raise InputError("''", "empty output prefix; give a name such as 'refined'")
    if p.endswith(os.sep) or Path(p).is_dir():
        raise InputError(p, "output prefix is a directory; give a file name prefix (e.g. DIR/refined)")
    for ext in EXTENSIONS:
        if p.lower().endswith(ext):
            p = p[: -len(ext)]
            break
    if not Path(p).name or p.endswith(os.sep):
        raise InputError(str(prefix) or "''", "empty output prefix; give a name such as 'refined'")
    return {k: f"{p}.{k}" for k in ("pdb", "cif", "mtz", "json", "log", "png")}


def lock_path(path) -> str:
    """PATH without its output extension, plus '.lock' (the lock of the outputs PATH belongs to)."""
    p = str(path)
    for ext in EXTENSIONS:
        if p.lower().endswith(ext):
            return p[: -len(ext)] + ".lock"
    return p + ".lock"


def refinement_output_set(prefix, inputs=()) -> OutputSet:
    """The OutputSet of ``kickref refine -o PREFIX``; locked by PREFIX.lock."""
    paths = output_paths(prefix)
    return OutputSet(paths, inputs, lock_path(paths["pdb"]))


def copy_output_set(files: dict, out: OutputSet) -> dict:
    """Copy finished outputs ``files`` ({kind: path}, e.g. one trajectory's of several) into
    ``out`` and commit it (as one set); returns {kind: path} written."""
    import shutil
    for kind, path in files.items():
        if kind in out.paths:
            shutil.copyfile(path, out.temp(kind))
    return out.commit()


def write_model_files(model, out: OutputSet, remarks: dict | None = None) -> None:
    """The model as mmCIF (``out``'s 'cif') and PDB ('pdb'); where the PDB format cannot hold it
    (:func:`~kickref.io.models.pdb_limitation`) the PDB file is left out with a warning."""
    write_model(model, out.temp("cif"), remarks=remarks)
    why = pdb_limitation(model)
    if why:
        warnings.warn(f"{out.paths['pdb']} not written: {why}; the mmCIF file has the model", stacklevel=2)
    else:
        write_model(model, out.temp("pdb"), remarks=remarks)


def write_refinement_outputs(result, out: OutputSet, log_lines=(), inputs: dict | None = None,
                             title: str = "") -> dict:
    """Write every output of a refinement into ``out`` (a :class:`OutputSet` opened by
    :func:`refinement_output_set`) and commit it; returns {kind: path} of what was written.
    The plot's warning (no matplotlib) is issued before the log is written, so the log has it.
    With ``result.profile``, the profile up to the log and JSON (those two, written last, are
    not timed) ends the log as a table and is the JSON's 'profile'."""
    with phase("outputs"):
        rem = remarks(result)
        write_model_files(result.model, out, rem)
        if result.map_coefficients is not None:
            write_map_coefficients(result.map_coefficients, out.temp("mtz"))
        if not plot_cycles(result.cycles, out.temp("png"), title=title):
            warnings.warn("matplotlib not installed; no plot written", stacklevel=2)
    prof = result.profile.as_dict() if getattr(result, "profile", None) is not None else None
    table = format_table(prof) if prof else []
    write_text_atomic(out.temp("log"), "\n".join([*log_lines, *table]) + "\n")
    write_json_atomic(out.temp("json"), summary_dict(result, inputs, prof))
    return out.commit()
