"""Re-refinement at scale (``kickref batch``): many entries, several candidate refinements of
each, as independent tasks on a Dask cluster; the best candidate per entry (never worse than the
start) and a report.

    from kickref.batch import DEFAULT_CANDIDATES, plan_batch, run_batch
    from kickref.io.entries import read_entries
    plans = plan_batch(read_entries("entries.csv"), DEFAULT_CANDIDATES, "out", resolve)
    rows = run_batch(plans, "out", workers=2)

``resolve(entry, candidate, prefix)`` returns the keyword arguments of
:func:`kickref.api.refine_to_files` and the equivalent command line (the command line's version
is :func:`kickref.cli.batch.resolver`).
"""
from .candidates import DEFAULT_CANDIDATES, START, Candidate, ChoiceRule, choose, parse_candidate
from .runner import open_client, plan_batch, run_batch
from .tasks import Job, run_job

__all__ = ["DEFAULT_CANDIDATES", "START", "Candidate", "ChoiceRule", "choose", "parse_candidate", "open_client",
           "plan_batch", "run_batch", "Job", "run_job"]
