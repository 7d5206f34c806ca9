"""``keyops cases``: what people were told about, one case per key or cluster."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from keyops.cli.context import state
from keyops.cli.evidence import cut
from keyops.cli.findings_cmd import action_label, subject
from keyops.cli.output import console, print_json, short_time
from keyops.domain.abbrev import abbreviate

app = typer.Typer(help="Cases: one per key or cluster episode, gathering its findings.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CaseId = Annotated[str, typer.Argument(metavar="ID", help="A case id from cases list.")]


def _who(doc: dict[str, Any]) -> str:
    if doc.get("cluster_id") and not doc.get("key_name"):
        return f"{subject(doc)} ({doc['members']} keys)"
    return subject(doc)


@app.command("list")
def cases_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="Only cases in this status: open, acknowledged or closed.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, most recent first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List cases, the most recently active first: two lines each (id,
    severity, status, decision; then last activity, key, findings, summary)."""
    items = state(ctx).app(read_only=True).detection.findings.cases.list(status=status, limit=limit)
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("no cases", markup=False, highlight=False)
        return
    width = max(40, console.width)
    ids = abbreviate(c["id"] for c in items)
    for c in items:
        action = action_label(c["action"], c["enforcement"])
        head = f"{ids[c['id']]}  {c['severity']:<8}  {c['status']:<12}  {action}"
        count = f"{c['finding_count']} finding{'s' if c['finding_count'] != 1 else ''}"
        detail = f"  {short_time(c['last_seen_at'])[:19]} · {_who(c)} · {count} · {c['summary']}"
        console.print(head, markup=False, highlight=False)
        console.print(cut(detail, width), markup=False, highlight=False, soft_wrap=True)


@app.command("show")
def cases_show(ctx: typer.Context, case_id: CaseId, as_json: JsonOpt = False) -> None:
    """Show one case with its findings (keyops findings show ID for the evidence)."""
    doc = state(ctx).app(read_only=True).detection.findings.cases.show(case_id)
    if as_json:
        print_json(doc)
        return
    shadow = " — shadow: recorded only, nobody was told" if doc["enforcement"] == "shadow" else ""
    lines = [
        f"case {doc['id']}: {doc['severity']}, {doc['status']}{shadow}",
        f"key: {doc['key_name'] or '-'} ({doc['key_id'] or 'no key'}); cluster: {doc['cluster_id'] or '-'}",
        f"opened: {short_time(doc['opened_at'])}; last seen: {short_time(doc['last_seen_at'])}",
        f"decision: {action_label(doc['action'], doc['enforcement'])}; findings: {doc['finding_count']}",
        f"summary: {doc['summary']}",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)
    width = max(40, console.width)
    console.print(f"findings ({len(doc['findings'])}):", markup=False, highlight=False)
    finding_ids = abbreviate(f["id"] for f in doc["findings"])
    for f in doc["findings"]:
        action = action_label(f["action"], f.get("enforcement"))
        console.print(f"  {finding_ids[f['id']]}  {f['severity']:<8}  {action}", markup=False, highlight=False)
        detail = f"    {short_time(f['at'])[:19]} · {f['detector']} · {f['summary']}"
        console.print(cut(detail, width), markup=False, highlight=False, soft_wrap=True)


def _set(ctx: typer.Context, case_id: str, status: str, as_json: bool) -> None:
    doc = state(ctx).app().detection.findings.cases.set_status(case_id, status)
    if as_json:
        print_json(doc)
        return
    console.print(f"case {doc['id']} is now {doc['status']}", markup=False, highlight=False)


@app.command("ack")
def cases_ack(ctx: typer.Context, case_id: CaseId, as_json: JsonOpt = False) -> None:
    """Mark a case as being looked at (it still gathers findings)."""
    _set(ctx, case_id, "acknowledged", as_json)


@app.command("close")
def cases_close(ctx: typer.Context, case_id: CaseId, as_json: JsonOpt = False) -> None:
    """Close a case: new findings about the key open a new one."""
    _set(ctx, case_id, "closed", as_json)
