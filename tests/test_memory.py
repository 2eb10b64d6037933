"""Memory: what the refine command imports, and the scipy.stats-free tail probabilities."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.stats

from kickref.xtal import sigmaa

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("matplotlib", "dask", "distributed", "scipy.stats", "scipy.optimize", "pandas", "tqdm")


def _imported(code: str) -> dict:
    """{module: loaded?} for HEAVY after running ``code`` in a fresh interpreter."""
    probe = code + f"\nimport json, sys; print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_kickref_and_refine_cli_stay_light():
    for code in ("import kickref", "import kickref.cli.refine",
                 "from kickref.cli import build_parser; build_parser()"):
        loaded = _imported(code)
        assert not any(loaded.values()), (code, {m for m, v in loaded.items() if v})


def test_lazy_import_still_works():
    loaded = _imported("import kickref.batch.report, kickref.refinement.rigid_body")
    assert loaded["scipy.optimize"]          # the probe can see a heavy import when there is one


def test_rice_and_foldnorm_match_scipy_stats():
    rng = np.random.default_rng(5)
    n = 4000
    x = np.abs(rng.normal(0, 3, n))
    b = np.abs(rng.normal(0, 3, n))
    s = np.abs(rng.normal(1, 0.5, n)) + 1e-3
    # edge cases: x at 0, +inf, NaN; shape 0, negative, NaN; scale 0, negative, NaN
    x[:9] = [0.0, np.inf, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    b[3:6] = [0.0, -1.0, np.nan]
    s[6:9] = [0.0, -2.0, np.nan]
    with np.errstate(all="ignore"):
        cdf, sf = sigmaa._rice_cdf_sf(x, b, s)
        ref_cdf, ref_sf = scipy.stats.rice.cdf(x, b, scale=s), scipy.stats.rice.sf(x, b, scale=s)
        assert np.array_equal(cdf, ref_cdf, equal_nan=True)
        assert np.array_equal(sf, ref_sf, equal_nan=True)
        cdf, sf = sigmaa._foldnorm_cdf_sf(x, b, s)
        ref_cdf, ref_sf = scipy.stats.foldnorm.cdf(x, b, scale=s), scipy.stats.foldnorm.sf(x, b, scale=s)
        assert np.array_equal(cdf, ref_cdf, equal_nan=True)
        assert np.array_equal(sf, ref_sf, equal_nan=True)
    assert np.isnan(cdf[2]) and cdf[0] == 0.0 and sf[0] == 1.0 and cdf[1] == 1.0 and sf[1] == 0.0
