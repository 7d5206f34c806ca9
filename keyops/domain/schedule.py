"""When a key is next due for rotation: pure arithmetic on a policy."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from keyops.domain.specs import RotationPolicy


def jitter_seconds(key_id: str, rotation_count: int, max_jitter: int) -> int:
    """A stable pseudo-random jitter per key and rotation, so that thousands
    of keys issued together do not all come due in the same minute, and so
    the same inputs always give the same schedule (replicas agree)."""
    if max_jitter <= 0:
        return 0
    digest = hashlib.sha256(f"{key_id}:{rotation_count}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (max_jitter + 1)


def next_rotation_at(
    policy: RotationPolicy, *, from_time: datetime, key_id: str, rotation_count: int
) -> datetime | None:
    if policy.rotate_every <= 0:
        return None
    due = from_time + timedelta(seconds=policy.rotate_every + jitter_seconds(key_id, rotation_count, policy.jitter))
    window = policy.parsed_window
    if window is not None:
        due = window.next_start(due)
    return due
