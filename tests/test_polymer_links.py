"""Polymer links from the sequence: consecutive residues linked however stretched the start,
not across numbering/sequence gaps or beyond the limit; refined geometry counted as gemmi does."""
import io
import math
import sys

import gemmi
import numpy as np
import pytest

from conftest import MONOMERS, ROOT, case_paths
import kickref
from kickref.core.model import Model
from kickref.core.state import AtomState
from kickref.restraints import build_restraints


def _five_e5z(cn=None, renumber=0, drop=None):
    """5e5z with ASN 6 moved along C(5)-N(6) to ``cn`` Å, renumbered by ``renumber``,
    or with residue index ``drop`` removed and the rest renumbered consecutively."""
    st = gemmi.read_structure(str(case_paths("5e5z")[0]))
    st.setup_entities()
    ch = st[0][0]
    if cn is not None:
        c, n = ch[4]["C"][0].pos, ch[5]["N"][0].pos
        shift = (n - c) * ((cn - n.dist(c)) / n.dist(c))
        for a in ch[5]:
            a.pos = a.pos + shift
    ch[5].seqid.num += renumber
    if drop is not None:
        del ch[drop]
        for r in ch:
            if r.het_flag != "H" and r.seqid.num > drop:
                r.seqid.num -= 1
    return Model.from_structure(st)


def _has_bond(R, m, a, b):
    return any({m.atom_label(i), m.atom_label(j)} == {a, b} for i, j in R.bonds.idx)


def _warnings(R):
    return [l for l in R.log if l.startswith("warning") or l.startswith("gemmi:")]


@pytest.mark.parametrize("cn", [2.1, 3.5])
def test_stretched_peptide_is_linked(cn):
    m = _five_e5z(cn)
    R = build_restraints(m, monlib_dir=MONOMERS)
    assert _has_bond(R, m, "A/SER 5/C", "A/ASN 6/N")
    ref = build_restraints(_five_e5z(), monlib_dir=MONOMERS)
    assert (len(R.bonds), len(R.angles), len(R.planes)) == \
        (len(ref.bonds), len(ref.angles), len(ref.planes))
    assert R.link_counts == ref.link_counts == {"TRANS": 5}
    assert [l["origin"] for l in R.links] == ["polymer"]
    assert _warnings(R) == []
    # the forced bond is in the energy and in the statistics
    k = [r for r, (i, j) in enumerate(R.bonds.idx)
         if {m.atom_label(i), m.atom_label(j)} == {"A/SER 5/C", "A/ASN 6/N"}][0]
    state = AtomState.from_model(m)
    dev, sig, mask = R.bonds.deviations(state)
    assert mask[k] and dev[k] == pytest.approx(cn - R.bonds.ideal[k], abs=1e-3)
    assert R.bonds.value(state) >= (dev[k] / sig[k]) ** 2 * 0.99
    assert R.statistics()["bond"]["rmsd"] > ref.statistics()["bond"]["rmsd"] + 0.05

def test_too_long_peptide_is_a_break_with_a_warning():
    m = _five_e5z(6.0)
    R = build_restraints(m, monlib_dir=MONOMERS)
    assert not _has_bond(R, m, "A/SER 5/C", "A/ASN 6/N")
    w = _warnings(R)
    assert len(w) == 1 and "A/SER 5" in w[0] and "A/ASN 6" in w[0] and "6.00" in w[0]


def test_no_link_across_a_numbering_gap():
    m = _five_e5z(2.1, renumber=2)
    R = build_restraints(m, monlib_dir=MONOMERS)
    assert not _has_bond(R, m, "A/SER 5/C", "A/ASN 8/N")
    assert R.links == [] and R.link_counts.get("gap") == 1


def test_no_link_across_an_entity_sequence_gap():
    # SER 5 removed, ASN renumbered 5: numbering is consecutive, the SEQRES alignment is not
    m = _five_e5z(drop=4)
    d = np.linalg.norm(m.xyz[[m.atom_label(i) == "A/SER 4/C" for i in range(m.n_atoms)]]
                       - m.xyz[[m.atom_label(i) == "A/ASN 5/N" for i in range(m.n_atoms)]])
    assert d < 4.5          # close enough that only the sequence stops the link
    R = build_restraints(m, monlib_dir=MONOMERS)
    assert not _has_bond(R, m, "A/SER 4/C", "A/ASN 5/N")


def test_refined_stretched_link_closes_and_geometry_matches_gemmi(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from shake import shake_file
    model, data, _ = case_paths("5e5z")
    start = tmp_path / "shaken.cif"
    shake_file(model, start, rms=0.5, seed=7, keep_links=False)
    st0 = gemmi.read_structure(str(start))
    assert st0[0][0][4]["C"][0].pos.dist(st0[0][0][5]["N"][0].pos) > 2.1
    res = kickref.refine(str(start), data, monlib=MONOMERS, cycles=2, hydrogens="remove")
    st = res.model.sync_structure().clone()
    assert st[0][0][4]["C"][0].pos.dist(st[0][0][5]["N"][0].pos) == pytest.approx(1.33, abs=0.04)
    ml = gemmi.read_monomer_lib(str(MONOMERS), st[0].get_all_residue_names(), ignore_missing=True)
    topo = gemmi.prepare_topology(st, ml, warnings=io.StringIO(), ignore_unknown_links=True)
    heavy = [b for b in topo.bonds if not any(a.is_hydrogen() for a in b.atoms)]
    g = math.sqrt(np.mean([(b.calculate() - b.restr.value) ** 2 for b in heavy]))
    assert abs(res.statistics["rmsd_bond"] - g) < 0.002
