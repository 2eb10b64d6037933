"""MAIN's selection language (``select … end``) evaluated to a boolean mask over a model's atoms.

Tags: ``all``, ``defined`` (atoms with finite coordinates: all of kickref's), ``atom name``
NAMES, ``atom number`` N[:M]… (1-based, kickref's atom order), ``residue name`` NAMES,
``residue number`` N[:M]… (also N-M; 10A matches that insertion code), ``segment name`` NAMES
(MAIN's segments are kickref's chains), ``chain name`` NAMES and ``element`` NAMES (kickref
extensions), ``around [key] K distance R`` (atoms within R Å of key K's atoms or their symmetry
mates, K's atoms included), ``by residue|segment T`` (whole residues/chains with an atom in T),
and key names (wildcards allowed: the union). Names are case-sensitive; ``*`` matches any
characters, ``%`` one. Operators ``.and. .or. .xor. .not.`` (any prefix: ``.a``, ``.o``, ``.n``,
``.x``; closing dot optional), brackets; precedence NOT > AND > XOR > OR, left to right; two
tags side by side mean AND.
"""
from __future__ import annotations

import re

import gemmi
import numpy as np

from .lexer import MacroError, match_keyword

TAGS = ("all", "defined", "atom", "residue", "segment", "chain", "element", "around", "by",
        "center", "analysis", "temperature", "plane")
UNSUPPORTED_TAGS = {"center": "a centre and radius", "analysis": "atoms by B-value statistics",
                    "temperature": "atoms by B value", "plane": "atoms near a plane"}
_OPERATOR = re.compile(r"^\.([a-z]+)\.?$", re.IGNORECASE)
_RANGE = re.compile(r"^(-?\d+)([A-Za-z]?)(?:[:](-?\d+)([A-Za-z]?)|-(\d+)([A-Za-z]?))?$")


class Unsupported(MacroError):
    """A recognised MAIN feature kickref does not implement."""


def operator(token: str):
    """'and' | 'or' | 'xor' | 'not' for an operator token (``.a``, ``.and.``, ``.o`` …), else None."""
    m = _OPERATOR.match(token)
    if not m:
        return None
    word = m.group(1).lower()
    hits = [op for op in ("and", "or", "not", "xor") if op.startswith(word)]
    return hits[0] if len(hits) == 1 else None


def name_pattern(pattern: str) -> re.Pattern:
    """A MAIN name pattern as a regex over the whole name: ``*`` any characters, ``%`` one."""
    return re.compile("".join(".*" if c == "*" else "." if c == "%" else re.escape(c) for c in pattern) + r"\Z")


def match_names(names: np.ndarray, patterns) -> np.ndarray:
    """Mask of ``names`` (stripped) matching any of ``patterns``."""
    regs = [name_pattern(p) for p in patterns]
    uniq, inv = np.unique(np.asarray([str(n).strip() for n in names], dtype=object), return_inverse=True)
    hit = np.array([any(r.match(u) for r in regs) for u in uniq], dtype=bool)
    return hit[inv] if len(names) else np.zeros(0, bool)


class _Parser:
    def __init__(self, tokens, model, keys, where, warn):
        self.t = list(tokens)
        self.i = 0
        self.model = model
        self.keys = keys
        self.where = where
        self.warn = warn or (lambda s: None)
        self.n = model.n_atoms

    # --------------------------------------------------------------- helpers
    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, what: str):
        tok = self.peek()
        if tok is None:
            raise MacroError(self.where, f"selection: {what} expected at the end")
        self.i += 1
        return tok

    def error(self, message):
        raise MacroError(self.where, f"selection: {message}")

    def is_tag(self, tok) -> bool:
        return match_keyword(tok, TAGS, self.where, "selection tag") is not None

    def names(self, what) -> list:
        out = []
        while self.peek() is not None:
            tok = self.peek()
            if tok in "()" or operator(tok) or self.is_tag(tok):
                break
            out.append(tok)
            self.i += 1
        if not out:
            self.error(f"{what} needs at least one name")
        return out

    # ------------------------------------------------------------- grammar
    def parse(self) -> np.ndarray:
        if not self.t:
            self.error("empty selection")
        mask = self.expr()
        if self.peek() is not None:
            self.error(f"unexpected {self.peek()!r}")
        return mask

    def expr(self):
        """OR of XOR terms; warns when AND and OR are mixed without brackets."""
        ops = set()
        mask = self.xor(ops)
        while self.peek() is not None and operator(self.peek()) == "or":
            self.i += 1
            ops.add("or")
            mask = mask | self.xor(ops)
        if {"and", "or"} <= ops:
            self.warn(f"{self.where}: selection mixes .and./.or. without brackets; kickref binds "
                      ".and. first (MAIN's precedence is not documented)")
        return mask

    def xor(self, ops):
        mask = self.conj(ops)
        while self.peek() is not None and operator(self.peek()) == "xor":
            self.i += 1
            mask = mask ^ self.conj(ops)
        return mask

    def conj(self, ops):
        mask = self.unary()
        while self.peek() is not None and self.peek() != ")":
            op = operator(self.peek())
            if op == "and":
                self.i += 1
                ops.add("and")
            elif op in ("or", "xor"):
                break
            mask = mask & self.unary()          # juxtaposed tags: AND
        return mask

    def unary(self):
        tok = self.take("a tag")
        op = operator(tok)
        if op == "not":
            return ~self.unary()
        if op:
            self.error(f"operator {tok!r} needs a tag before it")
        if tok == "(":
            mask = self.expr()
            if self.take("')'") != ")":
                self.error("')' expected")
            return mask
        if tok == ")":
            self.error("unbalanced ')'")
        return self.tag(tok)

    def tag(self, tok):
        m = self.model
        kw = match_keyword(tok, TAGS, self.where, "selection tag")
        if kw is None or (kw not in ("all", "defined") and any(name_pattern(tok).match(k) for k in self.keys)):
            return self.key(tok)
        if kw in UNSUPPORTED_TAGS:
            raise Unsupported(self.where, f"unsupported in kickref: selection tag '{kw}' "
                                          f"(MAIN: {UNSUPPORTED_TAGS[kw]})")
        if kw == "all":
            return np.ones(self.n, bool)
        if kw == "defined":
            return np.isfinite(m.xyz).all(axis=1)
        if kw == "element":
            return match_names(m.element, self.names("element"))
        if kw == "around":
            return self.around()
        if kw == "by":
            sub = match_keyword(self.take("residue or segment"),
                                ("residue", "segment", "bond", "pair", "sequence"), self.where)
            if sub in ("bond", "pair", "sequence"):
                raise Unsupported(self.where, f"unsupported in kickref: selection 'by {sub}'")
            if sub is None:
                self.error("'by' takes residue or segment")
            inner = self.unary()
            group = m.residue_index if sub == "residue" else np.unique(m.chain, return_inverse=True)[1]
            return np.isin(group, group[inner])
        field = match_keyword(self.take("name or number"), ("name", "number", "modulus"), self.where)
        if field == "modulus":
            raise Unsupported(self.where, "unsupported in kickref: selection 'atom modulus'")
        if field is None or (field == "number" and kw not in ("atom", "residue")):
            self.error(f"'{kw}' takes " + ("name or number" if kw in ("atom", "residue") else "name"))
        if field == "name":
            values = {"atom": m.atom_name, "residue": m.resname, "segment": m.chain, "chain": m.chain}[kw]
            pats = self.names(f"{kw} name")
            mask = match_names(values, pats)
            if kw == "atom" and any(p.startswith("H") for p in pats):
                odd = mask & ~m.is_hydrogen & np.char.startswith(m.atom_name.astype(str), "H")
                if odd.any():
                    self.warn(f"{self.where}: 'atom name {' '.join(pats)}' selects {int(odd.sum())} atoms "
                              f"that are not hydrogens (e.g. {m.atom_label(int(np.flatnonzero(odd)[0]))})")
            return mask
        return self.numbers(kw)

    def numbers(self, kw):
        m = self.model
        if kw == "atom":
            num, icode = np.arange(1, self.n + 1), np.full(self.n, "")
        else:
            seq = [re.match(r"^(-?\d+)(.*)$", str(s).strip()) for s in m.seqid]
            num = np.array([int(x.group(1)) for x in seq], dtype=np.int64)
            icode = np.array([x.group(2).strip() for x in seq])
        mask = np.zeros(self.n, bool)
        got = 0
        while self.peek() is not None and _RANGE.match(self.peek()):
            a, ia, b, ib, c, ic = _RANGE.match(self.take("number")).groups()
            got += 1
            if b is None and c is None:
                mask |= (num == int(a)) & ((icode == ia) if ia else True)
            else:
                hi = int(b if b is not None else c)
                mask |= (num >= int(a)) & (num <= hi)
        if not got:
            self.error(f"'{kw} number' needs numbers (N, N:M or N-M), not {self.peek()!r}")
        return mask

    def key(self, tok):
        hits = [k for k in self.keys if name_pattern(tok).match(k)]
        if not hits:
            self.error(f"{tok!r} is neither a selection tag nor a key")
        mask = np.zeros(self.n, bool)
        for k in hits:
            mask |= self.keys[k]
        return mask

    def around(self):
        tok = self.take("a key")
        if tok.lower() == "key":
            tok = self.take("a key")
        centre = self.key(tok)
        if match_keyword(self.take("distance"), ("distance",), self.where) is None:
            self.error("'around KEY' needs 'distance R'")
        r = self.take("a distance")
        try:
            r = float(r)
        except ValueError:
            self.error(f"'distance' needs a number in Å, not {r!r}")
        return within(self.model, centre, r)


def within(model, centre: np.ndarray, radius: float) -> np.ndarray:
    """Atoms within ``radius`` Å of a ``centre`` atom or of its symmetry mates (centre atoms included)."""
    out = centre.copy()
    if radius <= 0 or not centre.any():
        return out
    st = model.sync_structure()
    index, k = {}, 0
    for ic, ch in enumerate(st[0]):
        for ir, res in enumerate(ch):
            for ia in range(len(res)):
                index[(ic, ir, ia)] = k
                k += 1
    ns = gemmi.NeighborSearch(st[0], st.cell, max(5.0, radius)).populate()
    for i in np.flatnonzero(centre):
        x = model.xyz[i]
        for mk in ns.find_atoms(gemmi.Position(*map(float, x)), "\0", radius=radius):
            out[index[(mk.chain_idx, mk.residue_idx, mk.atom_idx)]] = True
    return out


def evaluate(tokens, model, keys: dict, where: str, warn=None) -> np.ndarray:
    """Boolean mask of the atoms selected by ``tokens`` (between ``select`` and ``end``).

    ``keys``: {name: mask}; ``where``: 'file:line' for messages; ``warn(str)``: warnings."""
    return _Parser(tokens, model, keys, where, warn).parse()
