"""The atomic model as flat numpy arrays, kept in step with a gemmi.Structure.

Conventions
- ``xyz``: Cartesian coordinates in Å, shape (n, 3).
- ``b_iso``: isotropic B in Å² (for anisotropic atoms: B_eq = 8π²/3 · trace(U)).
- ``u_aniso``: anisotropic U in Å², Cartesian, order U11 U22 U33 U12 U13 U23, shape (n, 6);
  meaningful only where ``is_aniso`` is True (zeros elsewhere).
- ``occ``: occupancy, 0..1.
Atoms are ordered as gemmi iterates the first model (chain, residue, atom).
"""
from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field

import gemmi
import numpy as np

from .adp import EIGHT_PI2, b_equivalent



@dataclass
class Model:
    structure: gemmi.Structure
    xyz: np.ndarray
    b_iso: np.ndarray
    u_aniso: np.ndarray
    is_aniso: np.ndarray
    occ: np.ndarray
    element: np.ndarray          # element symbols, e.g. 'C', 'Se'
    atom_name: np.ndarray
    altloc: np.ndarray           # '' where none
    resname: np.ndarray
    chain: np.ndarray
    seqid: np.ndarray            # residue number with insertion code, as str
    is_hydrogen: np.ndarray
    is_water: np.ndarray
    residue_index: np.ndarray    # index of the residue (over the whole model) of each atom
    path: str | None = None
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ basics
    @property
    def n_atoms(self) -> int:
        return len(self.xyz)

    @property
    def cell(self) -> gemmi.UnitCell:
        return self.structure.cell

    @property
    def spacegroup(self) -> gemmi.SpaceGroup:
        sg = self.structure.find_spacegroup()
        return sg if sg is not None else gemmi.SpaceGroup("P 1")

    def copy(self) -> "Model":
        new = _copy.copy(self)
        new.structure = self.structure.clone()
        for name in ("xyz", "b_iso", "u_aniso", "is_aniso", "occ"):
            setattr(new, name, getattr(self, name).copy())
        new.meta = dict(self.meta)
        return new

    def atom_label(self, i: int) -> str:
        alt = f".{self.altloc[i]}" if self.altloc[i] else ""
        return f"{self.chain[i]}/{self.resname[i]} {self.seqid[i]}/{self.atom_name[i]}{alt}"

    def b_eq_from_u(self) -> np.ndarray:
        """B_eq (Å²) of the anisotropic atoms; B_iso elsewhere."""
        return b_equivalent(self.b_iso, self.u_aniso, self.is_aniso)

    # ------------------------------------------------------------ gemmi sync
    @classmethod
    def from_structure(cls, st: gemmi.Structure, path: str | None = None) -> "Model":
        if len(st) == 0:
            raise ValueError("no models")
        cols = {k: [] for k in ("xyz", "b", "u", "ani", "occ", "el", "name", "alt",
                                 "resn", "chain", "seqid", "water", "resi")}
        ri = 0
        for ch in st[0]:
            for res in ch:
                water = res.is_water()
                sid = str(res.seqid.num) + (res.seqid.icode.strip())
                for at in res:
                    cols["xyz"].append(at.pos.tolist())
                    cols["b"].append(at.b_iso)
                    an = at.aniso
                    if an.nonzero():
                        cols["u"].append([an.u11, an.u22, an.u33, an.u12, an.u13, an.u23])
                        cols["ani"].append(True)
                    else:
                        cols["u"].append([0.0] * 6)
                        cols["ani"].append(False)
                    cols["occ"].append(at.occ)
                    cols["el"].append(at.element.name)
                    cols["name"].append(at.name)
                    cols["alt"].append(at.altloc if at.altloc != "\0" else "")
                    cols["resn"].append(res.name)
                    cols["chain"].append(ch.name)
                    cols["seqid"].append(sid)
                    cols["water"].append(water)
                    cols["resi"].append(ri)
                ri += 1
        el = np.array(cols["el"], dtype=object)
        model = cls(
            structure=st,
            xyz=np.array(cols["xyz"], dtype=np.float64).reshape(-1, 3),
            b_iso=np.array(cols["b"], dtype=np.float64),
            u_aniso=np.array(cols["u"], dtype=np.float64).reshape(-1, 6),
            is_aniso=np.array(cols["ani"], dtype=bool),
            occ=np.array(cols["occ"], dtype=np.float64),
            element=el,
            atom_name=np.array(cols["name"], dtype=object),
            altloc=np.array(cols["alt"], dtype=object),
            resname=np.array(cols["resn"], dtype=object),
            chain=np.array(cols["chain"], dtype=object),
            seqid=np.array(cols["seqid"], dtype=object),
            is_hydrogen=np.isin(el, ["H", "D"]),
            is_water=np.array(cols["water"], dtype=bool),
            residue_index=np.array(cols["resi"], dtype=np.int64),
            path=path,
        )
        return model

    def sync_structure(self) -> gemmi.Structure:
        """Write the arrays back into ``self.structure`` (same atom order) and return it."""
        i = 0
        for ch in self.structure[0]:
            for res in ch:
                for at in res:
                    x = self.xyz[i]
                    at.pos = gemmi.Position(float(x[0]), float(x[1]), float(x[2]))
                    at.occ = float(self.occ[i])
                    if self.is_aniso[i]:
                        u = self.u_aniso[i]
                        at.aniso = gemmi.SMat33f(*[float(v) for v in u])
                        at.b_iso = float(EIGHT_PI2 / 3.0 * u[:3].sum())
                    else:
                        at.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
                        at.b_iso = float(self.b_iso[i])
                    i += 1
        if i != self.n_atoms:
            raise RuntimeError("model arrays and structure are out of step")
        return self.structure
