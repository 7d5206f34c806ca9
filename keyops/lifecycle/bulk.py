"""Parsing ``keys issue --from-file``: JSON lines of
``{"name", "owner", "profile", "policy", "description", "dest"}`` (all but
name and owner optional; ``dest`` a destination URI or a list of them).

Pure: returns the requests with their line numbers, or raises one
``InvalidInputError`` naming every bad line in line order, before anything is
issued.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from keyops.errors import InvalidInputError
from keyops.lifecycle.keys import IssueRequest

FIELDS = {"name", "owner", "profile", "policy", "description", "dest"}
MAX_ENTRIES = 10000
#: Bad lines named in one error at most (the rest are counted).
MAX_REPORTED = 20


@dataclass(frozen=True)
class BulkEntry:
    line: int
    request: IssueRequest
    destinations: tuple[str, ...] = ()


def line_problems(
    text: str, *, source: str, default_profile: str, default_policy: str
) -> tuple[list[BulkEntry], list[tuple[int, str]]]:
    """The good entries and, for every bad line, ``(line, message)``."""
    entries: list[BulkEntry] = []
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        problem, entry = _parse_line(raw, number, default_profile, default_policy)
        if problem is not None:
            problems.append((number, f"{source} line {number}: {problem}"))
        elif entry is not None:
            entries.append(entry)
        if len(entries) + len(problems) > MAX_ENTRIES:
            raise InvalidInputError(f"{source}: more than {MAX_ENTRIES} keys in one file; split it")
    return entries, problems


def _parse_line(
    raw: str, number: int, default_profile: str, default_policy: str
) -> tuple[str | None, BulkEntry | None]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not a JSON object", None
    if not isinstance(doc, dict):
        return "expected a JSON object", None
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)} (expected {', '.join(sorted(FIELDS))})", None
    for required in ("name", "owner"):
        if not isinstance(doc.get(required), str) or not doc[required]:
            return f"{required!r} is missing or not a string", None
    for optional in ("profile", "policy", "description"):
        if optional in doc and not isinstance(doc[optional], str):
            return f"{optional!r} must be a string", None
    dest = doc.get("dest", [])
    if isinstance(dest, str):
        dest = [dest]
    if not isinstance(dest, list) or not all(isinstance(d, str) and d for d in dest):
        return "'dest' must be a destination URI or a list of them", None
    request = IssueRequest(
        name=doc["name"],
        owner=doc["owner"],
        profile=doc.get("profile") or default_profile,
        policy=doc.get("policy") or default_policy,
        description=doc.get("description", ""),
    )
    return None, BulkEntry(number, request, tuple(dest))


def joined(source: str, problems: list[tuple[int, str]]) -> str:
    """Every problem in line order, as one line."""
    ordered = [message for _, message in sorted(problems, key=lambda p: p[0])]
    shown = ordered[:MAX_REPORTED]
    more = f"; and {len(ordered) - len(shown)} more bad line(s)" if len(ordered) > len(shown) else ""
    return "; ".join(shown) + more + "; nothing was issued"


def parse_lines(text: str, *, source: str, default_profile: str, default_policy: str) -> list[BulkEntry]:
    entries, problems = line_problems(
        text, source=source, default_profile=default_profile, default_policy=default_policy
    )
    if problems:
        raise InvalidInputError(joined(source, problems))
    if not entries:
        raise InvalidInputError(f"{source}: no keys in the file; nothing was issued")
    return entries
