"""The usage stream's interface: publish, consume a partition, snapshot, lease.

Everything above this module (the intake, the partition workers) talks to a
``UsageStream``; ``nats_js.JetStreamUsage`` is the implementation. The
contract every backend keeps:

* ``publish`` returns only once the stream has durably taken the message,
  and a message published twice with the same ``msg_id`` is stored once
  (so a client retrying a request never counts usage twice);
* within a partition, messages have increasing sequences and are delivered
  in that order from any sequence still retained;
* a lease is held by at most one owner at a time, and lapses ``ttl``
  seconds after its last renewal;
* a snapshot is stored with the sequence of the last message it covers.

Errors: ``StreamUnavailable`` whenever the backend cannot be reached or did
not answer in time; nothing else escapes (vendor errors are translated here).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass

from keyops.errors import KeyOpsError


class StreamUnavailable(KeyOpsError):
    """The stream cannot be reached or did not acknowledge in time."""


@dataclass(frozen=True)
class Message:
    partition: int
    seq: int
    data: bytes


@dataclass(frozen=True)
class Snapshot:
    #: Sequence of the last message the state covers (replay resumes after it).
    seq: int
    data: bytes


@dataclass
class Lease:
    name: str
    owner: str
    #: Backend's version of the lease record, for compare-and-set renewal.
    revision: int


class UsageStream(abc.ABC):
    partitions: int

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and make sure the stream and its buckets exist; raises StreamUnavailable."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """False while the backend is unreachable (readiness, and 503 on usage)."""

    @abc.abstractmethod
    async def publish(self, partition: int, data: bytes, msg_id: str) -> int:
        """Store one message on a partition; its sequence once acknowledged."""

    @abc.abstractmethod
    def consume(self, partition: int, after: int, consumer: str) -> AsyncIterator[list[Message]]:
        """Batches of the partition's messages with sequence > ``after``, in
        order, through a durable consumer named ``consumer`` (recreated at that
        position, so a takeover replays exactly from its snapshot)."""

    @abc.abstractmethod
    async def ack(self, messages: list[Message]) -> None:
        """Tell the backend these messages are handled (their state may still
        be unsnapshotted: the snapshot's sequence, not the ack, is what a
        takeover replays from)."""

    @abc.abstractmethod
    async def save_snapshot(self, partition: int, snapshot: Snapshot) -> None: ...

    @abc.abstractmethod
    async def load_snapshot(self, partition: int) -> Snapshot | None: ...

    @abc.abstractmethod
    async def acquire(self, name: str, owner: str) -> Lease | None:
        """The lease if nobody holds it (create-if-absent), else None."""

    @abc.abstractmethod
    async def renew(self, lease: Lease) -> bool:
        """Extend a held lease; False when it lapsed and someone else holds it now."""

    @abc.abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give a lease up (clean shutdown) so another replica takes it at once."""
