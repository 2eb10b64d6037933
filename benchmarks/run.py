"""`make bench`: every benchmark in turn (needs ../shared/data). Results go to benchmarks/results/."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("structure factors vs gemmi", ["fc_bench.py"]),
    ("geometry energy vs one Fc", ["geometry_bench.py"]),
    ("refinement: kickref vs servalcat, judged by cctbx", ["refine_bench.py", "--reuse"]),
    ("refinement time and memory per phase (profile)", ["profile_bench.py"]),
    ("peak memory: kickref vs servalcat, single-threaded", ["memory_bench.py", "--reuse"]),
    ("kick refinement vs plain refinement from 0.8 Å-shaken starts", ["kick_bench.py"]),
    ("figure: kick map next to the plain 2mFo-DFc map (1cbs)", ["kick_map_figure.py"]),
    ("model bias: averaged kick maps vs the plain σA map from a model with deliberate errors (1cbs)",
     ["kick_map_bias.py"]),
    ("partial model in experimental (Xe-SAD) phases: density combination vs refine (gamma)",
     ["gamma_partial.py"]),
    ("far starts (MR-like 4hg7 from 4qo4; 1cbs, 3zt9 with local-minimum errors): build + R",
     ["far_starts.py"]),
    ("from the far starts: kickref plain (budget-matched) / default / kick vs servalcat (cctbx judge)",
     ["far_start_bench.py", "--reuse"]),
    ("kickref batch vs the same refinements one by one: wall ratio, identity, choice (cctbx judge)",
     ["batch_bench.py"]),
    ("TLS: R-free with and without --tls chain on 1cbs and 4iid (cctbx judge)", ["tls_bench.py"]),
    ("occupancy groups: 6mw0 conformers A+B=1, kickref vs servalcat R-work", ["occupancy_bench.py"]),
    ("synthetic merohedral twins: twin vs untwinned refinement, fraction recovered", ["twin_bench.py"]),
    ("NCS on 4iid: restraints at 3.5 Å vs servalcat --ncsr, operator refinement, averaging",
     ["ncs_bench.py"]),
    ("intensity likelihood (MLI) vs French-Wilson + ML on the intensity cases", ["mli_bench.py"]),
    ("leave-one-case-out validation of the refine defaults (bond target, ADP weight) vs servalcat",
     ["loo_bench.py", "--resume"]),
]


def main(argv=None) -> int:
    only = set(argv if argv is not None else sys.argv[1:])
    failed = []
    for title, cmd in BENCHES:
        if only and cmd[0].removesuffix(".py") not in only and cmd[0] not in only:
            continue
        print(f"\n=== {title} ({' '.join(cmd)}) ===", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]])
        if rc:
            failed.append(cmd[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
