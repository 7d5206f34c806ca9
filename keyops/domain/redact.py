"""Removing secrets from text before it is stored, logged or sent on.

One place knows what secrets look like, so the log filter, the alert parser,
the outbox and the state reasons cannot drift apart. Two entry points:
:func:`redact` for a string and :func:`redact_value` for JSON-like values
(dicts, lists, tuples; keys and values).

What is removed, and why the patterns are shaped as they are:

* native keys, matched on their core ``_<33 base62>_<6 base62>`` wherever it
  occurs: no ``\\b``, so a key glued to letters, digits or ``_``
  (``?k%3Dkops_live_…``, ``…_old``) is still found. Matches may overlap
  (text before a key can look like a core), so every match is found and their
  union is masked, together with the readable prefix just before the core.
* keyops API tokens (``kopt_`` + url-safe characters), webhook secrets
  (``whsec_…``), Vault tokens (``hvs.``/``hvb.``/``hvr.``, and legacy
  ``s.`` + 24 characters standing alone).
* AWS secret access keys: 40 base64 characters are common in ordinary data
  (hashes, ids), so one is removed only when a label (``aws_secret_access_key``,
  ``SecretAccessKey``, ...) precedes it or an access key id (``AKIA``/``ASIA``)
  is within :data:`AWS_NEARBY` characters. Access key ids are not secret and stay.

Truncate only after redacting (:func:`bounded`): a cut inside a key's checksum
leaves a fragment no pattern recognises but whose random part is whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from keyops.domain.keyformat import CHECKSUM_CHARS, MAX_PREFIX_LENGTH, RANDOM_CHARS

KEY_MARK = "[redacted key]"
SECRET_MARK = "[redacted]"  # noqa: S105 (a marker, not a secret)
AWS_NEARBY = 200

_KEY_CORE = re.compile(rf"(?=(_[0-9A-Za-z]{{{RANDOM_CHARS}}}_[0-9A-Za-z]{{{CHECKSUM_CHARS}}}))")
_PREFIX_TAIL = re.compile(r"[a-z0-9_]+\Z")
_TOKENS = re.compile(
    r"kopt_[A-Za-z0-9_-]{16,}"  # keyops API tokens
    r"|whsec_[A-Za-z0-9+/=_-]{8,}"  # Standard Webhooks secrets
    r"|hv[sbr]\.[A-Za-z0-9_-]{20,}"  # Vault / OpenBao tokens
    r"|(?<![A-Za-z0-9.])s\.[A-Za-z0-9]{24}(?![A-Za-z0-9])"  # legacy Vault tokens
)
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_LABEL = re.compile(r"(?i)(?:aws_?)?secret_?access_?key[\"']?\s*[:=]?\s*[\"']?\Z")
_AWS_KEY_ID = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}")


def redact(text: str) -> str:
    """``text`` with every recognised secret replaced by a marker."""
    if not text:
        return text
    text = _redact_keys(text)
    text = _TOKENS.sub(SECRET_MARK, text)
    return _redact_aws(text)


def redact_value(value: Any) -> Any:
    """A JSON-like value with :func:`redact` applied to every string in it,
    mapping keys included; other values are returned as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def bounded(text: str, limit: int) -> str:
    """Redact, then cut to ``limit`` characters (never the other way round)."""
    return redact(text)[:limit]


def _redact_keys(text: str) -> str:
    spans: list[list[int]] = []
    for match in _KEY_CORE.finditer(text):
        start, end = match.start(1), match.end(1)
        tail = _PREFIX_TAIL.search(text, max(0, start - MAX_PREFIX_LENGTH), start)
        if tail is not None:
            start = tail.start()
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(KEY_MARK)
        last = end
    out.append(text[last:])
    return "".join(out)


def _redact_aws(text: str) -> str:
    if len(text) < 40:
        return text

    def replace(match: re.Match[str]) -> str:
        start, end = match.span()
        before = text[max(0, start - AWS_NEARBY) : start]
        after = text[end : end + AWS_NEARBY]
        if _AWS_LABEL.search(before[-64:]) or _AWS_KEY_ID.search(before) or _AWS_KEY_ID.search(after):
            return SECRET_MARK
        return match.group(0)

    return _AWS_SECRET.sub(replace, text)
