"""NATS for tests: the shared server of the machine, or a private one.

The shared ``nats-server -js`` at ``KEYOPS_TEST_NATS_URL`` (default
127.0.0.1:4222, started by ``.ci/run``) serves tests that only need a
JetStream; each of them uses its own stream and bucket names (``unique_name``)
and deletes them after. Tests that take NATS away start a private server on a
free loopback port, with its own store directory, and stop it (``stop``) or
bring it back on the same port (``start``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import free_port, wait_until

SHARED_URL = os.environ.get("KEYOPS_TEST_NATS_URL", "nats://127.0.0.1:4222")
BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reachable(url: str = SHARED_URL) -> bool:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class NatsServer:
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="keyops-nats-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def available() -> bool:
        return Path(BINARY).exists()

    def start(self, timeout: float = 15.0) -> NatsServer:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [BINARY, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.workdir / "store")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        wait_until(lambda: reachable(self.url), timeout=timeout, what=f"nats-server on {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
