"""The usage stream against the real NATS JetStream server.

Each test has its own stream and buckets (unique names) on the shared
server and deletes them after, so parallel runs never meet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from keyops.stream.base import Snapshot, StreamUnavailable
from keyops.stream.nats_js import JetStreamUsage
from keyops.stream.partitions import partition_of
from tests.support.nats_server import SHARED_URL, reachable, unique_name

pytestmark = pytest.mark.skipif(not reachable(), reason=f"no NATS at {SHARED_URL}")


async def _open(partitions: int = 4, lease_ttl: float = 2.0) -> JetStreamUsage:
    stream = JetStreamUsage(
        SHARED_URL, name=unique_name("ks"), partitions=partitions, lease_ttl=lease_ttl, retention=3600
    )
    await stream.start()
    return stream


async def _close(stream: JetStreamUsage) -> None:
    await stream.destroy()
    await stream.close()


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def _collect(stream: JetStreamUsage, partition: int, after: int, want: int) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    consumer: AsyncIterator[list] = stream.consume(partition, after, f"p{partition}")  # type: ignore[type-arg]
    deadline = time.monotonic() + 10
    try:
        async for batch in consumer:
            got += [(m.seq, m.data) for m in batch]
            await stream.ack(batch)
            if len(got) >= want or time.monotonic() > deadline:
                break
    finally:
        await consumer.aclose()  # type: ignore[attr-defined]
    return got


def test_partition_mapping_is_fixed_and_spreads() -> None:
    # A fixed hash: the same on every replica and every run.
    assert partition_of("00000000-0000-0000-0000-000000000001", 16) == partition_of(
        "00000000-0000-0000-0000-000000000001", 16
    )
    counts = [0] * 16
    for i in range(1600):
        counts[partition_of(f"key-{i}", 16)] += 1
    assert min(counts) > 50 and max(counts) < 160


def test_publish_is_acknowledged_in_order_and_a_retry_is_stored_once() -> None:
    async def scenario() -> None:
        stream = await _open()
        try:
            first = await stream.publish(1, b"a", "body1.1")
            again = await stream.publish(1, b"a", "body1.1")  # the client retried the same body
            second = await stream.publish(1, b"b", "body2.1")
            other = await stream.publish(2, b"c", "body2.2")
            assert again == first and second > first and other > second
            assert await _collect(stream, 1, 0, 2) == [(first, b"a"), (second, b"b")]
            # Replay from a position: only what came after it, on that partition only.
            assert await _collect(stream, 1, first, 1) == [(second, b"b")]
        finally:
            await _close(stream)

    run(scenario())


def test_a_lease_has_one_holder_and_lapses_after_its_ttl() -> None:
    async def scenario() -> None:
        stream = await _open(lease_ttl=2.0)
        try:
            a = await stream.acquire("p0", "replica-a")
            assert a is not None
            assert await stream.acquire("p0", "replica-b") is None
            assert await stream.renew(a)
            assert await stream.holders() == {"p0": "replica-a"}
            started = time.monotonic()
            b = None
            while b is None and time.monotonic() - started < 10:
                b = await stream.acquire("p0", "replica-b")
                await asyncio.sleep(0.1)
            assert b is not None, "a lease that is not renewed must lapse"
            assert time.monotonic() - started < 5  # within the TTL (plus the server's expiry tick)
            assert not await stream.renew(a), "the old holder must learn it lost the lease"
            await stream.release(a)  # giving back a lease it no longer holds changes nothing
            assert await stream.holders() == {"p0": "replica-b"}
            await stream.release(b)
            assert await stream.acquire("p0", "replica-c") is not None  # released: free at once
        finally:
            await _close(stream)

    run(scenario())


def test_snapshots_keep_their_sequence_and_may_exceed_a_message() -> None:
    async def scenario() -> None:
        stream = await _open()
        try:
            assert await stream.load_snapshot(3) is None
            big = bytes(range(256)) * 12_000  # 3 MB: more than NATS's 1 MB message limit
            await stream.save_snapshot(3, Snapshot(41, big))
            await stream.save_snapshot(3, Snapshot(42, big[:10]))
            assert await stream.load_snapshot(3) == Snapshot(42, big[:10])
            await stream.save_snapshot(1, Snapshot(7, big))
            assert await stream.load_snapshot(1) == Snapshot(7, big)
        finally:
            await _close(stream)

    run(scenario())


def test_unreachable_nats_is_one_line_naming_the_setting() -> None:
    async def scenario() -> None:
        stream = JetStreamUsage(
            "nats://user:hunter2@127.0.0.1:9", name=unique_name(), partitions=2, lease_ttl=2, retention=60
        )
        with pytest.raises(StreamUnavailable) as caught:
            await stream.start()
        message = str(caught.value)
        assert "stream.url" in message and "127.0.0.1:9" in message
        assert "hunter2" not in message and "\n" not in message
        assert not stream.connected
        with pytest.raises(StreamUnavailable):
            await stream.publish(0, b"x", "id")

    run(scenario())
