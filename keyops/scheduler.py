"""The daemon's scheduled jobs (APScheduler 3, in-memory job store).

Every replica runs every job on its own schedule. They never share a job
store (APScheduler's FAQ: a shared store means duplicate and missed runs);
the coordination is in the database instead: rotations, retirements,
expiries and outbox deliveries are claimed with row leases / ``SKIP LOCKED``
(or SQLite's write lock), so N replicas do each piece of work once.

Each job is a few lines calling ``lifecycle/`` (or the notify dispatcher),
timed and counted for ``/metrics``; a failing job logs and waits for its
next run, it never stops the scheduler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import delete, update

from keyops.api.metrics import Metrics
from keyops.bootstrap import App
from keyops.config import SchedulerSettings
from keyops.domain.durations import parse_duration
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle.expiry import expire_due
from keyops.lifecycle.retention import prune_history

log = logging.getLogger("keyops.scheduler")
CHANGE_LOG_RETENTION = timedelta(hours=1)


class Jobs:
    """The job bodies, bound to one application and one worker id."""

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id
        self.actor = f"keyops:scheduler:{worker_id}"

    def _rotations(self) -> Any:
        return getattr(self.app, "rotations", None)

    def rotate_due(self) -> None:
        engine = self._rotations()
        if engine is not None:
            engine.rotate_due(worker_id=self.worker_id)

    def retire_ended_grace(self) -> None:
        engine = self._rotations()
        if engine is not None:
            engine.retire_ended_grace(worker_id=self.worker_id)

    def resume_stuck(self) -> None:
        engine = self._rotations()
        if engine is not None:
            engine.resume(worker_id=self.worker_id)

    def reconcile(self) -> None:
        engine = self._rotations()
        if engine is not None:
            report = engine.reconcile(repair=False, actor=self.actor)
            drift = getattr(report, "drift", None)
            if drift:
                log.warning("reconcile found drift", extra={"rows": len(drift)})

    def expire_keys(self) -> None:
        expired = expire_due(self.app.sessions, actor=self.actor)
        if expired:
            log.info("keys expired", extra={"count": expired})

    def prune(self) -> None:
        retention = timedelta(seconds=parse_duration(self.app.settings.scheduler.usage_retention))
        now = utcnow()
        with self.app.engine.begin() as conn:
            conn.execute(delete(models.UsageMinute).where(models.UsageMinute.minute < now - retention))
            conn.execute(delete(models.KeyChange).where(models.KeyChange.changed_at < now - CHANGE_LOG_RETENTION))
        prune_history(self.app.engine, self.app.sessions, self.app.settings.retention, actor=self.actor, now=now)

    def release_leases(self) -> int:
        """At shutdown: let any replica (or our next start) resume our
        unfinished rotations now instead of after the lease runs out. The
        owner is cleared too: a step of ours still in flight checks the owner
        under the row lock before it records anything, so it gives up instead
        of renewing the lease (steps are idempotent either way)."""
        try:
            with self.app.engine.begin() as conn:
                result = conn.execute(
                    update(models.Rotation)
                    .where(models.Rotation.lease_owner == self.worker_id, models.Rotation.status == "running")
                    .values(lease_owner=None, lease_expires_at=utcnow())
                )
                return int(result.rowcount or 0)
        except Exception:
            log.warning("could not release rotation leases; they expire on their own", exc_info=True)
            return 0

    def advance_detection(self) -> None:
        """Release the detection engine's buffered events by wall clock."""
        detection = getattr(self.app, "detection", None)
        if detection is not None:
            detection.advance()

    def checkpoint_detection(self) -> None:
        """Write the detection engine's state to the inventory."""
        checkpoints = getattr(self.app, "checkpoints", None)
        if checkpoints is not None:
            checkpoints.save()

    def deliver_outbox(self) -> None:
        notify = getattr(self.app, "notify", None)
        if notify is not None:
            notify.deliver_due(utcnow(), self.worker_id)

    def resume_alert_actions(self) -> None:
        """Apply actions that a process recorded for an alert but died before
        applying (recording and acting are separate transactions)."""
        alerts = getattr(self.app, "alerts", None)
        if alerts is not None:
            alerts.resume_unfinished()


def _timed(name: str, body: Callable[[], None], metrics: Metrics) -> Callable[[], None]:
    def run() -> None:
        started = time.monotonic()
        failed = False
        try:
            body()
        except Exception:
            failed = True
            log.exception("scheduled job failed", extra={"job": name})
        finally:
            metrics.job_done(name, time.monotonic() - started, failed)

    return run


class Scheduler:
    """Owns the BackgroundScheduler of one replica."""

    def __init__(
        self,
        app: App,
        *,
        worker_id: str,
        metrics: Metrics,
        stop_timeout: float,
        on_abandon: Callable[[], None] | None = None,
    ) -> None:
        self.jobs = Jobs(app, worker_id)
        self.on_abandon = on_abandon
        self.metrics = metrics
        self.stop_timeout = stop_timeout
        self._scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._add_jobs(app.settings.scheduler)

    def _every(self, value: str) -> float:
        return float(max(1, parse_duration(value)))

    def _add_jobs(self, cfg: SchedulerSettings) -> None:
        plan: list[tuple[str, Callable[[], None], str, bool]] = [
            ("resume_stuck", self.jobs.resume_stuck, cfg.resume_every, True),
            ("rotate_due", self.jobs.rotate_due, cfg.rotate_due_every, True),
            ("retire_ended_grace", self.jobs.retire_ended_grace, cfg.retire_grace_every, True),
            ("expire_keys", self.jobs.expire_keys, cfg.expire_every, True),
            ("deliver_outbox", self.jobs.deliver_outbox, cfg.deliver_every, True),
            ("resume_alert_actions", self.jobs.resume_alert_actions, cfg.resume_every, False),
            ("advance_detection", self.jobs.advance_detection, "1s", True),
            ("prune", self.jobs.prune, cfg.prune_every, False),
            ("reconcile", self.jobs.reconcile, cfg.reconcile_every, False),
        ]
        if getattr(self.jobs.app, "checkpoints", None) is not None:
            every = self.jobs.app.settings.detection.checkpoint_every
            plan.append(("checkpoint_detection", self.jobs.checkpoint_detection, every, False))
        now = utcnow()
        for name, body, every, at_start in plan:
            seconds = self._every(every)
            extra: dict[str, Any] = {"next_run_time": now} if at_start else {}
            self._scheduler.add_job(
                self._tracked(name, _timed(name, body, self.metrics)),
                "interval",
                seconds=seconds,
                jitter=max(0.0, min(seconds * 0.1, 30.0)),
                id=name,
                name=name,
                **extra,
            )

    def _tracked(self, name: str, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with self._lock:
                self._running.add(name)
            try:
                body()
            finally:
                with self._lock:
                    self._running.discard(name)

        return run

    def start(self) -> None:
        # "skipped: maximum number of running instances" is normal when a run
        # outlasts its interval; keep APScheduler's own chatter out of the logs.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self._scheduler.start()
        log.info("scheduler started", extra={"worker_id": self.jobs.worker_id})

    def running_jobs(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def stop(self) -> None:
        """Take no new runs; give running ones ``stop_timeout`` seconds. A job
        still running then is abandoned: the rotation engine persists every
        step, so its rotations are resumed by the next start (or another
        replica) once their lease expires."""
        self._scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.stop_timeout
        while self.running_jobs() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.running_jobs()
        if "checkpoint_detection" not in left:
            # Requests are drained: the engine's last state, for the next start.
            _timed("checkpoint_detection", self.jobs.checkpoint_detection, self.metrics)()
        released = self.jobs.release_leases()
        if not left:
            log.info("scheduler stopped", extra={"leases_released": released})
            return
        log.warning(
            "stopping with jobs still running; their work resumes on the next start",
            extra={"jobs": left, "leases_released": released},
        )
        if self.on_abandon is not None:
            # The owner ends the process now (``keyops serve``): the job
            # threads cannot be interrupted, and every step they would still
            # take would renew a lease the next start then has to wait out.
            self.on_abandon()
