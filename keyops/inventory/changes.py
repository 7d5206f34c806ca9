"""Publishing key changes so every verify cache hears about them within a second.

``install(sessions)`` hooks the session factory built by ``bootstrap``: after
each flush it collects the ids of keys whose row or versions changed (and
notes changed profiles and API tokens), writes them to the ``key_changes``
log inside the same transaction, and on PostgreSQL also queues a
``pg_notify('keyops_changes', ...)`` that the server delivers at commit. So
no lifecycle code has to remember to publish: the CLI, the rotation engine
and the daemon all go through the same factory. Bulk ``UPDATE``/``DELETE``
statements on those tables cannot be attributed to keys and publish "reload
everything". After commit the ids are also published on Redis when a
publisher is installed (``set_redis_publisher``).

Readers: the change log is polled by ``keyops.api.cache`` (cheap indexed
range scan on ``seq``); PostgreSQL listeners get the NOTIFY payload first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from keyops.inventory import models
from keyops.inventory.types import utcnow

log = logging.getLogger("keyops.changes")

CHANNEL = "keyops_changes"
_PENDING = "keyops_changes_pending"
#: What a bulk UPDATE/DELETE on each watched table publishes: profiles and
#: tokens are reloaded whole anyway; a bulk change to keys or versions cannot
#: be attributed to keys, so every replica rebuilds its cache.
_BULK_MARKERS = {"keys": "all:", "key_versions": "all:", "profiles": "profile:", "api_tokens": "token:"}
#: NOTIFY payloads are capped at 8000 bytes by PostgreSQL; above this many ids
#: a single "all" is sent instead.
_MAX_NOTIFY_IDS = 150

Publisher = Callable[[list[str]], None]
_redis_publisher: Publisher | None = None


def set_redis_publisher(publisher: Publisher | None) -> None:
    """Also publish committed changes through ``publisher`` (Redis pub/sub)."""
    global _redis_publisher
    _redis_publisher = publisher


def _collect(session: Session) -> set[str]:
    found: set[str] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, models.Key):
            if obj.id:
                found.add(f"key:{obj.id}")
        elif isinstance(obj, models.KeyVersion):
            if obj.key_id:
                found.add(f"key:{obj.key_id}")
        elif isinstance(obj, models.Profile):
            found.add("profile:")
        elif isinstance(obj, models.ApiToken):
            found.add("token:")
    return found


def _after_flush(session: Session, _context: Any) -> None:
    found = _collect(session)
    if found:
        session.info.setdefault(_PENDING, set()).update(found)


def _before_commit(session: Session) -> None:
    # Flush first so the changes of this final flush are included too.
    session.flush()
    pending: set[str] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    now = utcnow()
    rows = []
    for item in sorted(pending):
        kind, _, key_id = item.partition(":")
        rows.append({"key_id": key_id or None, "kind": kind, "changed_at": now})
    session.execute(insert(models.KeyChange), rows)
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        payload = "all" if len(pending) > _MAX_NOTIFY_IDS else ",".join(sorted(pending))
        session.execute(select(text("pg_notify(:channel, :payload)")), {"channel": CHANNEL, "payload": payload})
    session.info["keyops_changes_committed"] = sorted(pending)


def _after_commit(session: Session) -> None:
    committed = session.info.pop("keyops_changes_committed", None)
    if committed and _redis_publisher is not None:
        try:
            _redis_publisher(committed)
        except Exception:  # the change log and the periodic poll still carry it
            log.warning("could not publish key changes to Redis", exc_info=True)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop("keyops_changes_committed", None)


def _on_execute(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    table = getattr(getattr(mapper, "local_table", None), "name", None)
    if table in _BULK_MARKERS:
        state.session.info.setdefault(_PENDING, set()).add(_BULK_MARKERS[table])


def install(sessions: sessionmaker[Session]) -> None:
    """Hook change publishing into every session made by ``sessions``."""
    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_commit", _after_commit)
    event.listen(sessions, "after_soft_rollback", lambda session, _tx: _after_rollback(session))
    event.listen(sessions, "do_orm_execute", _on_execute)
