"""``/metrics``: Prometheus text exposition, written by hand (no client library
on the hot path: counters are plain dict increments).

Two kinds of series:

* per process (sum them across replicas): ``keyops_verify_total{code}``,
  ``keyops_http_requests_total{route,status}``, ``keyops_alerts_total{source,verdict}``,
  ``keyops_webhook_signature_failures_total{source}``, ``keyops_usage_events_total{result}``,
  ``keyops_usage_events_rejected_total{reason}`` (by intake or by detection; a fixed label set),
  ``keyops_job_duration_seconds{job}`` (histogram), ``keyops_job_failures_total{job}``,
  ``keyops_verify_cache_keys``, ``keyops_keys{state}`` (this replica's cache);
  with Redis configured, ``keyops_redis_up``, ``keyops_redis_fanout_up``
  (gauges, 0/1), ``keyops_redis_fallbacks_total`` and
  ``keyops_redis_publish_failures_total``;
* read from the inventory, so the same on every replica (use ``max`` across
  replicas, not ``sum``): ``keyops_rotations_total{outcome}``,
  ``keyops_findings_total{severity}``, ``keyops_keys_overdue``,
  ``keyops_rotations_stuck``. These are cached for a few seconds so scrapes
  stay cheap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from keyops.detect.refusals import REASONS
from keyops.inventory import models
from keyops.inventory.types import utcnow

if TYPE_CHECKING:
    from keyops.api.redis_health import RedisHealth

JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
#: A key is overdue when its rotation was due this long ago and has not happened.
OVERDUE_AFTER = timedelta(minutes=15)
_DB_TTL = 10.0


@dataclass
class Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(JOB_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(JOB_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1


@dataclass
class Metrics:
    verify: dict[str, int] = field(default_factory=dict)
    http: dict[tuple[str, int], int] = field(default_factory=dict)
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)
    signature_failures: dict[str, int] = field(default_factory=dict)
    usage_events: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "rejected": 0})
    #: Usage events refused, by reason code (every code present from the start).
    usage_rejections: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    job_durations: dict[str, Histogram] = field(default_factory=dict)
    job_failures: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _db_cache: tuple[float, dict[str, Any]] | None = None

    def count_usage(self, answer: dict[str, Any]) -> None:
        """Count one ``POST /v1/usage`` answer: events kept or not, and every
        refusal (by the intake or by detection) by its reason."""
        self.usage_events["accepted"] += answer["accepted"]
        self.usage_events["rejected"] += len(answer["rejected"])
        detection = answer.get("detection") or {"rejected": []}
        reasons = self.usage_rejections
        for refusal in (*answer["rejected"], *detection["rejected"]):
            reasons[refusal["reason"]] += 1

    def job_done(self, job: str, seconds: float, failed: bool) -> None:
        with self._lock:
            self.job_durations.setdefault(job, Histogram()).observe(seconds)
            self.job_failures[job] = self.job_failures.get(job, 0) + (1 if failed else 0)

    def inventory_figures(self, engine: Engine) -> dict[str, Any]:
        cached = self._db_cache
        if cached is not None and time.monotonic() - cached[0] < _DB_TTL:
            return cached[1]
        now = utcnow()
        k, r, f = models.Key, models.Rotation, models.Finding
        with engine.connect() as conn:
            rotations = dict(conn.execute(select(r.status, func.count()).group_by(r.status)).all())
            findings = dict(conn.execute(select(f.severity, func.count()).group_by(f.severity)).all())
            overdue = conn.execute(
                select(func.count()).where(k.state == "active", k.next_rotation_at <= now - OVERDUE_AFTER)
            ).scalar_one()
            stuck = conn.execute(
                select(func.count()).where(r.status == "running", r.lease_expires_at < now)
            ).scalar_one()
        figures = {"rotations": rotations, "findings": findings, "overdue": overdue, "stuck": stuck}
        self._db_cache = (time.monotonic(), figures)
        return figures


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(out: list[str], name: str, kind: str, help_text: str, samples: list[tuple[dict[str, Any], float]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    series = name
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        out.append(f"{series}{{{text}}} {value:g}" if text else f"{series} {value:g}")


def _redis(out: list[str], health: RedisHealth) -> None:
    _family(out, "keyops_redis_up", "gauge", "1 when this process's last Redis call answered.", [({}, health.up)])
    _family(
        out,
        "keyops_redis_fanout_up",
        "gauge",
        "1 while this process's Redis pub/sub subscription (change fan-out) is connected.",
        [({}, health.fanout_up)],
    )
    _family(
        out,
        "keyops_redis_fallbacks_total",
        "counter",
        "Rate-limit decisions taken from per-process buckets because Redis was down (this process).",
        [({}, health.fallbacks)],
    )
    _family(
        out,
        "keyops_redis_publish_failures_total",
        "counter",
        "Key-change notifications not published to Redis; the change log still carries them (this process).",
        [({}, health.publish_failures)],
    )


def render(
    metrics: Metrics,
    *,
    cache_states: dict[str, int],
    cache_keys: int,
    figures: dict[str, Any],
    redis: RedisHealth | None = None,
) -> str:
    out: list[str] = []
    _family(
        out,
        "keyops_keys",
        "gauge",
        "Keys by state (this replica's verify cache).",
        [({"state": s}, n) for s, n in sorted(cache_states.items())],
    )
    _family(out, "keyops_verify_cache_keys", "gauge", "Keys held in this replica's verify cache.", [({}, cache_keys)])
    _family(
        out,
        "keyops_verify_total",
        "counter",
        "Verify answers by code (this process).",
        [({"code": c}, n) for c, n in sorted(metrics.verify.items())],
    )
    _family(
        out,
        "keyops_http_requests_total",
        "counter",
        "HTTP requests by route template and status (this process).",
        [({"route": r, "status": s}, n) for (r, s), n in sorted(metrics.http.items())],
    )
    _family(
        out,
        "keyops_alerts_total",
        "counter",
        "Inbound alert deliveries by source and verdict (this process).",
        [({"source": s, "verdict": v}, n) for (s, v), n in sorted(metrics.alerts.items())],
    )
    _family(
        out,
        "keyops_webhook_signature_failures_total",
        "counter",
        "Inbound deliveries refused for a bad or missing signature (this process).",
        [({"source": s}, n) for s, n in sorted(metrics.signature_failures.items())],
    )
    _family(
        out,
        "keyops_usage_events_total",
        "counter",
        "Usage events accepted or rejected (this process).",
        [({"result": r}, n) for r, n in sorted(metrics.usage_events.items())],
    )
    _family(
        out,
        "keyops_usage_events_rejected_total",
        "counter",
        "Usage events refused by the intake or by the detection engine, by reason (this process).",
        [({"reason": r}, n) for r, n in sorted(metrics.usage_rejections.items())],
    )
    _family(
        out,
        "keyops_rotations_total",
        "counter",
        "Rotations by outcome (from the inventory: same on every replica, use max).",
        [({"outcome": o}, n) for o, n in sorted(figures["rotations"].items())],
    )
    _family(
        out,
        "keyops_findings_total",
        "counter",
        "Findings by severity (from the inventory: same on every replica, use max).",
        [({"severity": s}, n) for s, n in sorted(figures["findings"].items())],
    )
    _family(
        out,
        "keyops_keys_overdue",
        "gauge",
        f"Active keys whose rotation was due over {int(OVERDUE_AFTER.total_seconds() // 60)} minutes ago.",
        [({}, figures["overdue"])],
    )
    _family(
        out,
        "keyops_rotations_stuck",
        "gauge",
        "Running rotations whose worker lease expired.",
        [({}, figures["stuck"])],
    )
    _family(
        out,
        "keyops_job_failures_total",
        "counter",
        "Scheduled job runs that raised (this process).",
        [({"job": j}, n) for j, n in sorted(metrics.job_failures.items())],
    )
    out.append("# HELP keyops_job_duration_seconds Duration of scheduled job runs (this process).")
    out.append("# TYPE keyops_job_duration_seconds histogram")
    for job, hist in sorted(metrics.job_durations.items()):
        for bound, count in zip(JOB_BUCKETS, hist.buckets, strict=True):
            out.append(f'keyops_job_duration_seconds_bucket{{job="{_label(job)}",le="{bound:g}"}} {count}')
        out.append(f'keyops_job_duration_seconds_bucket{{job="{_label(job)}",le="+Inf"}} {hist.count}')
        out.append(f'keyops_job_duration_seconds_sum{{job="{_label(job)}"}} {hist.total:g}')
        out.append(f'keyops_job_duration_seconds_count{{job="{_label(job)}"}} {hist.count}')
    if redis is not None:
        _redis(out, redis)
    return "\n".join(out) + "\n"
