"""Redis pub/sub fan-out of key changes: this process publishes the ids it
commits, and every subscribed replica polls the change log at once instead
of at its next ``server.change_poll_ms``.

The change log in the inventory stays the source of truth, so Redis being
down only costs speed; but the fan-out has to come back by itself. The
subscriber runs its own reconnect loop (redis-py's worker thread dies on the
first connection error), and after any gap it asks the verify cache for a
full rebuild, so a notification missed while the subscription was down can
never leave a revoked key valid here. Publishing never raises into the
committing request: a failure (or a skip while the breaker is open) is
counted and the change log carries the change.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from keyops.api.cache_sync import CacheSync
from keyops.api.redis_health import RedisHealth, client_options, redis_errors
from keyops.config import RedisSettings

log = logging.getLogger("keyops.api.redis")

#: How long the subscriber waits for a message before checking for stop.
_LISTEN_POLL = 0.5
#: First wait before the subscriber reconnects; it doubles up to the breaker's cooldown.
_FIRST_RETRY = 0.25


class RedisFanout:
    def __init__(self, settings: RedisSettings, sync: CacheSync, health: RedisHealth) -> None:
        import redis

        options = client_options(settings, asynchronous=False)
        self._publisher = redis.Redis.from_url(settings.url, **options)
        # The subscriber waits on its socket for messages: no read timeout there
        # (get_message has its own), but connecting is bounded like any call.
        self._subscriber = redis.Redis.from_url(settings.url, **{**options, "socket_timeout": None})
        self._channel = f"{settings.key_prefix}changes"
        self._sync = sync
        self._health = health
        self._errors = redis_errors()
        self._max_retry = max(_FIRST_RETRY, health.cooldown)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="keyops-redis-fanout", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, ids: list[str]) -> None:
        """Announce committed changes; never raises (the change log has them)."""
        health = self._health
        if not health.allow():
            health.publish_failed()
            return
        try:
            self._publisher.publish(self._channel, ",".join(ids)[:8000])
        except self._errors as exc:
            health.failed(exc)
            health.publish_failed()
            return
        health.succeeded()

    def _listen(self) -> None:
        missed = False
        retry = _FIRST_RETRY
        while not self._stop.is_set():
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                self._health.fanout_up = True
                if missed:
                    log.warning("Redis pub/sub reconnected: rebuilding the verify cache in case changes were missed")
                    self._sync.request_full_reload()
                missed, retry = False, _FIRST_RETRY
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=_LISTEN_POLL) is not None:
                        self._sync.wake()
            except Exception as exc:  # whatever broke, this loop must outlive it
                if self._health.fanout_up or not missed:
                    log.warning(
                        "Redis pub/sub connection lost (%s): reconnecting; key changes still arrive "
                        "through the change log",
                        type(exc).__name__,
                        exc_info=not isinstance(exc, self._errors),
                    )
                self._health.fanout_up = False
                missed = True
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
            self._stop.wait(retry)
            retry = min(self._max_retry, retry * 2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
        self._health.fanout_up = False
        for client in (self._publisher, self._subscriber):
            with contextlib.suppress(Exception):
                client.close()


def start_fanout(settings: RedisSettings, sync: CacheSync, health: RedisHealth) -> RedisFanout:
    fanout = RedisFanout(settings, sync, health)
    fanout.start()
    return fanout
