"""User occupancy groups: the softmax parametrization (constraints exact, gradient by finite
differences), the group file and options, and a short refinement of 6mw0's two conformers."""
import numpy as np
import pytest

from conftest import MONOMERS, case_paths
import kickref
from kickref.core.errors import InputError
from kickref.core.state import AtomGradient, AtomState
from kickref.io.groups import read_occupancy_groups, read_tls_groups
from kickref.refinement.occupancy import GroupOccupancies, OccupancySet, build_occupancy_sets


def _toy_state(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return AtomState(rng.normal(size=(n, 3)), np.full(n, 20.0), np.zeros((n, 6)), np.zeros(n, bool),
                     rng.uniform(0.2, 0.8, n))


def _toy_sets():
    return [OccupancySet([np.array([0, 1]), np.array([2, 3, 4]), np.array([5])], True, ("a", "b", "c")),
            OccupancySet([np.array([6, 7]), np.array([8])], False, ("d", "e")),
            OccupancySet([np.array([9, 10])], False, ("f",))]


def test_constraints_hold_exactly_for_any_parameters():
    p = GroupOccupancies(_toy_sets())
    assert p.n == 2 + 2 + 1
    st = _toy_state()
    rng = np.random.default_rng(1)
    for _ in range(20):
        p.set(rng.uniform(-8, 8, p.n), st)
        a, b, c = st.occ[0], st.occ[2], st.occ[5]
        assert np.all(st.occ[[0, 1]] == a) and np.all(st.occ[[2, 3, 4]] == b)
        assert abs(a + b + c - 1.0) < 1e-14
        assert st.occ[6] + st.occ[8] <= 1.0 and 0 < st.occ[9] < 1
        assert st.occ[11] == _toy_state().occ[11]          # atoms in no group untouched
    # get inverts set
    x = rng.uniform(-3, 3, p.n)
    p.set(x, st)
    assert np.allclose(p.get(st), x, atol=1e-9)


def test_group_gradient_matches_finite_differences():
    p = GroupOccupancies(_toy_sets())
    st = _toy_state()
    rng = np.random.default_rng(2)
    c1, c2 = rng.normal(size=st.n_atoms), rng.uniform(0.5, 2, st.n_atoms)

    def energy(s):
        return float(c1 @ s.occ + c2 @ s.occ ** 2)

    x = rng.uniform(-2, 2, p.n)
    p.set(x, st)
    g = AtomGradient(st.n_atoms)
    g.occ[:] = c1 + 2 * c2 * st.occ
    an = p.gradient(g, st)
    h = 1e-6
    fd = []
    for j in range(p.n):
        e = np.zeros(p.n)
        e[j] = h
        fd.append((energy(p.set(x + e, st.copy())) - energy(p.set(x - e, st.copy()))) / (2 * h))
    assert np.allclose(an, fd, rtol=1e-6, atol=1e-9)


def test_group_file_and_errors(tmp_path):
    f = tmp_path / "occ.txt"
    f.write_text("# two conformers\ngroup 1 //A/*/*:A\ngroup 2 //A/*/*:B\ncomplete 1 2\n")
    spec = read_occupancy_groups(f)
    assert spec == {"groups": ["1://A/*/*:A", "2://A/*/*:B"], "complete": [("1", "2")], "incomplete": []}
    t = tmp_path / "tls.txt"
    t.write_text("//A/1-50\nB2: //B\n")
    assert read_tls_groups(t) == [("1", "//A/1-50"), ("B2", "//B")]
    f.write_text("grop 1 A\n")
    with pytest.raises(InputError):
        read_occupancy_groups(f)
    model, _, _ = case_paths("6mw0")
    m = kickref.read_model(model)
    with pytest.raises(InputError, match="overlap"):
        build_occupancy_sets(m, ["1:*:A", "2://A/1002"])
    with pytest.raises(InputError, match="no group"):
        build_occupancy_sets(m, ["1:*:A"], complete=["1,3"])


def test_refined_conformer_groups_are_single_valued_and_sum_to_one(tmp_path):
    model, data, _ = case_paths("6mw0")
    spec = tmp_path / "occ.txt"
    spec.write_text("group A //A/*/*:A\ngroup B //A/*/*:B\ncomplete A B\n")
    res = kickref.refine(model, data, monlib=MONOMERS, cycles=1, xyz_steps=5, adp_steps=5,
                         occ_steps=10, strategy="alternate", hydrogens="keep",
                         **{f"occupancy_{k}": tuple(v) for k, v in read_occupancy_groups(spec).items()})
    m = res.model
    a, b = m.occ[m.altloc == "A"], m.occ[m.altloc == "B"]
    assert len(set(a)) == 1 and len(set(b)) == 1
    assert abs(a[0] + b[0] - 1.0) < 1e-12
    assert 0 < a[0] < 1 and a[0] != 0.5              # refined, not just copied


def test_cli_group_options_reach_refine_options(tmp_path):
    from kickref.cli import build_parser
    from kickref.cli.refine import _occupancy_options, _tls_option
    f = tmp_path / "occ.txt"
    f.write_text("group 1 //A/*/*:A\ngroup 2 //A/*/*:B\nincomplete 1\n")
    t = tmp_path / "tls.txt"
    t.write_text("//A/1-50\n")
    args = build_parser().parse_args(["refine", "m.pdb", "d.mtz", "--occupancy-file", str(f),
                                      "--occupancy-group", "3://A/1101", "--occupancy-complete", "2,3",
                                      "--tls", str(t), "--tls-steps", "7"])
    assert _occupancy_options(args) == {"occupancy_groups": ("1://A/*/*:A", "2://A/*/*:B", "3://A/1101"),
                                        "occupancy_complete": ("2,3",), "occupancy_incomplete": (("1",),)}
    assert _tls_option(args.tls) == (("1", "//A/1-50"),) and args.tls_steps == 7
    assert _tls_option("chain") == "chain"
