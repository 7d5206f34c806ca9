"""Rotation windows such as ``"Tue-Thu 09:00-16:00 UTC"``.

Teams often allow automatic rotation only when people are around to watch it.
A window is a set of weekdays and a time range in a fixed time zone; the
scheduler asks ``contains(now)`` and, if not, ``next_start(now)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WINDOW_RE = re.compile(
    r"\s*(?P<days>[A-Za-z]{3}(?:-[A-Za-z]{3})?(?:,[A-Za-z]{3}(?:-[A-Za-z]{3})?)*)\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})(?:\s+(?P<tz>\S+))?\s*"
)


@dataclass(frozen=True)
class RotationWindow:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    tz: str

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.tz))
        return local.weekday() in self.days and self.start <= local.time().replace(tzinfo=None) < self.end

    def next_start(self, moment: datetime) -> datetime:
        """The first instant at or after ``moment`` inside the window."""
        if self.contains(moment):
            return moment
        zone = ZoneInfo(self.tz)
        local = moment.astimezone(zone)
        for offset in range(0, 8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            candidate = datetime.combine(day, self.start, tzinfo=zone)
            if candidate >= local:
                return candidate.astimezone(moment.tzinfo)
        raise AssertionError("a window with at least one day always has a next start")


def _parse_time(text: str) -> time:
    hours, minutes = (int(p) for p in text.split(":"))
    if hours == 24 and minutes == 0:
        return time(23, 59, 59, 999999)
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)


def parse_window(text: str) -> RotationWindow:
    match = _WINDOW_RE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a rotation window: use a form like 'Tue-Thu 09:00-16:00 UTC'")
    days: set[int] = set()
    for part in match.group("days").split(","):
        bounds = part.lower().split("-")
        try:
            idx = [DAYS.index(b) for b in bounds]
        except ValueError:
            raise ValueError(f"{part!r} in {text!r} is not a weekday range (Mon..Sun)") from None
        if len(idx) == 1:
            days.add(idx[0])
        else:
            day = idx[0]
            while True:
                days.add(day)
                if day == idx[1]:
                    break
                day = (day + 1) % 7
    start, end = _parse_time(match.group("start")), _parse_time(match.group("end"))
    if end <= start:
        raise ValueError(f"window {text!r} ends before it starts")
    tz = match.group("tz") or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r} in window {text!r}") from None
    return RotationWindow(days=frozenset(days), start=start, end=end, tz=tz)
