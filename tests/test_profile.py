"""The per-phase profile (kickref.core.profile): exclusive nested times, one thread, and a 5e5z
refinement whose JSON and log carry the profile of every phase."""
import json
import os
import subprocess
import sys
import threading
import time

from conftest import MONOMERS, ROOT, case_paths
from kickref.core import profile


def test_nested_phases_are_exclusive_and_add_up():
    p = profile.reset()
    with profile.phase("fc"):
        time.sleep(0.02)
        with profile.phase("gradient"):
            time.sleep(0.03)
    d = p.as_dict()
    ph = d["phases"]
    assert 0.02 <= ph["fc"]["seconds"] < 0.03 + 0.02
    assert ph["gradient"]["seconds"] >= 0.03
    assert ph["fc"]["calls"] == ph["gradient"]["calls"] == 1
    assert abs(d["total_s"] - sum(x["seconds"] for x in ph.values())) < 1e-9
    assert d["peak_rss_mb"] > 0


def test_other_threads_are_not_profiled():
    p = profile.reset()
    t = threading.Thread(target=lambda: profile.phase("fc").__enter__())
    t.start()
    t.join()
    assert "fc" not in p.as_dict()["phases"]


def test_refine_json_and_log_have_the_profile(tmp_path):
    model, data, _ = case_paths("5e5z")
    out = tmp_path / "r"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kickref", "refine", str(model), str(data), "--monlib", str(MONOMERS),
                    "--cycles", "2", "-o", str(out), "-q"], check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    prof = json.loads(out.with_suffix(".json").read_text())["profile"]
    ph = prof["phases"]
    assert list(ph) == list(profile.PHASES)
    assert all(x["seconds"] >= 0 and x["peak_rss_mb"] >= 0 for x in ph.values())
    total = sum(x["seconds"] for x in ph.values())
    assert abs(total - prof["total_s"]) < 1e-6
    assert 0.75 * wall <= total <= wall      # the rest: log, JSON, interpreter exit (~0.5 s)
    assert ph["other"]["seconds"] <= 0.1 * total                     # the named phases cover the run
    assert ph["startup"]["seconds"] > 0 and ph["fc"]["calls"] > 0
    assert prof["peak_rss_mb"] > 0
    log = out.with_suffix(".log").read_text().splitlines()
    start = next(i for i, ln in enumerate(log) if ln.startswith("profile: "))
    assert [ln.split()[0] for ln in log[start + 2:]] == list(profile.PHASES)
