"""Detection checkpoints through the real inventory (SQLite and PostgreSQL):
a restored engine replaying the events after its checkpoint stores no
finding twice, applies no action twice and tells nobody twice; a bad
checkpoint is one log line and a fresh start."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import func, select, update

from keyops.bootstrap import App
from keyops.detect.events import UsageEvent
from keyops.inventory import models
from keyops.lifecycle.checkpoint import EngineCheckpoints
from keyops.lifecycle.detection import DetectionService
from tests.traffic import extraction


def _issue(app: App, count: int = 6) -> list[str]:
    return [
        app.keys.issue(f"team{i}/app", owner=f"owner{i}", profile="interactive", policy="standard", actor="t").key.id
        for i in range(count)
    ]


def _feed(service: DetectionService, events: list[UsageEvent]) -> tuple[list[Any], list[Any]]:
    findings: list[Any] = []
    actions: list[Any] = []
    for i in range(0, len(events), 500):
        result = service.ingest(events[i : i + 500])
        assert not result.rejected, result.rejected[:3]
        assert not result.unrecorded
        findings += result.findings
        actions += result.actions
    return findings, actions


def _counts(app: App) -> dict[str, int]:
    with app.sessions() as session:
        return {
            "findings": session.scalar(select(func.count()).select_from(models.Finding)) or 0,
            "actions": session.scalar(
                select(func.count())
                .select_from(models.AuditEvent)
                .where(models.AuditEvent.action == "detection.action")
            )
            or 0,
            "cases": session.scalar(select(func.count()).select_from(models.Case)) or 0,
            "outbox": session.scalar(select(func.count()).select_from(models.OutboxEvent)) or 0,
            "suspended": session.scalar(
                select(func.count()).select_from(models.Key).where(models.Key.state == "suspended")
            )
            or 0,
        }


def test_replay_after_restore_stores_and_applies_nothing_twice(app: App) -> None:
    events = extraction.stream(_issue(app), hours=0.6, gap=4.0)
    # Seven minutes in: the first findings and actions come at 10 and 15.
    cut = next(i for i, e in enumerate(events) if e.ts >= extraction.T0 + 420)
    checkpoints = EngineCheckpoints(app.sessions, app.detection, name="local")
    _feed(app.detection, events[:cut])
    written = checkpoints.save()
    assert written is not None and written.keys == 6 and written.size > 0
    # The process goes on past its checkpoint, stores and acts, then dies.
    findings, actions = _feed(app.detection, events[cut:])
    assert actions and any(f.detector == "coordinated" for f in findings), "the events after the cut are acted on"
    before = _counts(app)
    assert before["suspended"] > 0

    # The next start restores the checkpoint; the same events come again.
    restarted = app.detection.replay_session(dry_run=False)
    assert EngineCheckpoints(app.sessions, restarted, name="local").restore()
    again, again_actions = _feed(restarted, events[cut:])
    assert [f.identity() for f in again] == [f.identity() for f in findings]
    assert [f.id for f in again] == [f.id for f in findings], "replayed findings are the stored rows"
    assert all(a.outcome == "already applied before a restart" for a in again_actions)
    assert _counts(app) == before


def test_learned_keys_come_back_learned(app: App) -> None:
    events = extraction.stream(_issue(app, 2), hours=0.2)
    _feed(app.detection, events)
    assert all(st.learned for st in app.detection.engine.keys.values())
    EngineCheckpoints(app.sessions, app.detection).save()
    restarted = app.detection.replay_session(dry_run=False)
    assert EngineCheckpoints(app.sessions, restarted).restore()
    keys = restarted.engine.keys
    assert len(keys) == 2 and all(st.learned for st in keys.values())
    assert {k: st.vol_n for k, st in keys.items()} == {k: st.vol_n for k, st in app.detection.engine.keys.items()}


@pytest.mark.parametrize("data", [b"KOCK\x09" + b"\x00" * 40, b"KOCK\x01" + b"\x78\x9c" + b"\xff" * 100])
def test_a_bad_checkpoint_is_one_line_and_a_fresh_start(
    app: App, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    events = extraction.stream(_issue(app, 2), hours=0.1)
    _feed(app.detection, events)
    checkpoints = EngineCheckpoints(app.sessions, app.detection)
    assert checkpoints.save() is not None
    with app.sessions.begin() as session:
        session.execute(update(models.DetectionCheckpoint).values(data=data))
    restarted = app.detection.replay_session(dry_run=False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="keyops"):
        assert not EngineCheckpoints(app.sessions, restarted).restore()
    lines = [r for r in caplog.records if r.name.startswith("keyops")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "detection checkpoint unreadable" in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert not restarted.engine.keys and restarted.engine.processed == 0
    # ... and detection works from scratch, the next checkpoint replacing the bad row.
    _feed(restarted, events)
    assert EngineCheckpoints(app.sessions, restarted).save() is not None
    assert EngineCheckpoints(app.sessions, app.detection.replay_session(dry_run=False)).restore()


def test_no_checkpoint_yet_starts_learning(app: App) -> None:
    assert not EngineCheckpoints(app.sessions, app.detection, name="never-written").restore()
    assert not app.detection.engine.keys


def test_the_scheduler_checkpoints_when_it_stops(app: App) -> None:
    from keyops.api.metrics import Metrics
    from keyops.scheduler import Scheduler

    _feed(app.detection, extraction.stream(_issue(app, 1), hours=0.05))
    assert app.checkpoints is not None  # detection.checkpoint_every defaults to 30s
    scheduler = Scheduler(app, worker_id="t", metrics=Metrics(), stop_timeout=5)
    scheduler.start()
    scheduler.stop()  # long before the first periodic checkpoint
    with app.sessions() as session:
        row = session.execute(select(models.DetectionCheckpoint)).scalar_one()
    assert row.name == "local" and row.keys == 1 and row.size == len(row.data)
    restarted = app.detection.replay_session(dry_run=False)
    assert EngineCheckpoints(app.sessions, restarted).restore()
    assert list(restarted.engine.keys) == list(app.detection.engine.keys)
