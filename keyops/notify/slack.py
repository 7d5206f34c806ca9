"""Slack-compatible incoming-webhook text: one short message a person can act on.

Only names, ids, reasons and counts appear; payloads never hold key material.
Slack's mrkdwn needs ``&``, ``<`` and ``>`` escaped in untrusted text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ICONS = {
    "key.rotated": ":arrows_counterclockwise:",
    "key.revoked": ":no_entry:",
    "key.suspended": ":double_vertical_bar:",
    "key.resumed": ":arrow_forward:",
    "key.expired": ":hourglass:",
    "rotation.failed": ":warning:",
    "finding.created": ":mag:",
    "case.opened": ":rotating_light:",
    "case.escalated": ":arrow_double_up:",
}


def _case_text(icon: str, event_type: str, payload: Mapping[str, Any]) -> str:
    """A case notice: who, how bad, what was decided, and the case id to look up."""
    if payload.get("key_name") or payload.get("key_id"):
        subject = f"*{escape(payload.get('key_name') or payload.get('key_id'))}*"
    else:
        members = payload.get("members") or 0
        subject = f"cluster {escape(str(payload.get('cluster_id') or '?')[:8])} ({escape(members)} keys)"
    severity = escape(payload.get("severity", ""))
    verb = "opened" if event_type == "case.opened" else f"escalated to {severity}"
    head = f"{severity} case {verb} on {subject}" if event_type == "case.opened" else f"case on {subject} {verb}"
    action = str(payload.get("action") or "none")
    decided = "" if action == "none" else f"; decision: {escape(action)} ({escape(payload.get('enforcement', ''))})"
    case_id = escape(payload.get("case_id", ""))
    return f"{icon} {head}: {escape(payload.get('summary', ''))}{decided} — keyops cases show {case_id}"


def escape(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:500]


def render(event_type: str, payload: Mapping[str, Any]) -> str:
    """The message text for one event."""
    name = escape(payload.get("key_name") or payload.get("key_id") or "a key")
    reason = payload.get("reason")
    by = payload.get("actor")
    suffix = ""
    if reason:
        suffix += f" — {escape(reason)}"
    if by:
        suffix += f" (by {escape(by)})"
    icon = _ICONS.get(event_type, ":bell:")
    if event_type == "key.rotated":
        grace = payload.get("grace_ends_at")
        tail = (
            f"; the previous version works until {escape(grace)}" if grace else "; the previous version no longer works"
        )
        return f"{icon} *{name}* was rotated to version {escape(payload.get('version', '?'))}{tail}{suffix}"
    if event_type == "key.revoked":
        return f"{icon} *{name}* was revoked: every version is now refused{suffix}"
    if event_type == "key.suspended":
        return f"{icon} *{name}* was suspended: it is refused until resumed{suffix}"
    if event_type == "key.resumed":
        return f"{icon} *{name}* was resumed{suffix}"
    if event_type == "key.expired":
        return f"{icon} *{name}* expired{suffix}"
    if event_type == "rotation.failed":
        error = payload.get("error")
        detail = f": {escape(error)}" if error else ""
        return f"{icon} rotation of *{name}* failed{detail}; the current key stays valid{suffix}"
    if event_type in ("case.opened", "case.escalated"):
        return _case_text(icon, event_type, payload)
    if event_type == "finding.created":
        detector = escape(payload.get("detector", "a detector"))
        severity = escape(payload.get("severity", ""))
        summary = escape(payload.get("summary", ""))
        action = escape(payload.get("action", "none"))
        return f"{icon} {severity} finding on *{name}* from {detector}: {summary} (action: {action})"
    return f"{icon} {escape(event_type)} on *{name}*{suffix}"
