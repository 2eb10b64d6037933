"""Option values checked at parse time: one line on stderr naming the option, exit code 2, nothing written."""
from pathlib import Path

import pytest

from kickref.cli import build_parser, main

CASE = Path("/work/shared/data/5e5z")
MODEL, DATA = CASE / "5e5z.pdb", CASE / "5e5z.mtz"

# (subcommand, bad option values, option named in the message)
BAD = [
    ("rfactor", ["--scale-shells", "foo"], "--scale-shells"),
    ("rfactor", ["--scale-shells", "-2"], "--scale-shells"),
    ("rfactor", ["--scale-shells", "51"], "--scale-shells"),
    ("rfactor", ["--shells", "0"], "--shells"),
    ("rfactor", ["--d-min", "-1"], "--d-min"),
    ("rfactor", ["--d-max", "0"], "--d-max"),
    ("rfactor", ["--d-min", "3", "--d-max", "2"], "--d-min"),
    ("rfactor", ["--free-value", "-1"], "--free-value"),
    ("rfactor", ["--labin", "FP"], "--labin"),
    ("rfactor", ["--bogus", "1"], "--bogus"),
    ("maps", ["--kick", "--kick-models", "-3"], "--kick-models"),
    ("maps", ["--kick-max", "-0.5"], "--kick-max"),
    ("maps", ["--seed", "-1"], "--seed"),
    ("maps", ["--d-min", "nan"], "--d-min"),
    ("refine", ["--cycles", "-3"], "--cycles"),
    ("refine", ["--cycles", "2.5"], "--cycles"),
    ("refine", ["--xyz-steps", "-1"], "--xyz-steps"),
    ("refine", ["--adp-steps", "0"], "--adp-steps"),
    ("refine", ["--rephase-every", "0"], "--rephase-every"),
    ("refine", ["--weight-every", "0"], "--weight-every"),
    ("refine", ["--weight", "-1"], "--weight"),
    ("refine", ["--bond-rmsd", "-0.01"], "--bond-rmsd"),
    ("refine", ["--adp-weight", "-1"], "--adp-weight"),
    ("refine", ["--free-kick", "-0.1"], "--free-kick"),
    ("refine", ["--cool", "-2"], "--cool"),
    ("refine", ["--seed", "x"], "--seed"),
    ("refine", ["--convergence", "-0.1"], "--convergence"),
    ("refine", ["--convergence", "inf"], "--convergence"),
    ("refine", ["--kick", "0.8:-1"], "--kick"),
    ("refine", ["--kick", "a:b"], "--kick"),
    ("refine", ["--kick-b", "5:0:1"], "--kick-b"),
    ("refine", ["--steps", "0"], "--steps"),
    ("refine", ["--recombine-every", "-5"], "--recombine-every"),
    ("refine", ["--rad-mask", "0"], "--rad-mask"),
    ("refine", ["--rad-comb", "-2.8"], "--rad-comb"),
    ("refine", ["--weight-fc", "-1"], "--weight-fc"),
    ("refine", ["--dens-scale", "0"], "--dens-scale"),
    ("refine", ["--map-coeffs", "maps.mtz"], "--map-coeffs"),
    ("refine", ["--select", "((("], "--select"),
    ("refine", ["--scale-shells", "1.5"], "--scale-shells"),
    ("geometry", ["--outliers", "-1"], "--outliers"),
    ("refine", ["--starts", "0"], "--starts"),
    ("refine", ["--workers", "-1"], "--workers"),
    ("batch", ["--workers", "0"], "--workers"),
    ("batch", ["--max-bond-rmsd", "-0.02"], "--max-bond-rmsd"),
    ("batch", ["--max-gap-increase", "x"], "--max-gap-increase"),
]


def _argv(command, options, out_dir):
    if command == "geometry":
        return [command, str(MODEL), *options, "--json", str(out_dir / "g.json")]
    if command == "batch":
        return [command, str(CASE.parent), *options, "-o", str(out_dir / "batch")]
    out = ["-o", str(out_dir / "maps.mtz")] if command == "maps" else (
        ["-o", str(out_dir / "refined")] if command == "refine" else ["--json", str(out_dir / "r.json")])
    return [command, str(MODEL), str(DATA), *options, *out]


@pytest.mark.parametrize("command,options,name", BAD, ids=[f"{c}{' '.join(o)}" for c, o, _ in BAD])
def test_bad_option_is_one_line(capsys, tmp_path, command, options, name):
    rc = main(_argv(command, options, tmp_path))
    out = capsys.readouterr()
    assert rc == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err
    assert lines[0].startswith(f"kickref {command}: error: "), lines[0]
    assert name in lines[0], lines[0]
    assert lines[0].endswith(f"(see 'kickref {command} -h')"), lines[0]
    assert "usage" not in out.err and out.out == ""
    assert list(tmp_path.iterdir()) == []


def test_bad_command_is_one_line(capsys):
    assert main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "kickref -h" in err


def test_help_keeps_usage(capsys):
    assert main(["refine", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kickref refine") and "--cycles" in out


def parse(*args):
    return build_parser().parse_args([str(a) for a in args])


def test_defaults_unchanged():
    from kickref.refinement.protocol import RefineOptions
    d = RefineOptions()
    a = parse("refine", MODEL, DATA)
    for k in ("cycles", "xyz_steps", "adp_steps", "rephase_every", "weight_every", "adp_weight",
              "free_kick", "seed", "cool", "convergence", "weight"):
        assert getattr(a, k) == getattr(d, k), k
    assert a.kick == (0.8, 0.0) and a.kick_b == (5.0, 0.0) and a.scale_shells == "auto"
    assert a.bond_rmsd is None and a.d_min is None and a.free_value is None
    m = parse("maps", MODEL, DATA)
    assert (m.kick_models, m.kick_max, m.seed, m.scale_shells) == (50, 0.8, 1, "auto")
    assert parse("rfactor", MODEL, DATA).shells == 10
    assert parse("geometry", MODEL).outliers == 20


def test_boundary_values_accepted():
    a = parse("refine", MODEL, DATA, "--cycles", 1, "--xyz-steps", 1, "--rephase-every", 1, "--cool", 0,
              "--seed", 0, "--convergence", 0, "--adp-weight", 0, "--kick", "0", "--kick-b", "5:0",
              "--scale-shells", 0, "--free-value", 0, "--d-min", "1.5", "--d-max", "1.6",
              "--select", "//A/10-20", "--map-coeffs", "m.mtz:FWT,PHWT", "--labin", "FP,SIGFP,FREE")
    assert (a.cycles, a.xyz_steps, a.rephase_every, a.cool, a.seed) == (1, 1, 1, 0, 0)
    assert a.convergence == 0.0 and a.kick == (0.0, 0.0) and a.scale_shells == 0
    assert parse("rfactor", MODEL, DATA, "--scale-shells", 50, "--shells", 1).scale_shells == 50
    assert parse("rfactor", MODEL, DATA, "--scale-shells", "AUTO").scale_shells == "auto"
    assert parse("maps", MODEL, DATA, "--kick-models", 1, "--kick-max", 0).kick_models == 1
    assert parse("geometry", MODEL, "--outliers", 0).outliers == 0
    assert parse("refine", MODEL, DATA, "--convergence", 1).convergence == 1.0


def test_d_min_equal_d_max_rejected(capsys):
    assert main(["rfactor", str(MODEL), str(DATA), "--d-min", "2", "--d-max", "2"]) == 2
    err = capsys.readouterr().err
    assert "--d-min" in err and "--d-max" in err
