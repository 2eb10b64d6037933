"""L-BFGS minimization of the energy over one parameter kind, with interruption.

``minimize_energy`` runs scipy's L-BFGS-B on E(x) = Σ weighted terms for the parameters ``x``
(see :mod:`kickref.refine.parameters`). A :class:`StopFlag` set by Ctrl-C (or by the program)
ends the minimization after the current step; the state then holds the last accepted point.
"""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass

import numpy as np
import scipy.optimize


class StopFlag:
    """Set by the first Ctrl-C (SIGINT) while installed; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __bool__(self):
        return self.stop

    def set(self):
        self.stop = True

    def _handler(self, signum, frame):
        if self.stop:                         # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


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
    """
    if params.n == 0 or max_iter <= 0:
        v, _, _ = energy.compute(state, gradient=False)
        return MinimizeResult(v, 0, 0, False, "nothing to refine")
    x0 = params.get(state)
    # preconditioning: minimize over y = √c·x with c the estimated curvature of each parameter
    sq = np.sqrt(params.precond) if getattr(params, "precond", None) is not None else np.ones(len(x0))
    work = state.copy()
    best = {"x": x0.copy(), "f": np.inf}
    n_eval = [0]

    def fun(y):
        x = y / sq
        params.set(x, work)
        v, g, parts = energy.compute(work, gradient=True)
        n_eval[0] += 1
        if v < best["f"]:
            best["f"], best["x"] = v, x.copy()
        if on_eval is not None:
            on_eval(v, parts)
        return v, params.gradient(g, work) / sq

    def callback(*args):
        if stop:
            raise StopIteration

    bounds = params.bounds(state)
    if bounds is not None:
        bounds = [(None if lo is None else lo * q, None if hi is None else hi * q)
                  for (lo, hi), q in zip(bounds, sq)]
    res = scipy.optimize.minimize(fun, x0 * sq, jac=True, method="L-BFGS-B", bounds=bounds,
                                  callback=callback,
                                  options={"maxiter": int(max_iter), "maxcor": 10, "ftol": 1e-10,
                                           "gtol": 1e-8, "maxls": 20})
    x = res.x / sq if np.isfinite(res.fun) and res.fun <= best["f"] + 1e-12 else best["x"]
    params.set(x, state)
    params.project(state)
    return MinimizeResult(float(min(res.fun, best["f"])), int(res.nit), n_eval[0], bool(stop),
                          str(res.message))
