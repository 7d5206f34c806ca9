"""Identifiers that sort by creation time (UUIDv7, RFC 9562).

Time-ordered ids keep B-tree inserts local and make "newest first" listings an
index scan. Python 3.11 has no ``uuid.uuid7``, so we build one: 48 bits of
Unix milliseconds, version and variant bits, and 74 random bits. Within one
process ids are strictly increasing even inside one millisecond.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def uuid7(now_ms: int | None = None) -> str:
    """Return a new UUIDv7 as its canonical 36-character string."""
    global _last_ms, _last_rand
    with _lock:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        if ms <= _last_ms:
            # Same (or earlier) millisecond: increment the random part so the
            # ids of this process stay monotonic.
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 74) - 1)
            if rand == 0:
                ms += 1
        else:
            rand = secrets.randbits(74)
        _last_ms, _last_rand = ms, rand
    rand_a = rand >> 62  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= rand_a << 64
    value |= 0b10 << 62
    value |= rand_b
    return str(uuid.UUID(int=value))


def uuid7_time_ms(value: str) -> int:
    """Milliseconds since the epoch encoded in a UUIDv7."""
    return uuid.UUID(value).int >> 80
