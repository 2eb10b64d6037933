"""Small file helpers: existence checks with clear errors, atomic writes, output checks.

Every temporary file kickref writes is named ``.kickref-PID-…`` beside its target (PID: the
writing process), so that the leftovers of a killed run are recognised and removed
(:func:`remove_stale_temps`) and never taken for outputs.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

from ..core.errors import InputError


def short_message(e: Exception) -> str:
    """First line of an exception's message (its type name if empty), for one-line errors."""
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def check_readable(path) -> Path:
    """Return ``path`` as a Path, or raise InputError if it is missing or unreadable."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise InputError(p, "file is not readable (permission denied)")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty")
    return p


TEMP_PREFIX = ".kickref-"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    A reader never sees a half-written file, and an error leaves any earlier file untouched.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=f"-{p.name}", dir=str(p.parent))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)           # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def json_ready(o):
    """``o`` with numpy arrays/scalars as lists/numbers, NaN/inf as None, dict keys as strings."""
    if isinstance(o, dict):
        return {str(k): json_ready(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_ready(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "tolist"):
        return json_ready(o.tolist())
    return o


def write_json_atomic(path, obj) -> None:
    """``obj`` (through :func:`json_ready`) as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(json_ready(obj), indent=1) + "\n")


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (possibly another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_owner(name: str) -> int | None:
    """The PID in a kickref temporary file name ``.kickref-PID-…``; None for other names."""
    if not name.startswith(TEMP_PREFIX):
        return None
    pid = name[len(TEMP_PREFIX):].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def remove_stale_temps(directory) -> list[str]:
    """Delete the kickref temporary files in ``directory`` whose writing process is gone."""
    removed = []
    for f in Path(directory).iterdir():
        pid = temp_owner(f.name)
        if pid is not None and pid != os.getpid() and not pid_alive(pid) and f.is_file():
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(str(f))
    return removed


def check_output_paths(outputs, inputs) -> None:
    """Check, before any computation, that every file of ``outputs`` can be written.

    Raises InputError when a name is empty or ends with '/', names a directory or an input
    file, or when its directory is not a directory or not writable. Missing directories are
    created here (so a failed check of a later path may leave an empty directory behind).
    Writability is tested by creating and deleting a temporary file (``os.access`` says yes
    to root even on read-only places such as /proc).
    """
    ins = {Path(i).resolve() for i in inputs if i is not None}
    probed = set()
    for o in outputs:
        if o is None:
            continue
        text = str(o)
        p = Path(text)
        if not text or text.endswith(os.sep) or p.name in ("", ".", ".."):
            raise InputError(text or "''", "output file name is empty or a directory; give a file name")
        if p.is_dir():
            raise InputError(p, "output file name is a directory; give a file name (e.g. DIR/refined)")
        if p.resolve() in ins:
            raise InputError(p, "output would overwrite an input file; choose another output name")
        parent = p.parent
        if parent in probed:
            continue
        for a in (parent, *parent.parents):
            if a.exists():
                if not a.is_dir():
                    raise InputError(p, f"cannot write: {a} is not a directory")
                break
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix="-probe", dir=str(parent))
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise InputError(p, f"cannot write in directory {parent} ({e.strerror or e})") from None
        probed.add(parent)


def acquire_lock(path) -> None:
    """Create the lock file ``path`` holding this process's PID (O_CREAT|O_EXCL: atomic).

    A lock of a live process raises InputError; one of a dead process (a killed run) is taken
    over with a warning. Two runs taking over the same stale lock within microseconds could
    both succeed (POSIX has no compare-and-swap on files); a live lock is never taken.
    """
    p = Path(path)
    for attempt in range(3):
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(p)
            if owner is not None and (owner == os.getpid() or pid_alive(owner)):
                raise InputError(p, f"another kickref run (pid {owner}) is writing these outputs; "
                                    "wait for it to end or choose another output name") from None
            if not p.exists():              # released meanwhile
                continue
            warnings.warn(f"{p}: taking over the lock of a run that has ended "
                          f"({'pid ' + str(owner) if owner else 'no pid'}; killed?)", stacklevel=2)
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            continue
        except OSError as e:
            raise InputError(p, f"cannot create the lock file ({e.strerror or e})") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return
    raise InputError(p, "cannot take the lock file (other runs keep creating it)")


def _lock_owner(p: Path) -> int | None:
    """PID written in a lock file; None when unreadable or empty after a short wait (a lock
    being created right now holds its PID within microseconds)."""
    for _ in range(2):
        try:
            text = p.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError:
            text = ""
        if text.isdigit():
            return int(text)
        time.sleep(0.1)
    return None


def release_lock(path) -> None:
    """Remove the lock file ``path`` if this process holds it."""
    p = Path(path)
    with contextlib.suppress(OSError):
        if p.read_text().strip() == str(os.getpid()):
            p.unlink()


def process_age() -> float:
    """Seconds since this process started (Linux: /proc, to 10 ms; elsewhere 0)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
