"""Fixtures for end-to-end tests: ``keyops serve`` processes and an in-test
view of their inventory (helpers are in ``tests/e2e/serving.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keyops.bootstrap import App, build
from keyops.config import load_settings
from tests.e2e.serving import FAST, Served


@pytest.fixture
def servers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**extra: str) -> Served:
        server = Served(env, tmp_path, extra_env={**FAST, **extra})
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture
def inventory(env: dict[str, str]) -> Iterator[App]:
    application = build(load_settings(env=env))
    yield application
    application.close()
