"""Command groups loaded on first use.

Importing every command module at start-up pulls in SQLAlchemy, the
lifecycle services and the HTTP app: ``keyops --help`` and ``keyops version``
then spent most of their time importing code they never run. The root group
knows each command by name, by where it lives (``module:attribute``) and by
its one-line help, and imports the module only when that command is asked
for (run, its help, or shell completion below it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
import typer.main
from typer import _click as click
from typer.core import TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """A command of the root group: ``target`` is ``module:attribute``, a
    ``typer.Typer`` (a group) or a plain function (one command)."""

    name: str
    target: str
    help: str


def plain_help(command: click.Command) -> click.Command:
    """Turn off rich help below ``command``: plain Click help wraps at the
    terminal width instead of cutting option names, and prints no ``<bool>``
    metavars."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            plain_help(sub)
    return command


def load(entry: LazyCommand) -> click.Command:
    """Import ``entry.target`` and build its Click command."""
    module_name, _, attribute = entry.target.partition(":")
    obj: Any = getattr(importlib.import_module(module_name), attribute)
    command: click.Command
    if isinstance(obj, typer.Typer):
        # a group even when it holds one command (``events list``)
        command = typer.main.get_group(obj)
    else:
        single = typer.Typer()
        single.command(entry.name)(obj)
        command = typer.main.get_command(single)
    command.name = entry.name
    return plain_help(command)


class LazyGroup(TyperGroup):
    """The root group: eager commands (``version``) as usual, the rest from
    :attr:`lazy` on first use. The listing in ``--help`` uses the stored
    one-line help, so it imports nothing."""

    lazy: dict[str, LazyCommand] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.lazy, *(name for name in super().list_commands(ctx) if name not in self.lazy)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            self.commands[cmd_name] = load(entry)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            entry = self.lazy.get(name)
            if entry is not None:
                rows.append((name, entry.help))
                continue
            command = self.commands.get(name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def lazy_group(entries: list[LazyCommand]) -> type[LazyGroup]:
    """A :class:`LazyGroup` class holding ``entries`` (Typer builds the group
    from a class, so the table travels as a class attribute)."""
    return type("KeyopsGroup", (LazyGroup,), {"lazy": {entry.name: entry for entry in entries}})
