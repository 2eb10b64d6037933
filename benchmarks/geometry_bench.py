"""Benchmark: full geometry energy + gradient for 4iid (14,782 atoms) vs one Fc calculation.

Run: ``.venv/bin/python benchmarks/geometry_bench.py [--case 4iid] [--repeat 20]``.
Prints the build time of the restraints, the median time of all restraint terms (value and
gradient, all nine kinds) after warm-up, the median time of one structure-factor calculation
of the same model on the data's reflections, and their ratio (goal ≤ 0.5).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
CASES = {"4iid": ("4iid.pdb", "4iid.mtz"), "4hg7": ("4hg7.cif", "4hg7-sf.cif"),
         "1cbs": ("1cbs.cif.gz", "1cbs_map.mtz")}


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="4iid", choices=sorted(CASES))
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    model_name, data_name = CASES[args.case]
    case_dir = SHARED / "data" / args.case
    monlib = SHARED / "monomers"
    if not (case_dir / model_name).exists():
        print(f"shared data not found at {case_dir}; nothing to benchmark", file=sys.stderr)
        return 1

    from kickref.io.models import read_model
    from kickref.core.state import AtomState
    from kickref.refinement.energy import Energy
    from kickref.restraints import build_restraints

    model = read_model(case_dir / model_name)
    t = time.perf_counter()
    restraints = build_restraints(model, monlib_dir=monlib)
    t_build = time.perf_counter() - t
    energy = Energy(restraints.terms())
    state = AtomState.from_model(model)
    energy.compute(state)                      # warm-up (numba compile/cache load)
    t_geom = median_time(lambda: energy.compute(state, gradient=True), args.repeat)
    counts = restraints.counts()
    print(f"case {args.case}: {model.n_atoms} atoms; restraints built in {t_build:.3f} s")
    print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"geometry energy + gradient (9 terms): {t_geom * 1e3:.2f} ms (median of {args.repeat})")

    fc_label = None
    try:
        from kickref.xtal.structure_factors import StructureFactorCalculator
        from kickref.io.reflections import read_reflections
        data = read_reflections(case_dir / data_name)
        calc = StructureFactorCalculator(model.cell, model.spacegroup, data.hkl,
                                         float(data.d.min()))
        calc.calculate(state, model.element)   # warm-up
        t_fc = median_time(lambda: calc.calculate(state, model.element), max(3, args.repeat // 4))
        fc_label = (f"kickref StructureFactorCalculator.calculate, {data.n} reflections, "
                    f"grid {calc.shape}")
    except ImportError:
        import gemmi
        import numpy as np
        st = model.structure
        dc = gemmi.DensityCalculatorX()
        dc.d_min = 2.3
        dc.grid.setup_from(st)

        def fc():
            dc.put_model_density_on_grid(st[0])
            return gemmi.transform_map_to_f_phase(dc.grid, half_l=True)
        fc()
        t_fc = median_time(fc, max(3, args.repeat // 4))
        fc_label = "gemmi DensityCalculatorX + FFT (kickref's calculator not available)"
        del np
    print(f"one Fc calculation: {t_fc * 1e3:.2f} ms ({fc_label})")
    ratio = t_geom / t_fc
    print(f"ratio geometry / Fc = {ratio:.3f}  (goal <= 0.5): {'OK' if ratio <= 0.5 else 'ABOVE GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
