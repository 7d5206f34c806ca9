"""Entry point of the ``keyops`` command.

Errors reach the user as one line on stderr, ``keyops: error: ...``, with the
exit code of the error's class (see ``keyops/errors.py`` and the README).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from keyops import __version__
from keyops.cli.context import CliState
from keyops.cli.lazy import LazyCommand, lazy_group
from keyops.cli.usage import ClickException, report_abort, report_usage_error
from keyops.errors import KeyOpsError
from keyops.logs import redact

#: Every command but ``version``, imported only when it is used (``keyops.cli.lazy``).
#: The help here is what ``keyops --help`` lists; ``tests/integration/test_cli_startup_and_width.py``
#: checks it against each command's own.
COMMANDS = [
    LazyCommand("keys", "keyops.cli.keys_cmd:app", "Issue and manage keys."),
    LazyCommand("rotations", "keyops.cli.rotations_cmd:app", "Rotations: each one's steps, attempts and errors."),
    LazyCommand(
        "reconcile",
        "keyops.cli.reconcile_cmd:reconcile",
        "Report drift per key and destination (exit 5 when any remains).",
    ),
    LazyCommand("profiles", "keyops.cli.specs_cmd:profiles_app", "Usage profiles: what usage a key was issued for."),
    LazyCommand(
        "policies",
        "keyops.cli.specs_cmd:policies_app",
        "Rotation policies: how often keys rotate, how long grace lasts.",
    ),
    LazyCommand("audit", "keyops.cli.audit_cmd:app", "The hash-chained audit log."),
    LazyCommand(
        "tokens",
        "keyops.cli.tokens_cmd:app",
        "Create, list and revoke API tokens (Bearer credentials for the HTTP API).",
    ),
    LazyCommand("findings", "keyops.cli.findings_cmd:app", "Detector findings: what was seen, with evidence."),
    LazyCommand("cases", "keyops.cli.cases_cmd:app", "Cases: one per key or cluster episode, gathering its findings."),
    LazyCommand(
        "replay",
        "keyops.cli.replay_cmd:replay",
        "Run the detection engine over past usage events, in event-time order.",
    ),
    LazyCommand("events", "keyops.cli.events_cmd:app", "Outbound events (webhooks, Slack) and their deliveries."),
    LazyCommand(
        "serve", "keyops.cli.serve_cmd:serve", "Serve the HTTP API and run the scheduled jobs until SIGTERM/SIGINT."
    ),
    LazyCommand("db", "keyops.cli.db_cmd:app", "Inventory schema migrations."),
]

app = typer.Typer(
    name="keyops",
    help="keyops: issue, inventory, deliver, rotate and revoke API keys.",
    cls=lazy_group(COMMANDS),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=True,
)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Settings file (default: $KEYOPS_CONFIG, ./keyops.toml).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="A note for the audit log (the actor is always local:<your OS user>).")
    ] = None,
    addr: Annotated[
        str | None,
        typer.Option("--addr", help="Send commands to the admin API at this URL (default: $KEYOPS_ADDR)."),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option("--token-file", help="A file holding the API token (default: $KEYOPS_TOKEN)."),
    ] = None,
) -> None:
    ctx.obj = CliState(config_path=config, actor_override=actor, addr=addr, token_file=token_file)
    ctx.call_on_close(ctx.obj.close)


@app.command()
def version() -> None:
    """Print the keyops version."""
    typer.echo(f"keyops {__version__}")


def _answered_without_typer(argv: list[str]) -> bool:
    """``keyops version``, answered before Typer parses anything: Typer
    coerces every parameter through pydantic, whose import alone costs more
    than the rest of this command (scripts and probes call it often)."""
    if argv != ["version"]:
        return False
    sys.stdout.write(f"keyops {__version__}\n")
    return True


def run() -> None:
    """Console-script entry: translate every failure into one line and an exit code."""
    if _answered_without_typer(sys.argv[1:]):
        return
    try:
        code = app(prog_name="keyops", standalone_mode=False)  # Click errors come here, not to Typer's boxes
        if code == 130:  # Typer turns Ctrl-C into exit code 130
            sys.stderr.write("keyops: interrupted\n")
        if isinstance(code, int) and code:
            sys.exit(code)
    except ClickException as exc:
        sys.exit(report_usage_error(exc))
    except typer.Abort:
        sys.exit(report_abort())
    except KeyOpsError as exc:
        sys.stderr.write(f"keyops: error: {redact(exc.message)}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("keyops: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, unless asked for the traceback
        if os.environ.get("KEYOPS_DEBUG"):
            raise
        first = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        sys.stderr.write(
            f"keyops: internal error: {type(exc).__name__}: {first} "
            f"(this is a bug; rerun with KEYOPS_DEBUG=1 for a traceback and report it)\n"
        )
        sys.exit(1)
