"""Grafana alerting webhook contact point.

When the contact point has ``hmacConfig``, Grafana puts the lowercase hex
HMAC-SHA256 of the body in ``X-Grafana-Alerting-Signature`` (header name
configurable); with ``timestampHeader`` set it signs ``<unix seconds>:<body>``
and sends the timestamp in that header, which makes replays detectable. Basic
or bearer credentials may be required as well. The body is Alertmanager's
shape plus Grafana's fields (``orgId``, ``state``, ``title``...). Without a
delivery id, the id is the SHA-256 of the timestamp and body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime

from keyops.alerts.alertmanager import parse_alert_group
from keyops.alerts.base import (
    AlertRejected,
    Delivery,
    basic_or_bearer_ok,
    body_digest,
    check_unix_timestamp,
    loads_json,
    require_header,
)

SOURCE = "grafana"


def signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
    if timestamp is not None:
        mac.update(timestamp.encode("ascii") + b":")
    mac.update(body)
    return mac.hexdigest()


def authenticate(
    headers: Mapping[str, str],
    body: bytes,
    *,
    hmac_secret: str,
    hmac_header: str,
    timestamp_header: str,
    bearer: str,
    username: str,
    password: str,
    now: datetime,
    tolerance: float,
) -> tuple[str, datetime | None]:
    """Return (delivery id, signed time or None); raise AlertRejected."""
    sent: datetime | None = None
    stamp: str | None = None
    needs_auth = bool(bearer or (username and password))
    if needs_auth and not basic_or_bearer_ok(headers, bearer=bearer, username=username, password=password):
        raise AlertRejected(
            401, "bad_credentials", "the Authorization header does not carry the configured credentials"
        )
    if hmac_secret:
        offered = require_header(headers, hmac_header).lower()
        if timestamp_header:
            stamp = require_header(headers, timestamp_header)
            sent = check_unix_timestamp(stamp, now, tolerance, timestamp_header)
        expected = signature(hmac_secret, body, stamp)
        if not hmac.compare_digest(offered.encode("ascii", "replace"), expected.encode("ascii")):
            raise AlertRejected(401, "bad_signature", f"the {hmac_header} signature does not match the body")
    return body_digest(stamp or "", body), sent


def parse(body: bytes, *, delivery_id: str, sent: datetime | None, key_labels: Sequence[str]) -> Delivery:
    doc = loads_json(body)
    signals = parse_alert_group(doc, source=SOURCE, key_labels=key_labels)
    return Delivery(source=SOURCE, delivery_id=delivery_id, occurred_at=sent, signals=signals)
