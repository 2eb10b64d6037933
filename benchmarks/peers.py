"""Peer programs for the refinement benchmark, in their own venv (never kickref's).

The venv holds servalcat (``servalcat refine_xtal_norefmac``) and cctbx-base
(``mmtbx.model_vs_data``). It is, in order of preference:

1. ``$KICKREF_PEERS_VENV`` (an existing venv, e.g. ``/work/peers``; nothing is installed);
2. ``benchmarks/work/peers-venv`` (gitignored), created with ``pip install servalcat cctbx-base``
   when missing or incomplete.

If neither works (e.g. no network), :func:`find_peers` returns a ``Peers`` whose ``message``
says why, with ``servalcat``/``model_vs_data`` set to None: the benchmark then skips servalcat and
judges with kickref's own calculator.

Run: ``python benchmarks/peers.py [--no-install]`` prints what was found (and installs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / "benchmarks" / "work" / "peers-venv"
PACKAGES = ("servalcat", "cctbx-base")
ENV_VAR = "KICKREF_PEERS_VENV"


@dataclass
class Peers:
    """Executables found in the peers venv (None where missing) and their versions."""
    venv: Path | None = None
    servalcat: Path | None = None
    model_vs_data: Path | None = None
    versions: dict = field(default_factory=dict)
    message: str = ""

    def as_dict(self) -> dict:
        return {"venv": str(self.venv) if self.venv else None,
                "servalcat": str(self.servalcat) if self.servalcat else None,
                "model_vs_data": str(self.model_vs_data) if self.model_vs_data else None,
                "versions": self.versions, "message": self.message}


def _inspect(venv: Path) -> Peers:
    bin_dir = venv / "bin"
    peers = Peers(venv=venv)
    if (bin_dir / "servalcat").exists():
        peers.servalcat = bin_dir / "servalcat"
    if (bin_dir / "mmtbx.model_vs_data").exists():
        peers.model_vs_data = bin_dir / "mmtbx.model_vs_data"
    py = bin_dir / "python"
    if py.exists():
        code = ("import importlib.metadata as m, json\n"
                "v = {}\n"
                "for p in ('servalcat', 'cctbx-base', 'gemmi', 'numpy'):\n"
                "    try: v[p] = m.version(p)\n"
                "    except Exception: pass\n"
                "print(json.dumps(v))")
        try:
            out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60)
            peers.versions = json.loads(out.stdout.strip() or "{}")
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return peers


def _install(venv: Path, log) -> str | None:
    """Create ``venv`` (if needed) and pip-install the peers; returns an error line or None."""
    try:
        if not (venv / "bin" / "python").exists():
            venv.parent.mkdir(parents=True, exist_ok=True)
            print(f"creating peers venv {venv}", file=log, flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           capture_output=True, text=True)
        print(f"pip install {' '.join(PACKAGES)} into {venv} (once; a few minutes)", file=log,
              flush=True)
        proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                               *PACKAGES], capture_output=True, text=True, timeout=3600)
        if proc.returncode:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            return f"pip install {' '.join(PACKAGES)} failed: {tail}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create the peers venv {venv}: {exc}"
    return None


def find_peers(install: bool = True, log=sys.stderr) -> Peers:
    """Locate (and, with ``install``, create) the peers venv; see the module docstring."""
    env = os.environ.get(ENV_VAR)
    if env:
        peers = _inspect(Path(env))
        missing = [n for n, p in (("servalcat", peers.servalcat),
                                  ("mmtbx.model_vs_data", peers.model_vs_data)) if p is None]
        peers.message = (f"peers from ${ENV_VAR}={env}" if not missing else
                         f"${ENV_VAR}={env} lacks {', '.join(missing)}")
        return peers
    peers = _inspect(DEFAULT_VENV)
    if (peers.servalcat is None or peers.model_vs_data is None) and install:
        error = _install(DEFAULT_VENV, log)
        peers = _inspect(DEFAULT_VENV)
        if error:
            peers.message = error
    if peers.servalcat is None or peers.model_vs_data is None:
        missing = [n for n, p in (("servalcat", peers.servalcat),
                                  ("mmtbx.model_vs_data", peers.model_vs_data)) if p is None]
        why = peers.message or ("not installed (--no-install)" if not install else "install incomplete")
        peers.message = f"peers venv {DEFAULT_VENV} lacks {', '.join(missing)}: {why}"
    elif not peers.message:
        peers.message = f"peers from {DEFAULT_VENV}"
    return peers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-install", action="store_true", help="only look, install nothing")
    args = ap.parse_args(argv)
    peers = find_peers(install=not args.no_install)
    print(json.dumps(peers.as_dict(), indent=1))
    return 0 if peers.servalcat and peers.model_vs_data else 1


if __name__ == "__main__":
    sys.exit(main())
