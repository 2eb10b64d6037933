"""Multi-start refinement of one entry (``kickref refine … --starts N``): N kicked trajectories,
the same options with seeds SEED, SEED+1, …, as Dask tasks; the best is chosen by the X-ray target
on the work set at the end of each trajectory (the −log-likelihood, or the LS sum, of the work
reflections; never R-free), and its outputs are copied to PREFIX.* as one set. Every trajectory
stays in ``PREFIX_starts/startK/refined.*``; ``PREFIX_starts/summary.json`` lists them all.
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import KickrefError
from ..io.entries import file_digest
from ..io.files import json_ready, write_json_atomic
from ..io.outputs import copy_output_set, output_paths, refinement_output_set
from .runner import close_client, open_client, task_result
from .tasks import Job, run_job


def trajectories(model, data, output, n: int, kwargs: dict, command: str = "") -> list[Job]:
    """The N jobs: ``kwargs`` (of :func:`kickref.api.refine_to_files`) with seeds seed … seed+N−1."""
    base = output_paths(output)["pdb"].removesuffix(".pdb")
    seed = kwargs.get("seed") or 0
    digests = tuple(file_digest(p) for p in (model, data, *kwargs.get("ligands", ())))
    return [Job(Path(base).name, f"start{k + 1}", str(model), str(data), f"{base}_starts/start{k + 1}",
                {**kwargs, "seed": seed + k}, f"{command}  (trajectory {k + 1}: seed {seed + k})", digests)
            for k in range(n)]


def run_starts(model, data, output, n: int, kwargs: dict, *, command: str = "", client=None, scheduler=None,
               workers=None) -> dict:
    """Run the N trajectories (:func:`trajectories`) on ``client`` (else a new one:
    :func:`~kickref.batch.runner.open_client`), copy the best one's outputs to ``output``.*;
    returns {'best': name, 'rows': one per trajectory, 'files': {kind: path}}."""
    jobs = trajectories(model, data, output, n, kwargs, command)
    with refinement_output_set(output, [model, data, *kwargs.get("ligands", ())]) as out:
        own = client is None
        if own:
            client, _ = open_client(scheduler, workers)
        try:
            futures = [client.submit(run_job, j, pure=False, key=f"refine-{j.entry}-{j.candidate}-{j.key[:12]}")
                       for j in jobs]
            rows = [task_result(f, j.entry, j.candidate) for f, j in zip(futures, jobs)]
        finally:
            if own:
                close_client(client)
        ok = [r for r in rows if r.get("status") == "ok" and not r.get("interrupted")
              and r.get("work_target") is not None]
        if not ok:
            raise KickrefError("every trajectory failed: " + str(rows[0].get("error")))
        best = min(ok, key=lambda r: r["work_target"])
        written = copy_output_set(best["files"], out)
    summary = {"chosen": best["candidate"], "rule": "lowest X-ray target on the work set at the end",
               "trajectories": rows}
    write_json_atomic(Path(jobs[0].folder).parent / "summary.json", json_ready(summary))
    return {"best": best["candidate"], "rows": rows, "files": written}
