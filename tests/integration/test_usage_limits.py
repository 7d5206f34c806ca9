"""``POST /v1/usage`` applies the [detection] limits on one event (the same
ones ``keyops replay`` applies): a prompt over ``max_prompt_chars`` and a
timestamp further ahead than ``max_future`` are rejected with a reason, and
only the good events count."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.lifecycle.tokens import TokenService


@pytest.fixture
def limited(env: dict[str, str]) -> Iterator[App]:
    settings = {**env, "KEYOPS_DETECTION_MAX_PROMPT_CHARS": "1000", "KEYOPS_DETECTION_MAX_FUTURE": "2h"}
    application = build(load_settings(env=settings))
    try:
        yield application
    finally:
        application.close()


def test_usage_intake_uses_the_configured_event_limits(limited: App) -> None:
    token = TokenService(limited.sessions).create("gateway", "usage", actor="test")[1]
    key_id = limited.keys.issue("lab/limits", owner="lab", profile="interactive", policy="standard", actor="t").key.id
    now = time.time()
    base = {"key_id": key_id, "ip": "10.0.0.1", "status": 200, "input_tokens": 10, "output_tokens": 20}
    events = [
        {**base, "ts": now - 5, "prompt": "short and fine"},
        {**base, "ts": now - 4, "prompt": "x" * 1500},
        {**base, "ts": now + 3600, "prompt": "an hour ahead: within the configured 2h"},
        {**base, "ts": now + 3 * 3600, "prompt": "three hours ahead"},
        {**base, "ts": now - 3, "prompt": "y" * 900},
    ]
    with TestClient(create_app(limited, worker_id="test")) as client:
        answer = client.post("/v1/usage", content=orjson.dumps(events), headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert doc["accepted"] == 3
    assert [r["index"] for r in doc["rejected"]] == [1, 3]
    assert "1500 characters" in doc["rejected"][0]["error"] and "1000" in doc["rejected"][0]["error"]
    assert "future" in doc["rejected"][1]["error"]
    with limited.sessions() as session:
        requests = session.execute(
            select(func.sum(models.UsageMinute.requests)).where(models.UsageMinute.key_id == key_id)
        ).scalar_one()
    assert requests == 3
