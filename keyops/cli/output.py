"""Printing: JSON for machines (stable shapes), plain tables and rich text for people.

``console`` is built on first use: importing rich costs start-up time that
``--json`` and the tables do not need.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson

from keyops.cli import table

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """Stands for a ``rich.console.Console`` until something is printed."""

    _console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            type(self)._console = Console()
        return getattr(self._console, name)


console = cast("Console", _LazyConsole())


def terminal_width() -> int:
    """``$COLUMNS``, else the terminal's width, else 80 (as when piped)."""
    return max(20, shutil.get_terminal_size((80, 24)).columns)


def print_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table that fits the terminal, folding whole columns when it must (see ``keyops.cli.table``)."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    header, body = table.render(list(columns), cells, terminal_width())
    bold = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    out = []
    if title:
        out.append(title)
    out.append(f"\033[1m{header}\033[0m" if bold else header)
    out.extend(body)
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def short_time(value: str | None) -> str:
    if not value:
        return "-"
    return value.replace("T", " ").replace("Z", "")
