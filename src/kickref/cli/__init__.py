"""The ``kickref`` command: a thin layer over the Python API.

Each subcommand lives in its own module here with ``add_parser(subparsers)`` and ``run(args)``.
Errors from bad input, bad options included, become one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from ..core.errors import KickrefError, Terminated

SUBCOMMANDS = ["rfactor", "maps", "geometry", "refine", "macro", "ncs", "batch"]


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr with a hint, no usage block (exit 2)."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse, but unknown arguments are reported by the subcommand's parser."""
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            sub = getattr(self, "subcommands", {}).get(getattr(ns, "command", None), self)
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
        return ns


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    p = Parser(prog="kickref", description="Crystallographic refinement after MAIN (D. Turk).")
    p.subcommands = {}
    p.add_argument("--version", action="version", version=f"kickref {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(f"cli.{name}"):
                continue  # subcommand not built yet
            raise
        sp = mod.add_parser(sub)
        sp.set_defaults(_run=mod.run)
        p.subcommands[name] = sp
    return p


def main(argv=None) -> int:
    from .common import check_resolution
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        bad = check_resolution(args)
        if bad:
            parser.subcommands[args.command].error(bad)
    except SystemExit as e:               # -h, --version, or a bad option (one line already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    args.command_line = shlex.join(["kickref", *(sys.argv[1:] if argv is None else [str(a) for a in argv])])
    try:
        rc = args._run(args)
    except KickrefError as e:
        print(f"kickref {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"kickref {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
