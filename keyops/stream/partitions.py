"""Which partition a key's usage goes to (pure: no I/O).

The mapping must be the same on every replica and across versions, so it is
a fixed hash of the key id (never Python's ``hash``, which is salted per
process): SHA-256, first 8 bytes, modulo the partition count.
"""

from __future__ import annotations

import hashlib


def partition_of(key_id: str, partitions: int) -> int:
    digest = hashlib.sha256(key_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % partitions


def subject(stream: str, partition: int) -> str:
    """The subject one partition's usage is published on."""
    return f"{stream}.p{partition}"


def lease_name(partition: int) -> str:
    return f"p{partition}"
