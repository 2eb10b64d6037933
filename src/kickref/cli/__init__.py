"""The ``kickref`` command: a thin layer over the Python API.

Each subcommand lives in its own module here with ``add_parser(subparsers)`` and ``run(args)``.
Errors from bad input become one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import KickrefError

SUBCOMMANDS = ["rfactor", "maps", "geometry", "refine"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    p = argparse.ArgumentParser(prog="kickref",
                                description="Crystallographic refinement after MAIN (D. Turk).")
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
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        rc = args._run(args)
    except KickrefError as e:
        print(f"kickref {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kickref {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
