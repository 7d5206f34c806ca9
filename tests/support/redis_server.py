"""A private ``redis-server`` for tests that take Redis away.

The shared Redis of the test run (``KEYOPS_TEST_REDIS_URL``) must stay up for
everyone else, so outage tests start their own on a free loopback port:
``stop()`` is a hard outage (connections refused), ``start()`` brings it back
on the same port (empty: nothing is persisted), ``pause()``/``resume()``
freeze the process with SIGSTOP/SIGCONT, so connections are accepted by the
kernel but never answered (a hung Redis, the case timeouts are for). Starting
waits on PING with a deadline, never on a fixed sleep.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.servers import free_port, wait_until


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="keyops-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self, timeout: float = 15.0) -> RedisServer:
        assert self.process is None, "already running"
        log_path = self.workdir / "redis.log"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--logfile", str(log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

        def answering() -> bool:
            if self.process is not None and self.process.poll() is not None:
                text = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {text}")
            return self.ping()

        wait_until(answering, timeout=timeout, what=f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Kill it (connections refused from now on) and wait until it is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        wait_until(lambda: not self.ping(), timeout=5, what="redis-server to stop answering")

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        wait_until(self.ping, timeout=5, what="redis-server to answer again")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
