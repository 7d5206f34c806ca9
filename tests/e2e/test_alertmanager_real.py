"""Debian's real Prometheus Alertmanager against a real ``keyops serve``.

Alertmanager re-sends a group's notification every ``repeat_interval`` with
the same body. keyops acts on the first delivery (the key is suspended) and
must answer every repeat with a 2xx saying it was a duplicate: an error
answer is counted in ``alertmanager_notifications_failed_total``, which the
usual Alertmanager alert rules page someone for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from keyops.bootstrap import App
from keyops.inventory import models
from keyops.lifecycle.tokens import TokenService
from tests.e2e.serving import Served, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
BEARER = "alertmanager-to-keyops-" + "b" * 24

CONFIG = """\
route:
  receiver: keyops
  group_by: [alertname, keyops_key]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: keyops
    webhook_configs:
      - url: {url}
        send_resolved: false
        http_config:
          authorization:
            type: Bearer
            credentials: {bearer}
"""


class Alertmanager:
    """One Alertmanager process on a free loopback port, clustering off."""

    def __init__(self, workdir: Path, keyops_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / "alertmanager.log"
        config = workdir / "alertmanager.yml"
        config.write_text(CONFIG.format(url=f"{keyops_url}/v1/alerts/alertmanager", bearer=BEARER))
        self.args = [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=5)

    def start(self) -> Alertmanager:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_for(self._ready, timeout=20, interval=0.05, what="Alertmanager to be ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Alertmanager exited with {self.proc.returncode}: {self.logs()[-2000:]}")
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def counter(self, name: str, integration: str = "webhook") -> float:
        """Sum of ``name`` over every series of ``integration`` on /metrics."""
        pattern = re.compile(rf'^{name}\{{[^}}]*integration="{integration}"[^}}]*\}} (\S+)$', re.MULTILINE)
        return sum(float(v) for v in pattern.findall(self.http.get("/metrics").text))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()


@pytest.fixture
def alertmanager_for(tmp_path: Path) -> Iterator[Callable[[Served], Alertmanager]]:
    if shutil.which(ALERTMANAGER) is None:
        pytest.skip(f"{ALERTMANAGER} is not installed (apt-get install prometheus-alertmanager; .ci/run does)")
    started: list[Alertmanager] = []

    def start(server: Served) -> Alertmanager:
        workdir = tmp_path / "alertmanager"
        workdir.mkdir()
        manager = Alertmanager(workdir, server.url)
        started.append(manager)
        return manager.start()

    yield start
    for manager in started:
        manager.close()


def _counts(app: App, key_id: str) -> tuple[int, int, int]:
    """Findings, inbound alert rows and suspension audit events for the key."""
    with app.engine.connect() as conn:
        findings = conn.execute(
            select(func.count()).select_from(models.Finding).where(models.Finding.key_id == key_id)
        ).scalar_one()
        inbound = conn.execute(
            select(func.count()).select_from(models.InboundAlert).where(models.InboundAlert.source == "alertmanager")
        ).scalar_one()
        suspended = conn.execute(
            select(func.count())
            .select_from(models.AuditEvent)
            .where(models.AuditEvent.key_id == key_id, models.AuditEvent.action == "key.suspended")
        ).scalar_one()
    return int(findings), int(inbound), int(suspended)


def test_repeats_from_a_real_alertmanager_are_duplicates_not_failures(
    servers: Callable[..., Served], inventory: App, alertmanager_for: Callable[[Served], Alertmanager]
) -> None:
    key = inventory.keys.issue("payments/am-e2e", owner="team", profile="batch", policy="standard", actor="test")
    token = TokenService(inventory.sessions).create("gateway", "verify", actor="test")[1]
    server = servers(KEYOPS_ALERTS_ALERTMANAGER_ENABLED="true", KEYOPS_ALERTS_ALERTMANAGER_BEARER_TOKEN=BEARER)
    manager = alertmanager_for(server)
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "KeyAbused", "severity": "critical", "keyops_key": "payments/am-e2e"},
        "annotations": {"summary": "requests from an unknown network"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }
    posted = manager.http.post("/api/v2/alerts", json=[alert])
    assert posted.status_code == 200, posted.text

    def state() -> str:
        with inventory.sessions() as session:
            row = session.get(models.Key, key.key.id)
            return row.state if row is not None else "gone"

    wait_for(lambda: state() == "suspended", timeout=15, interval=0.1, what="keyops to suspend the key")
    # The first notification and at least two repeats of the same group.
    wait_for(
        lambda: manager.counter("alertmanager_notifications_total") >= 3,
        timeout=20,
        interval=0.2,
        what="Alertmanager to notify three times",
    )
    sent = manager.counter("alertmanager_notifications_total")

    def duplicates() -> float:
        metrics = server.http.get("/metrics").text
        found = re.search(r'^keyops_alerts_total\{source="alertmanager",verdict="duplicate"\} (\S+)$', metrics, re.M)
        return float(found.group(1)) if found else 0.0

    # Alertmanager counts a notification as it starts sending it: wait for keyops to answer each.
    wait_for(lambda: duplicates() >= sent - 1, timeout=10, interval=0.1, what=f"{sent - 1:.0f} duplicates answered")
    failed = manager.counter("alertmanager_notifications_failed_total")
    assert failed == 0, f"Alertmanager counted {failed} failed notifications of {sent}: {manager.logs()[-3000:]}"
    assert "unexpected status code" not in manager.logs()
    # One delivery acted on; every repeat recognised as the same delivery.
    assert _counts(inventory, key.key.id) == (1, 1, 1)
    assert server.verify(token, key.plaintext)["code"] == "SUSPENDED"
