"""``keyops rotations``: list, show and resume rotations; shared printing for
``keys rotate``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table, short_time
from keyops.domain.abbrev import abbreviate
from keyops.errors import StoreError
from keyops.lifecycle.lease_holder import Holder
from keyops.lifecycle.rotation_result import RotationResult

if TYPE_CHECKING:  # `keys` imports this module; the engine is built (and imported) on first use
    from keyops.lifecycle.rotation import RotationEngine

app = typer.Typer(help="Rotations: each one's steps, attempts and errors.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable shape, see README).")]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def print_rotation(result: RotationResult) -> None:
    versions = f"v{result.old_version or '-'} -> v{result.new_version or '-'}"
    console.print(f"{result.key_name}: rotation {result.rotation_id} {result.status} ({versions}, step {result.step}).")
    if result.last_error and not result.ok:
        console.print(f"error: {result.last_error}", style="red")
    if result.status == "failed":
        retry = result.to_document()["next_attempt_at"]
        console.print(
            f"The daemon retries it at {retry}; keyops rotations resume retries it now."
            if retry
            else "No automatic retry is left: run keyops rotations resume once the cause is fixed."
        )
    if result.plaintext is not None:
        console.print("New key (the key has no destinations; shown once, store it now):", style="yellow")
        typer.echo(result.plaintext)


def _summary(results: list[RotationResult], as_json: bool, held: list[Holder] | None = None) -> None:
    failed = [r for r in results if not r.ok]
    if as_json:
        doc: dict[str, object] = {
            "rotated": len(results) - len(failed),
            "failed": len(failed),
            "rotations": [r.to_document() for r in results],
        }
        if held is not None:
            doc["held"] = [
                {"rotation_id": h.rotation_id, "key": h.key_name, "worker": h.worker, "until": iso(h.until)}
                for h in held
            ]
        print_json(doc)
    else:
        console.print(f"{len(results) - len(failed)} rotated, {len(failed)} failed.")
        for result in failed:
            print_rotation(result)
        for holder in held or []:
            # Not taken over: its worker may still be at it. Say so, and how.
            console.print(
                f"left alone: {holder.describe()}; if that worker is dead, --force takes it over.", soft_wrap=True
            )
    if failed:
        raise StoreError(f"{len(failed)} rotation(s) failed; see keyops rotations list --status failed")


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
    results = state(ctx).app(read_only=True).rotations.list(status=status, key=key, limit=limit)
    if as_json:
        print_json([r.to_document() for r in results])
        return
    ids = abbreviate(r.rotation_id for r in results)
    print_table(
        None,
        ["id", "key", "status", "step", "trigger", "versions", "attempts", "started", "error"],
        [
            (
                ids[r.rotation_id],
                r.key_name,
                r.status,
                r.step,
                r.trigger,
                f"{r.old_version or '-'} -> {r.new_version or '-'}",
                r.attempts,
                short_time(r.to_document()["created_at"]),
                r.last_error[:60],
            )
            for r in results
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context, rotation_id: Annotated[str, typer.Argument(help="Rotation id.")], as_json: JsonOpt = False
) -> None:
    """One rotation with each of its steps."""
    result = state(ctx).app(read_only=True).rotations.show(rotation_id)
    doc = result.to_document(with_steps=True)
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
    engine = state(ctx).app().rotations
    results = engine.resume(only_expired_leases=not force, include_failed=True, limit=10000)
    _summary(results, as_json, held=engine.held())
