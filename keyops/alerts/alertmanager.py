"""Prometheus Alertmanager webhook (payload ``version: "4"``).

Alertmanager signs nothing; its ``webhook_configs`` carry ``http_config``
credentials, so authenticity is a bearer token or a basic-auth pair compared
in constant time. Keys are named by alert labels (``keyops_key``, ``key_id``,
``key_name`` by default); ``severity`` and ``alertname`` labels feed the rules,
``keyops_action`` may request an action. Firing and resolved alerts are both
understood. Alertmanager sends no delivery id, so the id is the SHA-256 of
the body: an identical re-send is recognised as a replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keyops.alerts.base import (
    AlertRejected,
    AlertSignal,
    Delivery,
    KeyRef,
    basic_or_bearer_ok,
    body_digest,
    loads_json,
    parse_iso,
    text,
)

SOURCE = "alertmanager"
_LABEL_KINDS = {"key_id": "id", "key_name": "name"}


def authenticate(headers: Mapping[str, str], *, bearer: str, username: str, password: str) -> None:
    if not basic_or_bearer_ok(headers, bearer=bearer, username=username, password=password):
        raise AlertRejected(
            401, "bad_credentials", "the Authorization header does not carry the configured credentials"
        )


def labels_of(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {text(str(k), 128): text(v, 256) for k, v in list(value.items())[:64]}


def refs_from_labels(labels: Mapping[str, str], key_labels: Sequence[str]) -> list[KeyRef]:
    refs: list[KeyRef] = []
    for name in key_labels:
        value = labels.get(name)
        if value:
            refs.append(KeyRef(_LABEL_KINDS.get(name, "key"), value))
    return refs


def parse_alert_group(doc: Any, *, source: str, key_labels: Sequence[str]) -> list[AlertSignal]:
    """The alert list shared by Alertmanager and Grafana (same shape)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        raise AlertRejected(400, "bad_payload", "the payload must be an object with an alerts array")
    common = labels_of(doc.get("commonLabels"))
    signals: list[AlertSignal] = []
    for alert in doc["alerts"][:500]:
        if not isinstance(alert, dict):
            raise AlertRejected(400, "bad_payload", "each entry of alerts must be an object")
        labels = {**common, **labels_of(alert.get("labels"))}
        annotations = labels_of(alert.get("annotations"))
        status = text(alert.get("status") or doc.get("status"), 16).lower()
        starts = parse_iso(alert.get("startsAt"))
        signals.append(
            AlertSignal(
                source=source,
                kind="alert",
                status="resolved" if status == "resolved" else "firing",
                severity=labels.get("severity", "").lower(),
                requested_action=labels.get("keyops_action", "").lower(),
                type=labels.get("alertname", ""),
                reason=annotations.get("summary") or annotations.get("description") or labels.get("alertname", ""),
                keys=refs_from_labels(labels, key_labels),
                evidence={
                    "labels": labels,
                    "fingerprint": text(alert.get("fingerprint"), 64),
                    "starts_at": starts.isoformat() if starts else None,
                    "generator_url": text(alert.get("generatorURL"), 512),
                },
            )
        )
    return signals


def parse(body: bytes, *, key_labels: Sequence[str]) -> Delivery:
    doc = loads_json(body)
    if isinstance(doc, dict) and text(doc.get("version"), 8) not in ("4", ""):
        raise AlertRejected(
            400, "bad_version", f"unsupported Alertmanager payload version {text(doc.get('version'), 8)!r}"
        )
    signals = parse_alert_group(doc, source=SOURCE, key_labels=key_labels)
    return Delivery(source=SOURCE, delivery_id=body_digest(body), signals=signals)
