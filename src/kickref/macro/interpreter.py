"""The macro interpreter: parses each sentence and calls one :class:`kickref.session.Session`
method (README, "kickref macro", has the table). Sentences are echoed to the log after variable
substitution as ``[file:line] sentence``; errors are ``file:line: message`` (with the include
chain). Variables: a token equal to a defined variable's name is replaced by its value when the
sentence runs (one pass; not the NAME of ``set vari NAME``).
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import KickrefError
from ..io.macros import BUILTIN_PREFIX, find_macro, read_macro
from .lexer import MacroError, Sentence, match_keyword, sentences
from .selection import Unsupported

MAX_DEPTH = 32
COMMANDS = ("set", "key", "energy", "minimize", "define", "make", "reflection", "show", "return", "combine")
# recognised MAIN commands kickref does not do, with MAIN's meaning
UNSUPPORTED = {"fourier": "map ↔ structure-factor transforms", "image": "graphics", "save": "save/restore data",
               "read": "read files", "write": "write files", "topology": "topology library editing",
               "calculate": "map calculation", "average": "density averaging", "build": "model building",
               "fit": "fitting", "turn": "graphics view"}
ENERGY_WORDS = ("all", "bond", "angle", "dihedral", "torsion", "improper", "chiral", "plane", "vdw", "nonbonded",
                "b-values", "electrostatics", "hbond", "con_dihe", "density", "ncs", "pair", "x-target",
                "on", "off", "scale", "ratio", "map", "grid", "atom", "polynomial", "convolution", "points",
                "cutoff", "dielectric", "exclude", "list", "range", "matrix")
MINIMIZE_WORDS = ("step", "steps", "write_step", "image_step", "by", "select", "key", "list_generation",
                  "translate", "polar", "xyx-axes", "gain_r-value", "position", "b-values", "phase", "base",
                  "rescale", "adjust")
PHASE_WORDS = ("steps", "macro", "select", "free", "kick")


class _Return(Exception):
    """``return``: ends the current macro."""


class Interpreter:
    """Runs macro files on a :class:`~kickref.session.Session` (which it registers itself with)."""

    def __init__(self, session, log=None):
        self.session = session
        session.interpreter = self
        self.log = log or session.log
        self.stack: list = []                # (file, line) of the includes being run

    # ----------------------------------------------------------------- files
    def run_file(self, path) -> None:
        """Run the macro file ``path`` (top level: ``return`` ends the run)."""
        path = str(path)
        self._run(read_macro(path), path, str(Path(path).resolve().parent))

    def include(self, name: str) -> None:
        """``<NAME``: find the macro (:func:`kickref.io.macros.find_macro`) and run it."""
        here = self.stack[-1][2] if self.stack else None
        path = find_macro(name, [here] if here else [])
        if path is None:
            raise KickrefError(f"macro {name!r} not found (nor {name}.cmds, {name.lower()}.cmds, "
                               "nor a built-in macro)")
        if len(self.stack) >= MAX_DEPTH:
            chain = " <- ".join(f"{f}:{n}" for f, n, _ in reversed(self.stack))
            raise KickrefError(f"macros nested deeper than {MAX_DEPTH} (recursive include?): {chain}")
        self.log(f"  -> running macro {path}")
        d = None if path.startswith(BUILTIN_PREFIX) else str(Path(path).resolve().parent)
        caller = f"{self.stack[-1][0]}:{self.stack[-1][1]}" if self.stack else None
        try:
            self._run(read_macro(path), path, d)
        except MacroError as e:
            if caller is None:
                raise
            raise MacroError(e.where, f"{e.message} (in a macro run from {caller})") from None

    def _run(self, text: str, file: str, directory) -> None:
        self.stack.append([file, 0, directory])
        try:
            for s in sentences(text, file):
                if self.session.stop:            # Ctrl-C/SIGTERM: the outputs hold the model as it is
                    self.log(f"[{s.where}] interrupted: this and the remaining sentences are not run")
                    return
                self.stack[-1][1] = s.line
                try:
                    self.execute(s)
                except _Return:
                    return
                except MacroError:
                    raise
                except KickrefError as e:
                    raise MacroError(s.where, str(e)) from None
        finally:
            self.stack.pop()

    # ------------------------------------------------------------ sentences
    def substitute(self, s: Sentence) -> list:
        """The tokens with defined variables replaced (not the NAME of ``set vari NAME``)."""
        v = self.session.variables
        toks = list(s.tokens)
        keep = 2 if len(toks) > 2 and match_keyword(toks[0], ("set",), s.where) and \
            match_keyword(toks[1], ("variable",), s.where) else -1
        out = []
        for i, t in enumerate(toks):
            out.extend(v[t].split() if (t in v and i != keep) else [t])
        return out

    def execute(self, s: Sentence) -> None:
        toks = self.substitute(s)
        self.log(f"[{s.where}] {' '.join(toks)}")
        if toks[0].startswith("<"):
            name = " ".join([toks[0][1:]] + toks[1:]).strip()
            if not name:
                raise MacroError(s.where, "'<' needs a macro name")
            self.session.include(self.session.variables.get(name, name))
            return
        cmd = match_keyword(toks[0], COMMANDS + tuple(UNSUPPORTED), s.where, "command")
        if cmd is None:
            raise MacroError(s.where, f"unknown command {toks[0]!r}")
        if cmd in UNSUPPORTED:
            return self._unsupported(s, f"command '{cmd}' (MAIN: {UNSUPPORTED[cmd]})")
        if cmd == "return":
            raise _Return
        try:
            getattr(self, "_" + cmd)(_Tokens(toks[1:], s.where, cmd), s)
        except Unsupported as e:
            self._unsupported(s, e.message.removeprefix("unsupported in kickref: "))

    def _unsupported(self, s, what):
        try:
            self.session.unsupported(what)
        except KickrefError as e:
            raise MacroError(s.where, str(e)) from None

    # -------------------------------------------------------------- commands
    def _set(self, t, s):
        sub = t.keyword(("variable", "coordinates", "temperature", "weight", "charge"))
        se = self.session
        if sub == "variable":
            name = t.take("a variable name")
            rest = t.rest()
            if rest and rest[0] == "=":
                rest = rest[1:]
            if not rest:
                raise MacroError(s.where, f"set variable {name} needs a value")
            if name in se.variables:
                self.log(f"  -> {name} was {se.variables[name]!r}")
            se.set_variable(name, " ".join(rest))
            return
        kick = t.accept(("kick",))
        if sub == "coordinates" and not kick:
            raise Unsupported(s.where, "unsupported in kickref: 'set coordinates' other than 'kick'")
        value, sel = None, None
        while not t.done():
            if t.is_select():
                sel = self.selection(t)
            elif t.peek() == "=":
                t.take("=")
            elif value is None:
                value = t.number("a value")
            else:
                raise MacroError(s.where, f"unexpected {t.peek()!r}")
        if value is None:
            raise MacroError(s.where, f"set {sub} needs a value")
        if kick:
            (se.kick_coordinates if sub == "coordinates" else se.kick_b)(value, sel)
        elif sub == "temperature":
            se.set_b(value, sel)
        elif sub == "weight":
            se.set_weight(value, sel)
        else:
            se.set_charge(value, sel)

    def _key(self, t, s):
        name = t.take("a key name")
        if t.is_select():
            self.session.key(name, self.selection(t))
        else:
            sub = t.keyword(("drop", "initialize"))
            (self.session.drop_key(name) if sub == "drop" else self.session.clear_keys())
        t.finish()

    def _energy(self, t, s):
        se = self.session
        term = None
        opts = {}

        def flush():
            if term is not None:
                if term in ("ncs", "pair", "x-target"):
                    raise Unsupported(s.where, f"unsupported in kickref: energy term '{term}'"
                                      + (" (use kickref refine for X-ray refinement)" if term == "x-target" else ""))
                se.energy(term, **opts)

        while not t.done():
            w = t.keyword(ENERGY_WORDS)
            if w in ("on", "off"):
                opts["on"] = w == "on"
            elif w == "scale":
                opts["scale"] = t.number("a scale")
            elif w == "map":
                opts["map"] = t.take("a map name")
            elif w in ("atom", "polynomial", "convolution"):
                opts["mode"] = "convolution" if w == "convolution" else "interpolation"
            elif w == "grid":
                self.log(f"  -> energy density grid {t.take('a grid'):s}: kickref uses the map's own grid")
            elif w in ("ratio", "points", "cutoff", "dielectric", "exclude", "list", "range", "matrix"):
                raise Unsupported(s.where, f"unsupported in kickref: energy '{w}'")
            elif w != term or opts.get("on") is False:      # a new clause (a repeated term continues)
                flush()
                term, opts = w, {}
        flush()

    def _minimize(self, t, s):
        se = self.session
        if t.accept(("adjust",)):
            what = t.keyword(("bond", "angle"))
            if what != "bond":
                raise Unsupported(s.where, "unsupported in kickref: 'min adjust' other than bond")
            se.adjust_bond(t.number("a bond RMSD (Å)"))
            return t.finish()
        kw = dict(selection=None, steps=50, write=1, phase_steps=None, phase_macro=None, gain=None, by="conjugated")
        while not t.done():
            if t.is_select():
                if kw["selection"] is not None:
                    raise Unsupported(s.where, "unsupported in kickref: a second (background) selection")
                kw["selection"] = self.selection(t)
                continue
            w = t.keyword(MINIMIZE_WORDS)
            if w in ("step", "steps"):
                kw["steps"] = t.integer("a number of steps")
            elif w in ("write_step", "image_step"):
                n = t.integer("a step interval")
                if w == "write_step":
                    kw["write"] = n
            elif w == "by":
                kw["by"] = t.keyword(("conjugated", "body"))
            elif w == "key":
                kw["selection"] = "active" if "active" in se.keys else "work_set"
            elif w == "gain_r-value":
                kw["gain"] = t.number("a gain")
            elif w == "position":
                pass
            elif w == "rescale" or w == "list_generation":
                self.log(f"  -> {w} {t.keyword(('on', 'off'))}: kickref re-scales and rebuilds lists as it does")
            elif w == "phase":
                while not t.done():
                    p = t.keyword(PHASE_WORDS, soft=True)
                    if p is None:
                        break
                    if p == "steps":
                        kw["phase_steps"] = t.integer("a number of steps")
                    elif p == "macro":
                        kw["phase_macro"] = t.take("a macro name")
                    else:
                        raise Unsupported(s.where, f"unsupported in kickref: 'phase {p}'")
            else:
                raise Unsupported(s.where, f"unsupported in kickref: minimize '{w}'")
        se.minimize(**kw)

    def _define(self, t, s):
        for words in (("improper",), ("by",), ("topology",), ("initialize",)):
            t.keyword(words)
        t.finish()
        self.session.define_impropers()

    def _make(self, t, s):
        t.keyword(("map",))
        name = t.take("a map name")
        w = t.keyword(("zero", "set", "from", "copy"))
        if w == "zero":
            self.session.make_map(name, "zero")
        elif w == "set":
            self.session.make_map(name, "set", t.number("LO"), t.number("HI"), t.number("a value"))
        elif w == "from":
            src = t.take("a map name")
            op = t.keyword(("copy",), what="make map operation")
            self.session.make_map(name, op, source=src)
        else:
            raise MacroError(s.where, "make map M copy needs 'from N'")
        t.finish()

    def _reflection(self, t, s):
        w = t.keyword(("shells", "fill", "r-values", "set"))
        if w != "shells":
            raise Unsupported(s.where, f"unsupported in kickref: reflection '{w}'")
        self.session.reflection_shells(t.integer("a number of shells"))
        if not t.done():
            raise Unsupported(s.where, "unsupported in kickref: reflection shells with a reflection selection")

    def _show(self, t, s):
        w = t.keyword(("variables", "keys", "selections", "energy"))
        se = self.session
        if w == "variables":
            for k, v in se.variables.items():
                self.log(f"  {k} = {v}")
        elif w in ("keys", "selections"):
            for k, m in se.keys.items():
                self.log(f"  {k}: {int(m.sum())} atoms")
        else:
            total, parts = se.compute_energy()
            self.log(f"  energy {total:.6g}: " + ", ".join(f"{k} {v:.6g}" for k, v in parts.items()))

    def _combine(self, t, s):
        t.keyword(("density",))
        source, target = "MAP_ORIG", "MAP_FO"
        if not t.done():
            source = t.take("a map name")
            t.keyword(("into",))
            target = t.take("a map name")
        t.finish()
        self.session.combine_density(source, target)

    # --------------------------------------------------------------- selection
    def selection(self, t) -> object:
        """The mask of the ``select … end`` at the cursor."""
        t.take("select")
        body = []
        while True:
            tok = t.take("'end' of the selection")
            if tok.lower() == "end":
                break
            body.append(tok)
        from .selection import evaluate
        se = self.session
        return evaluate(body, se.model, se.keys, t.where, warn=se.warn)


class _Tokens:
    """A cursor over a sentence's tokens, with keyword matching and number conversion."""

    def __init__(self, toks, where, cmd):
        self.t = toks
        self.i = 0
        self.where = where
        self.cmd = cmd

    def done(self):
        return self.i >= len(self.t)

    def peek(self):
        return None if self.done() else self.t[self.i]

    def take(self, what):
        if self.done():
            raise MacroError(self.where, f"{self.cmd}: {what} expected at the end of the sentence")
        self.i += 1
        return self.t[self.i - 1]

    def rest(self):
        out, self.i = self.t[self.i:], len(self.t)
        return out

    def finish(self):
        if not self.done():
            raise MacroError(self.where, f"{self.cmd}: unexpected {self.peek()!r}")

    def keyword(self, words, what="keyword", soft=False):
        tok = self.peek()
        w = None if tok is None else match_keyword(tok, words, self.where, what)
        if w is None:
            if soft:
                return None
            raise MacroError(self.where, f"{self.cmd}: expected {' | '.join(words)}, not "
                                         f"{'the end' if tok is None else repr(tok)}")
        self.i += 1
        return w

    def accept(self, words):
        return self.keyword(words, soft=True)

    def is_select(self):
        tok = self.peek()
        return tok is not None and match_keyword(tok, ("select",), self.where) == "select"

    def number(self, what):
        tok = self.take(what)
        try:
            return float(tok)
        except ValueError:
            raise MacroError(self.where, f"{self.cmd}: {what} expected: {tok!r} is neither a number nor "
                                         "a defined variable") from None

    def integer(self, what):
        tok = self.take(what)
        try:
            return int(tok)
        except ValueError:
            raise MacroError(self.where, f"{self.cmd}: {what} expected (an integer): {tok!r} is neither an "
                                         "integer nor a defined variable") from None
