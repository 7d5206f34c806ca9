"""Running ``keyops serve`` as a real process for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

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
