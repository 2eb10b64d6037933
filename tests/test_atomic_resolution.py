"""Atomic-resolution rules: pseudo-chiral centres restrained on |V|, the ADP-restraint kind by
resolution, and a 6mw0 (0.78 Å) refinement that must lower R-work (it raised it before)."""
import warnings

import numpy as np

from conftest import MONOMERS, case_paths
import kickref
from kickref.core.state import AtomState
from kickref.io.models import read_model
from kickref.refinement.weighting import adp_restraints_for_resolution, bond_rmsd_for_resolution
from kickref.restraints import build_restraints
from kickref.restraints.topology import _pseudo_chiral


def test_adp_restraint_kind_by_resolution():
    assert [adp_restraints_for_resolution(d) for d in (3.0, 1.6, 1.2, 1.19, 0.78)] == \
        ["kl", "kl", "kl", "simple", "simple"]
    assert bond_rmsd_for_resolution(1.2) == 0.008 and bond_rmsd_for_resolution(0.78) == 0.02


def test_pseudo_chiral_needs_two_equivalent_terminal_atoms():
    class M:                     # centre 0; 1, 2 terminal C; 3 C bonded on to 4; 5, 6 H on 1
        n_atoms = 9
        is_hydrogen = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0], bool)
        element = np.array(["C", "C", "C", "C", "C", "H", "H", "H", "O"], object)
    bonds = np.array([[0, 1], [0, 2], [0, 3], [3, 4], [1, 5], [1, 6], [2, 7], [0, 8]])
    ideal = np.array([1.52, 1.53, 1.52, 1.5, 1.09, 1.09, 1.09, 1.43])
    # 1 has two H, 2 one: not equivalent; 8 (O) and 3 (bonded on) never count
    assert not _pseudo_chiral(M, np.array([0]), np.array([True]), bonds, ideal)[0]
    bonds[6] = [1, 7]            # now 1 has three H, 2 none
    assert not _pseudo_chiral(M, np.array([0]), np.array([True]), bonds, ideal)[0]
    bonds[4:7] = [[1, 5], [2, 6], [2, 7]]         # one H on 1... two on 2
    assert not _pseudo_chiral(M, np.array([0]), np.array([True]), bonds, ideal)[0]
    bonds[4:7] = [[1, 5], [2, 6], [0, 7]]         # one H each: equivalent methyl-like pair
    assert _pseudo_chiral(M, np.array([0]), np.array([True]), bonds, ideal)[0]
    assert not _pseudo_chiral(M, np.array([0]), np.array([False]), bonds, ideal)[0]   # unsigned
    ideal[1] = 1.60                               # bonds to the centre differ by 0.08 Å
    assert not _pseudo_chiral(M, np.array([0]), np.array([True]), bonds, ideal)[0]


def test_6mw0_mle_cg_either_hand_other_centres_signed():
    model, _, _ = case_paths("6mw0")
    m = read_model(model)
    R = build_restraints(m, monlib_dir=MONOMERS)
    ch = R.chirals
    centres = [f"{m.resname[i]} {m.atom_name[i]}" for i in ch.idx[:, 0]]
    both = {c for c, b in zip(centres, ch.both) if b}
    assert both == {"MLE CG"} and sum(ch.both) == 4
    assert not ch.both[[c.endswith(" CA") for c in centres]].any()
    dev, sigma, _ = ch.deviations(AtomState.from_model(m))
    assert np.abs(dev / sigma).max() < 5      # were Z ≈ 25 (the methyls named the other way)


def test_6mw0_refinement_lowers_r_work():
    model, data, _ = case_paths("6mw0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = kickref.refine(model, data, monlib=MONOMERS, cycles=3, min_cycles=3)
    r0, r = res.cycles[0].r_work, res.r_work
    assert res.options.adp_restraints == "simple"
    assert r < r0 - 0.001, (r0, r)           # 0.126 → 0.124 measured; was 0.126 → 0.155
