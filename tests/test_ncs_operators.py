"""NCS operator optimization: CC gradient, recovery of a perturbed 4iid operator."""
import time

import numpy as np

from conftest import case_paths
from kickref.core.state import AtomState
from kickref.io.models import read_model
from kickref.refinement.ncs_operators import (MapCorrelationTerm, _points_state, optimize_operator,
                                              reference_points)
from kickref.xtal.density_map import density_map_from_coefficients
from kickref.xtal.fourier import calculator_for
from kickref.xtal.ncs import detect_ncs, rotation_angle

_cache = {}


def setup():
    """4iid, its NCS group and a synthetic Fc map at 3.5 Å (cached)."""
    if not _cache:
        model = read_model(case_paths("4iid")[0])
        groups = detect_ncs(model)
        calc = calculator_for(model.cell, model.spacegroup, 3.5, dtype=np.float64)
        fc = calc.calculate(AtomState.from_model(model), model.element)
        dm = density_map_from_coefficients(model.cell, model.spacegroup, calc.hkl, fc, 3.5)
        x, a = reference_points(dm, model.xyz, groups, 0, 3.0, max_points=60000)
        _cache["x"] = (model, groups, dm, x, a)
    return _cache["x"]


def test_correlation_gradient_matches_finite_differences():
    model, groups, dm, x, a = setup()
    term = MapCorrelationTerm(dm, a[:3000])
    st = _points_state(groups[0].copies[1].transform(x[:3000]) + 0.3)
    _, g = term.compute(st)
    for i, c in [(5, 0), (100, 1), (2000, 2), (2999, 0)]:
        h = 1e-4
        st.xyz[i, c] += h
        vp = term.value(st)
        st.xyz[i, c] -= 2 * h
        vm = term.value(st)
        st.xyz[i, c] += h
        num = (vp - vm) / (2 * h)
        assert abs(num - g.xyz[i, c]) <= 1e-5 * max(abs(num), 1e-6) + 1e-9


def test_perturbed_4iid_operator_is_recovered():
    model, groups, dm, x, a = setup()
    sup = groups[0].copies[1]
    t0 = time.perf_counter()
    opt, rep = optimize_operator(dm, x, a, sup)
    assert rep["cc_end"] >= rep["cc_start"] - 1e-6 and rep["cc_end"] > 0.9
    # from the superposition operator perturbed by 2° about a random axis through the copy
    # centroid and shifted by 0.8 Å
    bad = sup.perturbed(2.0, 0.8, sup.transform(x).mean(axis=0), np.random.default_rng(3))
    new, rep2 = optimize_operator(dm, x, a, bad)
    assert rep2["cc_start"] < rep2["cc_end"]
    assert rotation_angle(new.rotation @ opt.rotation.T) < 0.2
    assert np.linalg.norm(new.transform(x).mean(0) - opt.transform(x).mean(0)) < 0.1
    assert np.abs(new.transform(x) - opt.transform(x)).max() < 0.3       # over the whole copy
    assert time.perf_counter() - t0 < 60
