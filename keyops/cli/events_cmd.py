"""``keyops events``: what the outbox delivered, what it is still trying."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from keyops.cli.context import state
from keyops.cli.output import print_json, print_table, short_time
from keyops.errors import InvalidInputError
from keyops.inventory.db import translate_db_errors
from keyops.lifecycle.views import iso

app = typer.Typer(help="Outbound events (webhooks, Slack) and their deliveries.", no_args_is_help=True)

STATUSES = ("pending", "delivered", "dead")


@app.command("list")
def list_events(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="Only pending, delivered or dead.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the newest deliveries (newest last): event, key, sink, status, attempts, last error."""
    if status is not None and status not in STATUSES:
        raise InvalidInputError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    st = state(ctx)
    app_ = st.app(read_only=True)
    with translate_db_errors(st.settings.database.url):
        rows = app_.notify.list_deliveries(status=status, limit=limit)
    docs: list[dict[str, Any]] = [
        {
            "delivery_id": r.id,
            "event_id": r.event_id,
            "seq": r.event_seq,
            "type": r.type,
            "key_id": r.key_id,
            "key_name": r.key_name,
            "sink": r.sink,
            "status": r.status,
            "attempts": r.attempts,
            "next_attempt_at": iso(r.next_attempt_at) if r.status == "pending" else None,
            "delivered_at": iso(r.delivered_at),
            "last_error": r.last_error,
            "created_at": iso(r.created_at),
        }
        for r in rows
    ]
    if as_json:
        print_json(docs)
        return
    print_table(
        None,
        ["seq", "created", "event", "key", "sink", "status", "attempts", "next try", "last error"],
        [
            (
                d["seq"],
                short_time(d["created_at"]),
                d["type"],
                d["key_name"] or d["key_id"] or "-",
                d["sink"],
                d["status"],
                d["attempts"],
                short_time(d["next_attempt_at"]),
                d["last_error"] or "-",
            )
            for d in docs
        ],
    )
