"""The native key format: ``<prefix>_<random>_<checksum>``.

Modelled on GitHub's token format: a readable prefix says what the string is
(so secret scanners and people recognise it), 192 bits from ``secrets`` make it
unguessable, and a CRC32 checksum lets us reject a mistyped or truncated key
offline, before any database lookup. All parts are base62 so a key survives
double-click selection, URLs and shell quoting.

Example: ``kops_live_4Qx9...(33 chars)..._1a2B3c``

Only ``sha256(key)`` and a short display prefix are ever stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass

from keyops.errors import InvalidInputError

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_INDEX = {c: i for i, c in enumerate(BASE62)}

RANDOM_BYTES = 24  # 192 bits
RANDOM_CHARS = 33  # ceil(192 / log2(62)) = 33 -> 196 bits of space
CHECKSUM_CHARS = 6  # 62**6 > 2**32
DISPLAY_RANDOM_CHARS = 4
MAX_PREFIX_LENGTH = 32
DEFAULT_PREFIX = "kops_live"

PREFIX_RE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")

#: The regex published for secret scanners (README). It matches keys of any
#: configured prefix; scanners that know the prefix can anchor on it.
SCANNER_REGEX = r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*_[0-9A-Za-z]{33}_[0-9A-Za-z]{6}\b"


def encode_base62(value: int, width: int) -> str:
    """Fixed-width base62 of a non-negative integer (left-padded with '0')."""
    if value < 0:
        raise ValueError("base62 encodes non-negative integers only")
    chars = []
    while value:
        value, rem = divmod(value, 62)
        chars.append(BASE62[rem])
    text = "".join(reversed(chars)).rjust(width, "0")
    if len(text) != width:
        raise ValueError(f"value does not fit in {width} base62 characters")
    return text


def decode_base62(text: str) -> int:
    value = 0
    for char in text:
        digit = _BASE62_INDEX.get(char)
        if digit is None:
            raise ValueError(f"not a base62 character: {char!r}")
        value = value * 62 + digit
    return value


def validate_prefix(prefix: str) -> str:
    if not prefix or len(prefix) > MAX_PREFIX_LENGTH or not PREFIX_RE.fullmatch(prefix):
        raise InvalidInputError(
            f"key prefix {prefix!r} is invalid: use lowercase letters and digits, "
            f"optionally joined by '_', starting with a letter, at most {MAX_PREFIX_LENGTH} characters"
        )
    return prefix


def checksum(body: str) -> str:
    """CRC32 of ``<prefix>_<random>`` as 6 base62 characters."""
    return encode_base62(zlib.crc32(body.encode("ascii")) & 0xFFFFFFFF, CHECKSUM_CHARS)


@dataclass(frozen=True, slots=True)
class NativeKey:
    """A freshly generated key. ``plaintext`` must only ever leave the process
    once: printed to the admin or delivered to a destination."""

    plaintext: str
    secret_hash: str
    display_prefix: str

    def __repr__(self) -> str:  # never let the plaintext reach a log by accident
        return f"NativeKey(display_prefix={self.display_prefix!r})"

    __str__ = __repr__


def generate(prefix: str = DEFAULT_PREFIX) -> NativeKey:
    validate_prefix(prefix)
    random_part = encode_base62(int.from_bytes(secrets.token_bytes(RANDOM_BYTES), "big"), RANDOM_CHARS)
    body = f"{prefix}_{random_part}"
    plaintext = f"{body}_{checksum(body)}"
    return NativeKey(plaintext=plaintext, secret_hash=hash_key(plaintext), display_prefix=display_prefix(plaintext))


def hash_key(plaintext: str) -> str:
    """SHA-256 hex of the whole key. Keys carry 192 random bits, so a fast
    hash is safe here (no password-style stretching needed) and keeps verify cheap."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def display_prefix(plaintext: str) -> str:
    """A short non-secret label (prefix plus 4 random chars) that lets people
    tell keys apart in listings without revealing them."""
    prefix, random_part, _ = _split(plaintext)
    return f"{prefix}_{random_part[:DISPLAY_RANDOM_CHARS]}"


def _split(key: str) -> tuple[str, str, str]:
    parts = key.rsplit("_", 2)
    if len(parts) != 3:
        raise ValueError("not a keyops key")
    return parts[0], parts[1], parts[2]


def is_well_formed(key: str) -> bool:
    """Offline check: structure, alphabet and checksum. No lookup."""
    if not isinstance(key, str) or len(key) > MAX_PREFIX_LENGTH + RANDOM_CHARS + CHECKSUM_CHARS + 2:
        return False
    try:
        prefix, random_part, check = _split(key)
    except ValueError:
        return False
    if len(random_part) != RANDOM_CHARS or len(check) != CHECKSUM_CHARS:
        return False
    if not PREFIX_RE.fullmatch(prefix):
        return False
    if any(c not in _BASE62_INDEX for c in random_part) or any(c not in _BASE62_INDEX for c in check):
        return False
    return checksum(f"{prefix}_{random_part}") == check


def secret_part(key: str) -> str:
    """The random segment: what tests search for to prove it never leaked."""
    return _split(key)[1]
