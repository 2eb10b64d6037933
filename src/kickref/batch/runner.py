"""Running a batch on Dask: every (entry, candidate) refinement and every start-model R as one
task, each entry decided (:func:`~kickref.batch.candidates.choose`) and recorded as soon as its
tasks are in, then the report.

Per entry, under ``DIR/<entry>/``: one folder per candidate (``refined.*``, ``task.json``) and
``entry.json``, the manifest (input checksums and options as one key, the start's R, each
candidate's result, the choice and why). An entry whose manifest has status 'ok' and the same
key, and whose chosen outputs exist, is skipped by a later run; a failed entry is tried again.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..io.entries import Entry, file_digest, read_json_or_none
from ..io.files import write_json_atomic
from .candidates import START, ChoiceRule, choose
from .report import write_report
from .tasks import PREFIX, Job, run_job, start_statistics

MANIFEST = "entry.json"


@dataclass
class Plan:
    """One entry and its jobs (one per candidate, in candidate order)."""
    entry: Entry
    jobs: list

    @property
    def folder(self) -> Path:
        return Path(self.jobs[0].folder).parent

    def key(self, rule: ChoiceRule) -> str:
        """The entry's inputs, options and choice rule, as one checksum (the manifest's key)."""
        text = "|".join([j.candidate + ":" + j.key for j in self.jobs] + [repr(rule.as_dict())])
        return hashlib.sha256(text.encode()).hexdigest()


def plan_batch(entries, candidates, outdir, resolve) -> list[Plan]:
    """Plans for ``entries`` × ``candidates``; ``resolve(entry, candidate, prefix)`` gives the
    job's (keyword arguments of :func:`kickref.api.refine_to_files`, equivalent command line)
    for outputs ``prefix``.*."""
    plans = []
    for e in entries:
        digests = tuple(file_digest(p) for p in (e.model, e.data, *e.ligands))
        jobs = []
        for c in candidates:
            folder = Path(outdir) / e.name / c.name
            kwargs, command = resolve(e, c, folder / PREFIX)
            jobs.append(Job(e.name, c.name, e.model, e.data, str(folder), kwargs, command, digests))
        plans.append(Plan(e, jobs))
    return plans


def already_done(plan: Plan, rule: ChoiceRule) -> dict | None:
    """The manifest of an entry finished by an earlier run with the same inputs and options."""
    m = read_json_or_none(plan.folder / MANIFEST)
    if not m or m.get("status") != "ok" or m.get("key") != plan.key(rule):
        return None
    if m.get("final_model") and not Path(m["final_model"]).exists():
        return None
    return m


def open_client(scheduler: str | None = None, workers: int | None = None):
    """(client, cluster): a Dask client of the scheduler at ``scheduler``, else of a new
    LocalCluster with ``workers`` (default: one per core) single-threaded worker processes."""
    from distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler), None
    # numba pinned to one thread per worker; the nanny pins BLAS too (OMP/MKL/OPENBLAS_NUM_THREADS=1,
    # dask config distributed.nanny.pre-spawn-environ). Neither changes results: the numba kernels
    # and the products over atoms/reflections (kickref.core.linalg, no BLAS) give the same bits on
    # any thread count, so a task gives what the same kickref refine gives alone
    with _sigint_ignored():              # Ctrl-C reaches the whole process group: only this process acts
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=0, env={"NUMBA_NUM_THREADS": "1"})
    return Client(cluster), cluster


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while worker processes are started (they inherit it), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_batch(plans, outdir, *, client=None, scheduler=None, workers=None, rule: ChoiceRule = ChoiceRule(),
              progress=None, log=None) -> list[dict]:
    """Run the plans (skipping entries done before), write each entry's manifest as it finishes
    and the report (``summary.csv``, ``summary.json``, ``index.html``) at the end, also after
    Ctrl-C (KeyboardInterrupt is raised again once the report is written). ``client``: a Dask
    client to use (else one is opened: :func:`open_client`). ``progress(done, total)``: after
    each entry. Returns the summary rows, in entry order."""
    say = log or (lambda s: None)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = {}
    todo = []
    for p in plans:
        m = already_done(p, rule)
        if m is not None:
            rows[p.entry.name] = {**m["summary"], "skipped": True}
        else:
            todo.append(p)
    total, done = len(plans), len(rows)
    if progress:
        progress(done, total)
    say(f"{total} entries: {done} done before, {len(todo)} to run ({sum(len(p.jobs) for p in todo)} refinements)")
    own = None
    try:
        if todo:
            if client is None:
                client, _ = open_client(scheduler, workers)
                own = True
            for row in _run(client, todo, rule, outdir):
                rows[row["entry"]] = row
                done += 1
                say(_line(row))
                if progress:
                    progress(done, total)
    finally:
        ordered = [rows[p.entry.name] for p in plans if p.entry.name in rows]
        write_report(ordered, outdir, rule)
        if own:
            close_client(client)
    return ordered


def close_client(client):
    """Close a client from :func:`open_client` and its local cluster, if any."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def _run(client, plans, rule, outdir):
    """Submit every task (largest inputs first, kicked candidates twice as early), then yield each entry's summary row as soon as
    its tasks are in."""
    from distributed import as_completed
    futures, owner = [], {}
    waiting = {}
    t_start = {}
    for p in sorted(plans, key=_size, reverse=True):
        prio = _size(p)
        name = p.entry.name
        t_start[name] = time.time()
        f = client.submit(start_statistics, p.entry.model, p.entry.data, p.jobs[0].kwargs, pure=False,
                          priority=prio + 1, key=f"start-{name}-{p.jobs[0].key[:12]}")
        futures.append(f)
        owner[f.key] = (name, START)
        for j in p.jobs:                 # longest first: kicked candidates (cooling) cost more
            f = client.submit(run_job, j, pure=False, priority=prio * (2 if j.kwargs.get("cool") else 1),
                              key=f"refine-{name}-{j.candidate}-{j.key[:12]}")
            futures.append(f)
            owner[f.key] = (name, j.candidate)
        waiting[name] = (p, {})
    try:
        for f in as_completed(futures):
            name, cand = owner[f.key]
            p, got = waiting[name]
            got[cand] = task_result(f, name, cand)
            if len(got) == len(p.jobs) + 1:
                del waiting[name]
                yield finish_entry(p, got, rule, outdir, time.time() - t_start[name])
    finally:
        client.cancel([f for f in futures if not f.done()])


def task_result(future, entry, candidate) -> dict:
    """A task's result row; a task that raised (or lost its workers too often) is an error row."""
    from ..io.files import short_message
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001  (anything a task raised: recorded, the batch goes on)
        return {"entry": entry, "candidate": candidate, "status": "error",
                "error": f"{type(e).__name__}: {short_message(e)}"}


def finish_entry(plan: Plan, got: dict, rule: ChoiceRule, outdir: Path, wall: float) -> dict:
    """Choose, write the entry's manifest, and return its summary row."""
    start = got.pop(START)
    results = {j.candidate: got[j.candidate] for j in plan.jobs}
    e = plan.entry
    row = {"entry": e.name, "model": e.model, "data": e.data, "start_r_work": start.get("r_work"),
           "start_r_free": start.get("r_free"), "d_min": start.get("d_min")}
    cand_time = sum(r.get("time") or 0 for r in results.values())
    if start.get("status") != "ok":
        row.update(status="error", error=start.get("error"), chosen=None, reason="start model: " + str(start.get("error")))
    elif not any(r.get("status") == "ok" for r in results.values()):
        first = next(iter(results.values()))
        row.update(status="error", error=first.get("error"), chosen=None, reason="every candidate failed")
    else:
        chosen, reason = choose(start, results, rule)
        r = results.get(chosen, {})
        ok = [x for x in results.values() if x.get("status") == "ok"]
        row.update(status="ok", chosen=chosen, reason=reason,
                   r_work=r.get("r_work", start["r_work"]), r_free=r.get("r_free", start["r_free"]),
                   rmsd_bond=r.get("rmsd_bond", start.get("rmsd_bond")),
                   rmsd_angle=r.get("rmsd_angle", start.get("rmsd_angle")),
                   start_rmsd_bond=start.get("rmsd_bond"),
                   n_atoms=ok[0].get("n_atoms"),
                   final_model=(r.get("files", {}).get("cif") if chosen != START else e.model))
        if row["r_free"] is not None and start["r_free"] is not None:
            row["delta_r_free"] = row["r_free"] - start["r_free"]
    row.update(time=cand_time, wall=wall,
               candidates={n: {k: x.get(k) for k in ("status", "r_work", "r_free", "rmsd_bond", "rmsd_angle",
                                                      "time", "error", "files", "command") if k in x}
                           for n, x in results.items()})
    manifest = {"key": plan.key(rule), "status": row["status"], "summary": row,
                "inputs": dict(zip(["model", "data", *e.ligands], plan.jobs[0].digests)),
                "start": start, "rule": rule.as_dict(), "final_model": row.get("final_model")}
    write_json_atomic(Path(outdir) / e.name / MANIFEST, manifest)
    return row


def _size(plan: Plan) -> int:
    try:
        return sum(os.path.getsize(p) for p in (plan.entry.model, plan.entry.data))
    except OSError:
        return 0


def _line(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['entry']}: error: {row.get('error')}"
    f = (lambda v: "-" if v is None else f"{v:.4f}")
    return (f"{row['entry']}: R-free {f(row['start_r_free'])} -> {f(row['r_free'])} ({row['chosen']}; "
            f"{row['reason']})")
