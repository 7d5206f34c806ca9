"""``keyops findings``: what the detectors saw, with the evidence."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from keyops.cli.context import state
from keyops.cli.evidence import cut, evidence_lines
from keyops.cli.output import console, print_json, short_time
from keyops.domain.abbrev import abbreviate

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


@app.command("list")
def findings_list(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", help="Only findings about this key (name or id).")] = None,
    case: Annotated[str | None, typer.Option("--case", help="Only the findings of this case (see cases list).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List findings, newest first: two lines each (id, severity, action;
    then time, key, detector, case and summary), to fit 80 columns."""
    st = state(ctx)
    if st.remote is not None:
        items = st.remote.json("GET", "/v1/admin/findings", params={"key": key, "case": case, "limit": limit})
    else:
        items = st.app(read_only=True).detection.findings.list(key=key, case=case, limit=limit)
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("no findings", markup=False, highlight=False)
        return
    width = max(40, console.width)
    ids = abbreviate(f["id"] for f in items)
    case_ids = abbreviate(f.get("case_id") for f in items)
    for f in items:
        action = action_label(f["action"], f.get("enforcement"))
        head = f"{ids[f['id']]}  {f['severity']:<8}  {action}"
        case = f"case {case_ids[f['case_id']]}" if f.get("case_id") else "no case"
        detail = f"  {short_time(f['at'])[:19]} · {subject(f)} · {f['detector']} · {case} · {f['summary']}"
        console.print(head, markup=False, highlight=False)
        console.print(cut(detail, width), markup=False, highlight=False, soft_wrap=True)


@app.command("show")
def findings_show(
    ctx: typer.Context,
    finding_id: Annotated[str, typer.Argument(metavar="ID", help="A finding id from findings list.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one finding with its evidence: what it was judged against, what
    was observed, the thresholds and redacted samples."""
    st = state(ctx)
    if st.remote is not None:
        from keyops.cli.remote import segment

        doc = st.remote.json("GET", f"/v1/admin/findings/{segment(finding_id)}")
    else:
        doc = st.app(read_only=True).detection.findings.show(finding_id)
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
