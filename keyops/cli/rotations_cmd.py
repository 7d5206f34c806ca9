"""``keyops rotations``: list, show and resume rotations; shared printing for
``keys rotate``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table, short_time
from keyops.domain.abbrev import abbreviate
from keyops.errors import StoreError
from keyops.lifecycle.lease_holder import Holder

if TYPE_CHECKING:  # the lifecycle imports SQLAlchemy: API mode must start without it
    from keyops.lifecycle.rotation import RotationEngine
    from keyops.lifecycle.rotation_result import RotationResult

app = typer.Typer(help="Rotations: each one's steps, attempts and errors.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable shape, see README).")]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def rotation_document(result: RotationResult) -> dict[str, Any]:
    """``keys rotate --json``: the rotation, with the new key when it has no destinations."""
    doc = result.to_document(with_steps=False)
    if result.plaintext is not None:
        doc["key"] = result.plaintext
    return doc


def print_rotation(doc: dict[str, Any]) -> None:
    """One rotation for people, from its document (database or API mode)."""
    versions = f"v{doc['old_version'] or '-'} -> v{doc['new_version'] or '-'}"
    console.print(f"{doc['key_name']}: rotation {doc['id']} {doc['status']} ({versions}, step {doc['step']}).")
    ok = doc["status"] == "finished"
    if doc["last_error"] and not ok:
        console.print(f"error: {doc['last_error']}", style="red")
    if doc["status"] == "failed":
        retry = doc["next_attempt_at"]
        console.print(
            f"The daemon retries it at {retry}; keyops rotations resume retries it now."
            if retry
            else "No automatic retry is left: run keyops rotations resume once the cause is fixed."
        )
    if doc.get("key") is not None:
        console.print("New key (the key has no destinations; shown once, store it now):", style="yellow")
        typer.echo(doc["key"])


def rotation_failed(doc: dict[str, Any]) -> StoreError:
    return StoreError(f"rotation {doc['id']} of {doc['key_name']} {doc['status']}: {doc['last_error']}")


def _summary(results: list[RotationResult], as_json: bool, held: list[Holder] | None = None) -> None:
    failed = sum(1 for r in results if not r.ok)
    doc: dict[str, Any] = {
        "rotated": len(results) - failed,
        "failed": failed,
        "rotations": [r.to_document() for r in results],
    }
    held_docs = None
    if held is not None:
        held_docs = [
            {"rotation_id": h.rotation_id, "key": h.key_name, "worker": h.worker, "until": iso(h.until)} for h in held
        ]
    print_summary(doc, as_json, held_docs, [h.describe() for h in held or []])


def print_summary(
    doc: dict[str, Any], as_json: bool, held: list[dict[str, Any]] | None = None, held_lines: list[str] | None = None
) -> None:
    """``rotations resume`` and ``keys rotate --due``, from the summary
    document (the API answers it without ``held``)."""
    failed = [r for r in doc["rotations"] if r["status"] != "finished"]
    if as_json:
        print_json(doc if held is None else {**doc, "held": held})
    else:
        console.print(f"{doc['rotated']} rotated, {doc['failed']} failed.")
        for rotation in failed:
            print_rotation(rotation)
        for line in held_lines or []:
            # Not taken over: its worker may still be at it. Say so, and how.
            console.print(f"left alone: {line}; if that worker is dead, --force takes it over.", soft_wrap=True)
    if doc["failed"]:
        raise StoreError(f"{doc['failed']} rotation(s) failed; see keyops rotations list --status failed")


def rotate_due(engine: RotationEngine, *, limit: int, as_json: bool) -> None:
    """``keys rotate --due``: a progress bar on a terminal (stderr; never with
    ``--json`` or when piped, see ``keyops.cli.progress``), a summary always."""
    from keyops.cli import progress  # here: every `keys` command imports this module, few draw a bar

    total = min(engine.count_due(), limit)
    results: list[RotationResult] = []
    with progress.bar(f"rotating {total} due keys", total or None, as_json=as_json) as bar:
        if progress.wanted(as_json):
            # A store that does not answer holds a rotation until its timeout:
            # the bar says which step the current one is past.
            engine.checkpoint = lambda _rid, label: bar.note(f"rotating due keys: {label} done, next step...")
            engine.runner.waiting = lambda text: bar.note(f"rotating due keys: waiting: {text}")
        while len(results) < limit:
            batch = engine.rotate_due(limit=min(100, limit - len(results)), progress=lambda _r: bar.advance())
            if not batch:
                break
            results.extend(batch)
    _summary(results, as_json)


@app.command("list")
def list_rotations(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="running, finished, failed or rolled_back.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this key's rotations.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List rotations, newest first."""
    st = state(ctx)
    if st.remote is not None:
        params = {"status": status, "key": key, "limit": limit}
        docs: list[dict[str, Any]] = st.remote.json("GET", "/v1/admin/rotations", params=params)
    else:
        docs = [r.to_document() for r in st.app(read_only=True).rotations.list(status=status, key=key, limit=limit)]
    if as_json:
        print_json(docs)
        return
    ids = abbreviate(r["id"] for r in docs)
    print_table(
        None,
        ["id", "key", "status", "step", "trigger", "versions", "attempts", "started", "error"],
        [
            (
                ids[r["id"]],
                r["key_name"],
                r["status"],
                r["step"],
                r["trigger"],
                f"{r['old_version'] or '-'} -> {r['new_version'] or '-'}",
                r["attempts"],
                short_time(r["created_at"]),
                r["last_error"][:60],
            )
            for r in docs
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context, rotation_id: Annotated[str, typer.Argument(help="Rotation id.")], as_json: JsonOpt = False
) -> None:
    """One rotation with each of its steps."""
    st = state(ctx)
    if st.remote is not None:
        from keyops.cli.remote import segment

        doc: dict[str, Any] = st.remote.json("GET", f"/v1/admin/rotations/{segment(rotation_id)}")
    else:
        doc = st.app(read_only=True).rotations.show(rotation_id).to_document(with_steps=True)
    if as_json:
        print_json(doc)
        return
    for field in (
        "id",
        "key_name",
        "status",
        "step",
        "trigger",
        "actor",
        "reason",
        "grace_seconds",
        "old_version",
        "new_version",
        "attempts",
        "last_error",
        "created_at",
        "finished_at",
        "next_attempt_at",
    ):
        value = doc.get(field)
        if value not in (None, ""):
            console.print(f"[bold]{field:>13}[/bold]  {value}")
    print_table(
        "steps",
        ["at", "step", "destination", "detail"],
        [
            (
                short_time(e.get("at")),
                e.get("step"),
                e.get("destination", ""),
                ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("at", "step", "destination")),
            )
            for e in doc["steps"]
        ],
    )


@app.command("resume")
def resume(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Also take over rotations whose worker's lease has not expired.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Finish unfinished rotations: failed ones and those of a worker that died."""
    st = state(ctx)
    if st.remote is not None:
        print_summary(st.remote.json("POST", "/v1/admin/rotations/resume", body={"force": force}), as_json)
        return
    engine = st.app().rotations
    results = engine.resume(only_expired_leases=not force, include_failed=True, limit=10000)
    _summary(results, as_json, held=engine.held())
