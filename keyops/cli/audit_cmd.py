"""``keyops audit``: list events, verify the sealed chain, export its head, re-seal legacy events."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table
from keyops.errors import AuditChainError, AuditHeadMismatchError, KeyOpsError

if TYPE_CHECKING:  # SQLAlchemy and the audit chain: imported when used, API mode runs without them
    from keyops.bootstrap import App

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
    if st.remote is not None:
        docs = st.remote.json("GET", "/v1/admin/audit", params={"key": key, "action": action, "limit": limit})
    else:
        docs = _list_local(ctx, key, action, limit)
    if as_json:
        print_json(docs)
        return
    print_table(
        None,
        ["seq", "at", "actor", "action", "key", "reason"],
        [(d["seq"], d["at"], d["actor"], d["action"], d["key_name"] or "-", d["reason"]) for d in docs],
    )


def _list_local(ctx: typer.Context, key: str | None, action: str | None, limit: int) -> list[dict[str, Any]]:
    from keyops.inventory.db import translate_db_errors
    from keyops.lifecycle import audit_log

    st = state(ctx)
    app_ = st.app(read_only=True)
    with translate_db_errors(st.settings.database.url):
        return audit_log.list_events(app_.sessions, key=key, action=action, limit=limit)


@app.command("head")
def head(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the chain's head as SEQ:HASH, to anchor it outside the database
    (check it later with `keyops audit verify --expect-head SEQ:HASH`)."""
    from keyops import audit
    from keyops.inventory.db import translate_db_errors
    from keyops.lifecycle import audit_log

    st = state(ctx)
    app_ = st.app(read_only=True)
    with translate_db_errors(st.settings.database.url):
        doc = audit_log.head_document(app_.sessions)
    if as_json:
        print_json(doc)
    else:
        sys.stdout.write(f"{doc['anchor']}\n")
    if doc["hash_alg"] == audit.ALG_SHA256:
        sys.stderr.write("keyops: warning: the head is a legacy (unkeyed) event: run `keyops audit seal` first\n")


@app.command("verify")
def verify(
    ctx: typer.Context,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="SEQ:HASH",
            help="A head exported earlier by `keyops audit head`; exit 10 if the chain no longer holds it.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check the whole chain under the audit key. Exit 9 and name the first
    broken event if it fails (or if events are still unkeyed legacy events);
    exit 10 if it does not hold the --expect-head event exactly."""
    st = state(ctx)
    if st.remote is not None:
        _verify_remote(st, expect_head, as_json)
        return
    from keyops.inventory.db import translate_db_errors
    from keyops.lifecycle import audit_log

    expected = audit_log.parse_expected_head(expect_head)
    app_ = st.app(read_only=True)
    with translate_db_errors(st.settings.database.url):
        doc, failure = audit_log.verify_report(app_.sessions, expected)
    if as_json:
        print_json(doc)
        if failure is not None:
            raise typer.Exit(failure.exit_code)
        return
    if failure is not None:
        raise failure
    held = f"; holds the expected head {expected[0]}" if expected is not None else ""
    console.print(
        f"audit chain OK: {doc['events']} events verified under audit key {_key_id(app_)}{held}", soft_wrap=True
    )


def _verify_remote(st: Any, expect_head: str | None, as_json: bool) -> None:
    """The server verifies; its verdict is the ``--json`` document, with the
    line the CLI exits with in ``error`` (exit 10 when the expected head is gone)."""
    doc: dict[str, Any] = st.remote.json("GET", "/v1/admin/audit/verify", params={"expect_head": expect_head})
    error = doc.pop("error", None)
    failure: KeyOpsError | None = None
    if not doc["ok"]:
        kind = AuditHeadMismatchError if doc.get("expected_head_problem") else AuditChainError
        failure = kind(error or "audit chain verification failed")
    if as_json:
        print_json(doc)
        if failure is not None:
            raise typer.Exit(failure.exit_code)
        return
    if failure is not None:
        raise failure
    held = f"; holds the expected head {expect_head}" if expect_head is not None else ""
    console.print(f"audit chain OK: {doc['events']} events verified by {st.remote.addr}{held}", soft_wrap=True)


def _key_id(app_: App) -> str:
    assert app_.audit_key is not None
    return app_.audit_key.get().key_id


@app.command("seal")
def seal(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Re-seal a chain that still holds legacy (unkeyed) events under the
    audit key, after verifying it; a broken chain is refused and left as it is."""
    from keyops import audit
    from keyops.inventory.db import translate_db_errors
    from keyops.lifecycle import audit_log

    st = state(ctx)
    app_ = st.app()
    with translate_db_errors(st.settings.database.url), app_.sessions.begin() as session:
        result = audit.seal(session, actor=st.actor)
        doc = audit_log.document_of_head(result.head)
    if as_json:
        print_json({"legacy_events": result.legacy_events, "resealed_events": result.resealed_events, "head": doc})
        return
    if result.legacy_events == 0:
        console.print(f"nothing to seal: every event is already sealed under audit key {_key_id(app_)}")
        return
    console.print(
        f"sealed {result.resealed_events} events ({result.legacy_events} were legacy) under audit key "
        f"{_key_id(app_)}; new head {doc['anchor']} (heads exported before this no longer match: export it again)"
    )
