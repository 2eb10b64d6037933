"""kickref batch: three small shared cases on a LocalCluster of two workers, a missing file among
them, a worker killed mid-batch, a second run that skips everything, the HTML report; and the
pieces that need no cluster (entries, the choice rule)."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import DATA, MONOMERS, need_shared
from kickref.batch import START, Candidate, ChoiceRule, choose, parse_candidate
from kickref.core.errors import InputError, KickrefError
from kickref.io.entries import read_entries

CHEAP = "--cycles 1 --xyz-steps 3 --adp-steps 3"          # one short cycle: the machinery, not the science
CANDIDATES = ["default", "tight=--bond-rmsd 0.005"]
SMALL = ["5e5z", "5wkd", "6mw0"]


def _table(path, cases, missing=False):
    lines = ["name,model,data"]
    for c in cases:
        info = json.loads((DATA / c / "case.json").read_text())
        lines.append(f"{c},{DATA / c / info['model_file']},{DATA / c / info['reflection_file']}")
    if missing:
        lines.append(f"gone,{DATA / '5e5z' / 'no_such_model.pdb'},{DATA / '5e5z' / '5e5z.mtz'}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """One batch over the three small cases plus an entry whose model file is missing."""
    need_shared()
    pytest.importorskip("distributed")
    from kickref.cli import main
    tmp = tmp_path_factory.mktemp("batch")
    out = tmp / "out"
    rc = main(["batch", str(_table(tmp / "entries.csv", SMALL, missing=True)), "-o", str(out), "--workers", "2",
               "--options", CHEAP, "--monlib", str(MONOMERS), "--candidates", *CANDIDATES, "-q"])
    return tmp, out, rc


def test_batch_three_cases_and_a_missing_file(batch_run):
    tmp, out, rc = batch_run
    assert rc == 1                                     # one entry failed
    rows = {r["entry"]: r for r in json.loads((out / "summary.json").read_text())["entries"]}
    assert sorted(rows) == sorted(SMALL + ["gone"])
    assert rows["gone"]["status"] == "error"
    assert "no_such_model.pdb: file not found" in rows["gone"]["error"]
    assert "\n" not in rows["gone"]["error"]
    for c in SMALL:
        r = rows[c]
        assert r["status"] == "ok", r
        assert r["chosen"] in ("default", "tight", START)
        if r["chosen"] == START:                       # never worse than the start
            assert r["r_free"] == r["start_r_free"] and "start kept" in r["reason"]
        elif r["start_r_free"] is not None:
            assert r["r_free"] < r["start_r_free"]
        for name in ("default", "tight"):
            files = r["candidates"][name]["files"]
            assert Path(files["cif"]).exists() and Path(files["json"]).exists()
        assert (out / c / "entry.json").exists()
    assert (out / "summary.csv").read_text().count("\n") == 1 + len(rows)


def test_batch_result_is_the_single_refine_run(batch_run, tmp_path):
    """A candidate's outputs equal those of the kickref refine command its log names."""
    from kickref.cli import main
    tmp, out, _ = batch_run
    cand = json.loads((out / "5e5z" / "entry.json").read_text())["summary"]["candidates"]["tight"]
    argv = cand["command"].split()[1:]                 # 'kickref refine ...' with the batch's -o
    argv[argv.index("-o") + 1] = str(tmp_path / "single")
    assert main(argv + ["-q"]) == 0
    a = json.loads((tmp_path / "single.json").read_text())
    b = json.loads(Path(cand["files"]["json"]).read_text())
    assert a["final"] == b["final"]
    assert (tmp_path / "single.pdb").read_text() == Path(cand["files"]["pdb"]).read_text()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.heads, self.links, self.images, self.script = [], [], [], [], ""
        self._in = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th", "script"):
            self._in = tag
            if tag == "td":
                self.rows[-1].append("")
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "img":
            self.images.append(a["src"])

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "th":
            self.heads.append(data)
        elif self._in == "td":
            self.rows[-1][-1] += data
        elif self._in == "script":
            self.script += data


def test_report_page(batch_run):
    _, out, _ = batch_run
    page = _Page()
    page.feed((out / "index.html").read_text())
    assert {"entry", "status", "chosen", "start_r_free", "r_free", "rmsd_bond", "time"} <= set(page.heads)
    body = [r for r in page.rows if r]
    assert len(body) == 4 and {r[0] for r in body} == set(SMALL + ["gone"])
    assert "function sortBy" in page.script
    assert page.links and all((out / h).exists() for h in page.links)
    assert sorted(page.images) == ["delta_rfree.png", "time_atoms.png"]
    assert all((out / p).stat().st_size > 1000 for p in page.images)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_in_a_headless_browser(batch_run, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium): the page is only parsed "
                    "(test_report_page)")
    _, out, _ = batch_run
    shot = tmp_path / "page.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1400,900", (out / "index.html").as_uri()], timeout=60,
                   capture_output=True)
    import matplotlib.image
    img = matplotlib.image.imread(str(shot))[..., :3]
    top = img[: img.shape[0] // 2]
    dark = (top.mean(axis=2) < 0.5).mean()            # text and table lines
    tinted = ((top.max(axis=2) - top.min(axis=2)) > 0.03).mean()     # the coloured table heads/rows
    assert 0.002 < dark < 0.5 and tinted > 0.005, (dark, tinted)


def test_second_run_skips_every_finished_entry(batch_run, capsys):
    from kickref.cli import main
    tmp, out, _ = batch_run
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/task.json")}
    rc = main(["batch", str(_table(tmp / "again.csv", SMALL)), "-o", str(out), "--workers", "2",
               "--options", CHEAP, "--monlib", str(MONOMERS), "--candidates", *CANDIDATES])
    assert rc == 0
    assert "3 entries: 3 done before, 0 to run" in capsys.readouterr().out
    rows = json.loads((out / "summary.json").read_text())["entries"]
    assert len(rows) == 3 and all(r["skipped"] for r in rows)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/task.json")} == stamps


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two single-threaded worker processes, shared by the tests below."""
    need_shared()
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit=0) as c:
        yield c


def test_a_worker_killed_mid_batch(tmp_path, cluster):
    """SIGKILL to a worker while it refines: Dask reruns its task elsewhere; every entry is done
    once, with every candidate's outputs."""
    import distributed
    from kickref.batch import plan_batch, run_batch
    from kickref.cli.batch import resolver
    entries = read_entries(_table(tmp_path / "e.csv", ["5e5z", "5wkd"]))
    cands = [parse_candidate(c) for c in CANDIDATES]
    plans = plan_batch(entries, cands, tmp_path / "out", resolver(CHEAP, str(MONOMERS)))
    killed = []
    with distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def killer():
            t0 = time.time()
            while time.time() - t0 < 60 and not killed:
                for addr, keys in client.processing().items():
                    if any(str(k).startswith("refine-") for k in keys) and addr in pids:
                        time.sleep(0.5)
                        os.kill(pids[addr], signal.SIGKILL)
                        killed.append(addr)
                        return
                time.sleep(0.05)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        rows = run_batch(plans, tmp_path / "out", client=client)
        t.join()
    assert killed
    assert [r["entry"] for r in rows] == ["5e5z", "5wkd"]
    assert all(r["status"] == "ok" for r in rows), rows
    for r in rows:
        for name in ("default", "tight"):
            assert r["candidates"][name]["status"] == "ok"
            stamp = json.loads((tmp_path / "out" / r["entry"] / name / "task.json").read_text())
            assert Path(stamp["result"]["files"]["pdb"]).exists()
    assert not list((tmp_path / "out").glob("*/*/.kickref-*"))     # no temporary file left


def test_entries_table_and_folder(tmp_path):
    need_shared()
    rows = read_entries(_table(tmp_path / "e.csv", ["5e5z", "1cbs"]))
    assert [e.name for e in rows] == ["5e5z", "1cbs"]
    tsv = tmp_path / "e.tsv"
    tsv.write_text("model\tdata\tligands\toptions\nm.pdb\td.mtz\ta.cif;b.cif\t--cycles 2\n")
    (e,) = read_entries(tsv)
    assert e.name == "m" and e.model == str(tmp_path / "m.pdb") and len(e.ligands) == 2
    assert e.options == "--cycles 2"
    cases = read_entries(DATA)
    names = [c.name for c in cases]
    assert "5e5z" in names and "baz2b" in names
    baz = cases[names.index("baz2b")]
    assert [Path(x).name for x in baz.ligands] == ["x828_ligand.cif"]     # dictionaries only
    with pytest.raises(InputError, match="'model' and 'data'"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_entries(tmp_path / "bad.csv")


def test_choice_rule():
    start = {"r_work": 0.20, "r_free": 0.25}
    res = {"default": {"status": "ok", "r_work": 0.18, "r_free": 0.24, "rmsd_bond": 0.008},
           "loose": {"status": "ok", "r_work": 0.15, "r_free": 0.23, "rmsd_bond": 0.025},    # geometry
           "gap": {"status": "ok", "r_work": 0.10, "r_free": 0.235, "rmsd_bond": 0.01},     # gap 0.135
           "bad": {"status": "error", "error": "x: file not found"}}
    assert choose(start, res)[0] == "default"
    assert choose(start, res, ChoiceRule(max_bond_rmsd=0.03))[0] == "loose"
    name, why = choose({"r_work": 0.15, "r_free": 0.2}, res)
    assert name == START and "no candidate beat the start's R-free 0.2000" in why
    assert choose(start, {"bad": res["bad"]})[0] == START
    no_free = {k: {**v, "r_free": None} for k, v in res.items() if k != "bad"}
    assert choose({"r_work": 0.2, "r_free": None}, no_free)[0] == "default"


def test_candidates_parse():
    assert parse_candidate("tight=--bond-rmsd 0.005") == Candidate("tight", "--bond-rmsd 0.005")
    assert parse_candidate("default").flags == ""
    with pytest.raises(KickrefError):
        parse_candidate("start=--cycles 2")
    with pytest.raises(KickrefError):
        parse_candidate("nosuch")


def test_refine_multistart(tmp_path, capsys, cluster):
    """--starts 2 on a cluster given by its scheduler's address: two kicked trajectories;
    PREFIX.* is the one with the lower work-set target, whatever their R-free."""
    from kickref.cli import main
    d = DATA / "5e5z"
    rc = main(["refine", str(d / "5e5z.pdb"), str(d / "5e5z.mtz"), "-o", str(tmp_path / "r"), "--cool", "1",
               "--kick", "0.3:0", "--xyz-steps", "3", "--starts", "2", "--scheduler", cluster.scheduler_address,
               "-q"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "r_starts" / "summary.json").read_text())
    rows = summary["trajectories"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    best = min(rows, key=lambda r: r["work_target"])
    assert summary["chosen"] == best["candidate"]
    assert (tmp_path / "r.pdb").read_text() == Path(best["files"]["pdb"]).read_text()
    seeds = [json.loads(Path(r["files"]["json"]).read_text())["options"]["seed"] for r in rows]
    assert seeds[1] == seeds[0] + 1


def test_multistart_needs_kicks(tmp_path, capsys):
    need_shared()
    from kickref.cli import main
    d = DATA / "5e5z"
    rc = main(["refine", str(d / "5e5z.pdb"), str(d / "5e5z.mtz"), "-o", str(tmp_path / "r"), "--starts", "2"])
    assert rc == 2 and "--starts needs kicked trajectories" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow                               # a batch process with its own cluster: ~20 s more each
@pytest.mark.parametrize("signum,rc,word", [(signal.SIGINT, 130, "interrupted"),
                                            (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_keeps_finished_entries(tmp_path, signum, rc, word):
    """SIGINT to the batch's process group (what Ctrl-C sends) after its first entry: exit 130,
    the finished entry in the summary; a second run over it redoes nothing. SIGTERM to the batch
    process (what `timeout` or a pipeline's supervisor sends) does the same with exit 143."""
    need_shared()
    pytest.importorskip("distributed")
    import sys
    table = _table(tmp_path / "e.csv", ["5e5z", "5wkd"])
    cmd = [sys.executable, "-m", "kickref", "batch", str(table), "-o", str(tmp_path / "out"), "--workers", "2",
           "--options", CHEAP, "--candidates", "default"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    first = None
    for line in p.stdout:
        if "R-free" in line:
            first = line.split(":")[0]
            if signum == signal.SIGINT:
                os.killpg(p.pid, signum)
            else:
                p.send_signal(signum)
            break
    out, err = p.communicate(timeout=120)
    assert first in ("5e5z", "5wkd"), out + err
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["entries"]
    assert first in [r["entry"] for r in rows]
    if p.returncode != 0:                       # 0 only when the other entry finished meanwhile
        assert p.returncode == rc and f"kickref batch: {word}" in err, (p.returncode, err[-2000:])
    assert "Traceback" not in err
    from kickref.cli import main
    done = _table(tmp_path / "done.csv", [first])
    assert main(["batch", str(done), "-o", str(tmp_path / "out"), "--options", CHEAP, "--candidates",
                 "default", "-q"]) == 0
    (row,) = json.loads((tmp_path / "out" / "summary.json").read_text())["entries"]
    assert row["skipped"]
