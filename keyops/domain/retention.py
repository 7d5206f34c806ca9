"""Retention periods: how long a kind of history is kept before pruning.

A period is a duration like the other settings ("90d", "12w", "36h"), or
"forever" (also "0", "never") to keep that history for good. Pure, so the
settings loader and the prune job read the same rule.
"""

from __future__ import annotations

from keyops.domain.durations import parse_duration

KEEP_FOREVER = ("forever", "never", "0")


def parse_retention(text: str) -> int | None:
    """Seconds to keep, or None for "keep forever". Raises ValueError with a
    message fit for the user."""
    if isinstance(text, str) and text.strip().lower() in KEEP_FOREVER:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a retention period: use a duration like '90d' or '12w', or 'forever'"
        ) from None
    return seconds or None
