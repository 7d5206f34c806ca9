"""Human durations ("90d", "24h", "30m", "1h30m", "0") as seconds."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from keyops.errors import InvalidInputError

_PART = re.compile(r"(\d+)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> int:
    """Seconds in ``text``. Integers are taken as seconds. Raises ValueError
    with a message fit for the user on anything else."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like '90d', '24h' or '30m'")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return int(text)
    value = text.strip().lower()
    if value in ("0", ""):
        if value == "":
            raise ValueError("expected a duration like '90d', '24h' or '30m'")
        return 0
    pos, total = 0, 0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"{text!r} is not a duration: use forms like '90d', '24h', '1h30m' or '0'")
    return total


def format_duration(seconds: int) -> str:
    if seconds == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_expiry(value: str | None, now: datetime, *, label: str = "--expires") -> datetime | None:
    """An end of life given as an ISO 8601 time with a zone or as a duration
    from ``now`` (``90d``); the same words for the CLI and the admin API."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return now + timedelta(seconds=parse_duration(value))
        except ValueError:
            raise InvalidInputError(
                f"{label} {value!r} is neither an ISO 8601 time (2027-01-31T00:00Z) nor a duration (90d)"
            ) from None
    if moment.tzinfo is None:
        raise InvalidInputError(f"{label} {value!r} has no time zone: add Z or +00:00")
    return moment
