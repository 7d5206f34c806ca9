"""Severities from alert senders, mapped onto keyops' fixed set.

Senders use their own words (Alertmanager and Grafana labels are free text,
GuardDuty uses numbers). keyops stores and counts only ``low``, ``medium``,
``high`` and ``critical``: a finding's severity is a metric label, and an
open set of label values would let any sender create unbounded series.
Pure code: the parsers and the rule parser share the table.

| sender says                                                          | keyops |
|----------------------------------------------------------------------|--------|
| critical, crit, fatal, emergency, emerg, alert, page, disaster, p1, sev1 | critical |
| high, error, err, major, severe, urgent, p2, sev2                    | high   |
| medium, warning, warn, moderate, average, p3, sev3                   | medium |
| low, info, informational, notice, minor, debug, ok, none, p4, p5, sev4, sev5 | low |
| anything else, or nothing                                            | medium |

An unknown word is kept, bounded, in the finding's evidence (``sender_severity``).
"""

from __future__ import annotations

SEVERITIES = ("low", "medium", "high", "critical")
DEFAULT = "medium"

_TABLE: dict[str, tuple[str, ...]] = {
    "critical": ("critical", "crit", "fatal", "emergency", "emerg", "alert", "page", "disaster", "p1", "sev1"),
    "high": ("high", "error", "err", "major", "severe", "urgent", "p2", "sev2"),
    "medium": ("medium", "warning", "warn", "moderate", "average", "p3", "sev3"),
    "low": ("low", "info", "informational", "notice", "minor", "debug", "ok", "none", "p4", "p5", "sev4", "sev5"),
}
_LOOKUP = {word: level for level, words in _TABLE.items() for word in words}


def known(raw: str) -> str | None:
    """The keyops severity for a sender's word, or None when the word is not in the table."""
    return _LOOKUP.get(raw.strip().lower())


def of(raw: str) -> str:
    """The keyops severity for a sender's word; unknown or empty -> ``medium``."""
    return known(raw) or DEFAULT
