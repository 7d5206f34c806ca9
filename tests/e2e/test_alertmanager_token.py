"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) whose
webhook credential is a keyops API token, against ``keyops serve`` with
``alerts.alertmanager.require_token``: a token with scope
``alerts:alertmanager`` suspends the key and Alertmanager counts no failed
notification; a token for another scope is refused (403) and nothing is
recorded, and Alertmanager counts the failures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from keyops.bootstrap import App
from keyops.inventory import models
from tests.e2e.serving import Served, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Alertmanager:
    """One Alertmanager process sending every alert to keyops with ``token``."""

    def __init__(self, directory: Path, keyops_url: str, token: str) -> None:
        assert ALERTMANAGER is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir()
        config = {
            "route": {
                "receiver": "keyops",
                "group_by": ["alertname", "keyops_key"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "keyops",
                    "webhook_configs": [
                        {
                            "url": f"{keyops_url}/v1/alerts/alertmanager",
                            "send_resolved": False,
                            "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                        }
                    ],
                }
            ],
        }
        (directory / "alertmanager.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = (directory / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={directory / 'alertmanager.yml'}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_for(self._ready, timeout=30, interval=0.05, what="Alertmanager to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"Alertmanager exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def fire(self, key_name: str) -> None:
        alert = {"labels": {"alertname": "KeyopsVolumeAnomaly", "severity": "critical", "keyops_key": key_name}}
        answer = httpx.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=5)
        assert answer.status_code == 200, answer.text

    def webhook_counter(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        match = re.search(rf'^alertmanager_{name}_total\{{integration="webhook"\}} (\S+)$', text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[Callable[[str, str], Alertmanager]]:
    if ALERTMANAGER is None:
        pytest.skip("prometheus-alertmanager is not installed")
    started: list[Alertmanager] = []

    def start(keyops_url: str, token: str) -> Alertmanager:
        manager = Alertmanager(tmp_path / f"am-{len(started)}", keyops_url, token)
        started.append(manager)
        return manager

    yield start
    for manager in started:
        manager.close()


def token(cli: Any, name: str, scopes: str) -> str:
    created = cli("tokens", "create", name, "--scopes", scopes, "--json")
    assert created.code == 0, created.stderr
    return str(json.loads(created.stdout)["token"])


def inbound_count(app: App) -> int:
    with app.sessions() as session:
        return int(session.execute(select(func.count()).select_from(models.InboundAlert)).scalar_one())


def test_alertmanager_with_a_scoped_keyops_token(
    cli: Any, servers: Callable[..., Served], inventory: App, alertmanagers: Callable[[str, str], Alertmanager]
) -> None:
    inventory.keys.issue("payments/prod-llm", owner="payments", profile="interactive", policy="standard", actor="t")
    inventory.keys.issue("search/prod-llm", owner="search", profile="interactive", policy="standard", actor="t")
    right = token(cli, "alertmanager", "alerts:alertmanager")
    wrong = token(cli, "grafana-only", "alerts:grafana")
    server = servers(
        KEYOPS_ALERTS_ALERTMANAGER_ENABLED="true",
        KEYOPS_ALERTS_ALERTMANAGER_REQUIRE_TOKEN="true",
    )

    refused = alertmanagers(server.url, wrong)
    refused.fire("search/prod-llm")
    wait_for(lambda: refused.webhook_counter("notifications_failed") >= 1, timeout=30, what="a failed notification")
    assert inventory.keys.show("search/prod-llm").state == "active"
    assert inbound_count(inventory) == 0
    metrics = server.http.get("/metrics").text
    assert 'keyops_alerts_total{source="alertmanager",verdict="missing_scope"}' in metrics
    refused.close()

    accepted = alertmanagers(server.url, right)
    accepted.fire("payments/prod-llm")
    wait_for(
        lambda: inventory.keys.show("payments/prod-llm").state == "suspended", timeout=30, what="the key suspended"
    )
    wait_for(lambda: accepted.webhook_counter("notifications") >= 1, timeout=10, what="the notification counted")
    assert accepted.webhook_counter("notifications_failed") == 0
    assert inventory.keys.show("search/prod-llm").state == "active"
    assert inbound_count(inventory) == 1
