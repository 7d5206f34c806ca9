"""The engine's clock and buffer: an event stamped ahead of the intake's clock
cannot make honest events late, the buffer is capped with reason codes, and
replay (no clock) is pure event time as before."""

from __future__ import annotations

import random
import tracemalloc
from collections import Counter
from typing import Any

from keyops.detect.config import WINDOW
from keyops.detect.engine import Engine, Output
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.model import KeyMeta
from keyops.detect.refusals import AHEAD_OF_CLOCK_BUFFER_FULL, BUFFER_FULL, LATE, REASONS
from tests.traffic.harness import builtin_configs
from tests.unit.detect.test_engine import attack_stream, identities

CFG = builtin_configs()["interactive"]
HONEST = KeyMeta("01a219fe-a712-7523-b8e2-f2e4c2e6d38e", "team/app", "team", "interactive")
BOGUS = KeyMeta("01a219fe-a712-7523-b8e2-00000000b065", "mallory/app", "mallory", "interactive")
LATENESS = 10.0
# 100 s into a 5-minute window: the window of "now" ends 200 s later.
NOW = 1793491200.0 + 100.0


def ev(ts: float, meta: KeyMeta = HONEST, **kw: Any) -> UsageEvent:
    doc: dict[str, Any] = {"ts": ts, "key_id": meta.key_id, "ip": "10.0.0.7", "status": 200, "duration_ms": 900}
    doc.update(kw)
    parsed = parse_event(doc)
    assert isinstance(parsed, UsageEvent), parsed
    return parsed


def test_one_event_from_the_near_future_does_not_make_honest_events_late() -> None:
    engine = Engine(lateness=LATENESS)
    out = Output()
    engine.tick(NOW)  # the intake's clock
    assert engine.push(ev(NOW + 290, BOGUS), BOGUS, CFG) is None
    engine.release(out)
    honest = [ev(NOW - 5 + i * 0.005, input_tokens=i) for i in range(1000)]
    refusals = [engine.push(e, HONEST, CFG) for e in honest]
    engine.release(out)
    assert refusals == [None] * 1000
    assert engine.watermark <= NOW - LATENESS, "the future event did not move the watermark"
    engine.advance(NOW + LATENESS + 1, out)  # the daemon's tick, once the lateness has passed
    assert engine.processed == 1000
    st = engine.keys[HONEST.key_id]
    assert st.n == 1000 and st.tok_in == sum(range(1000))
    assert BOGUS.key_id not in engine.keys, "the future event waits for the clock"
    engine.advance(NOW + 289, out)
    assert engine.processed == 1000
    window_end = (NOW // WINDOW + 1) * WINDOW
    engine.advance(NOW + 290 + LATENESS, out)  # the clock has reached the future event
    assert engine.processed == 1001 and engine.keys[BOGUS.key_id].n == 1
    assert engine.watermark >= window_end
    assert st.n == 0 and st.win_start == window_end, "the honest window was judged and closed"


def test_far_ahead_events_of_one_key_change_nothing_for_another() -> None:
    # A live intake receives an honest extraction stream (which the engine must
    # act on) while another key stamps every event close to max_future ahead.
    honest = attack_stream(seed=3, hours=2.0)
    engine = Engine(lateness=LATENESS)
    out = Output()
    for i in range(0, len(honest), 50):
        batch = honest[i : i + 50]
        now = batch[-1].ts + 0.5  # the gateway posts half a second after its last event
        engine.tick(now)
        for e in batch:
            assert engine.push(e, HONEST, CFG) is None
        assert engine.push(ev(now + 290, BOGUS), BOGUS, CFG) is None
        engine.release(out)
    engine.flush(out)
    alone = Engine(lateness=LATENESS)
    expected = Output()
    for e in honest:
        alone.push(e, HONEST, CFG)
    alone.release(expected)
    alone.flush(expected)
    assert engine.late == 0
    honest_only = Output(
        findings=[f for f in out.findings if f.key_id == HONEST.key_id],
        actions=[a for a in out.actions if a.key_id == HONEST.key_id],
    )
    assert identities(honest_only) == identities(expected)
    assert expected.actions, "the honest stream is acted on, so the comparison means something"


def test_the_buffer_is_capped_with_reason_codes_and_memory_stays_bounded() -> None:
    engine = Engine(lateness=LATENESS, max_buffered=1000)  # 900 in order, 100 ahead of the clock
    out = Output()
    samples = [ev(NOW - 1, input_tokens=i) for i in range(50)] + [
        ev(NOW + 120, BOGUS, input_tokens=i) for i in range(50)
    ]
    engine.tick(NOW)
    tracemalloc.start()
    try:
        reasons: Counter[str | None] = Counter()
        held = 0
        for i in range(20_000):  # no release in between: the worst case for the buffer
            honest = engine.push(samples[i % 50], HONEST, CFG)
            ahead = engine.push(samples[50 + i % 50], BOGUS, CFG)
            reasons.update([None if r is None else r.reason for r in (honest, ahead)])
            if i == 2000:
                held = tracemalloc.get_traced_memory()[0]
        grown = tracemalloc.get_traced_memory()[0] - held
    finally:
        tracemalloc.stop()
    assert reasons == {None: 1000, BUFFER_FULL: 20_000 - 900, AHEAD_OF_CLOCK_BUFFER_FULL: 20_000 - 100}
    assert set(reasons) - {None} <= set(REASONS)
    assert grown < 64 * 1024, f"18,000 refused pushes grew memory by {grown} bytes"
    refusal = engine.push(samples[0], HONEST, CFG)
    assert refusal is not None and "detection.max_buffered" in refusal.error
    engine.advance(NOW + LATENESS, out)  # the held events are processed: room again
    assert engine.processed == 900
    assert engine.push(ev(NOW + 5), HONEST, CFG) is None
    engine.advance(NOW + 120 + LATENESS, out)
    assert engine.processed == 1001


def test_an_event_ahead_is_never_late_when_the_clock_jumps_past_it() -> None:
    # The daemon may not call in for a while: when the clock finally moves,
    # the waiting event joins the buffer before the watermark passes it.
    engine = Engine(lateness=LATENESS)
    out = Output()
    engine.tick(NOW)
    assert engine.push(ev(NOW + 200, BOGUS), BOGUS, CFG) is None
    assert engine.push(ev(NOW), HONEST, CFG) is None
    engine.release(out)
    engine.tick(NOW + 3600)
    assert engine.push(ev(NOW + 3600), HONEST, CFG) is None
    engine.release(out)
    assert engine.processed == 2 and engine.keys[BOGUS.key_id].n == 0  # processed, its window closed since
    assert engine.late == 0


def test_replay_with_a_small_buffer_gives_the_same_findings() -> None:
    events = attack_stream(seed=5, hours=2.0)
    full = Engine(lateness=3600.0)
    reference = Output()
    for e in events:
        full.push(e, HONEST, CFG)
    full.flush(reference)
    small = Engine(lateness=3600.0, max_buffered=50)
    out = Output()
    for i, e in enumerate(events):
        assert small.push(e, HONEST, CFG) is None  # no clock: room is made, nothing refused
        if i % 1000 == 999:
            small.release(out)
        assert len(small._run) + len(small._heap) <= 50
    small.flush(out)
    assert identities(out) == identities(reference)
    assert reference.actions


def test_replay_of_a_disordered_file_with_a_small_buffer_refuses_only_late_events() -> None:
    rng = random.Random(8)
    events = sorted(attack_stream(seed=6, hours=0.5), key=lambda e: e.ts + rng.uniform(-60.0, 0.0))
    engine = Engine(lateness=3600.0, max_buffered=20)
    out = Output()
    refusals = [engine.push(e, HONEST, CFG) for e in events]
    engine.flush(out)
    refused = [r for r in refusals if r is not None]
    assert refused, "a 20-event buffer cannot hold a minute of disorder"
    assert {r.reason for r in refused} == {LATE}
    assert engine.processed + len(refused) == len(events)
