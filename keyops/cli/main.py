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
from keyops.cli import audit_cmd, cases_cmd, db_cmd, events_cmd, keys_cmd, serve_cmd, specs_cmd, tokens_cmd
from keyops.cli.context import CliState
from keyops.cli.findings_cmd import app as findings_app
from keyops.cli.reconcile_cmd import reconcile as reconcile_command
from keyops.cli.replay_cmd import replay as replay_command
from keyops.cli.rotations_cmd import app as rotations_app
from keyops.cli.usage import ClickException, report_abort, report_usage_error
from keyops.errors import KeyOpsError
from keyops.logs import redact

app = typer.Typer(
    name="keyops",
    help="keyops: issue, inventory, deliver, rotate and revoke API keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(specs_cmd.profiles_app, name="profiles")
app.add_typer(specs_cmd.policies_app, name="policies")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(db_cmd.app, name="db")
app.add_typer(findings_app, name="findings")
app.add_typer(cases_cmd.app, name="cases")
app.command("replay")(replay_command)
app.add_typer(tokens_cmd.app, name="tokens")
app.command("serve")(serve_cmd.serve)
app.add_typer(events_cmd.app, name="events")
app.add_typer(rotations_app, name="rotations")
app.command("reconcile")(reconcile_command)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Settings file (default: $KEYOPS_CONFIG, ./keyops.toml).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who is acting, for the audit log (default: your OS user).")
    ] = None,
) -> None:
    ctx.obj = CliState(config_path=config, actor_override=actor)
    ctx.call_on_close(ctx.obj.close)


@app.command()
def version() -> None:
    """Print the keyops version."""
    typer.echo(f"keyops {__version__}")


def run() -> None:
    """Console-script entry: translate every failure into one line and an exit code."""
    try:
        code = app(standalone_mode=False)  # Click errors come here, not to Typer's boxes
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
