"""Building the stream parts from ``[stream]`` (called by the composition root).

Nothing connects here: ``UsageStream.start`` does, in the daemon's lifespan.
The NATS client is imported only when a stream is configured, so a single
node needs no ``nats-py``.
"""

from __future__ import annotations

from typing import Any

from keyops.detect.snapshot import encode_engine, restore_engine
from keyops.domain.durations import parse_duration
from keyops.errors import ConfigError
from keyops.stream.base import UsageStream
from keyops.stream.settings import StreamSettings
from keyops.stream.workers import PartitionWorkers


def build_stream(settings: StreamSettings) -> UsageStream:
    try:
        from keyops.stream.nats_js import JetStreamUsage
    except ImportError:
        raise ConfigError("setting stream.url needs the NATS client: pip install 'keyops[nats]'") from None
    return JetStreamUsage(
        settings.url,
        name=settings.name,
        partitions=settings.partitions,
        lease_ttl=float(parse_duration(settings.lease_ttl)),
        retention=float(parse_duration(settings.retention)),
        ack_timeout=settings.ack_timeout_ms / 1000.0,
    )


def build_workers(stream: UsageStream, detection: Any, settings: StreamSettings, *, owner: str) -> PartitionWorkers:
    """This replica's partition workers: each partition gets a fresh detection
    session (its own engine) over the shared inventory, checkpointed with the
    engine snapshot format."""
    return PartitionWorkers(
        stream,
        lambda: detection.replay_session(dry_run=False),
        owner=owner,
        lease_ttl=float(parse_duration(settings.lease_ttl)),
        snapshot_every=float(parse_duration(settings.snapshot_every)),
        encode=lambda engine: encode_engine(engine),
        restore=lambda engine, data: restore_engine(engine, data),
        max_partitions=settings.max_partitions_per_replica,
    )
