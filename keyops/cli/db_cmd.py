"""``keyops db``: upgrade, downgrade, current."""

from __future__ import annotations

from typing import Annotated

import typer

from keyops.cli.context import state
from keyops.cli.output import console
from keyops.inventory import migrate
from keyops.inventory.db import safe_url, translate_db_errors

app = typer.Typer(help="Inventory schema migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the inventory schema up (to the newest by default)."""
    st = state(ctx)
    app_ = st.app(prepare=False)
    with translate_db_errors(st.settings.database.url):
        migrate.upgrade(app_.engine, revision)
        console.print(f"{safe_url(st.settings.database.url)} is at revision {migrate.current_revision(app_.engine)}")


@app.command("downgrade")
def downgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument()] = "-1") -> None:
    """Migrate the inventory schema down (one step by default; 'base' removes everything)."""
    st = state(ctx)
    app_ = st.app(prepare=False)
    with translate_db_errors(st.settings.database.url):
        migrate.downgrade(app_.engine, revision)
        console.print(
            f"{safe_url(st.settings.database.url)} is at revision {migrate.current_revision(app_.engine) or 'base'}"
        )


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the schema revision of the inventory and the newest known."""
    st = state(ctx)
    app_ = st.app(prepare=False)
    with translate_db_errors(st.settings.database.url):
        rev = migrate.current_revision(app_.engine)
    head = migrate.head_revision()
    note = "(current)" if rev == head else f"(newest is {head}: run keyops db upgrade)"
    typer.echo(f"{rev or 'base'} {note}")
