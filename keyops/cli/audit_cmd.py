"""``keyops audit``: list events, verify the hash chain."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from keyops import audit
from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table
from keyops.errors import AuditChainError
from keyops.inventory.db import translate_db_errors
from keyops.inventory.models import AuditEvent
from keyops.lifecycle.keys import find_key

app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@app.command("list")
def list_events(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", help="Only events of this key (name or id).")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action, e.g. key.revoked.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the newest audit events (newest last)."""
    st = state(ctx)
    app_ = st.app()
    with translate_db_errors(st.settings.database.url), app_.sessions() as session:
        stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
        if key:
            stmt = stmt.where(AuditEvent.key_id == find_key(session, key).id)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        events = list(reversed(session.execute(stmt).scalars().all()))
        docs = [audit.event_document(e) for e in events]
    if as_json:
        print_json(docs)
        return
    print_table(
        None,
        ["seq", "at", "actor", "action", "key", "reason"],
        [(d["seq"], d["at"], d["actor"], d["action"], d["key_name"] or "-", d["reason"]) for d in docs],
    )


@app.command("verify")
def verify(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the whole chain; exit 9 and name the first broken event if it fails."""
    st = state(ctx)
    app_ = st.app()
    with translate_db_errors(st.settings.database.url), app_.sessions() as session:
        result = audit.verify(session)
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "events": result.events,
                "problems": result.problems,
                "first_bad_seq": result.first_bad_seq,
            }
        )
        if not result.ok:
            raise typer.Exit(AuditChainError.exit_code)
        return
    if not result.ok:
        raise AuditChainError(f"audit chain is broken: {result.problems[0]}")
    console.print(f"audit chain OK: {result.events} events verified")
