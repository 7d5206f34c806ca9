"""GitHub secret scanning partner alerts: keyops keys found in public places.

GitHub POSTs a JSON array of ``{"token", "type", "url", "source"}`` and signs
the raw body with ECDSA P-256 / SHA-256: the base64 DER signature is in
``Github-Public-Key-Signature`` and the key's id in
``Github-Public-Key-Identifier``. Public keys come from GitHub's meta
endpoint (``{"public_keys": [{"key_identifier", "key", "is_current"}]}``),
cached; an unknown identifier triggers at most one refetch a minute, never
two at once, with a growing pause after failures (GitHub rotates keys; an
attacker must not be able to make us fetch, or wait, on every request).
Each token is checksum-checked offline and reduced to its SHA-256 at once:
the token itself is never stored, logged or returned.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keyops.alerts.base import (
    AlertRejected,
    AlertSignal,
    Delivery,
    Fetcher,
    KeyRef,
    body_digest,
    loads_json,
    require_header,
    text,
)
from keyops.domain import keyformat

SOURCE = "github"
REFETCH_INTERVAL = 60.0


class GitHubKeys:
    """The secret-scanning public keys, fetched from the meta URL and cached.

    A refetch is triggered by the TTL or by an unknown key identifier, but
    at most one fetch runs at a time and it runs outside the lock: other
    requests meanwhile answer from the cached keys at once. The attempt is
    recorded before fetching, and after a failure the next attempt waits
    (doubling up to the TTL), so a slow or failing GitHub cannot make every
    unsigned request with a made-up identifier wait for, or cause, a fetch.
    """

    def __init__(self, fetcher: Fetcher, meta_url: str, *, ttl: float = 3600.0) -> None:
        self._fetch = fetcher
        self._url = meta_url
        self._ttl = ttl
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at = -1e18
        self._next_attempt = -1e18
        self._failures = 0
        self._fetching = False
        self._lock = threading.Lock()

    def _download(self) -> dict[str, ec.EllipticCurvePublicKey]:
        try:
            raw = self._fetch(self._url)
        except AlertRejected as exc:
            raise AlertRejected(503, "keys_unavailable", exc.message) from None
        except Exception as exc:
            raise AlertRejected(
                503, "keys_unavailable", f"cannot fetch GitHub's public keys: {type(exc).__name__}"
            ) from None
        try:
            doc = loads_json(raw)
        except AlertRejected:
            raise AlertRejected(503, "keys_unavailable", "GitHub's public key document is not JSON") from None
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        entries = doc.get("public_keys") if isinstance(doc, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            ident, pem = entry.get("key_identifier"), entry.get("key")
            if not isinstance(ident, str) or not isinstance(pem, str):
                continue
            try:
                key = serialization.load_pem_public_key(pem.encode("utf-8"))
            except (ValueError, UnsupportedAlgorithm):
                continue
            if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
                keys[ident] = key
        return keys

    def _claim_fetch(self, identifier: str) -> bool:
        """Under the lock: whether this caller should fetch now (and record the attempt)."""
        now = time.monotonic()
        stale = now - self._fetched_at > self._ttl
        if self._fetching or now < self._next_attempt or not (stale or identifier not in self._keys):
            return False
        self._fetching = True
        self._next_attempt = now + REFETCH_INTERVAL
        return True

    def get(self, identifier: str) -> ec.EllipticCurvePublicKey:
        with self._lock:
            fetch = self._claim_fetch(identifier)
        error: AlertRejected | None = None
        if fetch:
            try:
                keys = self._download()
            except AlertRejected as exc:
                error = exc
                with self._lock:
                    self._failures += 1
                    backoff = min(self._ttl, REFETCH_INTERVAL * 2 ** min(self._failures - 1, 16))
                    self._next_attempt = time.monotonic() + backoff
                    self._fetching = False
            else:
                with self._lock:
                    self._keys, self._fetched_at, self._failures = keys, time.monotonic(), 0
                    self._fetching = False
        with self._lock:
            key = self._keys.get(identifier)
            known = bool(self._keys)
        if key is not None:
            return key
        if not known:
            # Nothing cached yet: the sender should retry later, not believe its key is unknown.
            raise error or AlertRejected(503, "keys_unavailable", "GitHub's public keys are not available yet; retry")
        raise AlertRejected(401, "unknown_key_identifier", "Github-Public-Key-Identifier names no current GitHub key")


def authenticate(headers: Mapping[str, str], body: bytes, keys: GitHubKeys) -> None:
    identifier = require_header(headers, "Github-Public-Key-Identifier")
    signature_b64 = require_header(headers, "Github-Public-Key-Signature")
    if len(identifier) > 256:
        raise AlertRejected(400, "bad_header", "Github-Public-Key-Identifier is too long")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise AlertRejected(401, "bad_signature", "Github-Public-Key-Signature is not base64") from None
    key = keys.get(identifier)
    try:
        key.verify(signature, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise AlertRejected(401, "bad_signature", "the GitHub signature does not verify with that key") from None


def parse(body: bytes) -> tuple[Delivery, list[dict[str, Any]]]:
    """The delivery, and per token the feedback GitHub accepts in the answer
    (``token_hash``, ``token_type``, ``label``), without the tokens."""
    doc = loads_json(body)
    if not isinstance(doc, list) or not doc:
        raise AlertRejected(400, "bad_payload", "a secret scanning alert is a non-empty JSON array")
    signals: list[AlertSignal] = []
    feedback: list[dict[str, Any]] = []
    for item in doc[:1000]:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            raise AlertRejected(400, "bad_payload", "each entry needs a token string")
        token: str = item["token"]
        token_type = text(item.get("type"), 128)
        token_hash = keyformat.hash_key(token)
        well_formed = keyformat.is_well_formed(token)
        feedback.append({"token_hash": token_hash, "token_type": token_type, "label": "false_positive"})
        if not well_formed:
            continue
        signals.append(
            AlertSignal(
                source=SOURCE,
                kind="leak",
                status="firing",
                severity="critical",
                type=token_type,
                reason=f"key found in public at {text(item.get('url'), 512)}",
                keys=[KeyRef("token_hash", token_hash)],
                evidence={
                    "url": text(item.get("url"), 1024),
                    "type": token_type,
                    "found_in": text(item.get("source"), 64),
                    "token_hash": token_hash,
                },
            )
        )
    return Delivery(source=SOURCE, delivery_id=body_digest(body), signals=signals), feedback
