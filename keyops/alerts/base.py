"""What every inbound alert format shares: the parsed shape, the refusal
error, header access, strict JSON, timestamps and the fetcher for remote keys.

A format module exposes ``authenticate(...)`` (raises :class:`AlertRejected`
when the delivery is not provably from the configured sender) and
``parse(...)`` (only ever called on an authentic body) returning a
:class:`Delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from keyops.alerts import severity
from keyops.domain.redact import bounded, redact

#: Kinds of key reference an alert may carry.
REF_KINDS = ("key", "id", "name", "access_key_id", "token_hash")


class AlertRejected(Exception):
    """The delivery is refused: ``status`` is the HTTP answer, ``code`` a
    stable machine word, the message one line for the sender's logs."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class KeyRef:
    """How an alert names a key. Leaked material is reduced to its hash at
    once (``token_hash``); plaintext never travels further than the parser."""

    kind: str
    value: str

    def to_document(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value}


@dataclass
class AlertSignal:
    """One alert about one or more keys, whatever format it arrived in."""

    source: str
    kind: str  # alert | leak | cloudwatch | guardduty
    status: str = "firing"  # firing | resolved
    severity: str = ""
    requested_action: str = ""
    type: str = ""
    reason: str = ""
    keys: list[KeyRef] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A sender's own severity word becomes one of the fixed set here, as
        # the alert is parsed: only those four ever reach a finding or a metric
        # label. Any other word is kept, bounded, as evidence.
        raw = self.severity
        self.severity = severity.of(raw)
        if raw and raw.strip().lower() != self.severity:
            self.evidence = {**self.evidence, "sender_severity": raw[:64]}

    def facts(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "status": self.status,
            "kind": self.kind,
            "type": self.type,
            "action": self.requested_action,
        }


@dataclass
class Delivery:
    """One authenticated webhook delivery, ready for the receiver."""

    source: str
    delivery_id: str
    occurred_at: datetime | None = None
    signals: list[AlertSignal] = field(default_factory=list)
    #: For SNS SubscriptionConfirmation: the (validated) URL to fetch.
    confirm_url: str | None = None
    note: str = ""


class Fetcher(Protocol):
    """Fetches a small public document (a certificate, a key list) by URL.
    Injectable so tests serve their own CA and keys from a local server."""

    def __call__(self, url: str) -> bytes: ...


class HttpFetcher:
    """The production fetcher: HTTPS with certificate verification, a short
    timeout and a size cap, so a slow or huge answer cannot stall a webhook."""

    def __init__(self, *, timeout: float = 5.0, max_bytes: int = 256 * 1024, verify: Any = True) -> None:
        self._timeout = timeout
        self._max = max_bytes
        self._verify = verify

    def __call__(self, url: str) -> bytes:
        import httpx  # only when a certificate or key document is fetched

        with (
            httpx.Client(timeout=self._timeout, verify=self._verify, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise AlertRejected(502, "fetch_failed", f"fetching {url} answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self._max:
                    raise AlertRejected(502, "fetch_failed", f"fetching {url}: larger than {self._max} bytes")
                chunks.append(chunk)
            return b"".join(chunks)


class TTLCache:
    """A tiny thread-safe cache of fetched documents (certificates, keys)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._items: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or self._clock() - item[0] > self._ttl:
                return None
            return item[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            if len(self._items) > 256:
                self._items.clear()
            self._items[key] = (self._clock(), value)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (HTTP header names are)."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def require_header(headers: Mapping[str, str], name: str) -> str:
    value = header(headers, name)
    if value is None or not value.strip():
        raise AlertRejected(401, "missing_header", f"the {name} header is missing")
    return value.strip()


def loads_json(body: bytes) -> Any:
    """Strict JSON (orjson); any failure is the sender's 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AlertRejected(400, "malformed_json", "the body is not valid JSON") from None


def body_digest(*parts: bytes | str) -> str:
    """A delivery id for senders that give none: SHA-256 of what was signed."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\x00")
    return "sha256:" + digest.hexdigest()


#: Length of ``inbound_alerts.delivery_id``; longer ids are stored hashed.
DELIVERY_ID_COLUMN = 256


def stored_delivery_id(delivery_id: str) -> str:
    """The id a delivery is stored and deduplicated under: the sender's own id
    when it fits the column and quotes no secret, else ``sha256:<hex>`` of the
    whole id. Cutting long ids would make two deliveries sharing their first
    256 characters one delivery; redacting an id that quotes a secret (a
    scanner may build its ids from what it found) would make two ids quoting
    different secrets collide. A digest is as stable as the id, so a re-send
    is still recognised as a duplicate."""
    if len(delivery_id) <= DELIVERY_ID_COLUMN and redact(delivery_id) == delivery_id:
        return delivery_id
    return "sha256:" + hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()


def constant_time_in(candidate: bytes, expected: list[bytes]) -> bool:
    """True when ``candidate`` equals any of ``expected``; every comparison is
    made, in constant time, so timing reveals neither which nor whether."""
    found = False
    for item in expected:
        found |= hmac.compare_digest(candidate, item)
    return found


def check_unix_timestamp(value: str, now: datetime, tolerance: float, name: str) -> datetime:
    """Parse a Unix-seconds timestamp header and refuse it outside the window."""
    try:
        seconds = int(value.strip())
    except ValueError:
        raise AlertRejected(401, "bad_timestamp", f"the {name} header is not Unix seconds") from None
    return check_window(seconds, now, tolerance, name)


def check_window(seconds: float, now: datetime, tolerance: float, name: str) -> datetime:
    if not math.isfinite(seconds) or abs(now.timestamp() - seconds) > tolerance:
        raise AlertRejected(
            401, "stale_timestamp", f"the {name} is more than {int(tolerance)}s from now: refused as a possible replay"
        )
    return datetime.fromtimestamp(seconds, UTC)


def parse_iso(value: Any) -> datetime | None:
    """An ISO 8601 instant as an aware UTC datetime, or None if it is not one."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # Go's RFC 3339 has nanoseconds: trim the fraction to microseconds.
        head, dot, rest = text.partition(".")
        if not dot:
            return None
        digits = "".join(c for c in rest if c.isdigit())
        tail = rest[len(digits) :]
        try:
            parsed = datetime.fromisoformat(f"{head}.{digits[:6]}{tail}")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def text(value: Any, limit: int = 500) -> str:
    """A string field from untrusted JSON, redacted, then bounded (a cut
    before redaction could split a key past recognition); non-strings become
    ''. A leak scanner quotes the key it found, so every string a format
    takes from a sender passes here. NUL becomes U+FFFD: PostgreSQL stores no
    NUL in text or JSON, and a name with a NUL must not silently match the
    name without it."""
    if isinstance(value, str):
        return bounded(value.replace("\x00", "\ufffd"), limit)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)[:limit]
    return ""


def clean(value: Any) -> Any:
    """JSON from senders made storable: NUL replaced and secrets redacted in
    every string and key."""
    if isinstance(value, str):
        return redact(value.replace("\x00", "\ufffd"))
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def basic_or_bearer_ok(headers: Mapping[str, str], *, bearer: str, username: str, password: str) -> bool:
    """Check ``Authorization`` against a configured bearer token or basic pair."""
    import base64
    import binascii

    auth = (header(headers, "Authorization") or "").strip()
    scheme, _, credentials = auth.partition(" ")
    credentials = credentials.strip()
    ok = False
    if bearer and scheme.lower() == "bearer":
        ok |= hmac.compare_digest(credentials.encode(), bearer.encode())
    if username and password and scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return False
        ok |= hmac.compare_digest(decoded, f"{username}:{password}".encode())
    return ok
