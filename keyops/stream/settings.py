"""The ``[stream]`` settings: usage past one node, over NATS JetStream.

They live beside the stream code (``keyops.config`` only finds, reads and
validates them), so the stream package never imports the configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keyops.domain.durations import parse_duration
from keyops.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class StreamSettings:
    """Empty ``url``: one node, usage is judged in the process that received it."""

    #: nats://host:4222 (several, comma-separated, for a NATS cluster); empty = no stream.
    url: str = ""
    #: How many partitions keys are hashed into. Fixed for the life of a stream:
    #: changing it moves keys between partitions (their state starts over).
    partitions: int = 16
    #: The JetStream stream's name; the subjects are ``<name>.p<N>``.
    name: str = "keyops-usage"
    #: A partition's lease lives this long without renewal; a killed replica's
    #: partitions are taken over within it.
    lease_ttl: str = "15s"
    #: How often a partition's state is snapshotted with its stream sequence.
    snapshot_every: str = "30s"
    #: How long the stream keeps usage (replay after a takeover reads at most this far back).
    retention: str = "7d"
    #: Seconds to wait for NATS to acknowledge a publish before POST /v1/usage answers 503.
    ack_timeout_ms: int = 2000
    #: How many partitions one replica may own at once (0 = no limit).
    max_partitions_per_replica: int = 0


def validate(stream: StreamSettings) -> None:
    """One line naming the setting for anything wrong (the program stops at start)."""
    if stream.url and not all(u.strip().startswith(("nats://", "tls://")) for u in stream.url.split(",")):
        raise ConfigError("setting stream.url must be nats://HOST:PORT (comma-separated for a cluster), or empty")
    if not 1 <= stream.partitions <= 1024:
        raise ConfigError(f"setting stream.partitions must be between 1 and 1024, got {stream.partitions}")
    if not _NAME.match(stream.name):
        raise ConfigError("setting stream.name must be 1-64 letters, digits, '-' or '_'")
    for name, low, high in (("lease_ttl", 2, 600), ("snapshot_every", 1, 86400), ("retention", 60, 365 * 86400)):
        try:
            seconds = parse_duration(getattr(stream, name))
        except ValueError as exc:
            raise ConfigError(f"setting stream.{name}: {exc}") from None
        if not low <= seconds <= high:
            raise ConfigError(f"setting stream.{name} must be between {low}s and {high}s")
    if not 50 <= stream.ack_timeout_ms <= 60000:
        raise ConfigError(f"setting stream.ack_timeout_ms must be between 50 and 60000, got {stream.ack_timeout_ms}")
    if stream.max_partitions_per_replica < 0:
        raise ConfigError("setting stream.max_partitions_per_replica must be 0 (no limit) or more")
