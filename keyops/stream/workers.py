"""The partitions this replica holds: lease, restore, consume, snapshot.

Every replica runs one ``PartitionWorkers``. Every third of the lease TTL it
renews the leases it holds and tries to take the free ones (create-if-absent
in the stream's lease store); a replica that stops renewing (killed, cut off)
loses its partitions one TTL later, and the next round of any other replica
takes them over.

Holding partition ``p`` means: a fresh detection session (its own engine over
the shared inventory) restored from ``p``'s last snapshot, then fed the
partition's messages after the snapshot's sequence, in order, through a
durable consumer recreated at that sequence. Each message's events are
ingested with the intake's clock that published them, so a partition judges
exactly what the single-node intake would have. Every ``snapshot_every`` the
engine's state is snapshotted with the sequence of the last message it
covers. After a takeover, what the previous holder did since its last
snapshot is replayed: its findings were stored idempotently per (key,
detector, window), so replaying them writes nothing twice, and no event is
counted twice because the state restored is exactly the state *at* that
sequence.

A worker that loses its lease (a renewal refused) stops at once without a
snapshot: the new holder owns the partition's state from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keyops.stream import codec
from keyops.stream.base import Lease, Message, Snapshot, StreamUnavailable, UsageStream
from keyops.stream.partitions import lease_name

log = logging.getLogger("keyops.stream.workers")

#: ``detection.replay_session(dry_run=False)``: a fresh engine over the inventory.
SessionFactory = Callable[[], Any]
Encoder = Callable[[Any], bytes]
Restorer = Callable[[Any, bytes], None]


@dataclass
class PartitionState:
    partition: int
    lease: Lease
    task: asyncio.Task[None] | None = None
    #: Sequence of the last message fed to the engine.
    last_seq: int = 0
    #: Sequence the last stored snapshot covers.
    snapshot_seq: int = 0
    events: int = 0
    #: The partition's detection session (its own engine), once restored.
    session: Any = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class PartitionWorkers:
    def __init__(
        self,
        stream: UsageStream,
        sessions: SessionFactory,
        *,
        owner: str,
        lease_ttl: float,
        snapshot_every: float,
        encode: Encoder,
        restore: Restorer,
        max_partitions: int = 0,
    ) -> None:
        self.stream = stream
        self.sessions = sessions
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.snapshot_every = snapshot_every
        self.encode = encode
        self.restore = restore
        self.max_partitions = max_partitions or stream.partitions
        self.held: dict[int, PartitionState] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------ leasing --

    def start(self) -> None:
        self._task = asyncio.create_task(self._lease_loop(), name="keyops-stream-leases")

    async def _lease_loop(self) -> None:
        while not self._closing:
            try:
                await self.rebalance()
            except StreamUnavailable as exc:
                log.warning("stream: lease round failed", extra={"error": str(exc)})
            except Exception:
                log.exception("stream: lease round failed")
            await asyncio.sleep(self.lease_ttl / 3)

    async def rebalance(self) -> None:
        """One round: renew what is held (drop what was lost), take what is free."""
        for partition, state in list(self.held.items()):
            if state.task is not None and state.task.done():
                # It failed (NATS lost mid-fetch, an unreadable snapshot): give
                # the partition back; this or another replica restarts it from
                # its snapshot.
                error = None if state.task.cancelled() else state.task.exception()
                if error is not None:
                    log.warning(
                        "stream: a partition worker stopped",
                        extra={"partition": partition, "error": f"{type(error).__name__}: {error}"},
                    )
                self.held.pop(partition)
                await self.stream.release(state.lease)
                continue
            if not await self.stream.renew(state.lease):
                log.warning("stream: lost the lease of a partition", extra={"partition": partition})
                state.stop.set()
                self.held.pop(partition)
        for partition in range(self.stream.partitions):
            if len(self.held) >= self.max_partitions or self._closing:
                break
            if partition in self.held:
                continue
            lease = await self.stream.acquire(lease_name(partition), self.owner)
            if lease is None:
                continue
            state = PartitionState(partition, lease)
            state.task = asyncio.create_task(self._run(state), name=f"keyops-stream-p{partition}")
            self.held[partition] = state
            log.info("stream: took a partition", extra={"partition": partition})

    # ---------------------------------------------------------- partition --

    async def _run(self, state: PartitionState) -> None:
        p = state.partition
        session = state.session = self.sessions()
        snap = await self.stream.load_snapshot(p)
        if snap is not None:
            await asyncio.to_thread(self._restore, session, snap.data)
            state.last_seq = state.snapshot_seq = snap.seq
        last_snapshot = time.monotonic()
        last_advance = time.monotonic()
        consumer = self.stream.consume(p, state.last_seq, f"p{p}")
        try:
            async for batch in consumer:
                if state.stop.is_set():
                    return  # lease lost: the new holder owns the state now
                fresh = [m for m in batch if m.seq > state.last_seq]
                if fresh:
                    await asyncio.to_thread(self._feed, session, state, fresh)
                    await self.stream.ack(batch)
                now = time.monotonic()
                if now - last_advance >= 1.0:
                    await asyncio.to_thread(session.advance)
                    last_advance = now
                if now - last_snapshot >= self.snapshot_every and state.last_seq > state.snapshot_seq:
                    await self.snapshot(state, session)
                    last_snapshot = now
                if self._closing:
                    break
        finally:
            await consumer.aclose()  # type: ignore[attr-defined]
        if not state.stop.is_set() and state.last_seq > state.snapshot_seq:
            await self.snapshot(state, session)  # a clean stop hands over its latest state

    def _restore(self, session: Any, data: bytes) -> None:
        with session._lock:
            self.restore(session.engine, data)

    def _feed(self, session: Any, state: PartitionState, messages: list[Message]) -> None:
        for message in messages:
            decoded = codec.decode(message.data)
            if isinstance(decoded, str):
                log.warning("stream: skipped an unreadable message", extra={"seq": message.seq, "error": decoded})
            else:
                events, now = decoded
                result = session.ingest(events, now=now)
                state.events += len(events) - len(result.rejected)
            state.last_seq = message.seq

    async def snapshot(self, state: PartitionState, session: Any) -> None:
        seq = state.last_seq

        def encode() -> bytes:
            with session._lock:
                return self.encode(session.engine)

        data = await asyncio.to_thread(encode)
        await self.stream.save_snapshot(state.partition, Snapshot(seq, data))
        state.snapshot_seq = seq

    # ----------------------------------------------------------- shutdown --

    async def close(self) -> None:
        """Stop consuming, snapshot what each partition holds, give the leases back."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for state in list(self.held.values()):
            if state.task is not None:
                try:
                    await asyncio.wait_for(state.task, timeout=10)
                except (Exception, asyncio.CancelledError):
                    log.warning("stream: a partition did not stop cleanly", extra={"partition": state.partition})
            await self.stream.release(state.lease)
        self.held.clear()
