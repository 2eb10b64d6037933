"""Outputs of refine/maps: paths checked before any computation, the lock, the output set written
as a unit (temp files, commit journal, roll-forward), signals (SIGINT 130, SIGTERM 143, held
during the writes), the log's contents and the JSON's labels."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import gemmi
import pytest

from conftest import MONOMERS, ROOT, case_paths
from kickref.cli import main
from kickref.io.files import write_text_atomic
from kickref.io.outputs import OutputSet
from kickref.refinement.minimize import StopFlag

SET = ("pdb", "cif", "mtz", "json", "log", "png")


def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_error_line(rc, err, *words):
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def leftovers(d):
    return sorted(f.name for f in d.iterdir() if f.name.startswith(".kickref-") or f.suffix == ".lock")


# ----------------------------------------------------------------- paths checked before computing
@pytest.fixture
def case5e5z():
    model, data, _ = case_paths("5e5z")
    return model, data


def refine_args(case, prefix, *extra):
    return ("refine", case[0], case[1], "--monlib", MONOMERS, "-o", prefix, "-q", *extra)


def test_empty_prefix_is_refused(capsys, case5e5z):
    rc, out, err = run_cli(capsys, *refine_args(case5e5z, ""))
    one_error_line(rc, err, "kickref refine: error:", "empty")
    assert not os.path.exists(".pdb")


def test_prefix_that_is_a_directory_is_refused(capsys, case5e5z, tmp_path):
    for prefix in (f"{tmp_path}/", str(tmp_path)):
        rc, out, err = run_cli(capsys, *refine_args(case5e5z, prefix))
        one_error_line(rc, err, "directory")
    assert list(tmp_path.iterdir()) == []


def test_directory_that_is_a_file_is_refused(capsys, case5e5z, tmp_path):
    (tmp_path / "file").write_text("x")
    rc, out, err = run_cli(capsys, *refine_args(case5e5z, tmp_path / "file" / "r"))
    one_error_line(rc, err, "not a directory")


def test_unwritable_place_is_refused_even_for_root(capsys, case5e5z):
    rc, out, err = run_cli(capsys, *refine_args(case5e5z, "/proc/kickref-test/r"))
    one_error_line(rc, err, "/proc/kickref-test")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a 0500 directory")
def test_read_only_directory_is_refused(capsys, case5e5z, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        rc, out, err = run_cli(capsys, *refine_args(case5e5z, d / "r"))
        one_error_line(rc, err, "cannot write")
    finally:
        d.chmod(0o700)


def test_missing_directories_are_created_and_the_lock_released(capsys, case5e5z, tmp_path):
    """Missing directories are created by the check, before the inputs are read (here: missing)."""
    d = tmp_path / "a" / "b"
    rc, out, err = run_cli(capsys, *refine_args((tmp_path / "nope.pdb", case5e5z[1]), d / "r"))
    one_error_line(rc, err, "nope.pdb", "not found")
    assert d.is_dir() and list(d.iterdir()) == []


def test_output_equal_to_an_input_is_refused(capsys, case5e5z, tmp_path):
    model = tmp_path / "m.pdb"
    shutil.copy(case5e5z[0], model)
    rc, out, err = run_cli(capsys, *refine_args((model, case5e5z[1]), tmp_path / "m"))
    one_error_line(rc, err, "overwrite an input")
    assert model.read_bytes() == case5e5z[0].read_bytes()


def test_maps_checks_the_ccp4_paths_before_writing(capsys, case5e5z, tmp_path):
    (tmp_path / "file").write_text("x")
    out_mtz = tmp_path / "maps.mtz"
    rc, out, err = run_cli(capsys, "maps", *case5e5z, "-o", out_mtz, "--ccp4", tmp_path / "file" / "m")
    one_error_line(rc, err, "kickref maps: error:", "not a directory")
    assert not out_mtz.exists()
    rc, out, err = run_cli(capsys, "maps", *case5e5z, "-o", "")
    one_error_line(rc, err, "empty")


def test_lock_of_a_live_run_is_refused(capsys, case5e5z, tmp_path):
    lock = tmp_path / "r.lock"
    lock.write_text(f"{os.getppid()}\n")            # a live process
    t0 = time.perf_counter()
    rc, out, err = run_cli(capsys, *refine_args(case5e5z, tmp_path / "r"))
    one_error_line(rc, err, "r.lock", f"pid {os.getppid()}")
    assert time.perf_counter() - t0 < 5               # refused before reading the inputs
    assert lock.read_text().strip() == str(os.getppid())
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.lock"]


# ---------------------------------------------------------------------------- OutputSet alone
def paths_in(d, kinds=("a", "b", "c")):
    return {k: str(d / f"r.{k}") for k in kinds}


def test_stale_lock_and_temps_of_a_killed_run_are_cleaned(tmp_path):
    dead = dead_pid()
    (tmp_path / "r.lock").write_text(f"{dead}\n")
    (tmp_path / f".kickref-{dead}-r.a").write_text("")           # zero-byte leftover
    (tmp_path / f".kickref-{os.getppid()}-other.a").write_text("")  # a live run's: kept
    with pytest.warns(UserWarning, match=f"pid {dead}"):
        with OutputSet(paths_in(tmp_path), lock=tmp_path / "r.lock"):
            assert (tmp_path / "r.lock").read_text().strip() == str(os.getpid())
            assert not (tmp_path / f".kickref-{dead}-r.a").exists()
    assert leftovers(tmp_path) == [f".kickref-{os.getppid()}-other.a"]


def test_commit_replaces_the_whole_set(tmp_path):
    for k in "abc":
        (tmp_path / f"r.{k}").write_text("old")
    with OutputSet(paths_in(tmp_path), lock=tmp_path / "r.lock") as out:
        write_text_atomic(out.temp("a"), "new")
        write_text_atomic(out.temp("b"), "new")
        assert (tmp_path / "r.a").read_text() == "old"       # nothing visible before the commit
        written = out.commit()
    assert list(written) == ["a", "b"]
    assert [(tmp_path / f"r.{k}").read_text() for k in "ab"] == ["new", "new"]
    assert not (tmp_path / "r.c").exists()                  # not written this time: no old file left
    assert leftovers(tmp_path) == []


def test_error_before_the_commit_keeps_the_old_set(tmp_path):
    (tmp_path / "r.a").write_text("old")
    with pytest.raises(RuntimeError):
        with OutputSet(paths_in(tmp_path), lock=tmp_path / "r.lock") as out:
            write_text_atomic(out.temp("a"), "new")
            raise RuntimeError
    assert (tmp_path / "r.a").read_text() == "old"
    assert leftovers(tmp_path) == []


def test_kill_during_the_renames_is_completed_by_the_next_run(tmp_path, monkeypatch):
    import kickref.io.outputs as outputs
    for k in "abc":
        (tmp_path / f"r.{k}").write_text("old")
    real_replace, calls = os.replace, []

    def dying_replace(a, b):
        if os.path.basename(b).startswith("r."):             # a rename of the commit
            if calls:
                raise SystemExit("killed")                   # stands for SIGKILL after one rename
            calls.append(b)
        real_replace(a, b)

    monkeypatch.setattr(outputs.os, "replace", dying_replace)
    with pytest.raises(SystemExit):
        with OutputSet(paths_in(tmp_path), lock=tmp_path / "r.lock") as out:
            for k in "abc":
                write_text_atomic(out.temp(k), "new")
            out.commit()
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    assert sorted((tmp_path / f"r.{k}").read_text() for k in "abc") == ["new", "old", "old"]   # a mix
    with pytest.warns(UserWarning, match="completed the outputs"):
        with OutputSet(paths_in(tmp_path), lock=tmp_path / "r.lock"):
            pass
    assert [(tmp_path / f"r.{k}").read_text() for k in "abc"] == ["new"] * 3
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------- signals
def test_stop_flag_handles_sigterm_and_holds_signals_while_deferred():
    before = signal.getsignal(signal.SIGTERM)
    flag = StopFlag()
    with flag:
        with flag.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)          # a second signal: still no exception
            time.sleep(0.01)
        assert flag and flag.signum == signal.SIGTERM and flag.exit_code == 143
        with pytest.raises(SystemExit) as e:
            os.kill(os.getpid(), signal.SIGTERM)             # outside: the second ends at once
            time.sleep(0.01)
        assert e.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is before
    flag = StopFlag()
    with flag:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
    assert flag.exit_code == 130


def test_signal_during_the_writes_finishes_them(capsys, case5e5z, tmp_path, monkeypatch):
    """SIGINT then SIGTERM while the model is being written: every file is written, exit 130.
    A stale lock is taken over: its warning reaches stderr and the log, not stdout."""
    import kickref.io.outputs as outputs
    real = outputs.write_model

    def write_and_signal(model, path, **kw):
        real(model, path, **kw)
        if path.endswith(".pdb"):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)

    monkeypatch.setattr(outputs, "write_model", write_and_signal)
    (tmp_path / "r.lock").write_text(f"{dead_pid()}\n")
    rc, out, err = run_cli(capsys, *refine_args(case5e5z, tmp_path / "r", "--cycles", "1"))
    assert rc == 130, err
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(f"r.{k}" for k in SET)
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["interrupted"] is False               # the refinement itself had ended
    final = summary["final"]
    assert {"rmsd_bond_non_h", "rmsd_bond_all", "rmsd_angle_non_h", "rmsd_angle_all"} <= set(final)
    assert "rmsd_bond" not in final and final["rmsd_bond_all"] != final["rmsd_bond_non_h"]
    log = (tmp_path / "r.log").read_text()
    assert "command: kickref" in log and "options: target=" in log and "cycles=1" in log
    assert re.search(r"data: .*5e5z\.mtz columns FP,SIGFP,FREE", log)
    assert "warning:" in log and "taking over the lock" in log
    assert "taking over the lock" in err and "warning" not in out


def start_refine(prefix):
    model, data, _ = case_paths("5e5z")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "kickref", "refine", str(model), str(data),
                             "--monlib", str(MONOMERS), "-o", str(prefix), "--cycles", "40",
                             "--convergence", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    out, t0 = "", time.time()
    while time.time() - t0 < 180:                        # wait for the record of cycle 1
        line = proc.stdout.readline()
        out += line
        if re.match(r"\s+1\s+0\.\d{4}", line) or not line:
            break
    return proc, out


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_minimization_writes_every_output(tmp_path, sig, code):
    proc, out = start_refine(tmp_path / "r")
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=180)
    out += rest
    assert proc.returncode == code, out
    assert "INTERRUPTED" in out
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(f"r.{k}" for k in SET)   # no temps, no lock
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["interrupted"] is True and len(summary["cycles"]) < 41
    st = gemmi.read_structure(str(tmp_path / "r.pdb"))
    assert gemmi.read_structure(str(tmp_path / "r.cif"))[0].count_atom_sites() == st[0].count_atom_sites() > 40
    assert gemmi.read_mtz_file(str(tmp_path / "r.mtz")).column_with_label("FWT") is not None
    assert "INTERRUPTED" in (tmp_path / "r.log").read_text()


def test_second_run_on_the_same_prefix_is_refused_while_one_runs(tmp_path):
    proc, _ = start_refine(tmp_path / "r")
    try:
        model, data, _ = case_paths("5e5z")
        r = subprocess.run([sys.executable, "-m", "kickref", "refine", str(model), str(data), "-o",
                            str(tmp_path / "r")], capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT / "src")), timeout=120)
        assert r.returncode == 2 and f"pid {proc.pid}" in r.stderr, r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=180)
    assert proc.returncode == 143


# ------------------------------------------------------------------------------ progress bar
def test_progress_total_follows_the_cycles_and_ends_at_100(capsys):
    from kickref.cli.refine import ProgressBar
    bar = ProgressBar(cycles=10, per_cycle=100, enabled=False)
    assert bar.total == 1000
    bar(5, 0)
    bar(20, 1)
    bar(70, 2)                                          # cycle 1 took 50 evaluations
    assert bar.total == pytest.approx(70 + 50 * 9)
    bar(120, 3)
    assert bar.total == pytest.approx(120 + 50 * 8)
    bar.enabled = True
    bar.close()                                          # converged early: still drawn full
    assert "100.0%" in capsys.readouterr().err


def test_warnings_do_not_reach_stdout(capsys):
    from kickref.cli.common import show_warnings
    lines = []
    show_warnings(lines)
    warnings.warn("something odd")
    out = capsys.readouterr()
    assert out.out == "" and "warning: something odd" in out.err
    assert lines == ["warning: something odd"]


def test_maps_signal_during_the_writes_finishes_them(capsys, case5e5z, tmp_path, monkeypatch):
    import kickref.cli.maps as maps_cli
    real = maps_cli.write_map_coefficients

    def write_and_signal(mc, path):
        real(mc, path)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)

    monkeypatch.setattr(maps_cli, "write_map_coefficients", write_and_signal)
    rc, out, err = run_cli(capsys, "maps", *case5e5z, "-o", tmp_path / "m.mtz", "--ccp4", tmp_path / "m",
                           "--json", tmp_path / "m.json")
    assert rc == 143, err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.json", "m.mtz", "m_2fofc.ccp4", "m_fofc.ccp4"]
    assert gemmi.read_ccp4_map(str(tmp_path / "m_fofc.ccp4")).grid.nu > 0
    assert "warning" not in out
