"""Why a usage event was refused: a fixed set of reason codes.

Every intake that refuses an event (``POST /v1/usage``, ``keyops replay``,
the detection engine) names one of these codes beside its one-line message,
so an answer can be read by a program, and the metric
``keyops_usage_events_rejected_total{reason}`` keeps a fixed label set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

#: The event does not parse (not JSON, a bad field, too far ahead of the clock, ...).
INVALID = "invalid"
#: No key of the inventory has the event's id, hash or plaintext.
UNKNOWN_KEY = "unknown_key"
#: The key's usage profile does not exist (the engine cannot judge it).
UNKNOWN_PROFILE = "unknown_profile"
#: Older than the engine's watermark: its window may already be judged.
LATE = "late"
#: The engine holds as many events as ``detection.max_buffered`` allows.
BUFFER_FULL = "buffer_full"
#: Stamped ahead of the engine's clock, and the share of the buffer kept for
#: such events is full.
AHEAD_OF_CLOCK_BUFFER_FULL = "ahead_of_clock_buffer_full"
#: The engine raised on the batch (logged); its events may not be judged.
ENGINE_ERROR = "engine_error"

REASONS: tuple[str, ...] = (
    INVALID,
    UNKNOWN_KEY,
    UNKNOWN_PROFILE,
    LATE,
    BUFFER_FULL,
    AHEAD_OF_CLOCK_BUFFER_FULL,
    ENGINE_ERROR,
)


class Refusal(NamedTuple):
    """One refused event: a code from :data:`REASONS` and a line for people."""

    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused event of a batch, by its index in that batch."""

    index: int
    reason: str
    error: str
