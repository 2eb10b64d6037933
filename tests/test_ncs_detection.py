"""NCS detection: groups, operators, atom matching, given groups, negative controls, the CLI."""
import json

import gemmi
import numpy as np
import pytest

from conftest import DATA, case_paths, two_copies
from kickref import api
from kickref.cli import main
from kickref.core.model import Model
from kickref.io.models import read_model
from kickref.xtal.ncs import detect_ncs, groups_from_chains, parse_group_spec, rotation_angle


def test_synthetic_copy_gives_the_operator():
    model, R, t = two_copies()
    groups = detect_ncs(model)
    assert len(groups) == 1 and groups[0].chains == ["A", "B"]
    c = groups[0].copies[1]
    assert np.abs(c.rotation - R).max() < 1e-6 and np.abs(c.translation - t).max() < 1e-4
    assert c.rmsd < 1e-4 and c.local_rms < 1e-4 and c.identity == 100.0
    atoms = groups[0].atoms
    assert (atoms >= 0).all() and atoms.shape[1] == int((model.chain == "A").sum())
    # the table pairs equal atoms
    assert (model.atom_name[atoms[0]] == model.atom_name[atoms[1]]).all()
    assert np.allclose(c.transform(model.xyz[atoms[0]]), model.xyz[atoms[1]], atol=1e-4)


def test_mutations_and_a_deletion():
    mutate, delete = (10, 40, 90), range(60, 65)
    model, R, t = two_copies(mutate=mutate, delete=delete)
    g = detect_ncs(model)[0]
    c = g.copies[1]
    assert c.identity < 100.0 and c.n_aligned == 137 - 5 - 3
    ref_res = [p[0] for p in c.residue_pairs]
    assert all(p[0] == p[1] for p in c.residue_pairs)          # numbering kept across the gap
    seq_a = [str(r.seqid) for r in model.structure[0]["A"]]
    assert not {seq_a[k] for k in (*mutate, *delete)} & set(ref_res)
    matched = g.atoms[1] >= 0
    assert np.abs(c.rotation - R).max() < 1e-6
    assert np.allclose(c.transform(model.xyz[g.atoms[0, matched]]), model.xyz[g.atoms[1, matched]], atol=1e-4)


def test_given_groups_and_spec():
    assert parse_group_spec("A,B;C,D") == [["A", "B"], ["C", "D"]]
    with pytest.raises(ValueError):
        parse_group_spec("A")
    model, R, _ = two_copies()
    g = groups_from_chains(model, [["B", "A"]])[0]
    assert g.chains == ["B", "A"] and np.abs(g.copies[1].rotation - R.T).max() < 1e-6
    assert api.ncs_groups(model, "B,A")[0].chains == ["B", "A"]


@pytest.mark.parametrize("case", ["1cbs", "5e5z", "3zt9", "5wkd"])
def test_single_chain_cases_have_no_ncs(case):
    path, _, info = case_paths(case)
    assert detect_ncs(read_model(path)) == []


def test_unrelated_chains_are_not_grouped():
    a = read_model(case_paths("1cbs")[0]).structure
    b = read_model(case_paths("3zt9")[0]).structure
    ch = b[0][0].clone()
    ch.name = "Z"
    a[0].add_chain(ch)
    a.setup_entities()
    assert detect_ncs(Model.from_structure(a)) == []


def test_4iid_two_chains_match_gemmi_superposition():
    path, _, _ = case_paths("4iid")
    model = read_model(path)
    groups = detect_ncs(model)
    assert len(groups) == 1 and groups[0].chains == ["A", "B"]
    c = groups[0].copies[1]
    assert c.n_aligned >= 830 and c.identity == 100.0 and c.rmsd < 0.6 and c.local_rms < 0.3
    st = model.structure
    pa, pb = st[0]["A"].get_polymer(), st[0]["B"].get_polymer()
    su = gemmi.calculate_superposition(pb, pa, pa.check_polymer_type(), gemmi.SupSelect.MainChain,
                                       trim_cycles=3)
    assert np.abs(np.array(su.transform.mat.tolist()) - c.rotation).max() < 1e-6
    assert np.abs(np.array(su.transform.vec.tolist()) - c.translation).max() < 1e-4
    assert abs(rotation_angle(c.rotation) - 179.6) < 0.1


def test_cli_prints_and_writes_json(tmp_path, capsys):
    path, _, _ = case_paths("4iid")
    out = tmp_path / "ncs.json"
    assert main(["ncs", str(path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 group" in text and "  A     B  " in text
    d = json.loads(out.read_text())
    assert d["groups"][0]["chains"] == ["A", "B"]
    # the JSON is accepted back as --ncs-groups
    assert main(["ncs", str(path), "--ncs-groups", str(out)]) == 0
    assert "1 group" in capsys.readouterr().out
    assert main(["ncs", str(DATA / "1cbs" / "1cbs.cif.gz")]) == 0
    assert "no groups" in capsys.readouterr().out
