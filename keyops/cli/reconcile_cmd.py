"""``keyops reconcile``: the inventory vs what the stores really hold."""

from __future__ import annotations

from typing import Annotated

import typer

from keyops.cli import progress
from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table
from keyops.errors import ConflictError


def reconcile(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Re-deliver the current version where it drifted.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Report drift per key and destination (exit 5 when any remains)."""
    st = state(ctx)
    app = st.app(read_only=not repair)
    with progress.bar("reading every destination" + (" and repairing" if repair else ""), None, as_json=as_json):
        report = app.rotations.reconcile(repair=repair, actor=st.actor)
    if as_json:
        print_json(report.to_document())
    else:
        print_table(
            None,
            ["key", "destination", "status", "repaired", "detail"],
            [(r.key, r.destination, r.status, "yes" if r.repaired else "", r.detail) for r in report.rows],
        )
        console.print("no drift." if report.ok else f"{len(report.drift)} destination(s) drifted.")
    if not report.ok:
        keys = sorted({r.key for r in report.drift})
        if repair:
            # --repair re-delivers the current version; what is left needs a
            # new version (or the store back), not another --repair.
            raise ConflictError(
                f"{len(report.drift)} destination(s) of {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} "
                f"still differ after --repair (see each row's detail); a key whose current material no "
                f"destination holds needs a new version: keyops keys rotate {keys[0]}"
            )
        raise ConflictError(
            f"{len(report.drift)} destination(s) differ from the inventory; run keyops reconcile --repair"
        )
