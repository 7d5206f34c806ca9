"""``keyops db``: upgrade, downgrade, current, prune."""

from __future__ import annotations

from typing import Annotated

import typer

from keyops.cli.context import state
from keyops.cli.output import console
from keyops.inventory import migrate
from keyops.inventory.db import safe_url, translate_db_errors
from keyops.lifecycle.retention import prune_history

app = typer.Typer(help="Inventory schema migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the inventory schema up (to the newest by default)."""
    st = state(ctx)
    app_ = st.app(prepare=False, create=True)
    with translate_db_errors(st.settings.database.url):
        migrate.upgrade(app_.engine, revision)
        console.print(f"{safe_url(st.settings.database.url)} is at revision {migrate.current_revision(app_.engine)}")


@app.command("downgrade")
def downgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument()] = "-1") -> None:
    """Migrate the inventory schema down (one step by default; 'base' removes everything)."""
    st = state(ctx)
    app_ = st.app(prepare=False, read_only=True)
    with translate_db_errors(st.settings.database.url):
        migrate.downgrade(app_.engine, revision)
        console.print(
            f"{safe_url(st.settings.database.url)} is at revision {migrate.current_revision(app_.engine) or 'base'}"
        )


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the schema revision of the inventory and the newest known."""
    st = state(ctx)
    app_ = st.app(prepare=False, read_only=True)
    with translate_db_errors(st.settings.database.url):
        rev = migrate.current_revision(app_.engine)
    head = migrate.head_revision()
    note = "(current)" if rev == head else f"(newest is {head}: run keyops db upgrade)"
    typer.echo(f"{rev or 'base'} {note}")


@app.command("prune")
def prune(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
) -> None:
    """Delete alerts, findings and delivered outbox rows past their [retention] (the daemon does this hourly)."""
    st = state(ctx)
    app_ = st.app()
    with translate_db_errors(st.settings.database.url):
        report = prune_history(app_.engine, app_.sessions, st.settings.retention, actor=st.actor, dry_run=dry_run)
    if report is None:
        typer.echo("another keyops process is pruning right now; nothing done (try again later)")
        return
    verb = "would delete" if dry_run else "deleted"
    for table, count in report.counts.items():
        typer.echo(f"{table}: {verb} {count} (older than {report.before[table]})")
    for name in report.forever:
        typer.echo(f"retention.{name} = forever: nothing pruned")
