"""Usage errors as the README promises them: one line, ``keyops: error: ...``,
exit code 2.

Typer renders a Click usage error as a multi-line rich box; ``main.run``
calls the app in Click's non-standalone mode and hands the exception here
instead, so every usage error (a missing option, an unknown option, a bad
value, an extra argument) reads like every other keyops error.
"""

from __future__ import annotations

import sys

# Typer 0.29 ships its own copy of Click; its exceptions are only reachable here.
from typer._click import exceptions as click

from keyops.logs import redact

ClickException = click.ClickException


def one_line(exc: click.ClickException) -> str:
    """The message of ``exc`` as one line, with where to look for help."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        command = exc.ctx.command_path or "keyops"
        return f"{message}; see {command} --help"
    return message


def report_usage_error(exc: click.ClickException) -> int:
    """Write ``exc`` to stderr as one line; return its exit code."""
    if isinstance(exc, click.NoArgsIsHelpError):
        return exc.exit_code  # the help is already on the terminal: it is the answer
    sys.stderr.write(f"keyops: error: {redact(one_line(exc))}\n")
    return exc.exit_code


def report_abort() -> int:
    """Typer's ``Abort`` (end of input at a prompt): one line, exit 1."""
    sys.stderr.write("keyops: error: aborted\n")
    return 1
