"""``keyops findings``: what the detectors saw, with the evidence."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from keyops.cli.context import state
from keyops.cli.evidence import evidence_lines
from keyops.cli.output import console, print_json, print_table, short_time

app = typer.Typer(help="Detector findings: what was seen, with evidence.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def action_label(action: str, enforcement: str | None) -> str:
    """``suspend``, or ``suspend (shadow)`` / ``suspend (monitor)`` when the
    decision was recorded without being carried out."""
    if action in ("none", "notify") or enforcement in (None, "enforce"):
        return action
    return f"{action} ({enforcement})"


def subject(doc: dict[str, Any]) -> str:
    if doc.get("key_name"):
        return str(doc["key_name"])
    return f"cluster {doc['cluster_id'][:8]}" if doc.get("cluster_id") else "-"


def short_id(value: str | None) -> str:
    return value[:8] if value else "-"


@app.command("list")
def findings_list(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", help="Only findings about this key (name or id).")] = None,
    case: Annotated[str | None, typer.Option("--case", help="Only the findings of this case (see cases list).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List findings, newest first (case: the first characters of its id)."""
    items = state(ctx).app().detection.findings.list(key=key, case=case, limit=limit)
    if as_json:
        print_json(items)
        return
    print_table(
        None,
        ["id", "at", "key", "detector", "severity", "action", "case", "summary"],
        [
            (
                f["id"],
                short_time(f["at"]),
                subject(f),
                f["detector"],
                f["severity"],
                action_label(f["action"], f.get("enforcement")),
                short_id(f.get("case_id")),
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
    """Show one finding with its evidence: what it was judged against, what
    was observed, the thresholds and redacted samples."""
    doc = state(ctx).app().detection.findings.show(finding_id)
    if as_json:
        print_json(doc)
        return
    width = max(40, console.width)
    action = action_label(doc["action"], doc.get("enforcement"))
    lines = [
        f"{doc['detector']} {doc['severity']}: {doc['summary']}",
        f"key: {doc['key_name'] or '-'} ({doc['key_id'] or 'no key'}); cluster: {doc['cluster_id'] or '-'}",
        f"at: {short_time(doc['at'])}; action: {action}; status: {doc['status']}",
        f"case: {doc.get('case_id') or '-'}",
        "evidence:",
    ]
    for line in lines:  # wrapped, not cut: ids must stay whole
        console.print(line, markup=False, highlight=False)
    for line in evidence_lines(doc["evidence"] or {}, width - 2):
        console.print("  " + line, markup=False, highlight=False, soft_wrap=True)
