"""Exceptions that the command line turns into one clear line on stderr (exit code 2)."""


class KickrefError(Exception):
    """Base class for errors reported to the user without a traceback."""


class InputError(KickrefError):
    """Bad input: the message names the file and what is wrong with it."""

    def __init__(self, path, problem):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler ending a job) turned into an interrupt, so that it ends a command as
    Ctrl-C does: finished work kept, exit status 143 (128 + 15)."""
