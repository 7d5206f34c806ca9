"""CloudTrail records as usage events, so the detectors watch cloud keys too.

``keyops replay FILE`` accepts CloudTrail as delivered to S3 (one JSON object
``{"Records": [...]}``, optionally gzipped) or as JSON lines (one record per
line, e.g. exported from CloudTrail Lake or a log pipeline; a line may also be
a ``{"Records": [...]}`` object). Each record made with an access key keyops
manages (``userIdentity.accessKeyId`` equal to a version's ``external_id`` of
an ``aws-iam`` key, any version, so an old key's use still counts) becomes
one usage event:

* ``eventTime`` -> ``ts``; ``sourceIPAddress`` -> ``ip`` when it is an
  address (AWS services appear by name, e.g. ``ec2.amazonaws.com``: no
  network then); ``userAgent`` -> ``user_agent``;
  ``eventSource/eventName`` -> ``endpoint``; ``errorCode`` -> status 403
  (access denied) or 400, otherwise 200.

The mapped document goes through the same ``parse_event`` as ``/v1/usage``,
so network novelty and volume apply unchanged. Records for other principals
(roles' temporary ``ASIA`` keys, keys keyops does not manage) are counted and
ignored, not reported one by one.
"""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyops.detect.events import UsageEvent, parse_event
from keyops.errors import InvalidInputError
from keyops.inventory import models
from keyops.lifecycle.detection import DetectionService, IngestResult

BATCH = 5000
_DENIED = ("AccessDenied", "UnauthorizedOperation", "Client.UnauthorizedOperation", "AccessDeniedException")
_SNIFF = 65536


def _read(path: str) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"cannot read {path}: no such file (give usage events or CloudTrail records)")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            raise InvalidInputError(f"cannot read {path}: a damaged gzip file") from None
    return data


def looks_like_cloudtrail(path: str) -> bool:
    """Whether ``path`` holds CloudTrail records rather than /v1/usage events."""
    file = Path(path)
    if not file.is_file():
        return False
    with file.open("rb") as handle:
        head = handle.read(_SNIFF)
    if head[:2] == b"\x1f\x8b":
        head = _read(path)[:_SNIFF]
    return b'"Records"' in head or (b'"eventTime"' in head and b'"userIdentity"' in head)


def records(data: bytes) -> Iterator[tuple[str, Any]]:
    """(where, record) for every record; a record that is not JSON is a
    one-line reason string instead."""
    stripped = data.strip()
    if stripped.startswith(b"{"):
        try:
            whole = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            whole = None
        if isinstance(whole, dict) and isinstance(whole.get("Records"), list):
            for index, record in enumerate(whole["Records"]):
                yield f"record {index}", record
            return
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield f"line {number}", f"not JSON ({str(exc).split(':')[0]})"
            continue
        if isinstance(doc, dict) and isinstance(doc.get("Records"), list):
            for index, record in enumerate(doc["Records"]):
                yield f"line {number} record {index}", record
        else:
            yield f"line {number}", doc


def access_key_of(record: Any) -> str | None:
    identity = record.get("userIdentity") if isinstance(record, dict) else None
    value = identity.get("accessKeyId") if isinstance(identity, dict) else None
    return value if isinstance(value, str) and value else None


def to_usage(record: Any, key_id: str) -> dict[str, Any] | str:
    """The /v1/usage document for one CloudTrail record made with ``key_id``'s access key."""
    if not isinstance(record, dict):
        return f"a CloudTrail record must be a JSON object, got {type(record).__name__}"
    if "eventTime" not in record:
        return "the CloudTrail record has no eventTime"
    doc: dict[str, Any] = {"ts": record["eventTime"], "key_id": key_id}
    source = record.get("sourceIPAddress")
    if isinstance(source, str):
        with contextlib.suppress(ValueError):  # an AWS service acting for the principal: no network
            doc["ip"] = str(ipaddress.ip_address(source))
    agent = record.get("userAgent")
    if isinstance(agent, str) and agent:
        doc["user_agent"] = agent[:512]
    event_source, event_name = record.get("eventSource"), record.get("eventName")
    if isinstance(event_name, str):
        doc["endpoint"] = f"{event_source}/{event_name}"[:512] if isinstance(event_source, str) else event_name[:512]
    error = record.get("errorCode")
    doc["status"] = (403 if error in _DENIED else 400) if error else 200
    return doc


def access_key_index(sessions: sessionmaker[Session]) -> dict[str, str]:
    """Access key id -> key id, for every version of every cloud-issued key."""
    with sessions() as session:
        rows = session.execute(
            select(models.KeyVersion.external_id, models.Key.id)
            .join(models.Key, models.Key.id == models.KeyVersion.key_id)
            .where(models.Key.issuer != "native")
            .where(models.KeyVersion.external_id.is_not(None))
        ).all()
    return {str(external): str(key) for external, key in rows}


def replay(
    service: DetectionService,
    path: str,
    sessions: sessionmaker[Session],
    *,
    index: Callable[[sessionmaker[Session]], dict[str, str]] = access_key_index,
) -> tuple[int, IngestResult, list[str]]:
    """Replay a CloudTrail file: (events accepted, result, problems by location)."""
    data = _read(path)
    keys = index(sessions)
    now = time.time()
    total = IngestResult()
    problems: list[str] = []
    batch: list[UsageEvent] = []
    where: list[str] = []
    accepted = 0
    ignored = 0

    def feed() -> None:
        nonlocal accepted
        result = service.ingest(batch)
        bad = {r.index for r in result.rejected}
        accepted += len(batch) - len(bad)
        problems.extend(f"{where[r.index]}: {r.error}" for r in result.rejected)
        total.findings.extend(result.findings)
        total.actions.extend(result.actions)
        total.notifications.extend(result.notifications)
        batch.clear()
        where.clear()

    for location, record in records(data):
        if isinstance(record, str):
            problems.append(f"{location}: {record}")
            continue
        key_id = keys.get(access_key_of(record) or "")
        if key_id is None:
            ignored += 1
            continue
        doc = to_usage(record, key_id)
        event = parse_event(doc, now=now) if isinstance(doc, dict) else doc
        if isinstance(event, str):
            problems.append(f"{location}: {event}")
            continue
        batch.append(event)
        where.append(location)
        if len(batch) >= BATCH:
            feed()
    if batch:
        feed()
    final = service.flush()
    total.findings.extend(final.findings)
    total.actions.extend(final.actions)
    total.notifications.extend(final.notifications)
    if ignored:
        problems.append(f"{ignored} records: access keys keyops does not manage (ignored)")
    return accepted, total, problems
