"""A finding's evidence as lines an analyst can check, not a JSON dump.

A detector's evidence says what the key was judged against (``baseline``),
what was seen (``observed``), the ``thresholds`` crossed and redacted
``samples`` of the prompts; a combined finding has the profile, the level
each detector reached, the decision, and one such block per detector. Keys
outside that shape (and the evidence of findings recorded before it
existed) are listed as ``name: value``, so every stored finding renders.
Every line is cut to the terminal width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

#: Rendered in their own sections, in this order, when present.
SECTIONS = (("baseline", "judged against"), ("observed", "observed"), ("thresholds", "thresholds"))
_STRUCTURED = {"summary", "samples", *(name for name, _ in SECTIONS)}
_COMBINED = {"profile", "levels", "decision", "detectors"}


def cut(text: str, width: int) -> str:
    """One line of at most ``width`` characters (inner whitespace and
    newlines flattened, the indentation kept)."""
    text = str(text)
    body = text.lstrip(" ")
    line = text[: len(text) - len(body)] + " ".join(body.split())
    return line if len(line) <= width else line[: max(width - 1, 1)] + "…"


def scalar(value: Any) -> str:
    """A value as a person reads it: short floats, compact JSON for structures."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={scalar(value)}" for name, value in values.items())


def detector_block(name: str | None, doc: Mapping[str, Any], width: int, indent: str = "") -> list[str]:
    """One detector's evidence: summary, the three sections, samples, the rest."""
    lines: list[str] = []
    inner = indent + ("  " if name else "")
    if name:
        lines.append(cut(f"{indent}{name}", width))
    if doc.get("summary"):
        lines.append(cut(f"{inner}{doc['summary']}", width))
    for key, label in SECTIONS:
        section = doc.get(key)
        if isinstance(section, Mapping) and section:
            lines.append(cut(f"{inner}{label}: {pairs(section)}", width))
        elif section not in (None, {}, ""):
            lines.append(cut(f"{inner}{label}: {scalar(section)}", width))
    samples = doc.get("samples")
    if isinstance(samples, list) and samples:
        lines.append(cut(f"{inner}samples:", width))
        lines.extend(cut(f"{inner}  {sample}", width) for sample in samples)
    for key, value in doc.items():
        if key not in _STRUCTURED:
            lines.append(cut(f"{inner}{key}: {scalar(value)}", width))
    return lines


def evidence_lines(evidence: Mapping[str, Any], width: int = 80) -> list[str]:
    """The whole evidence of one finding, combined or single-detector."""
    detectors = evidence.get("detectors")
    if not isinstance(detectors, Mapping):
        return detector_block(None, evidence, width)
    lines: list[str] = []
    if evidence.get("profile"):
        lines.append(cut(f"profile: {evidence['profile']}", width))
    levels = evidence.get("levels")
    if isinstance(levels, Mapping) and levels:
        lines.append(cut(f"levels: {pairs(levels)}", width))
    if evidence.get("decision"):
        lines.append(cut(f"decision: {evidence['decision']}", width))
    for key, value in evidence.items():
        if key not in _COMBINED:
            lines.append(cut(f"{key}: {scalar(value)}", width))
    for name, doc in detectors.items():
        if isinstance(doc, Mapping):
            lines.extend(detector_block(str(name), doc, width))
        else:
            lines.append(cut(f"{name}: {scalar(doc)}", width))
    return lines


def key_lines(evidence: Mapping[str, Any], width: int = 80, limit: int = 6) -> list[str]:
    """The few lines that say why (replay's per-key report): per detector,
    its summary and what was observed against what it was judged against."""
    detectors = evidence.get("detectors")
    docs: list[tuple[str | None, Mapping[str, Any]]] = (
        [(str(n), d) for n, d in detectors.items() if isinstance(d, Mapping)]
        if isinstance(detectors, Mapping)
        else [(None, evidence)]
    )
    lines: list[str] = []
    for name, doc in docs:
        head = f"{name}: " if name else ""
        if doc.get("summary"):
            lines.append(cut(f"{head}{doc['summary']}", width))
        observed, baseline = doc.get("observed"), doc.get("baseline")
        if isinstance(observed, Mapping) and observed:
            against = f" vs {pairs(baseline)}" if isinstance(baseline, Mapping) and baseline else ""
            lines.append(cut(f"  observed {pairs(observed)}{against}", width))
    return lines[:limit]
