"""``keyops tokens``: credentials for callers of the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table, short_time
from keyops.lifecycle.tokens import TokenService

app = typer.Typer(
    help="Create, list and revoke API tokens (Bearer credentials for the HTTP API).", no_args_is_help=True
)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Token name, e.g. gateway-eu.")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            "-s",
            help="Comma-separated: verify, usage, admin, operator, auditor, owner:<owner>, "
            "alerts:standard|alertmanager|grafana, alerts:*.",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name", "token", "scopes"}.')] = False,
) -> None:
    """Create a token. It is printed once and stored only as a hash."""
    st = state(ctx)
    view, token = TokenService(st.app().sessions).create(name, scopes, actor=st.actor)
    if as_json:
        print_json({"name": view.name, "token": token, "scopes": list(view.scopes)})
        return
    console.print(f"Created token [bold]{view.name}[/bold] with scopes {', '.join(view.scopes)}.")
    console.print("Token (shown once, store it now):", style="yellow")
    typer.echo(token)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List tokens (never their values)."""
    views = TokenService(state(ctx).app(read_only=True).sessions).list()
    if as_json:
        print_json([v.to_document() for v in views])
        return
    print_table(
        None,
        ["name", "scopes", "prefix", "created", "revoked"],
        [
            (
                v.name,
                ",".join(v.scopes),
                v.display_prefix,
                short_time(v.to_document()["created_at"]),
                short_time(v.to_document()["revoked_at"]),
            )
            for v in views
        ],
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Token name.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")] = "",
) -> None:
    """Revoke a token: running servers refuse it within a second."""
    st = state(ctx)
    view = TokenService(st.app().sessions).revoke(name, actor=st.actor, reason=reason)
    console.print(f"Revoked token [bold]{view.name}[/bold].")
