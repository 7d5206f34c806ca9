"""What ``POST /v1/usage`` does with accepted usage when ``[stream] url`` is set.

The request's events are grouped by their key's partition and published, one
message per partition, all in flight at once; the request is answered 202
only after every publish was acknowledged. Each message's id is derived from
the request body and the partition, so a client that retries the same body
(after a 503, a timeout, a lost answer) is deduplicated by the stream within
its duplicate window: usage is never counted twice for a retry.
"""

from __future__ import annotations

import asyncio
import hashlib

from keyops.detect.events import UsageEvent
from keyops.stream import codec
from keyops.stream.base import StreamUnavailable, UsageStream
from keyops.stream.partitions import partition_of


class StreamIntake:
    def __init__(self, stream: UsageStream) -> None:
        self.stream = stream

    @property
    def ready(self) -> bool:
        return self.stream.connected

    async def publish(self, events: list[tuple[str, UsageEvent]], now: float | None, body: bytes) -> int:
        """Publish (key id, event) pairs; how many were published. Raises
        ``StreamUnavailable`` unless every partition's message was acknowledged."""
        if not events:
            return 0
        n = self.stream.partitions
        groups: dict[int, list[UsageEvent]] = {}
        for key_id, event in events:
            if not event.key_ref.startswith("id:"):
                event = event._replace(key_ref=f"id:{key_id}")
            groups.setdefault(partition_of(key_id, n), []).append(event)
        digest = hashlib.sha256(body).hexdigest()[:32]
        results = await asyncio.gather(
            *(self.stream.publish(p, codec.encode(batch, now), f"{digest}.{p}") for p, batch in groups.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, StreamUnavailable):
                    raise result
                raise StreamUnavailable(f"publish failed: {type(result).__name__}") from result
        return len(events)
