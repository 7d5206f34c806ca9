"""Partition workers on the real NATS: a replica killed mid-stream has its
partitions taken over within the lease TTL, from their snapshots, and the
result equals a single-process replay of the same events: every event
counted once, the same findings, none stored twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js.errors import NotFoundError
from sqlalchemy import select

from keyops.bootstrap import App
from keyops.detect.events import UsageEvent
from keyops.detect.snapshot import encode_engine, restore_engine
from keyops.inventory import models
from keyops.stream.intake import StreamIntake
from keyops.stream.nats_js import JetStreamUsage
from keyops.stream.workers import PartitionWorkers
from tests.integration.test_detection import issue_all
from tests.support.databases import sqlite_url
from tests.support.nats_server import SHARED_URL, reachable, unique_name
from tests.traffic.generator import Traffic, bind, generate
from tests.traffic.harness import parse_all

pytestmark = pytest.mark.skipif(not reachable(), reason=f"no NATS at {SHARED_URL}")
SCENARIOS = ("attack-proxy-mix", "attack-leaked-key", "lookalike-moved-office")
PARTITIONS = 4
TTL = 2.0


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """SQLite: what is under test is the stream; the inventory is covered elsewhere."""
    yield sqlite_url(tmp_path)


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    full = generate(seed=11, days=4, scale=0.25, attack_hours=1.5)
    keys = [k for k in full.keys if k.scenario in SCENARIOS]
    names = {k.name for k in keys}
    return Traffic(seed=full.seed, days=full.days, keys=keys, events=[e for e in full.events if e["_key"] in names])


def _workers(stream: JetStreamUsage, app: App, owner: str, snapshot_every: float) -> PartitionWorkers:
    return PartitionWorkers(
        stream,
        lambda: app.detection.replay_session(dry_run=False),
        owner=owner,
        lease_ttl=TTL,
        snapshot_every=snapshot_every,
        encode=encode_engine,
        restore=lambda engine, data: restore_engine(engine, data),
    )


async def _publish(intake: StreamIntake, events: list[UsageEvent], start: int) -> None:
    for i in range(0, len(events), 500):
        batch = events[i : i + 500]
        await intake.publish([(e.key_ref[3:], e) for e in batch], None, f"batch-{start + i}".encode())


async def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def _caught_up(workers: PartitionWorkers, published: dict[int, int]) -> bool:
    return all(s.last_seq == published.get(s.partition, 0) for s in workers.held.values())


def _snapshotted(workers: PartitionWorkers, published: dict[int, int]) -> bool:
    return all(s.snapshot_seq == published.get(s.partition, 0) for s in workers.held.values())


def test_a_killed_replica_is_taken_over_and_nothing_is_lost_or_counted_twice(app: App, traffic: Traffic) -> None:
    ids = issue_all(app, traffic)
    events = parse_all(bind(traffic, ids))
    events = [e._replace(key_ref=f"id:{e.key_ref[3:]}") for e in events]
    reference = app.detection.replay_session(dry_run=True)
    expected = reference.ingest(events).findings + reference.flush().findings
    assert expected, "the attack keys produce findings"
    half = len(events) // 2

    async def scenario() -> tuple[int, float]:
        name = unique_name("kt")
        stream = JetStreamUsage(SHARED_URL, name=name, partitions=PARTITIONS, lease_ttl=TTL, retention=3600)
        await stream.start()
        intake = StreamIntake(stream)
        a = _workers(stream, app, "replica-a", 0.05)
        b = _workers(stream, app, "replica-b", 0.05)
        try:
            await a.rebalance()
            assert len(a.held) == PARTITIONS
            quarter = half // 2
            await _publish(intake, events[:quarter], 0)
            published = await _last_per_partition(stream)
            await _until(lambda: _snapshotted(a, published), 60, "replica a to snapshot the first quarter")
            # From here on replica a judges without snapshotting: what it does
            # next exists only in its memory and must be replayed by the heir.
            a.snapshot_every = 3600.0
            await _publish(intake, events[quarter:half], quarter)
            published = await _last_per_partition(stream)
            await _until(lambda: _caught_up(a, published), 60, "replica a to judge the second quarter")
            replayed = sum(s.last_seq - s.snapshot_seq for s in a.held.values())
            # SIGKILL, as far as the stream can tell: no last snapshot, no lease given back.
            for state in a.held.values():
                assert state.task is not None
                state.task.cancel()
            await asyncio.gather(*(s.task for s in a.held.values() if s.task), return_exceptions=True)
            killed = time.monotonic()
            await b.rebalance()
            assert not b.held, "the dead replica's leases still run"
            await _publish(intake, events[half:], half)
            deadline = time.monotonic() + 30
            while len(b.held) < PARTITIONS:
                assert time.monotonic() < deadline, f"replica b holds only {sorted(b.held)}"
                await b.rebalance()
                await asyncio.sleep(0.1)
            takeover = time.monotonic() - killed
            published = await _last_per_partition(stream)
            await _until(lambda: _caught_up(b, published), 60, "replica b to catch up")
            counted = 0
            for state in b.held.values():
                state.session.flush()
                counted += state.session.engine.processed
            assert replayed > 0
            return counted, takeover
        finally:
            await b.close()
            await stream.destroy()
            await stream.close()

    counted, takeover = asyncio.run(scenario())
    assert counted == len(events), "every event judged exactly once across the takeover"
    assert takeover < TTL + 3, f"takeover took {takeover:.1f}s"  # the TTL, one renewal round, a loaded machine
    with app.sessions() as session:
        rows = session.execute(select(models.Finding)).scalars().all()
    stored = Counter((r.detector, r.key_id, r.cluster_id, r.severity) for r in rows)
    want = Counter((f.detector, f.key_id, f.cluster_id, f.severity) for f in expected)
    assert set(stored) == set(want)
    assert stored == want, "a finding replayed after the takeover was stored twice"


async def _last_per_partition(stream: JetStreamUsage) -> dict[int, int]:
    """The last stream sequence on each partition's subject."""
    out: dict[int, int] = {}
    for p in range(stream.partitions):
        try:
            msg = await stream._js.get_last_msg(stream.name, f"{stream.name}.p{p}")
        except NotFoundError:
            continue  # nothing was published on this partition
        out[p] = int(msg.seq)
    return out


def test_a_clean_stop_hands_its_partitions_over_at_once_with_their_state(app: App, traffic: Traffic) -> None:
    """SIGTERM path: the stopping replica snapshots and gives its leases back;
    the next one takes them without waiting for the TTL and replays nothing."""
    keys = [k for k in traffic.keys if k.scenario == "lookalike-moved-office"]
    subset = Traffic(seed=traffic.seed, days=traffic.days, keys=keys)
    subset.events = [e for e in traffic.events if e["_key"] in {k.name for k in keys}][:3000]
    ids = issue_all(app, subset)
    events = [e._replace(key_ref=f"id:{e.key_ref[3:]}") for e in parse_all(bind(subset, ids))]

    async def scenario() -> tuple[float, int, int, int]:
        name = unique_name("kc")
        stream = JetStreamUsage(SHARED_URL, name=name, partitions=PARTITIONS, lease_ttl=30.0, retention=3600)
        await stream.start()
        first = _workers(stream, app, "replica-a", 3600.0)  # only the stop snapshots
        second = _workers(stream, app, "replica-b", 3600.0)
        try:
            await first.rebalance()
            await _publish(StreamIntake(stream), events, 0)
            published = await _last_per_partition(stream)
            await _until(lambda: _caught_up(first, published), 60, "replica a to judge everything")
            await first.close()
            started = time.monotonic()
            await second.rebalance()  # lease TTL 30 s: only a released lease can be taken now
            held = len(second.held)
            await _until(lambda: all(s.session is not None for s in second.held.values()), 30, "restores")
            await _until(lambda: _caught_up(second, published), 30, "replica b to start where a stopped")
            took = time.monotonic() - started
            fed = sum(s.events for s in second.held.values())
            for state in second.held.values():
                state.session.flush()  # the events still buffered (within the lateness) were restored too
            processed = sum(s.session.engine.processed for s in second.held.values())
            return took, held, fed, processed
        finally:
            await second.close()
            await stream.destroy()
            await stream.close()

    took, held, fed, processed = asyncio.run(scenario())
    assert held == PARTITIONS and took < 10
    assert fed == 0, "nothing is replayed after a clean stop"
    assert processed == len(events), "the state the heir restored covers every event"
