"""Standard Webhooks (https://www.standardwebhooks.com/): the generic format.

Authenticity: ``webhook-signature`` holds space-separated ``v1,<base64>``
entries, each HMAC-SHA256 over ``<webhook-id>.<webhook-timestamp>.<raw body>``
with the secret (``whsec_<base64>``; any other string is used as raw bytes).
The timestamp must be within the tolerance and ``webhook-id`` is the
idempotency key. Payload::

    {"type": "key.anomaly", "timestamp": "2026-11-26T21:00:00Z",
     "data": {"key_name": "payments/prod-llm", "severity": "critical",
              "action": "suspend", "reason": "..."}}

``data`` names the key by ``key`` (name, id, or leaked material, which is
hashed at once), ``key_id`` or ``key_name``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime

from keyops.alerts.base import (
    AlertRejected,
    AlertSignal,
    Delivery,
    KeyRef,
    check_unix_timestamp,
    constant_time_in,
    loads_json,
    parse_iso,
    require_header,
    text,
)
from keyops.domain import keyformat

SOURCE = "standard"
#: Ids longer than the inventory's column are stored hashed (see ``stored_delivery_id``).
MAX_ID_LENGTH = 1024


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (base64 after the prefix)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """One ``v1,<base64>`` signature entry (used for outbound events too)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def authenticate(
    headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str], now: datetime, tolerance: float
) -> tuple[str, datetime]:
    """Return (webhook-id, sent time) or raise :class:`AlertRejected`."""
    msg_id = require_header(headers, "webhook-id")
    stamp = require_header(headers, "webhook-timestamp")
    signatures = require_header(headers, "webhook-signature")
    if len(msg_id) > MAX_ID_LENGTH or any(c.isspace() for c in msg_id) or not msg_id.isprintable():
        raise AlertRejected(400, "bad_id", f"webhook-id must be at most {MAX_ID_LENGTH} printable characters")
    sent = check_unix_timestamp(stamp, now, tolerance, "webhook-timestamp")
    expected = [base64.b64decode(sign(secret, msg_id, stamp, body)[3:]) for secret in secrets]
    offered: list[bytes] = []
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered or not any(constant_time_in(sig, expected) for sig in offered):
        raise AlertRejected(401, "bad_signature", "no webhook-signature entry matches a configured secret")
    return msg_id, sent


def key_refs(data: Mapping[str, object]) -> list[KeyRef]:
    refs: list[KeyRef] = []
    key = data.get("key")
    if isinstance(key, str) and key:
        if keyformat.is_well_formed(key):
            refs.append(KeyRef("token_hash", keyformat.hash_key(key)))
        else:
            refs.append(KeyRef("key", text(key, 256)))
    for field, kind in (("key_id", "id"), ("key_name", "name")):
        value = data.get(field)
        if isinstance(value, str) and value:
            refs.append(KeyRef(kind, text(value, 256)))
    return refs


def parse(body: bytes, *, msg_id: str, sent: datetime) -> Delivery:
    doc = loads_json(body)
    if not isinstance(doc, dict):
        raise AlertRejected(400, "bad_payload", "the payload must be a JSON object with type, timestamp and data")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise AlertRejected(400, "bad_payload", "the payload has no data object")
    refs = key_refs(data)
    if not refs:
        raise AlertRejected(400, "bad_payload", "data must name the key by key, key_id or key_name")
    status = text(data.get("status"), 16).lower() or "firing"
    signal = AlertSignal(
        source=SOURCE,
        kind=text(data.get("kind"), 32).lower() or "alert",
        status="resolved" if status == "resolved" else "firing",
        severity=text(data.get("severity"), 32).lower(),
        requested_action=text(data.get("action"), 32).lower(),
        type=text(doc.get("type"), 128),
        reason=text(data.get("reason"), 1000),
        keys=refs,
        evidence={k: data[k] for k in ("evidence", "score", "detector") if k in data},
    )
    return Delivery(
        source=SOURCE, delivery_id=msg_id, occurred_at=parse_iso(doc.get("timestamp")) or sent, signals=[signal]
    )
