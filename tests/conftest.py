"""Shared test helpers: where ../shared is, loading its cases, a --runslow switch."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
DATA = SHARED / "data"
MONOMERS = SHARED / "monomers"
CASES = ["5e5z", "5wkd", "6mw0", "4hg7", "1cbs", "3zt9", "4iid"]
PROTEINS = ["4hg7", "1cbs", "3zt9", "4iid"]
PEPTIDES = ["5e5z", "5wkd", "6mw0"]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def need_shared():
    if not DATA.is_dir():
        pytest.skip("shared test data (../shared/data) not present: these tests run in CI")


def case_paths(case):
    """(model path, reflection path, case.json dict) of a shared case; skips without ../shared."""
    need_shared()
    info = json.loads((DATA / case / "case.json").read_text())
    return DATA / case / info["model_file"], DATA / case / info["reflection_file"], info
