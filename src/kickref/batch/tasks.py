"""The tasks of a batch, as run by a Dask worker: one (entry, candidate) refinement, and the
R factors of an entry's start model.

Tasks are idempotent: a refinement writes its outputs as one set (temporary files, then renames;
:class:`kickref.io.outputs.OutputSet`) and then a stamp ``task.json`` holding the job's key (input
checksums and options) and its result. A task that finds a stamp with its key and the outputs
returns the stamp's result without refining again, so a task re-run by Dask after its worker
died (or by a resumed batch) costs nothing once it had finished.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..io.entries import read_json_or_none
from ..io.files import json_ready, short_message, write_json_atomic

STAMP = "task.json"
PREFIX = "refined"                              # the outputs of a candidate: DIR/entry/candidate/refined.*


@dataclass(frozen=True)
class Job:
    """One refinement: ``kwargs`` of :func:`kickref.api.refine_to_files` for ``model``/``data``,
    written under ``folder`` (``folder/refined.*``); ``command``: the equivalent command line;
    ``digests``: SHA-256 of the input files (model, data, dictionaries)."""
    entry: str
    candidate: str
    model: str
    data: str
    folder: str
    kwargs: dict = field(hash=False)
    command: str = ""
    digests: tuple = ()

    @property
    def key(self) -> str:
        """What makes two runs the same: inputs' checksums and every option."""
        text = json.dumps([self.model, self.data, list(self.digests), json_ready(self.kwargs)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def prefix(self) -> str:
        return str(Path(self.folder) / PREFIX)


def pin_threads() -> None:
    """One numba thread in this process (a worker runs one task per core)."""
    import numba
    numba.set_num_threads(1)


def finished(job: Job) -> dict | None:
    """The stamped result of ``job`` when its outputs exist and its key matches, else None."""
    stamp = read_json_or_none(Path(job.folder) / STAMP)
    if not stamp or stamp.get("key") != job.key:
        return None
    files = stamp.get("result", {}).get("files", {})
    if not files or not all(Path(p).exists() for p in files.values()):
        return None
    return stamp["result"]


def run_job(job: Job) -> dict:
    """Refine one (entry, candidate) as ``kickref refine`` does; returns the result row (status
    'ok' with R, geometry, time and cpu (s: wall and this process's CPU, all threads), atoms,
    resolution and files, or 'error' with a one-line error)."""
    done = finished(job)
    if done is not None:
        return {**done, "reused": True}
    pin_threads()
    from ..api import refine_to_files
    from ..core.errors import KickrefError
    lines: list = []
    t0, c0 = time.perf_counter(), time.process_time()
    row = {"entry": job.entry, "candidate": job.candidate, "command": job.command}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda m, *a, **k: lines.append(f"warning: {m}")
            res, written = refine_to_files(job.model, job.data, job.prefix, command=job.command, lines=lines,
                                           **job.kwargs)
    except (KickrefError, OSError, ValueError, RuntimeError, MemoryError) as e:
        return {**row, "status": "error", "error": short_message(e), "time": time.perf_counter() - t0}
    s = res.statistics
    row.update(status="ok", r_work=s.get("r_work"), r_free=s.get("r_free"), rmsd_bond=s.get("rmsd_bond"),
               rmsd_angle=s.get("rmsd_angle"), d_min=s.get("d_min"), n_atoms=res.model.n_atoms,
               interrupted=res.interrupted, time=time.perf_counter() - t0, cpu=time.process_time() - c0,
               files=written,
               work_target=res.cycles[-1].target if res.cycles else None,
               target_kind=res.cycles[-1].target_kind if res.cycles else None)
    row = json_ready(row)
    write_json_atomic(Path(job.folder) / STAMP, {"key": job.key, "result": row})
    return row


def start_statistics(model: str, data: str, options: dict) -> dict:
    """R-work/R-free of the start model by :func:`kickref.rfactor` with the entry's data and
    scaling options (those of ``options``, the refinement's keyword arguments), and its non-H
    bond and angle RMSDs by the restraints the refinement would use."""
    pin_threads()
    from ..api import rfactor
    from ..core.errors import KickrefError
    from ..io.models import read_model
    from ..restraints import build_restraints
    keys = ("labin", "free_value", "d_min", "d_max", "bulk_solvent", "scale_shells")
    kw = {k: options[k] for k in keys if k in options}
    hydrogens = "remove" if options.get("hydrogens") == "remove" else "keep"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = read_model(model, hydrogens=hydrogens)
            r = rfactor(m, data, **kw)
            geo = build_restraints(m, monlib_dir=options.get("monlib"), ligands=options.get("ligands", ()),
                                   allow_unknown=options.get("allow_unknown", False),
                                   hydrogens="keep").statistics()
    except (KickrefError, OSError, ValueError, RuntimeError, MemoryError) as e:
        return {"status": "error", "error": short_message(e)}
    rmsd = {k: geo[k].get("rmsd_non_h", geo[k]["rmsd"]) for k in ("bond", "angle")}
    return json_ready({"status": "ok", "r_work": r.r_work, "r_free": r.r_free, "d_min": r.d_min,
                       "n_free": r.n_free, "rmsd_bond": rmsd["bond"], "rmsd_angle": rmsd["angle"]})
