"""``keyops replay FILE``: run the detection engine over past usage events.

The file holds JSON lines in the ``/v1/usage`` event shape. Each line goes
through the daemon's own parser (``keyops.detect.events.parse_event``) and
the same detection service, so what replay reports is what the live daemon
would have done. ``--dry-run`` reports without persisting findings or
touching keys: per key, the actions it would take with their evidence, and
the cases it would open. Malformed lines are reported with their line
numbers and skipped.

Replay tolerates events up to ``REPLAY_LATENESS`` out of order (a log merged
from several gateways); the order of processing, and so every finding, is
the same as live intake's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from keyops.cli.context import state
from keyops.cli.evidence import cut, key_lines
from keyops.cli.output import console, print_json
from keyops.cli.progress import wanted as progress_wanted
from keyops.detect import cloudtrail
from keyops.detect.events import UsageEvent
from keyops.detect.model import iso
from keyops.errors import InvalidInputError
from keyops.lifecycle.detection import DetectionService, IngestResult

REPLAY_LATENESS = 3600.0
BATCH = 5000
MAX_REPORTED = 50


def _open(path: str) -> tuple[Any, int]:
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"cannot read {path}: no such file (give a JSON-lines file of usage events)")
    try:
        return file.open("rb"), file.stat().st_size
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None


def run_replay(service: DetectionService, path: str, *, progress: bool) -> tuple[int, IngestResult, list[str]]:
    """Replay ``path`` through ``service``: (events accepted, result, problems by line)."""
    handle, size = _open(path)
    problems: list[str] = []
    total = IngestResult()
    accepted = 0
    batch: list[UsageEvent] = []
    lines: list[int] = []
    now = time.time()

    def feed() -> None:
        nonlocal accepted
        result = service.ingest(batch)
        bad = {r.index for r in result.rejected}
        accepted += len(batch) - len(bad)
        for r in result.rejected:
            problems.append(f"line {lines[r.index]}: {r.error}")
        total.findings.extend(result.findings)
        total.actions.extend(result.actions)
        total.notifications.extend(result.notifications)
        batch.clear()
        lines.clear()

    bar = Progress(
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # progress on stderr: stdout stays the report
        transient=True,
        disable=not progress,
    )
    with handle, bar:
        task = bar.add_task("replay", total=size or 1)
        for number, raw in enumerate(handle, start=1):
            if number % 2000 == 0:
                bar.update(task, completed=handle.tell())
            if not raw.strip():
                continue
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON ({str(exc).split(':')[0]})")
                continue
            event = service.parse(doc, now=now)
            if isinstance(event, str):
                problems.append(f"line {number}: {event}")
                continue
            batch.append(event)
            lines.append(number)
            if len(batch) >= BATCH:
                feed()
        if batch:
            feed()
        bar.update(task, completed=size or 1)
    final = service.flush()
    total.findings.extend(final.findings)
    total.actions.extend(final.actions)
    total.notifications.extend(final.notifications)
    return accepted, total, problems


def _action_doc(action: Any) -> dict[str, Any]:
    doc: dict[str, Any] = action.to_document()
    return doc


def plan_by_key(result: IngestResult, width: int = 80) -> list[dict[str, Any]]:
    """Per key, in order of its first action: every action the replay
    decided (action, severity, event time, mode) with the evidence summary
    and the finding's key evidence lines."""
    keys: dict[str, dict[str, Any]] = {}
    for a in result.actions:
        entry = keys.setdefault(a.key_id, {"key_id": a.key_id, "key_name": a.key_name, "actions": []})
        entry["actions"].append(
            {
                "action": a.action,
                "severity": a.severity,
                "at": iso(a.at),
                "enforcement": a.enforcement,
                "summary": a.finding.summary,
                "detector": a.finding.detector,
                "evidence": key_lines(a.finding.evidence, width),
                "applied": a.applied,
                "outcome": a.outcome,
            }
        )
    return list(keys.values())


def _print_plan(result: IngestResult, *, dry_run: bool) -> None:
    width = max(40, console.width)
    for entry in plan_by_key(result, width - 6):
        console.print(f"{entry['key_name']} ({entry['key_id']})", markup=False, highlight=False)
        for a in entry["actions"]:
            mode = "" if a["enforcement"] == "enforce" else f" ({a['enforcement']})"
            done = "" if dry_run else f"  → {a['outcome'] or ('done' if a['applied'] else 'not applied')}"
            head = f"  {a['at']}  {a['action']}{mode}  {a['severity']}{done}"
            console.print(cut(head, width), markup=False, highlight=False, soft_wrap=True)
            for line in [cut(a["summary"], width - 4), *a["evidence"]]:
                console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    if result.notifications:
        what = "cases it would open or escalate:" if dry_run else "cases opened or escalated:"
        console.print(what, markup=False, highlight=False)
        for n in result.notifications:
            who = n.key_name or f"cluster {str(n.cluster_id)[:8]} ({n.members} keys)"
            shadow = " (shadow: not sent)" if n.enforcement == "shadow" else ""
            line = f"  {iso(n.at)}  {n.kind} {n.severity}  {who}{shadow}: {n.summary}"
            console.print(cut(line, width), markup=False, highlight=False, soft_wrap=True)


def replay(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="JSON lines of usage events (the /v1/usage shape), or CloudTrail records.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only: persist nothing, act on no key.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: events, findings, actions.")] = False,
) -> None:
    """Run the detection engine over past usage events, in event-time order."""
    st = state(ctx)
    app = st.app()
    service = app.detection.replay_session(dry_run=dry_run)
    service.engine.lateness = REPLAY_LATENESS
    show_progress = progress_wanted(as_json)  # never mixed into --json output
    if cloudtrail.looks_like_cloudtrail(file):  # AWS IAM keys' usage (issue 6)
        accepted, result, problems = cloudtrail.replay(service, file, app.sessions)
    else:
        accepted, result, problems = run_replay(service, file, progress=show_progress)
    for problem in problems[:MAX_REPORTED]:
        sys.stderr.write(f"keyops: skipped {problem}\n")
    if len(problems) > MAX_REPORTED:
        sys.stderr.write(f"keyops: skipped {len(problems) - MAX_REPORTED} more bad lines\n")
    if as_json:
        print_json(
            {
                "events": accepted,
                "dry_run": dry_run,
                "findings": [f.to_document() for f in result.findings],
                "actions": [_action_doc(a) for a in result.actions],
                "notifications": [n.to_document() for n in result.notifications],
                "keys": plan_by_key(result, width=1000),
                "skipped": len(problems),
            }
        )
        return
    console.print(
        f"{accepted} events replayed, {len(problems)} skipped; {len(result.findings)} findings, "
        f"{len(result.actions)} actions, {len(result.notifications)} case notices"
    )
    if dry_run:
        console.print("dry run: nothing persisted or applied; what it would do, per key:")
    _print_plan(result, dry_run=dry_run)
