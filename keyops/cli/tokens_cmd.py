"""``keyops tokens``: credentials for callers of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table, short_time

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
    if st.remote is not None:
        doc = st.remote.json("POST", "/v1/admin/tokens", body={"name": name, "scopes": scopes})
    else:
        from keyops.lifecycle.tokens import TokenService  # SQLAlchemy: only in database mode

        view, token = TokenService(st.app().sessions).create(name, scopes, actor=st.actor)
        doc = {"name": view.name, "token": token, "scopes": list(view.scopes)}
    if as_json:
        print_json(doc)
        return
    console.print(f"Created token [bold]{doc['name']}[/bold] with scopes {', '.join(doc['scopes'])}.")
    console.print("Token (shown once, store it now):", style="yellow")
    typer.echo(doc["token"])


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List tokens (never their values)."""
    st = state(ctx)
    docs: list[dict[str, Any]]
    if st.remote is not None:
        docs = st.remote.json("GET", "/v1/admin/tokens")
    else:
        from keyops.lifecycle.tokens import TokenService

        docs = [v.to_document() for v in TokenService(st.app(read_only=True).sessions).list()]
    if as_json:
        print_json(docs)
        return
    print_table(
        None,
        ["name", "scopes", "prefix", "created", "revoked"],
        [
            (
                d["name"],
                ",".join(d["scopes"]),
                d["display_prefix"],
                short_time(d["created_at"]),
                short_time(d["revoked_at"]),
            )
            for d in docs
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
    if st.remote is not None:
        from keyops.cli.remote import segment

        st.remote.request("DELETE", f"/v1/admin/tokens/{segment(name)}", params={"reason": reason or None})
    else:
        from keyops.lifecycle.tokens import TokenService

        name = TokenService(st.app().sessions).revoke(name, actor=st.actor, reason=reason).name
    console.print(f"Revoked token [bold]{name}[/bold].")
