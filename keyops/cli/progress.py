"""Progress for bulk work, on a terminal only.

A person running ``keys issue --from-file`` or ``reconcile`` on a terminal
sees how far it got; ``--json`` output, a pipe or a file never gets progress
bars or spinners mixed in (stderr must be a terminal, and ``KEYOPS_NO_PROGRESS``
turns it off).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich.progress is imported only when a bar is drawn
    from rich.progress import Progress, TaskID


def wanted(as_json: bool = False) -> bool:
    return not as_json and sys.stderr.isatty() and not os.environ.get("KEYOPS_NO_PROGRESS")


class Bar:
    """``advance()`` after each item; ``note(text)`` says what it is waiting for."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def note(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def bar(label: str, total: int | None, *, as_json: bool = False) -> Iterator[Bar]:
    """A progress bar (``total`` known) or a spinner, on stderr, when wanted."""
    if not wanted(as_json):
        yield Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, progress.add_task(label, total=total))
