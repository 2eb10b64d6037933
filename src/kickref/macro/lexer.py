"""The lexical layer of MAIN macros: physical lines → sentences of tokens; keyword prefixes.

Rules (README, "kickref macro"): a leading ``MAIN>`` or ``>`` prompt is removed; ``!`` starts a
comment to the end of the line, and so does ``#`` at the start of a line; a line whose last token
is a lone ``-`` or ``\\`` continues on the next one; tokens are separated by blanks, ``(`` and
``)`` are tokens of their own, quoted strings ('…' or "…") are one token. Keywords match by
case-insensitive prefix of at least 3 characters (a shorter one only when it is the whole
keyword) that fits one keyword allowed at that place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import KickrefError

MIN_PREFIX = 3
_PROMPT = re.compile(r"^\s*(MAIN>|>)(\s+|$)", re.IGNORECASE)
_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|[()]|[^\s()'"]+""")


class MacroError(KickrefError):
    """An error in a macro: the message starts with ``file:line:``."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


@dataclass
class Sentence:
    """One logical line: its tokens (quotes removed), ``file``, first ``line`` (1-based)."""
    tokens: list
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def _unquote(t: str) -> str:
    return t[1:-1] if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"" else t


def tokenize(text: str) -> list:
    """Tokens of one line (comments already removed); quoted tokens lose their quotes."""
    return [_unquote(t) for t in _TOKEN.findall(text)]


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    quote = None
    for i, c in enumerate(line):            # '!' inside quotes is text
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "!":
            return line[:i]
    return line


def sentences(text: str, file: str = "<macro>") -> list:
    """The sentences of a macro text (see the module docstring for the rules)."""
    out, pending, start = [], [], 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = _PROMPT.sub("", raw, count=1)
        toks = _TOKEN.findall(_strip_comment(line))      # quoted '-' is no continuation mark
        if not pending:
            start = n
        cont = bool(toks) and toks[-1] in ("-", "\\")
        if cont:
            toks = toks[:-1]
        pending.extend(toks)
        if not cont and pending:
            out.append(Sentence([_unquote(t) for t in pending], file, start))
            pending = []
    if pending:
        raise MacroError(f"{file}:{start}", "the last line ends with a continuation mark ('-' or '\\')")
    return out


def match_keyword(token: str, keywords, where: str, what: str = "keyword"):
    """The keyword of ``keywords`` that ``token`` abbreviates (case-insensitive), or None when it
    abbreviates none; MacroError when it abbreviates several (listed)."""
    t = token.lower()
    if not t:
        return None
    exact = [k for k in keywords if k.lower() == t]
    if exact:
        return exact[0]
    if len(t) < MIN_PREFIX:
        return None
    hits = [k for k in keywords if k.lower().startswith(t)]
    if len(hits) > 1:
        raise MacroError(where, f"ambiguous {what} {token!r}: {' or '.join(sorted(hits))}")
    return hits[0] if hits else None
