"""Shared fixtures. The database fixture runs each test against SQLite and
PostgreSQL (when ``KEYOPS_TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyops.bootstrap import App, build
from keyops.config import load_settings
from tests.support.databases import POSTGRES_ENV, postgres_base_url, postgres_schema_url, sqlite_url

pytest_plugins = ["tests.support.server_fixtures"]

ROOT = Path(__file__).resolve().parent.parent


_SERVICE_MARKERS = ("KEYOPS_TEST_POSTGRES_URL", "KEYOPS_TEST_REDIS_URL")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With KEYOPS_REQUIRE_SERVICES=1 (as in CI), a test skipped because
    PostgreSQL or Redis is not configured fails instead: a green run must
    mean the real databases were exercised."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("KEYOPS_REQUIRE_SERVICES") == "1":
        reason = str(report.longrepr)
        if any(marker in reason for marker in _SERVICE_MARKERS):
            report.outcome = "failed"
            report.longrepr = f"required service missing: {reason}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty inventory database URL (not yet migrated)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    if postgres_base_url() is None:
        pytest.skip(f"PostgreSQL tests skipped: {POSTGRES_ENV} is not set")
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """Environment for keyops in tests: no config file, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYOPS_", "VAULT_")) and k != "STATE_DIRECTORY"}
    env["KEYOPS_LOG_LEVEL"] = "WARNING"
    env["KEYOPS_STORES_FILE_DIRECTORY"] = str(tmp_path / "secrets")
    env["KEYOPS_AUDIT_KEY_FILE"] = str(tmp_path / "state" / "audit.key")
    # The default file-store key goes to $XDG_CONFIG_HOME/keyops: keep it in the test's directory.
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    return env


@pytest.fixture
def env(base_env: dict[str, str], db_url: str) -> dict[str, str]:
    base_env["KEYOPS_DATABASE_URL"] = db_url
    return base_env


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[App]:
    application = build(load_settings(env=env))
    try:
        yield application
    finally:
        application.close()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run ``python -m keyops ...`` as a user would, in a scratch directory."""

    def run(*args: str, extra_env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
        return run_cli(args, env={**env, **(extra_env or {})}, cwd=tmp_path, timeout=timeout)

    return run


def run_cli(args: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float = 120) -> CliResult:
    """``python -m keyops ARGS`` in ``cwd`` with exactly ``env``, no stdin."""
    proc = subprocess.run(
        [sys.executable, "-m", "keyops", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
