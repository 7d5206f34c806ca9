"""``keyops findings``: what the detectors saw, with the evidence."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table, short_time

app = typer.Typer(help="Detector findings: what was seen, with evidence.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("list")
def findings_list(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", help="Only findings about this key (name or id).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List findings, newest first."""
    items = state(ctx).app().detection.findings.list(key=key, limit=limit)
    if as_json:
        print_json(items)
        return
    print_table(
        None,
        ["id", "at", "key", "detector", "severity", "action", "summary"],
        [
            (
                f["id"],
                short_time(f["at"]),
                f["key_name"] or (f"cluster {f['cluster_id'][:8]}" if f["cluster_id"] else "-"),
                f["detector"],
                f["severity"],
                f["action"],
                f["summary"],
            )
            for f in items
        ],
    )


@app.command("show")
def findings_show(
    ctx: typer.Context,
    finding_id: Annotated[str, typer.Argument(metavar="ID", help="A finding id from findings list.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one finding with its evidence."""
    doc = state(ctx).app().detection.findings.show(finding_id)
    if as_json:
        print_json(doc)
        return
    console.print(f"[bold]{doc['detector']}[/bold] {doc['severity']}: {doc['summary']}")
    console.print(f"key: {doc['key_name'] or '-'} ({doc['key_id'] or 'no key'}); cluster: {doc['cluster_id'] or '-'}")
    console.print(f"at: {short_time(doc['at'])}; action: {doc['action']}; status: {doc['status']}")
    console.print("evidence:")
    console.print(orjson.dumps(doc["evidence"], option=orjson.OPT_INDENT_2).decode(), markup=False, highlight=False)
