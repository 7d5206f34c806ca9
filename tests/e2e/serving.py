"""Running ``keyops serve`` as a real process for end-to-end tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update

from keyops.bootstrap import App
from keyops.inventory import models
from keyops.inventory.types import utcnow
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """One ``keyops serve`` process on a free port, logs in ``<cwd>/serve-<port>.log``."""

    def __init__(self, env: dict[str, str], cwd: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.env = {**env, **(extra_env or {})}
        self.cwd = cwd
        self.log_path = cwd / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def start(self, timeout: float = 60.0) -> Served:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keyops", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_for(self._ready, timeout=timeout, interval=0.05, what=f"keyops serve on {self.port} to be ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"keyops serve exited with {self.proc.returncode}: {self.logs()[-2000:]}")
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def verify(self, token: str, key: str) -> dict[str, Any]:
        answer = self.http.post("/v1/keys/verify", json={"key": key}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        doc: dict[str, Any] = answer.json()
        return doc

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM; returns the seconds until the process was gone."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"keyops serve did not stop within {timeout}s of SIGTERM") from None
        return time.monotonic() - started

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.http.close()


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for a CLI process sharing the servers' settings."""
    return {**os.environ, **env}


FAST = {
    "KEYOPS_LOG_LEVEL": "INFO",
    "KEYOPS_SCHEDULER_ROTATE_DUE_EVERY": "1s",
    "KEYOPS_SCHEDULER_RETIRE_GRACE_EVERY": "1s",
    "KEYOPS_SCHEDULER_RESUME_EVERY": "1s",
    "KEYOPS_SERVER_SHUTDOWN_TIMEOUT": "6s",
}


def make_token(cli: Any) -> str:
    result = cli("tokens", "create", "gateway", "--scopes", "verify,usage", "--json")
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"name", "token", "scopes"}
    return str(doc["token"])


def issue_many(app: App, count: int, prefix: str) -> list[str]:
    ids = []
    for i in range(count):
        issued = app.keys.issue(
            f"{prefix}/k{i:03d}", owner="team", profile="batch", policy="standard", actor="test",
            destinations=[f"file:{prefix}-{i:03d}"],
        )  # fmt: skip
        ids.append(issued.key.id)
    return ids


def make_due(app: App, ids: list[str]) -> None:
    with app.engine.begin() as conn:
        conn.execute(
            update(models.Key).where(models.Key.id.in_(ids)).values(next_rotation_at=utcnow() - timedelta(seconds=1))
        )


def finished_per_key(app: App) -> dict[str, int]:
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(models.Rotation.key_id, func.count())
            .where(models.Rotation.status == "finished")
            .group_by(models.Rotation.key_id)
        ).all()
    return {k: n for k, n in rows}


def assert_rotated_once(app: App, ids: list[str]) -> None:
    """Exactly one finished rotation per key (audit and rotation rows), none
    left unfinished, exactly one current version each."""
    with app.engine.connect() as conn:
        assert finished_per_key(app) == dict.fromkeys(ids, 1)
        unfinished = conn.execute(
            select(func.count()).where(models.Rotation.status.in_(("running", "failed")))
        ).scalar_one()
        assert unfinished == 0
        finished = (
            conn.execute(select(models.AuditEvent.key_id).where(models.AuditEvent.action == "rotation.finished"))
            .scalars()
            .all()
        )
        assert sorted(finished) == sorted(ids)
        currents = conn.execute(
            select(models.KeyVersion.key_id, func.count())
            .where(models.KeyVersion.state == "current")
            .group_by(models.KeyVersion.key_id)
        ).all()
        assert {k: n for k, n in currents} == dict.fromkeys(ids, 1)
        versions = conn.execute(select(func.count()).select_from(models.KeyVersion)).scalar_one()
        assert versions == 2 * len(ids)
