"""Per-phase wall time and peak memory of a run: a lightweight accumulating timer.

``with phase("fc"): ...`` charges the block's wall time to "fc" in the current :class:`Profile`
(the module-level registry, replaced by :func:`reset` at the start of each refinement). Phases
nest and times are exclusive: entering a phase pauses the one around it, so every second of
the run is charged to exactly one phase (time in no phase goes to "other") and the times add up
to the wall time since the profile started (plus "startup"). Each transition costs one
``perf_counter`` and one ``getrusage`` call (microseconds), nothing per atom or reflection.

Memory: the process's peak resident set size (``ru_maxrss``) is read at every transition; each
phase records the peak when it last ended and by how much it raised the peak ("rise").

"startup": time from process start (given to :func:`reset`, see
:func:`kickref.io.files.process_age`) to the first :func:`reset` of the process: interpreter,
imports, command-line parsing. "numba": time
inside numba's compiler lock (compilation, or loading a compiled kernel from numba's cache, at
the first call of each kernel and signature), measured with numba's ``numba:compiler_lock``
events and taken out of the phase that made the call.
"""
from __future__ import annotations

import resource
import sys
import threading
import time

_started_once = False


def peak_rss_mb() -> float:
    """Peak resident set size of the process so far, MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


class Profile:
    """Exclusive wall time, calls and peak memory per phase (see the module docstring)."""

    def __init__(self, startup: float = 0.0):
        self._stack = ["other"]
        self._owner = threading.get_ident()
        self._t = time.perf_counter()
        self._rss = peak_rss_mb()
        self.seconds = {"startup": startup} if startup else {}
        self.calls: dict[str, int] = {}
        self.peak: dict[str, float] = {"startup": self._rss} if startup else {}
        self.rise: dict[str, float] = {"startup": self._rss} if startup else {}
        self._numba_depth = 0

    def _switch(self) -> None:
        """Charge the time and peak rise since the last transition to the running phase."""
        now, rss = time.perf_counter(), peak_rss_mb()
        top = self._stack[-1]
        self.seconds[top] = self.seconds.get(top, 0.0) + now - self._t
        self.rise[top] = self.rise.get(top, 0.0) + rss - self._rss
        self.peak[top] = rss
        self._t, self._rss = now, rss

    def push(self, name: str) -> None:
        self._switch()
        self._stack.append(name)
        self.calls[name] = self.calls.get(name, 0) + 1

    def pop(self) -> None:
        self._switch()
        self._stack.pop()

    def numba(self, step: int) -> None:
        """Enter (+1) or leave (−1) numba's compiler lock (re-entrant: only the outermost counts)."""
        if threading.get_ident() != self._owner:
            return
        self._numba_depth += step
        if step > 0 and self._numba_depth == 1:
            self.push("numba")
        elif step < 0 and self._numba_depth == 0:
            self.pop()

    def as_dict(self) -> dict:
        """{'total_s' (sum of the phases: the wall time since process start, or since the
        profile began when it has no start-up), 'peak_rss_mb', 'phases': {name: seconds, fraction,
        calls, peak_rss_mb, peak_rise_mb}} up to now, phases in the order of :data:`PHASES`."""
        self._switch()
        total = sum(self.seconds.values())
        names = [p for p in PHASES if p in self.seconds] + [p for p in self.seconds if p not in PHASES]
        return {"total_s": total, "peak_rss_mb": peak_rss_mb(), "phases": {
            p: {"seconds": self.seconds[p], "fraction": self.seconds[p] / total if total else 0.0,
                "calls": self.calls.get(p, 0), "peak_rss_mb": self.peak.get(p, 0.0),
                "peak_rise_mb": self.rise.get(p, 0.0)} for p in names}}


PHASES = ("startup", "numba", "read_inputs", "topology", "mask", "scale", "fc", "gradient", "target",
          "restraints", "precondition", "minimizer", "statistics", "outputs", "other")
"""Phase names in table order. startup: process start to the refinement; numba: compilation or
cache load; read_inputs: model and data; topology: hydrogens, topology, restraints, refinement
set-up; mask: solvent mask and Fmask; scale: bulk-solvent and scale fits, outliers, σA (D, S);
fc: structure factors (density spread, FFT); gradient: gradient maps (FFT) and gathers; target:
X-ray target arithmetic (likelihood); restraints: restraint energies, gradients and RMSDs;
precondition: curvature estimates for the preconditioner; minimizer: L-BFGS and parameter packing (the rest of the minimization);
statistics: per-cycle R factors; outputs: final statistics, map coefficients, files; other:
the rest."""

_current = Profile()


def _numba_events() -> None:
    """Route numba's compiler-lock events to the current profile (registered once)."""
    global _listening
    if _listening:
        return
    from numba.core import event

    class NumbaListener(event.Listener):
        def on_start(self, ev):
            _current.numba(+1)

        def on_end(self, ev):
            _current.numba(-1)

    event.register("numba:compiler_lock", NumbaListener())
    _listening = True


_listening = False


def reset(process_age: float = 0.0) -> Profile:
    """A new current profile for a run; the first one of the process starts with a "startup"
    phase of ``process_age`` seconds (the time since the process started)."""
    global _current, _started_once
    _current = Profile(process_age if not _started_once else 0.0)
    _started_once = True
    _numba_events()
    return _current


def current() -> Profile:
    return _current


class phase:
    """``with phase(name):`` charges the block to ``name`` in the current profile (only for
    the thread that started it; a no-op elsewhere)."""

    __slots__ = ("name", "profile")

    def __init__(self, name: str):
        self.name = name
        self.profile = _current if threading.get_ident() == _current._owner else None

    def __enter__(self):
        if self.profile is not None:
            self.profile.push(self.name)
        return self

    def __exit__(self, *exc):
        if self.profile is not None:
            self.profile.pop()
        return False


def format_table(d: dict) -> list[str]:
    """The profile ``d`` (:meth:`Profile.as_dict`) as log lines: seconds, % and peak MB per phase."""
    lines = [f"profile: {d['total_s']:.1f} s, peak RSS {d['peak_rss_mb']:.0f} MB",
             f"  {'phase':<12s} {'seconds':>8s} {'%':>6s} {'calls':>7s} {'peak MB':>8s} {'+MB':>6s}"]
    for name, p in d["phases"].items():
        lines.append(f"  {name:<12s} {p['seconds']:8.2f} {100 * p['fraction']:6.1f} {p['calls']:7d} "
                     f"{p['peak_rss_mb']:8.0f} {p['peak_rise_mb']:6.0f}")
    return lines
