"""The y/N question of the commands that change another process's state (`kill`, `opts --set`).

Asked only on a terminal: with no terminal on stdin (a pipe, a cron job, CI) and no ``--yes`` the
command refuses with one line and exit status 2, so nothing is ever changed by a script that forgot to
say so. The question goes to stderr (stdout stays the command's output, e.g. JSON lines).
"""

from __future__ import annotations

import sys

from sockmon.core.errors import BadInput


class Refused(BadInput):
    """No confirmation: no terminal to ask on, or the user did not answer yes (exit status 2)."""


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Return when the change may go ahead: ``yes`` given, or the user typed y / yes on the terminal.

    Raises `Refused` otherwise; ``what`` names the change for the refusal line."""
    if yes:
        return
    stdin = sys.stdin
    if stdin is None or stdin.closed or not stdin.isatty():
        raise Refused(f"refusing to {what} without confirmation: stdin is not a terminal (add --yes)")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = stdin.readline()
    if not answer.endswith("\n"):  # end of input (Ctrl+D): no answer is no
        sys.stderr.write("\n")
    if answer.strip().lower() not in ("y", "yes"):
        raise Refused(f"not confirmed: nothing done (did not {what})")
