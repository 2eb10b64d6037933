"""Benchmark: one Fc calculation for 4iid (14,782 atoms, 2.3 Å) — kickref vs gemmi, same run.

gemmi: ``DensityCalculatorX`` (REFMAC-compatible blur, rate 1.5) spreading the model with
symmetry on a symmetric grid, FFT (``transform_map_to_f_phi``), values at the data's hkl.
kickref: ``StructureFactorCalculator.calculate`` (ASU atoms on a P1 grid, symmetry in
reciprocal space) at the same hkl. Prints medians and the ratio kickref/gemmi (goal ≤ 1.0).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"


def median_time(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def run(case="4iid", repeat=7) -> dict:
    import gemmi
    from kickref.io.models import read_model
    from kickref.io.reflections import read_reflections
    from kickref.core.state import AtomState
    from kickref.xtal.structure_factors import StructureFactorCalculator
    info = json.loads((SHARED / "data" / case / "case.json").read_text())
    model = read_model(SHARED / "data" / case / info["model_file"])
    data = read_reflections(SHARED / "data" / case / info["reflection_file"])
    st = model.structure
    d_min = data.d_min

    def gemmi_fc():
        dc = gemmi.DensityCalculatorX()
        dc.d_min = d_min
        dc.rate = 1.5
        dc.set_refmac_compatible_blur(st[0])
        dc.grid.setup_from(st)
        dc.put_model_density_on_grid(st[0])
        grid = gemmi.transform_map_to_f_phi(dc.grid, half_l=True)
        v = np.asarray(grid.get_value_by_hkl(data.hkl))
        return v * np.exp(dc.blur * data.s2 / 4.0)

    state = AtomState.from_model(model)
    calc = StructureFactorCalculator(model.cell, model.spacegroup, data.hkl, d_min)
    ours = calc.calculate(state, model.element)
    ref = gemmi_fc()
    t_gemmi = median_time(gemmi_fc, repeat)
    t_ours = median_time(lambda: calc.calculate(state, model.element), repeat)
    diff = float(np.sqrt(np.sum(np.abs(ours - ref) ** 2) / np.sum(np.abs(ref) ** 2)))
    return {"case": case, "atoms": model.n_atoms, "reflections": data.n, "d_min": d_min,
            "grid_kickref": list(calc.shape), "t_kickref_s": t_ours, "t_gemmi_s": t_gemmi,
            "ratio_kickref_over_gemmi": t_ours / t_gemmi, "rel_rms_difference_vs_gemmi": diff}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="4iid")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    if not (SHARED / "data" / args.case).is_dir():
        print("shared data not found; nothing to benchmark", file=sys.stderr)
        return 1
    r = run(args.case, args.repeat)
    print(f"Fc for {r['case']} ({r['atoms']} atoms, {r['reflections']} reflections, d_min {r['d_min']:.2f} Å):")
    print(f"  kickref {r['t_kickref_s'] * 1e3:.0f} ms   gemmi DensityCalculatorX+FFT {r['t_gemmi_s'] * 1e3:.0f} ms"
          f"   ratio {r['ratio_kickref_over_gemmi']:.2f} (goal <= 1.0)")
    print(f"  relative RMS difference between the two: {r['rel_rms_difference_vs_gemmi']:.1e}")
    out = ROOT / "benchmarks" / "results" / "fc_bench.json"
    out.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
