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


def test_rfftn_float64_is_bitwise_rfftn():
    from kickref.xtal.bulk_solvent import rfftn_float64
    rng = np.random.default_rng(3)
    for shape in [(12, 18, 30), (9, 10, 15), (5, 7, 1)]:
        g = (rng.random(shape) > 0.4).astype(np.uint8)
        ref = scipy.fft.rfftn(g.astype(np.float32).astype(np.float64))
        for chunk in (1 << 21, 200, 1):
            assert np.array_equal(rfftn_float64(g, chunk), ref)
        for m in sorted({1, min(3, shape[2] // 2 + 1), shape[2] // 2 + 1}):
            assert np.array_equal(rfftn_float64(g, 200, columns=m), ref[:, :, :m])


def test_solvent_mask_keeps_only_uint8_mask_and_fmask_at_matches():
    import gemmi
    from kickref.xtal.bulk_solvent import SolventMask
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(20, 22, 24, 90, 90, 90)
    st.spacegroup_hm = "P 21 21 21"
    m = gemmi.Model("1")
    ch = gemmi.Chain("A")
    for k, xyz in enumerate([(3, 4, 5), (10, 11, 6), (15, 2, 20)]):
        r = gemmi.Residue()
        r.name, r.seqid = "HOH", gemmi.SeqId(k + 1, " ")
        a = gemmi.Atom()
        a.name, a.element, a.pos, a.occ = "O", gemmi.Element("O"), gemmi.Position(*xyz), 1.0
        r.add_atom(a)
        ch.add_residue(r)
    m.add_chain(ch)
    st.add_model(m)
    sg = gemmi.SpaceGroup(st.spacegroup_hm)
    hkl = np.array([[h, k, l] for h in range(0, 4) for k in range(-3, 4) for l in range(-3, 4)
                    if (h, k, l) != (0, 0, 0)], dtype=np.int32)
    mask = SolventMask(st.cell, sg, hkl, d_min=2.0)
    assert not mask.computed
    f = mask.fmask(st)
    assert mask.computed and mask._mask.dtype == np.uint8 and set(np.unique(mask._mask)) <= {0, 1}
    assert 0.5 < mask.solvent_fraction < 1.0
    # the old way: rfftn of the float mask, gathered
    X = scipy.fft.rfftn(mask._mask.astype(np.float64))
    ref = mask.lookup.gather(X) * (mask.volume / mask.n_points)
    assert np.array_equal(f, ref)
    assert np.array_equal(mask.fmask_at(hkl[::-1]), f[::-1])
    assert mask._cut[0] < mask.lookup.half_shape[2]        # the transform was cut
    low = hkl[np.abs(hkl[:, 2]) <= 1]
    assert np.array_equal(mask.fmask_at(low), mask.lookup.gather(X)[np.abs(hkl[:, 2]) <= 1]
                          * (mask.volume / mask.n_points))


def test_spread_parallel_equals_chunks_added_in_order():
    from kickref.xtal import density_kernels as K
    from kickref.xtal.form_factors import N_GAUSS
    rng = np.random.default_rng(7)
    n, shape, edge = 37, (24, 30, 36), np.array([20.0, 25.0, 30.0])
    step = np.diag(edge / np.array(shape))
    g = step.T @ step
    g6 = np.array([g[0, 0], g[1, 1], g[2, 2], g[0, 1], g[0, 2], g[1, 2]])
    recip_len = np.array(shape) / edge
    bt = rng.uniform(5, 40, (n, N_GAUSS))
    amp = rng.uniform(0.1, 3, (n, N_GAUSS)) * (4 * np.pi / bt) ** 1.5
    quad = (4 * np.pi ** 2 / bt)[:, :, None] * g6[None, None, :]
    radius = rng.uniform(1.5, 3.0, n)
    centers = rng.uniform(0, 1, (n, 3)) * np.array(shape)
    for n_threads in (1, 2, 3):
        grid = np.zeros(shape, np.float32)
        K.spread_parallel(grid, centers, amp, quad, radius, g, recip_len, n_threads)
        chunk = (n + n_threads - 1) // n_threads
        ref = np.zeros(shape, np.float32)
        for t in range(n_threads):
            part = np.zeros(shape, np.float32)
            sl = slice(t * chunk, min(n, (t + 1) * chunk))
            K.spread(part, centers[sl], amp[sl], quad[sl], radius[sl], g, recip_len)
            ref += part
        assert np.array_equal(grid, ref) and grid.max() > 0
