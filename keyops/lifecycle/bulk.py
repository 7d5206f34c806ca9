"""Parsing ``keys issue --from-file``: JSON lines of
``{"name", "owner", "profile", "policy"}`` (profile and policy optional).

Pure: returns the requests with their line numbers, or raises one
``InvalidInputError`` naming the first bad line, before anything is issued.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from keyops.errors import InvalidInputError
from keyops.lifecycle.keys import IssueRequest

FIELDS = {"name", "owner", "profile", "policy", "description"}
MAX_ENTRIES = 10000


@dataclass(frozen=True)
class BulkEntry:
    line: int
    request: IssueRequest


def parse_lines(text: str, *, source: str, default_profile: str, default_policy: str) -> list[BulkEntry]:
    entries: list[BulkEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source} line {number}"
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidInputError(f"{where}: not a JSON object; nothing was issued") from None
        if not isinstance(doc, dict):
            raise InvalidInputError(f"{where}: expected a JSON object; nothing was issued")
        unknown = sorted(set(doc) - FIELDS)
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown field(s) {', '.join(unknown)} (expected {', '.join(sorted(FIELDS))}); "
                f"nothing was issued"
            )
        for required in ("name", "owner"):
            if not isinstance(doc.get(required), str) or not doc[required]:
                raise InvalidInputError(f"{where}: {required!r} is missing or not a string; nothing was issued")
        for optional in ("profile", "policy", "description"):
            if optional in doc and not isinstance(doc[optional], str):
                raise InvalidInputError(f"{where}: {optional!r} must be a string; nothing was issued")
        entries.append(
            BulkEntry(
                number,
                IssueRequest(
                    name=doc["name"],
                    owner=doc["owner"],
                    profile=doc.get("profile") or default_profile,
                    policy=doc.get("policy") or default_policy,
                    description=doc.get("description", ""),
                ),
            )
        )
        if len(entries) > MAX_ENTRIES:
            raise InvalidInputError(f"{source}: more than {MAX_ENTRIES} keys in one file; split it")
    if not entries:
        raise InvalidInputError(f"{source}: no keys in the file; nothing was issued")
    return entries
