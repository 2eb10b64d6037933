"""MAIN command macros: lexing, variables, includes, selections, keys, commands, errors, and the
seed's dens_comb driver run unchanged against the equivalent density-combination call."""
from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest

from kickref.cli import main
from kickref.macro.interpreter import ENERGY_WORDS, MINIMIZE_WORDS, Interpreter
from kickref.macro.lexer import MacroError, match_keyword, sentences
from kickref.macro.selection import evaluate

from conftest import case_paths

SEED = Path(__file__).parent / "data" / "seed_dens_comb.cmds"


# ------------------------------------------------------------------------------- lexing
def test_prompts_continuations_comments():
    text = ("> set vari X = 1\n"
            "MAIN> key k select resi name ALA .a .not -\n"
            ">   atom name C N end\n"
            "! a comment line\n"
            "# another\n"
            "minimize step 5 writ 1 \\\n"
            "  phase steps 2   ! trailing comment\n"
            "make map X set -1 1 9999.\n"
            "set vari P = 'a b!c'\n")
    s = sentences(text, "m.cmds")
    assert [x.text for x in s] == ["set vari X = 1",
                                   "key k select resi name ALA .a .not atom name C N end",
                                   "minimize step 5 writ 1 phase steps 2",
                                   "make map X set -1 1 9999.",
                                   "set vari P = a b!c"]
    assert [x.line for x in s] == [1, 2, 6, 8, 9]
    assert s[0].where == "m.cmds:1"
    with pytest.raises(MacroError, match=r"m.cmds:1: .*continuation"):
        sentences("set vari X = 1 -\n", "m.cmds")


def test_keyword_abbreviations():
    for t in ("sele", "selec", "select", "SELECT"):
        assert match_keyword(t, ("select", "segment"), "f:1") == "select"
    assert match_keyword("se", ("select", "segment"), "f:1") is None          # shorter than 3
    assert match_keyword("writ", MINIMIZE_WORDS, "f:1") == "write_step"
    assert match_keyword("gain", MINIMIZE_WORDS, "f:1") == "gain_r-value"
    assert match_keyword("step", MINIMIZE_WORDS, "f:1") == "step"           # exact beats prefix of steps
    assert match_keyword("dens", ENERGY_WORDS, "f:1") == "density"
    with pytest.raises(MacroError, match=r"f:3: ambiguous keyword 'con': con_dihe or convolution"):
        match_keyword("con", ENERGY_WORDS, "f:3")


# ------------------------------------------------------------------------- a session
@pytest.fixture(scope="module")
def part_files(tmp_path_factory):
    """5e5z split into chains DM_A (residues 1-4), D_B (5-6) and W (water), B = 28, as mmCIF; the
    2mFo-DFc map coefficients of the deposited model (kickref maps)."""
    model, data, _ = case_paths("5e5z")
    d = tmp_path_factory.mktemp("macro")
    st = gemmi.read_structure(str(model))
    st.remove_hydrogens()
    chains = {"DM_A": gemmi.Chain("DM_A"), "D_B": gemmi.Chain("D_B"), "W": gemmi.Chain("W")}
    for r in st[0][0]:
        for at in r:
            at.b_iso = 28.0
            at.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
        chains["DM_A" if r.seqid.num <= 4 else "D_B" if r.seqid.num <= 6 else "W"].add_residue(r)
    st[0].remove_chain("A")
    for c in chains.values():
        st[0].add_chain(c)
    st.setup_entities()
    st.make_mmcif_document().write_file(str(d / "part.cif"))
    assert main(["maps", str(model), str(data), "-o", str(d / "maps.mtz")]) == 0
    return d / "part.cif", data, d / "maps.mtz"


def new_session(part_files, **kw):
    from kickref import Session
    part, _, maps = part_files
    return Session(str(part), maps={"MAP_ORIG": (str(maps), "FWT", "PHWT")}, **kw)


def run_text(session, tmp_path, text, name="m.cmds"):
    p = tmp_path / name
    p.write_text(text)
    Interpreter(session).run_file(p)
    return p


def test_variables(part_files, tmp_path):
    s = new_session(part_files, variables={"N": "3"})
    run_text(s, tmp_path, "set vari AMP = 0.0\nset vari N = 5\nset vari M = N\nset coor kick AMP sele all end\n")
    assert s.variables == {"N": "5", "M": "5", "AMP": "0.0"}              # target not substituted
    with pytest.raises(MacroError, match=r"m.cmds:2: set: a value expected: 'UNDEFINED' is neither a number"):
        run_text(s, tmp_path, "set vari X = 1\nset temp sele all end = UNDEFINED\n")


def test_includes(part_files, tmp_path):
    s = new_session(part_files)
    (tmp_path / "def_all.cmds").write_text("set vari FROM_USER = 1\n")
    (tmp_path / "sub.cmds").write_text("set vari A = 1\nreturn\nset vari B = 1\n")
    (tmp_path / "rec.cmds").write_text("<rec\n")
    run_text(s, tmp_path, "<DEF_ALL\n<sub\nset vari C = 1\nreturn\nset vari D = 1\n")
    assert s.variables == {"FROM_USER": "1", "A": "1", "C": "1"}     # user DEF_ALL, returns
    with pytest.raises(MacroError, match=r"nested deeper than 32.*rec.cmds:1"):
        run_text(s, tmp_path, "<rec\n", "top.cmds")
    with pytest.raises(MacroError, match=r"top.cmds:1: macro 'nope' not found"):
        run_text(s, tmp_path, "<nope\n", "top.cmds")


# ------------------------------------------------------------------------ selections
@pytest.fixture(scope="module")
def model_1cbs():
    from kickref import read_model
    return read_model(str(case_paths("1cbs")[0]))


def test_selections_match_numpy(model_1cbs):
    m = model_1cbs
    sel = lambda text, keys=None, warn=None: evaluate(text.split(), m, keys or {}, "t:1", warn)  # noqa: E731
    names = np.array([a.strip() for a in m.atom_name])
    charged = np.isin(m.resname, ["ARG", "LYS", "ASP", "GLU"]) & ~np.isin(names, ["C", "N", "CA", "O"])
    assert charged.any()
    assert (sel("resi name ARG LYS ASP GLU .a .not atom name C N CA O") == charged).all()
    c_any = np.array([len(a) == 2 and a[0] == "C" for a in names])
    assert (sel("atom name C%") == c_any).all()
    assert (sel("atom name C*") == np.char.startswith(names.astype(str), "C")).all()
    assert not sel("( .not. all )").any()
    ala, gly, ca = m.resname == "ALA", m.resname == "GLY", names == "CA"
    warned = []
    got = sel("resi name ALA .o resi name GLY .a atom name CA", warn=warned.append)
    assert (got == (ala | (gly & ca))).all() and warned                  # .a binds first, with a warning
    assert (sel("( resi name ALA .o resi name GLY ) .a atom name CA") == ((ala | gly) & ca)).all()
    assert (sel("resi name ALA .x atom name CA") == (ala ^ ca)).all()
    assert (sel("resi name GLY atom name CA") == (gly & ca)).all()         # side by side: AND
    num = np.array([int(s) for s in m.seqid])
    assert (sel("resi numb 10:20 30") == (((num >= 10) & (num <= 20)) | (num == 30))).all()
    assert (sel("resi numb 10-20") == ((num >= 10) & (num <= 20))).all()
    assert (sel("segm name A*") == np.char.startswith(m.chain.astype(str), "A")).all()
    assert (sel("atom numb 1:5") == (np.arange(m.n_atoms) < 5)).all()
    # around: brute force over symmetry mates and neighbouring cells
    key = {"K": (num == 50)}
    frac = np.array([m.cell.fractionalize(gemmi.Position(*x)).tolist() for x in m.xyz])
    orth = np.array(m.cell.orth.mat.tolist())
    near = np.zeros(m.n_atoms, bool)
    for op in m.spacegroup.operations():
        rot = np.array(op.rot, float) / op.DEN
        tr = np.array(op.tran, float) / op.DEN
        mates = frac[key["K"]] @ rot.T + tr
        d = frac[:, None, :] - mates[None, :, :]
        d -= np.round(d)
        near |= (np.linalg.norm(d @ orth.T, axis=2) <= 4.0).any(axis=1)
    assert (sel("around key K distance 4", key) == (near | key["K"])).all()
    with pytest.raises(MacroError, match="neither a selection tag nor a key"):
        sel("resi name ALA .a nokey")


def test_keys(part_files, tmp_path):
    s = new_session(part_files)
    run_text(s, tmp_path, "key near select around key work_set distance 1 end\n"
                          "key dm select segm name DM_* end\nkey other select dm .o segm name W end\n")
    assert (s.keys["dm"] == (s.model.chain == "DM_A")).all()
    assert (s.keys["other"] == np.isin(s.model.chain, ["DM_A", "W"])).all()
    before = s.keys["dm"].copy()
    s.model.xyz += 5.0                                    # keys are snapshots
    assert (s.keys["dm"] == before).all()
    run_text(s, tmp_path, "key dm drop\n")
    assert "dm" not in s.keys
    with pytest.warns(UserWarning, match="selects no atoms"):
        run_text(s, tmp_path, "key empty select resi name XYZ end\n")
    run_text(s, tmp_path, "key dummy initialize\n")
    assert s.keys == {}


# ------------------------------------------------------------------------- commands
def test_set_temp_weight_charge(part_files, tmp_path):
    s = new_session(part_files)
    run_text(s, tmp_path, "set temp sele segm name D_B end = 33.5\nset weigh sele atom name H* end 0.0\n"
                          "set temp = 12 sele resi name LEU .a atom name CA end\nset charge sele all end 0.5\n")
    m = s.model
    names = np.array([a.strip() for a in m.atom_name])
    assert (m.b_iso[m.chain == "D_B"] == 33.5).all() and (m.b_iso[(m.chain != "D_B") & ~((m.resname == "LEU") & (names == "CA"))] == 28).all()
    assert (m.b_iso[(m.resname == "LEU") & (names == "CA")] == 12).all()
    assert (s.data_weight == np.where(m.is_hydrogen, 0.0, 1.0)).all() and m.is_hydrogen.any()
    assert (s.charge == 0.5).all()


def test_kicks_reproducible(part_files, tmp_path):
    text = "set coor kick 0.2 sele segm name DM_A end\nset temp kick 5. sele all end\n"
    a, b, c = (new_session(part_files, seed=k) for k in (7, 7, 8))
    x0, b0 = a.model.xyz.copy(), a.model.b_iso.copy()
    for s in (a, b, c):
        run_text(s, tmp_path, text)
    heavy = ~a.model.is_hydrogen
    assert np.array_equal(a.model.xyz, b.model.xyz) and np.array_equal(a.model.b_iso, b.model.b_iso)
    assert not np.array_equal(a.model.xyz, c.model.xyz)
    d = a.model.xyz - x0
    moved = heavy & (a.model.chain == "DM_A")
    assert np.abs(d[moved]).max() <= 0.2 and np.abs(d[moved]).max() > 0.1
    assert (d[heavy & (a.model.chain != "DM_A")] == 0).all()
    db = (a.model.b_iso - b0)[heavy]
    assert np.abs(db).max() <= 5.0 and np.abs(db).max() > 3.0


def test_make_map(part_files, tmp_path):
    s = new_session(part_files)
    run_text(s, tmp_path, "make map MAP_FO zero\n")
    assert (s.maps["MAP_FO"].grid == 0).all() and s.maps["MAP_FO"].shape == s.maps["MAP_ORIG"].shape
    run_text(s, tmp_path, "make map MAP_FO set -1 1 9999.\n")
    assert (s.maps["MAP_FO"].grid == 9999).all()
    run_text(s, tmp_path, "make map MAP_FO from MAP_ORIG copy\n")
    assert np.array_equal(s.maps["MAP_FO"].grid, s.maps["MAP_ORIG"].grid)
    s.maps["MAP_ORIG"].grid[0, 0, 0] += 1                # a copy, not a view
    assert not np.array_equal(s.maps["MAP_FO"].grid, s.maps["MAP_ORIG"].grid)


def test_energy_switches(part_files, tmp_path):
    s = new_session(part_files)
    s.model.xyz[0] += 0.3                               # strain a bond
    e_on, parts = s.compute_energy()
    assert parts["bond"] > 0
    run_text(s, tmp_path, "energy bond off\n")
    e_off, parts_off = s.compute_energy()
    assert "bond" not in parts_off and e_off == pytest.approx(e_on - parts["bond"])
    run_text(s, tmp_path, "energy bond on scale 2 angle off\nener dens map MAP_ORIG dens scal 3\n")
    e2, p2 = s.compute_energy()
    assert "angle" not in p2 and s.restraints.switches["bond"] == (True, 2.0)
    assert s.density == {"on": True, "map": "MAP_ORIG", "scale": 3.0, "mode": "interpolation"}
    with pytest.raises(MacroError, match="unsupported in kickref: energy term 'pair'"):
        run_text(s, tmp_path, "energy pair on\n")


def test_rigid_body(part_files, tmp_path):
    s = new_session(part_files)
    body = s.model.chain == "D_B"
    e_start = s.compute_energy()[0]
    s.model.xyz[body] += [0.25, -0.15, 0.1]
    d0 = np.linalg.norm(s.model.xyz[body][:, None] - s.model.xyz[body][None], axis=2)
    e0 = s.compute_energy()[0]
    run_text(s, tmp_path, "minimize sele segm name D_B end by body step 30\n")
    d1 = np.linalg.norm(s.model.xyz[body][:, None] - s.model.xyz[body][None], axis=2)
    assert np.abs(d1 - d0).max() < 1e-9                 # rigid
    assert s.compute_energy()[0] < min(e0, e_start)        # below the shifted and the deposited start
    assert (s.model.xyz[~body] == new_session(part_files).model.xyz[~body]).all()


# ---------------------------------------------------------------------------- errors
def test_unknown_command_exit_2_nothing_written(part_files, tmp_path, capsys):
    part, data, maps = part_files
    bad = tmp_path / "bad.cmds"
    bad.write_text("set vari X = 1\n\nfrobnicate all\n")
    rc = main(["macro", str(bad), "--model", str(part), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}:3: unknown command 'frobnicate'" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("out*"))
    bad.write_text("fourier map 1\n")
    assert main(["macro", str(bad), "--model", str(part), "-o", str(tmp_path / "out")]) == 2
    assert "unsupported in kickref: command 'fourier'" in capsys.readouterr().err
    assert not list(tmp_path.glob("out*"))
    assert main(["macro", str(bad), "--model", str(part), "--var", "1X=2", "-o", str(tmp_path / "o")]) == 2
    assert "argument --var: must be NAME=VALUE" in capsys.readouterr().err


def test_hl_option_makes_the_experimental_map(tmp_path):
    """--hl NAME=FILE:HLA,HLB,HLC,HLD on gamma's Xe-SAD phases, amplitudes from --data: the map in
    slot NAME is the one kickref.io.maps.map_from_hendrickson_lattman makes."""
    from kickref.io.maps import load_density_map, map_from_hendrickson_lattman
    from kickref.io.models import read_model
    model, data, _ = case_paths("gamma")
    hl = model.parent / "gamma_sad_phases.mtz"
    m = tmp_path / "m.cmds"
    m.write_text("make map COPY from EXP copy\n")
    rc = main(["macro", str(m), "--model", str(model), "--data", str(data), "--hydrogens", "keep",
               "--hl", f"EXP={hl}:HLA,HLB,HLC,HLD", "-o", str(tmp_path / "hl"), "-q"])
    assert rc == 0
    got = load_density_map(tmp_path / "hl_COPY.ccp4")
    st = read_model(model)
    ref = map_from_hendrickson_lattman(str(hl), ("HLA", "HLB", "HLC", "HLD"), st.cell, st.spacegroup,
                                       f_obs=str(data))
    assert got.grid.shape == ref.grid.shape
    cc = np.corrcoef(got.grid.ravel(), ref.grid.ravel())[0, 1]
    assert cc > 0.999


# ----------------------------------------------------------------- the seed, unchanged
def test_seed_dens_comb_equals_density_combination(part_files, tmp_path):
    """The seed's driver (verbatim, prompts included) through kickref macro, and the equivalent
    kickref.density_combination call (same data, map, part/envelope, parameters): same coordinates."""
    import kickref
    part, data, maps = part_files
    out = tmp_path / "seed"
    rc = main(["macro", str(SEED), "--model", str(part), "--data", str(data),
               "--map-coeffs", f"MAP_ORIG={maps}:FWT,PHWT", "-o", str(out), "-q"])
    assert rc == 0
    for suffix in (".cif", ".json", ".log", "_MAP_FO.ccp4", "_MAP_COMBINED.ccp4"):
        assert Path(f"{out}{suffix}").exists(), suffix
    log = Path(f"{out}.log").read_text()
    assert log.count("] combine density MAP_ORIG into MAP_FO") == 1 + 120 // 15
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["keys"]["model_part"] > 0 and summary["minimize"][0]["minimize"] == "density combination"

    s = kickref.Session(str(part), str(data), maps={"MAP_ORIG": (str(maps), "FWT", "PHWT")})
    s.run_macro(SEED)
    ref = kickref.density_combination(str(part), None, str(data), map_coeffs=(str(maps), "FWT", "PHWT"),
                                      part="//DM_A", envelope="//D_B", steps=120, recombine_every=15,
                                      rad_mask=4.5, rad_comb=2.8, weight_fc=1.1, dens_scale=800.0,
                                      hydrogens="add")
    assert s.model.n_atoms == ref.model.n_atoms
    assert np.abs(s.model.xyz - ref.model.xyz).max() < 1e-6
    moved = np.linalg.norm(ref.model.xyz - kickref.Session(str(part)).model.xyz, axis=1)
    assert moved.max() > 0.01                                  # it did refine
    written = gemmi.read_structure(f"{out}.cif")
    xyz = np.array([a.pos.tolist() for r in written[0].all() for a in [r.atom]])
    assert np.abs(xyz - s.model.xyz).max() < 1e-3              # the file holds the same model
    # the same through the command line: kickref refine --dens-comb with the seed's variables
    dc = tmp_path / "dc"
    rc = main(["refine", str(part), str(data), "--map-coeffs", f"{maps}:FWT,PHWT", "--dens-comb",
               "--part", "//DM_A", "--envelope", "//D_B", "--steps", "120", "--recombine-every", "15",
               "--rad-mask", "4.5", "--rad-comb", "2.8", "--weight-fc", "1.1", "--dens-scale", "800",
               "-o", str(dc), "-q"])
    assert rc == 0
    cli = gemmi.read_structure(f"{dc}.cif")
    xyz_cli = np.array([a.pos.tolist() for r in cli[0].all() for a in [r.atom]])
    assert np.abs(xyz_cli - xyz).max() < 1e-6                  # both files, written alike


def test_phase_macro_user_override_and_stop(part_files, tmp_path):
    """A user's dens_comb.cmds replaces the built-in (here one that forgets to combine: an error
    naming it); a set StopFlag skips the remaining sentences."""
    s = new_session(part_files)
    (tmp_path / "dens_comb.cmds").write_text("set vari SEEN = 1\n")
    with pytest.raises(MacroError, match=r"m.cmds:2: phase macro dens_comb.cmds did not combine the maps"):
        run_text(s, tmp_path, "ener dens map MAP_ORIG\nminimize step 5 phase steps 5 macro dens_comb.cmds\n")
    assert s.variables["SEEN"] == "1"
    s.stop.set()
    run_text(s, tmp_path, "set vari AFTER = 1\n")
    assert "AFTER" not in s.variables


def test_minimize_routes(part_files, tmp_path):
    """Without a density term: the restraints alone (energy goes down); with one and no phase
    macro: real-space refinement toward the map slot (only the selected atoms move)."""
    s = new_session(part_files)
    s.model.xyz[~s.model.is_hydrogen] += np.random.default_rng(3).uniform(-0.1, 0.1, (int((~s.model.is_hydrogen).sum()), 3))
    e0 = s.compute_energy()[0]
    run_text(s, tmp_path, "minimize step 20\n")
    assert s.history[-1]["minimize"] == "restraints" and s.compute_energy()[0] < 0.8 * e0
    x0 = s.model.xyz.copy()
    run_text(s, tmp_path, "ener dens map MAP_ORIG\nminimize sele segm name DM_A end step 10\n")
    assert s.history[-1]["minimize"] == "real-space"
    moved = np.linalg.norm(s.model.xyz - x0, axis=1) > 0
    heavy = ~s.model.is_hydrogen                # (a riding H of D_B may hang on an atom of DM_A)
    assert moved[heavy & (s.model.chain == "DM_A")].any() and not moved[heavy & (s.model.chain != "DM_A")].any()
