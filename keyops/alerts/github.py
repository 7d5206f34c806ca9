"""GitHub secret scanning partner alerts: keyops keys found in public places.

GitHub POSTs a JSON array of ``{"token", "type", "url", "source"}`` and signs
the raw body with ECDSA P-256 / SHA-256: the base64 DER signature is in
``Github-Public-Key-Signature`` and the key's id in
``Github-Public-Key-Identifier``. Public keys come from GitHub's meta
endpoint (``{"public_keys": [{"key_identifier", "key", "is_current"}]}``),
cached; an unknown identifier triggers at most one refetch a minute (GitHub
rotates keys; an attacker must not be able to make us fetch on every request).
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
    """The secret-scanning public keys, fetched from the meta URL and cached."""

    def __init__(self, fetcher: Fetcher, meta_url: str, *, ttl: float = 3600.0) -> None:
        self._fetch = fetcher
        self._url = meta_url
        self._ttl = ttl
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at = -1e18
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            raw = self._fetch(self._url)
        except AlertRejected:
            raise
        except Exception as exc:
            raise AlertRejected(
                503, "keys_unavailable", f"cannot fetch GitHub's public keys: {type(exc).__name__}"
            ) from None
        self._fetched_at = time.monotonic()
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
        self._keys = keys

    def get(self, identifier: str) -> ec.EllipticCurvePublicKey:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self._ttl or (identifier not in self._keys and age > REFETCH_INTERVAL):
                self._refresh()
            key = self._keys.get(identifier)
        if key is None:
            raise AlertRejected(
                401, "unknown_key_identifier", "Github-Public-Key-Identifier names no current GitHub key"
            )
        return key


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
