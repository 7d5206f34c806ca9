"""Plain-text tables that fit the terminal without breaking words.

A table whose columns fit the width prints one line per row. One that does
not keeps as many leading columns on the row's line as fit and folds the
rest, whole, onto indented lines below it as ``column: value``, so nothing
is ever cut mid-word ("profil/e") and a row stays one block to read or
grep. Pure: text in, lines out (and fast: rich's table layout cost ~0.75 s
for 1,000 rows).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

GAP = "  "
FOLD_INDENT = "    "
FOLD_GAP = "   "


def _folded_lines(items: list[str], width: int) -> list[str]:
    """Pack ``column: value`` items onto indented lines of at most ``width``;
    an item too long for a line of its own wraps at spaces."""
    room = max(1, width - len(FOLD_INDENT))
    lines: list[str] = []
    current = ""
    for item in items:
        if current and len(current) + len(FOLD_GAP) + len(item) <= room:
            current += FOLD_GAP + item
            continue
        if current:
            lines.append(current)
            current = ""
        if len(item) <= room:
            current = item
        else:
            pieces = textwrap.wrap(item, room, break_long_words=False, break_on_hyphens=False) or [item]
            lines.extend(pieces[:-1])
            current = pieces[-1]
    if current:
        lines.append(current)
    return [FOLD_INDENT + line for line in lines]


def render(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> tuple[str, list[str]]:
    """The header line and the body lines of a table at most ``width`` wide
    (a single value longer than the width is the only thing that may exceed it)."""
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    kept = 0
    used = 0
    for w in widths:
        needed = w if kept == 0 else len(GAP) + w
        if kept and used + needed > width:
            break
        used += needed
        kept += 1

    def line(cells: Sequence[str]) -> str:
        return GAP.join(cell.ljust(widths[i]) for i, cell in enumerate(cells[:kept])).rstrip()

    header = line(columns)
    body: list[str] = []
    for row in rows:
        body.append(line(row))
        if kept < len(columns):
            items = [f"{columns[i]}: {row[i]}" for i in range(kept, len(columns)) if row[i] != ""]
            body.extend(_folded_lines(items, width))
    return header, body
