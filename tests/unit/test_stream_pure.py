"""The stream's pure parts: the wire format of a usage batch, the partition
mapping, and the [stream] settings' one-line errors."""

from __future__ import annotations

import orjson
import pytest

from keyops.config import load_settings
from keyops.detect.events import UsageEvent
from keyops.errors import ConfigError
from keyops.stream import codec
from keyops.stream.partitions import partition_of, subject

EVENT = UsageEvent(
    1793491200.25, "id:k1", "10.0.0.7", "10.0.0.0/24", "/v1/chat", 200, 35, 120, 80, (1, 2, 3), "sdk/1", "You are"
)


def test_a_batch_round_trips_exactly() -> None:
    data = codec.encode([EVENT, EVENT._replace(sketch=())], 1793491201.0)
    assert codec.decode(data) == ([EVENT, EVENT._replace(sketch=())], 1793491201.0)
    assert codec.decode(codec.encode([EVENT], None)) == ([EVENT], None)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        orjson.dumps({"v": 99, "now": 1.0, "events": []}),
        orjson.dumps({"v": 1, "now": 1.0, "events": [[1, 2]]}),
        orjson.dumps({"v": 1, "now": "soon", "events": []}),
        orjson.dumps({"v": 1, "events": []}),
        orjson.dumps({"v": 1, "now": 1.0, "events": [["x", *list(EVENT)[1:]]]}),
    ],
)
def test_a_malformed_message_is_named_not_raised(data: bytes) -> None:
    assert isinstance(codec.decode(data), str)


def test_the_partition_of_a_key_is_fixed() -> None:
    # Pinned values: a change here moves every key to another partition (their state restarts).
    assert [partition_of(k, 16) for k in ("a", "b", "payments")] == [10, 10, 0]
    assert all(0 <= partition_of(str(i), 7) < 7 for i in range(200))
    assert subject("keyops-usage", 3) == "keyops-usage.p3"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KEYOPS_STREAM_URL", "http://nats:4222", "setting stream.url must be nats://"),
        ("KEYOPS_STREAM_PARTITIONS", "0", "setting stream.partitions must be between 1 and 1024"),
        ("KEYOPS_STREAM_NAME", "has space", "setting stream.name must be"),
        ("KEYOPS_STREAM_LEASE_TTL", "1s", "setting stream.lease_ttl must be between"),
        ("KEYOPS_STREAM_SNAPSHOT_EVERY", "soon", "setting stream.snapshot_every:"),
        ("KEYOPS_STREAM_ACK_TIMEOUT_MS", "5", "setting stream.ack_timeout_ms must be between"),
    ],
)
def test_bad_stream_settings_stop_with_one_line(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"KEYOPS_DATABASE_URL": "sqlite:///x.db", name: value})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_defaults() -> None:
    stream = load_settings(env={"KEYOPS_DATABASE_URL": "sqlite:///x.db"}).stream
    assert (stream.url, stream.partitions, stream.lease_ttl, stream.snapshot_every) == ("", 16, "15s", "30s")
