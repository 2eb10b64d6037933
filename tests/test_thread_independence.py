"""Results must not depend on the BLAS or numba thread count.

A refinement run alone (OpenBLAS and numba on every core) and as a Dask task (the nanny sets
OPENBLAS_NUM_THREADS=1, the task sets numba to 1 thread) must give the same bits. numpy's ``@``
on a matrix–vector or long vector product goes to BLAS, whose threads split the work so that the
last bits change with the thread count; 4iid's preconditioner (14 782 atoms × 40 bins) did, and
the batch and single runs ended 5.6·10⁻⁶ Å apart. Each check runs the same computation in two
fresh processes, 1 and 2 threads, and compares the bytes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# shapes where OpenBLAS 0.3 on 1 vs 2 threads gives different bits for numpy's @ (measured)
PRODUCTS = textwrap.dedent("""
    import sys
    import numpy as np
    from kickref.core.linalg import dot, matvec, vecmat
    rng = np.random.default_rng(7)
    M = rng.random((14782, 40)); v = rng.random(40)
    Q = rng.random((297001, 3)); w = rng.standard_normal(297001)
    a = rng.standard_normal(94000)
    out = dict(matvec=matvec(M, v), vecmat=vecmat(w, Q), dot=np.array(dot(a, a)),
               bl_matvec=M @ v, bl_vecmat=w @ Q, bl_dot=np.array(a @ a))
    np.savez(sys.argv[1], **out)
""")

CURVATURES = textwrap.dedent("""
    import sys
    from types import SimpleNamespace as NS
    import numpy as np
    from kickref.core.state import AtomState
    from kickref.refinement.preconditioning import xray_curvatures
    rng = np.random.default_rng(3)
    n, nref = 14782, 20000                                  # the size of 4iid, where @ differed
    data = NS(epsilon=np.ones(nref), sigma=rng.random(nref), centric=rng.random(nref) < 0.1)
    fm = NS(data=data, work=rng.random(nref) < 0.95, scale_factor=1 + 0.1 * rng.random(nref),
            s2=rng.uniform(0.0007, 0.19, nref), sf=NS(lookup=NS(nref=nref, phase=[np.zeros(4)])),
            elements=rng.choice(np.array(["C", "N", "O", "S"]), n))
    xray = NS(fmodel=fm, target="ml", D=rng.uniform(0.5, 1, nref), S=rng.uniform(10, 100, nref))
    state = AtomState(rng.random((n, 3)), rng.uniform(10, 80, n), np.zeros((n, 6)), np.zeros(n, bool),
                      rng.uniform(0.5, 1, n))
    np.savez(sys.argv[1], **xray_curvatures(xray, state))
""")


def _run(script: str, out: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, timeout=300)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    d = tmp_path_factory.mktemp("products")
    return _run(PRODUCTS, d / "one.npz", 1), _run(PRODUCTS, d / "two.npz", 2)


@pytest.mark.parametrize("name", ["matvec", "vecmat", "dot"])
def test_products_same_bits_on_one_and_two_threads(products, name):
    one, two = products
    assert one[name].tobytes() == two[name].tobytes()
    # and they are the products: within a few ulps of BLAS's
    np.testing.assert_allclose(one[name], one["bl_" + name], rtol=1e-12)


def test_xray_curvatures_same_bits_on_one_and_two_threads(tmp_path):
    one = _run(CURVATURES, tmp_path / "one.npz", 1)
    two = _run(CURVATURES, tmp_path / "two.npz", 2)
    for k in ("xyz", "b", "occ"):
        assert one[k].shape == (14782,)
        assert np.all(one[k] > 0)
        assert one[k].tobytes() == two[k].tobytes(), k
