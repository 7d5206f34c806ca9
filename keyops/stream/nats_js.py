"""``UsageStream`` over NATS JetStream (nats-py).

One JetStream stream ``<name>`` holds the usage, subjects ``<name>.p<N>``;
its duplicate window makes a retried publish (same ``Nats-Msg-Id``) a no-op.
Leases are keys of the KV bucket ``<name>-leases`` whose TTL is the lease
TTL: ``create`` only succeeds when the key is absent (or lapsed), renewal is
an ``update`` against the revision the owner last wrote, so two replicas can
never both believe they hold a partition for longer than one TTL. Snapshots
go to the object store ``<name>-snapshots`` (chunked, so a partition's state
may exceed NATS's 1 MB message limit), each prefixed with the 8-byte stream
sequence it covers.

Every nats-py error is translated into ``StreamUnavailable`` here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import (
    BucketNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
    ObjectNotFoundError,
)

from keyops.stream.base import Lease, Message, Snapshot, StreamUnavailable, UsageStream
from keyops.stream.partitions import subject

log = logging.getLogger("keyops.stream")
DUPLICATE_WINDOW = 120.0
FETCH_BATCH = 256


def _redact(url: str) -> str:
    """The URL without credentials (a nats://user:pass@host URL must not reach a log line)."""
    out = []
    for part in url.split(","):
        scheme, sep, rest = part.strip().partition("://")
        out.append(f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else part)
    return ",".join(out)


class JetStreamUsage(UsageStream):
    def __init__(
        self,
        url: str,
        *,
        name: str,
        partitions: int,
        lease_ttl: float,
        retention: float,
        ack_timeout: float = 2.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.name = name
        self.partitions = partitions
        self.lease_ttl = lease_ttl
        self.retention = retention
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self._nc: Any = None
        self._js: Any = None
        self._leases: Any = None
        self._snapshots: Any = None
        self._subs: dict[str, Any] = {}
        self._pending: dict[int, Any] = {}
        self._closing = False

    # --------------------------------------------------------------- setup --

    async def start(self) -> None:
        where = _redact(self.url)
        self._closing = False
        try:
            self._nc = await nats.connect(
                servers=[u.strip() for u in self.url.split(",")],
                connect_timeout=self.connect_timeout,
                allow_reconnect=True,
                # Finite for the first connect: with -1, nats-py retries an
                # unreachable server forever instead of failing the start.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnect,
                reconnected_cb=self._on_reconnect,
            )
        except (TimeoutError, NatsError, OSError) as exc:
            raise StreamUnavailable(
                f"cannot reach NATS at {where} (setting stream.url): {type(exc).__name__}; "
                f"start nats-server with JetStream (-js) or fix stream.url"
            ) from None
        self._nc.options["max_reconnect_attempts"] = -1  # once up, a lost NATS is reconnected without end
        try:
            self._js = self._nc.jetstream(timeout=self.ack_timeout)
            await self._ensure_stream()
            self._leases = await self._js.create_key_value(bucket=f"{self.name}-leases", ttl=self.lease_ttl, history=1)
            self._snapshots = await self._js.create_object_store(bucket=f"{self.name}-snapshots")
        except (TimeoutError, NatsError) as exc:
            await self.close()
            raise StreamUnavailable(
                f"NATS at {where} (setting stream.url) did not set up the stream {self.name!r}: "
                f"{type(exc).__name__}: {exc}; is JetStream enabled (nats-server -js)?"
            ) from None

    async def _ensure_stream(self) -> None:
        config = api.StreamConfig(
            name=self.name,
            subjects=[f"{self.name}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=self.retention,
            duplicate_window=DUPLICATE_WINDOW,
        )
        try:
            await self._js.stream_info(self.name)
        except NotFoundError:
            await self._js.add_stream(config)
        else:
            await self._js.update_stream(config)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        self._closing = True
        if nc is not None:
            with contextlib.suppress(TimeoutError, NatsError):
                await nc.close()

    async def destroy(self) -> None:
        """Delete the stream and its buckets (tests and benchmarks clean up)."""
        for stream in (self.name, f"KV_{self.name}-leases", f"OBJ_{self.name}-snapshots"):
            with contextlib.suppress(NotFoundError):
                await self._js.delete_stream(stream)

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats: %s", type(exc).__name__)

    async def _on_disconnect(self) -> None:
        if self._closing:
            return
        log.warning("lost the connection to NATS (stream.url); usage intake answers 503 until it is back")

    async def _on_reconnect(self) -> None:
        log.warning("reconnected to NATS")

    @property
    def connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    def _require(self) -> None:
        if not self.connected:
            raise StreamUnavailable(f"not connected to NATS at {_redact(self.url)} (setting stream.url)")

    # ------------------------------------------------------------- publish --

    async def publish(self, partition: int, data: bytes, msg_id: str) -> int:
        self._require()
        try:
            ack = await self._js.publish(
                subject(self.name, partition), data, timeout=self.ack_timeout, headers={"Nats-Msg-Id": msg_id}
            )
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"NATS did not acknowledge the publish: {type(exc).__name__}") from None
        return int(ack.seq)

    # ------------------------------------------------------------- consume --

    async def consume(self, partition: int, after: int, consumer: str) -> AsyncIterator[list[Message]]:
        self._require()
        try:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(self.name, consumer)
            config = api.ConsumerConfig(
                durable_name=consumer,
                filter_subject=subject(self.name, partition),
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                ack_policy=api.AckPolicy.ALL,
                ack_wait=60.0,
                max_ack_pending=-1,
            )
            await self._js.add_consumer(self.name, config)
            sub = await self._js.pull_subscribe_bind(durable=consumer, stream=self.name)
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"cannot create the consumer {consumer!r}: {type(exc).__name__}") from None
        self._subs[consumer] = sub
        try:
            while True:
                try:
                    raw = await sub.fetch(FETCH_BATCH, timeout=0.5)
                except TimeoutError:
                    yield []
                    continue
                except NatsError as exc:
                    if not self.connected:
                        raise StreamUnavailable("lost NATS while consuming") from None
                    raise StreamUnavailable(f"consumer {consumer!r} failed: {type(exc).__name__}") from None
                batch = []
                for msg in raw:
                    seq = int(msg.metadata.sequence.stream)
                    self._pending[seq] = msg
                    batch.append(Message(partition, seq, msg.data))
                yield batch
        finally:
            self._subs.pop(consumer, None)
            with contextlib.suppress(TimeoutError, NatsError):
                await sub.unsubscribe()

    async def ack(self, messages: list[Message]) -> None:
        if not messages:
            return
        last = self._pending.get(messages[-1].seq)
        for m in messages:
            self._pending.pop(m.seq, None)
        if last is None:
            return
        try:
            await last.ack()  # AckPolicy.ALL: acknowledges everything up to it
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"ack failed: {type(exc).__name__}") from None

    # ----------------------------------------------------------- snapshots --

    async def save_snapshot(self, partition: int, snapshot: Snapshot) -> None:
        self._require()
        try:
            await self._snapshots.put(f"p{partition}", snapshot.seq.to_bytes(8, "big") + snapshot.data)
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"snapshot of partition {partition} not stored: {type(exc).__name__}") from None

    async def load_snapshot(self, partition: int) -> Snapshot | None:
        self._require()
        try:
            result = await self._snapshots.get(f"p{partition}")
        except (ObjectNotFoundError, NotFoundError, BucketNotFoundError):
            return None
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"snapshot of partition {partition} not read: {type(exc).__name__}") from None
        data = bytes(result.data or b"")
        if len(data) < 8:
            return None
        return Snapshot(int.from_bytes(data[:8], "big"), data[8:])

    # -------------------------------------------------------------- leases --

    async def acquire(self, name: str, owner: str) -> Lease | None:
        self._require()
        try:
            revision = await self._leases.create(name, owner.encode())
        except KeyWrongLastSequenceError:
            return None
        except NotFoundError:
            # Held when the create was tried, expired by the time nats-py
            # looked why: free now, taken on the next round.
            return None
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"lease {name!r} not acquired: {type(exc).__name__}") from None
        return Lease(name, owner, int(revision))

    async def renew(self, lease: Lease) -> bool:
        self._require()
        try:
            lease.revision = int(await self._leases.update(lease.name, lease.owner.encode(), last=lease.revision))
        except KeyWrongLastSequenceError:
            return False
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"lease {lease.name!r} not renewed: {type(exc).__name__}") from None
        return True

    async def release(self, lease: Lease) -> None:
        if not self.connected:
            return
        # Lapsed or taken: then it is not ours to give back.
        with contextlib.suppress(TimeoutError, NatsError):
            await self._leases.delete(lease.name, last=lease.revision)

    async def holders(self) -> dict[str, str]:
        """Lease name -> owner, for the partitions held now (diagnostics, tests)."""
        self._require()
        out: dict[str, str] = {}
        try:
            keys = await self._leases.keys()
        except (NotFoundError, NoKeysError):
            return out
        except (TimeoutError, NatsError) as exc:
            raise StreamUnavailable(f"leases not listed: {type(exc).__name__}") from None
        for key in keys:
            try:
                entry = await self._leases.get(key)
            except NotFoundError:
                continue
            if entry.value:
                out[key] = entry.value.decode()
        return out
