"""What the engine may hold before processing, and how long.

The engine processes events in event-time order once its watermark has passed
them, so it holds every event it has not yet processed. Left alone, one event
stamped a few minutes ahead would move the watermark past every honest event
of those minutes (they would all be refused as late), and a stream of such
events would be held without limit. Two rules bound this:

* **The clock bounds the watermark.** Live, the intake passes its wall clock
  with each batch; the watermark is then at most ``clock - lateness``
  whatever timestamps were seen. An event stamped more than
  :data:`AHEAD_SKEW` ahead of the clock moves nothing: it waits here, in
  :class:`AheadOfClock`, and joins the ordinary buffer once the clock
  reaches it. So an honest event, stamped within ``lateness`` of the clock,
  is never late, whatever another key or gateway stamped. Replay passes no
  clock: event time alone decides, as it always did. (The watermark stays
  one for all keys: an event behind it is refused even if its own key sent
  nothing newer, because the event-time boundaries it belongs before, window
  closes and the cross-key coordination search, have already fired; taking
  it would make findings depend on arrival order.)
* **A cap bounds the memory.** At most ``max_buffered`` events are held in
  all, :data:`AHEAD_SHARE` of them at most ahead of the clock (so neither
  kind can crowd out the other). Live, an event beyond the cap is refused
  with a reason code (never dropped silently). In pure event time (replay of
  a file) the engine makes room instead, by processing its oldest events
  early: a sorted file loses nothing that way, and a disordered one finds
  its lateness shortened, with any event then too late refused as late.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any, Generic, TypeVar

from keyops.detect.model import iso
from keyops.detect.refusals import AHEAD_OF_CLOCK_BUFFER_FULL, BUFFER_FULL, LATE, Refusal

#: Default of ``detection.max_buffered``: events the engine holds at most.
MAX_BUFFERED = 100_000
#: Share of the cap kept for events stamped ahead of the clock.
AHEAD_SHARE = 0.1
#: How far ahead of the intake's clock an event may be stamped and still be
#: buffered as usual (gateway clocks drift a little). Further ahead, it waits
#: apart until the clock reaches it.
AHEAD_SKEW = 2.0

_Item = TypeVar("_Item", bound=tuple[Any, ...])


def ahead_cap(max_buffered: int) -> int:
    """How many of ``max_buffered`` events may wait ahead of the clock."""
    return max(1, int(max_buffered * AHEAD_SHARE))


class AheadOfClock(Generic[_Item]):
    """Events stamped ahead of the clock, smallest ``(ts, ...)`` first, at
    most ``cap`` of them. They take no part in the watermark until released."""

    __slots__ = ("_heap", "cap")

    def __init__(self, cap: int) -> None:
        self._heap: list[_Item] = []
        self.cap = cap

    def __len__(self) -> int:
        return len(self._heap)

    def hold(self, item: _Item) -> bool:
        """Keep ``item`` until the clock reaches it; False when full."""
        if len(self._heap) >= self.cap:
            return False
        heappush(self._heap, item)
        return True

    def due(self, horizon: float) -> list[_Item]:
        """Remove and return, in order, the items stamped at or before ``horizon``."""
        heap = self._heap
        if not heap or heap[0][0] > horizon:
            return []
        out: list[_Item] = []
        while heap and heap[0][0] <= horizon:
            out.append(heappop(heap))
        return out

    def take_all(self) -> list[_Item]:
        """Remove and return every item, in order (end of a replay, shutdown)."""
        return self.due(float("inf"))


def late(ts: float, watermark: float, lateness: float) -> Refusal:
    return Refusal(
        LATE,
        f"event at {iso(ts)} is older than the engine's watermark {iso(watermark)} (more than {lateness:g}s late)",
    )


def full(max_buffered: int) -> Refusal:
    return Refusal(
        BUFFER_FULL,
        f"the detection engine already holds {max_buffered - ahead_cap(max_buffered)} events waiting for "
        "their lateness to pass (detection.max_buffered): this one is not judged",
    )


def ahead_full(ts: float, clock: float, max_buffered: int) -> Refusal:
    return Refusal(
        AHEAD_OF_CLOCK_BUFFER_FULL,
        f"event at {iso(ts)} is {ts - clock:.0f}s ahead of the clock, and the engine already holds "
        f"{ahead_cap(max_buffered)} such events (a tenth of detection.max_buffered): this one is not judged; "
        "check the sender's clock",
    )
