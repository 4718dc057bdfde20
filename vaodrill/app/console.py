"""The terminal of the command line: its two consoles and the one kind of error a person fixes (exit 2)."""

from __future__ import annotations

import os

from rich.console import Console

from vaodrill.errors import UnknownPlans, VaoAuthError, VaoConnectionError

#: Failures that are the user's to fix (exit 2), as opposed to a drill that ran and failed (exit 1).
USER_ERRORS = (UnknownPlans, VaoAuthError, VaoConnectionError)


class UserError(Exception):
    """Bad input or configuration: printed as one line, exit code 2."""


def _console(*, stderr: bool) -> Console:
    """Never hard-wrapped lines; in a pipe or a CI log, tables as wide as their content (not 80 columns)."""
    made = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = 1000
    return made


console = _console(stderr=False)
err_console = _console(stderr=True)
