"""L-BFGS minimization of the energy over one parameter kind, with interruption.

``minimize_energy`` runs kickref's bounded L-BFGS (:func:`kickref.core.lbfgs.lbfgs`) on
E(x) = Σ weighted terms for the parameters ``x`` (see :mod:`kickref.refinement.parameters`). A :class:`StopFlag` set by Ctrl-C or SIGTERM (or by the program)
ends the minimization after the current step; the state then holds the last accepted point.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass

import numpy as np

from ..core.lbfgs import lbfgs
from ..core.profile import phase


class StopFlag:
    """Set by the first Ctrl-C (SIGINT) or SIGTERM while installed (``with flag:``; nesting is
    allowed). A second signal ends the program at once (KeyboardInterrupt for SIGINT,
    SystemExit(128 + signum) otherwise), except inside :meth:`deferred`, where signals are only
    recorded: the block (e.g. writing the outputs) always finishes. ``exit_code``: 0 when not
    set, else 128 + the first signal's number (130 for Ctrl-C or a flag set by the program)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.stop = False
        self.signum = None
        self._depth = 0
        self._defer = 0
        self._previous = {}

    def __bool__(self):
        return self.stop

    def set(self):
        self.stop = True

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT) if self.stop else 0

    def _handler(self, signum, frame):
        if self.stop and not self._defer:     # second signal: give up immediately
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.stop = True
        self.signum = self.signum or signum

    def __enter__(self):
        if self._depth == 0 and threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            for s, h in self._previous.items():
                signal.signal(s, signal.SIG_DFL if h is None else h)
            self._previous = {}
        return False

    @contextlib.contextmanager
    def deferred(self):
        """Installed, with every signal only recorded until the block ends."""
        with self:
            self._defer += 1
            try:
                yield self
            finally:
                self._defer -= 1


@dataclass
class MinimizeResult:
    value: float
    n_iter: int
    n_eval: int
    stopped: bool
    message: str


def minimize_energy(energy, params, state, max_iter: int, stop: StopFlag | None = None,
                    on_eval=None) -> MinimizeResult:
    """Minimize ``energy`` over ``params`` starting from ``state`` (modified in place).

    ``on_eval(value, parts)`` is called after every function evaluation (progress reporting).
    Profiled as the "minimizer" phase (the terms' own phases nested inside).
    """
    with phase("minimizer"):
        return _minimize(energy, params, state, max_iter, stop, on_eval)


def _minimize(energy, params, state, max_iter, stop, on_eval) -> MinimizeResult:
    if params.n == 0 or max_iter <= 0:
        v, _, _ = energy.compute(state, gradient=False)
        return MinimizeResult(v, 0, 0, False, "nothing to refine")
    params.project(state)                 # start from a physical point (U positive definite)
    x0 = params.get(state)
    # preconditioning: minimize over y = √c·x with c the estimated curvature of each parameter
    sq = np.sqrt(params.precond) if getattr(params, "precond", None) is not None else np.ones(len(x0))
    work = state.copy()
    best = {"x": x0.copy(), "f": np.inf}
    n_eval = [0]

    def fun(y):
        x = y / sq
        params.set(x, work)
        if not params.valid(work):
            return np.inf, np.zeros_like(y)
        v, g, parts = energy.compute(work, gradient=True)
        n_eval[0] += 1
        if v < best["f"]:
            best["f"], best["x"] = v, x.copy()
        if on_eval is not None:
            on_eval(v, parts)
        return v, params.gradient(g, work) / sq

    bounds = params.bounds(state)
    lower = upper = None
    if bounds is not None:
        lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds]) * sq
        upper = np.array([np.inf if hi is None else hi for _, hi in bounds]) * sq
    res = lbfgs(fun, x0 * sq, max_iter, lower, upper, stop=stop, max_shift=params.max_shift() * sq)
    x = res.x / sq if np.isfinite(res.f) and res.f <= best["f"] + 1e-12 else best["x"]
    params.set(x, state)
    params.project(state)
    return MinimizeResult(float(min(res.f, best["f"])), int(res.n_iter), n_eval[0], bool(stop),
                          res.message)
