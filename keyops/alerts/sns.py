"""AWS SNS HTTP(S) deliveries: CloudWatch alarms and EventBridge GuardDuty findings.

Authenticity: SNS signs a canonical string of the message's fields
(``Key\\nValue\\n`` for Message, MessageId, Subject?, Timestamp, TopicArn, Type;
confirmations use Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn,
Type) with RSA: ``SignatureVersion`` 1 = SHA1, 2 = SHA256. The certificate is
fetched from ``SigningCertURL``, which must be ``https://sns.<region>.amazonaws.com[.cn]/...pem``
(anything else could be an attacker's certificate), and cached. A failed
fetch is remembered too, for a while that doubles with each further failure:
a flood of messages naming a failing URL costs one fetch per window, not one
each. The topic must be one of ``alerts.sns.topic_arns``, and the signature
version one of ``alerts.sns.signature_versions``, before any certificate is
fetched.
The JSON body has to be read to find these fields, but nothing in it is
interpreted (the Message is not even looked at) until the signature holds.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyops.alerts.base import (
    AlertRejected,
    AlertSignal,
    Delivery,
    Fetcher,
    KeyRef,
    TTLCache,
    check_window,
    header,
    loads_json,
    parse_iso,
    text,
)

SOURCE = "sns"
MAX_MESSAGE_ID = 4096
HOST_RE = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com(?:\.cn)?")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def validate_aws_url(url: Any, what: str, *, path_suffix: str = "") -> str:
    """Only HTTPS URLs on an SNS endpoint host are ever fetched."""
    if not isinstance(url, str) or len(url) > 2048:
        raise AlertRejected(400, "bad_url", f"{what} is missing")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AlertRejected(400, "bad_url", f"{what} is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not HOST_RE.fullmatch(host) or port not in (None, 443) or parts.username:
        raise AlertRejected(401, "bad_cert_url", f"{what} is not an https://sns.<region>.amazonaws.com URL")
    if path_suffix and not parts.path.endswith(path_suffix):
        raise AlertRejected(401, "bad_cert_url", f"{what} does not name a {path_suffix} file")
    return url


def string_to_sign(doc: Mapping[str, Any]) -> bytes:
    fields = _NOTIFICATION_FIELDS if doc.get("Type") == "Notification" else _CONFIRMATION_FIELDS
    out: list[str] = []
    for name in fields:
        if name in doc and doc[name] is not None:
            value = doc[name]
            if not isinstance(value, str):
                raise AlertRejected(400, "bad_payload", f"the SNS field {name} must be a string")
            out.append(f"{name}\n{value}\n")
        elif name != "Subject":
            raise AlertRejected(400, "bad_payload", f"the SNS message has no {name}")
    return "".join(out).encode("utf-8")


#: After a failed certificate fetch the URL is not fetched again for this long,
#: doubled after each further failure up to ``FAILURE_BACKOFF_MAX``.
FAILURE_BACKOFF = 10.0
FAILURE_BACKOFF_MAX = 300.0
_MAX_REMEMBERED_FAILURES = 256


class _FetchFailures:
    """Certificate URLs whose last fetch failed: the refusal to repeat until
    the URL's back-off ends, and how many failures in a row it has had."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, int, AlertRejected]] = {}
        self._lock = threading.Lock()

    def refusal(self, url: str) -> AlertRejected | None:
        with self._lock:
            item = self._items.get(url)
            if item is None or self._clock() >= item[0]:
                return None
            until, _count, error = item
        wait = max(1, round(until - self._clock()))
        return AlertRejected(error.status, error.code, f"{error.message} (not fetched again for {wait}s)")

    def failed(self, url: str, error: AlertRejected) -> None:
        with self._lock:
            previous = self._items.get(url)
            count = 1 if previous is None else previous[1] + 1
            delay = min(FAILURE_BACKOFF * 2 ** (count - 1), FAILURE_BACKOFF_MAX)
            if len(self._items) >= _MAX_REMEMBERED_FAILURES and url not in self._items:
                # Forget the failure that ends first: a flood of distinct URLs
                # must not grow this without bound.
                del self._items[min(self._items, key=lambda k: self._items[k][0])]
            self._items[url] = (self._clock() + delay, count, error)

    def succeeded(self, url: str) -> None:
        with self._lock:
            self._items.pop(url, None)


class SnsVerifier:
    """Verifies SNS signatures with certificates fetched through ``fetcher``."""

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        cache_ttl: float = 24 * 3600,
        signature_versions: Sequence[str] = ("1", "2"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetcher
        self._certs = TTLCache(cache_ttl, clock)
        self._failures = _FetchFailures(clock)
        self._versions = tuple(signature_versions)

    def certificate(self, url: str) -> x509.Certificate:
        cached = self._certs.get(url)
        if cached is not None:
            assert isinstance(cached, x509.Certificate)
            return cached
        refused = self._failures.refusal(url)
        if refused is not None:
            raise refused
        try:
            cert = self._fetch_certificate(url)
        except AlertRejected as exc:
            self._failures.failed(url, exc)
            raise
        self._failures.succeeded(url)
        self._certs.put(url, cert)
        return cert

    def _fetch_certificate(self, url: str) -> x509.Certificate:
        try:
            pem = self._fetch(url)
        except AlertRejected:
            raise
        except Exception as exc:  # network errors of any client: SNS will retry
            raise AlertRejected(
                503, "cert_unavailable", f"cannot fetch the SNS signing certificate: {type(exc).__name__}"
            ) from None
        try:
            return x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise AlertRejected(401, "bad_certificate", "SigningCertURL does not hold a PEM certificate") from None

    def authenticate(
        self, headers: Mapping[str, str], body: bytes, *, topic_arns: Sequence[str], now: datetime, tolerance: float
    ) -> dict[str, Any]:
        doc = loads_json(body)
        if not isinstance(doc, dict):
            raise AlertRejected(400, "bad_payload", "an SNS delivery is a JSON object")
        kind = doc.get("Type")
        if kind not in TYPES:
            raise AlertRejected(400, "bad_payload", "the SNS Type is missing or unknown")
        announced = header(headers, "x-amz-sns-message-type")
        if announced is not None and announced != kind:
            raise AlertRejected(400, "bad_payload", "x-amz-sns-message-type does not match the body's Type")
        if doc.get("TopicArn") not in topic_arns:
            raise AlertRejected(403, "unknown_topic", "the SNS topic is not in alerts.sns.topic_arns")
        version = doc.get("SignatureVersion")
        if version not in ("1", "2"):
            raise AlertRejected(401, "bad_signature", "SignatureVersion must be 1 or 2")
        if version not in self._versions:
            raise AlertRejected(
                401,
                "signature_version_refused",
                f"SignatureVersion {version} is refused by alerts.sns.signature_versions: "
                f"set the topic's SignatureVersion attribute to {self._versions[-1]}",
            )
        try:
            signature = base64.b64decode(text(doc.get("Signature"), 4096), validate=True)
        except (binascii.Error, ValueError):
            raise AlertRejected(401, "bad_signature", "Signature is not base64") from None
        if not signature:
            raise AlertRejected(401, "missing_signature", "the SNS message has no Signature")
        cert_url = validate_aws_url(doc.get("SigningCertURL"), "SigningCertURL", path_suffix=".pem")
        canonical = string_to_sign(doc)
        sent = parse_iso(doc.get("Timestamp"))
        if sent is None:
            raise AlertRejected(400, "bad_payload", "the SNS Timestamp is not an ISO 8601 time")
        check_window(sent.timestamp(), now, tolerance, "SNS Timestamp")
        cert = self.certificate(cert_url)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            self._certs.drop(cert_url)
            raise AlertRejected(401, "bad_certificate", "the SNS signing certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise AlertRejected(401, "bad_certificate", "the SNS signing certificate does not hold an RSA key")
        algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
        try:
            key.verify(signature, canonical, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise AlertRejected(401, "bad_signature", "the SNS signature does not verify") from None
        return doc


def _severity_of_guardduty(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if value >= 9:
        return "critical"
    if value >= 7:
        return "high"
    if value >= 4:
        return "medium"
    return "low"


def _cloudwatch(message: dict[str, Any], key_dimensions: Sequence[str]) -> AlertSignal:
    trigger = message.get("Trigger") if isinstance(message.get("Trigger"), dict) else {}
    dims: dict[str, str] = {}
    raw_dims = trigger.get("Dimensions") if isinstance(trigger, dict) else None
    for item in raw_dims if isinstance(raw_dims, list) else []:
        if isinstance(item, dict):
            name = text(item.get("name") or item.get("Name"), 128)
            if name:
                dims[name] = text(item.get("value") or item.get("Value"), 256)
    refs: list[KeyRef] = []
    for name in key_dimensions:
        value = dims.get(name)
        if value:
            kind = {"KeyId": "id", "KeyName": "name", "AccessKeyId": "access_key_id"}.get(name, "key")
            refs.append(KeyRef(kind, value))
    description = text(message.get("AlarmDescription"), 1000)
    severity = dims.get("Severity", "").lower()
    match = re.search(r"severity[=:]\s*(\w+)", description, re.IGNORECASE)
    if not severity and match:
        severity = match.group(1).lower()
    state = text(message.get("NewStateValue"), 32)
    return AlertSignal(
        source=SOURCE,
        kind="cloudwatch",
        status="firing" if state == "ALARM" else "resolved",
        severity=severity,
        type=text(message.get("AlarmName"), 256),
        reason=text(message.get("NewStateReason"), 1000),
        keys=refs,
        evidence={
            "alarm_arn": text(message.get("AlarmArn"), 512),
            "state": state,
            "metric": text(trigger.get("MetricName"), 256) if isinstance(trigger, dict) else "",
            "dimensions": dims,
        },
    )


def _guardduty(event: dict[str, Any]) -> AlertSignal:
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    assert isinstance(detail, dict)
    resource = detail.get("resource") if isinstance(detail.get("resource"), dict) else {}
    assert isinstance(resource, dict)
    access = resource.get("accessKeyDetails") if isinstance(resource.get("accessKeyDetails"), dict) else {}
    assert isinstance(access, dict)
    key_id = text(access.get("accessKeyId"), 128)
    return AlertSignal(
        source=SOURCE,
        kind="guardduty",
        status="firing",
        severity=_severity_of_guardduty(detail.get("severity")),
        type=text(detail.get("type"), 256),
        reason=text(detail.get("title"), 1000),
        keys=[KeyRef("access_key_id", key_id)] if key_id else [],
        evidence={
            "finding_id": text(detail.get("id"), 128),
            "finding_arn": text(detail.get("arn"), 512),
            "account": text(detail.get("accountId") or event.get("account"), 32),
            "region": text(detail.get("region") or event.get("region"), 32),
            "user_name": text(access.get("userName"), 128),
            "severity": detail.get("severity") if isinstance(detail.get("severity"), (int, float)) else None,
        },
    )


_ACCESS_KEY_RE = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{12,124}")


def _exposed_credentials(event: dict[str, Any]) -> AlertSignal:
    """AWS Health's AWS_RISK_CREDENTIALS_EXPOSED (EventBridge): an access key
    AWS found published (issue 6). The key ids are in affectedEntities."""
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    assert isinstance(detail, dict)
    ids: list[str] = []
    entities = detail.get("affectedEntities")
    for entity in entities if isinstance(entities, list) else []:
        value = text(entity.get("entityValue"), 128) if isinstance(entity, dict) else ""
        if _ACCESS_KEY_RE.fullmatch(value) and value not in ids:
            ids.append(value)
    descriptions = detail.get("eventDescription")
    first = descriptions[0] if isinstance(descriptions, list) and descriptions else {}
    return AlertSignal(
        source=SOURCE,
        kind="exposed_credentials",
        status="firing",
        severity="critical",
        type=text(detail.get("eventTypeCode"), 256),
        reason=text(first.get("latestDescription") if isinstance(first, dict) else "", 1000),
        keys=[KeyRef("access_key_id", value) for value in ids[:20]],
        evidence={
            "event_arn": text(detail.get("eventArn"), 512),
            "account": text(event.get("account"), 32),
            "access_key_ids": ids[:20],
        },
    )


def parse(doc: dict[str, Any], *, key_dimensions: Sequence[str]) -> Delivery:
    """Interpret an authenticated SNS document."""
    # Whole: the receiver stores a long id hashed, where a cut could collide.
    message_id = text(doc.get("MessageId"), MAX_MESSAGE_ID)
    if not message_id:
        raise AlertRejected(400, "bad_payload", "the SNS message has no MessageId")
    sent = parse_iso(doc.get("Timestamp"))
    if doc["Type"] == "SubscriptionConfirmation":
        url = validate_aws_url(doc.get("SubscribeURL"), "SubscribeURL")
        return Delivery(source=SOURCE, delivery_id=message_id, occurred_at=sent, confirm_url=url)
    if doc["Type"] == "UnsubscribeConfirmation":
        return Delivery(source=SOURCE, delivery_id=message_id, occurred_at=sent, note="unsubscribed")
    message = doc.get("Message")
    inner: Any = None
    if isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            inner = loads_json(message.encode("utf-8"))
        except AlertRejected:
            inner = None
    signals: list[AlertSignal] = []
    if isinstance(inner, dict) and "AlarmName" in inner:
        signals.append(_cloudwatch(inner, key_dimensions))
    elif isinstance(inner, dict) and inner.get("source") == "aws.guardduty":
        signals.append(_guardduty(inner))
    elif (
        isinstance(inner, dict)
        and inner.get("source") == "aws.health"
        and isinstance(inner.get("detail"), dict)
        and inner["detail"].get("eventTypeCode") == "AWS_RISK_CREDENTIALS_EXPOSED"
    ):
        signals.append(_exposed_credentials(inner))
    note = "" if signals else "the message is neither a CloudWatch alarm nor a GuardDuty finding"
    return Delivery(source=SOURCE, delivery_id=message_id, occurred_at=sent, signals=signals, note=note)
