"""``POST /v1/usage`` through the real app: an event stamped minutes ahead
does not blind detection to the honest events after it, and what the engine
refuses (its buffer full) is named in the answer and counted in /metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.lifecycle.tokens import TokenService


def served(env: dict[str, str], **settings: str) -> Iterator[tuple[App, TestClient, dict[str, str]]]:
    application = build(load_settings(env={**env, **settings}))
    try:
        token = TokenService(application.sessions).create("gateway", "usage,admin", actor="test")[1]
        with TestClient(create_app(application, worker_id="test")) as client:
            yield application, client, {"Authorization": f"Bearer {token}"}
    finally:
        application.close()


@pytest.fixture
def live(env: dict[str, str]) -> Iterator[tuple[App, TestClient, dict[str, str]]]:
    yield from served(env, KEYOPS_DETECTION_LATENESS="2s")


@pytest.fixture
def small(env: dict[str, str]) -> Iterator[tuple[App, TestClient, dict[str, str]]]:
    # 45 events in order and 5 ahead of the clock at most.
    yield from served(env, KEYOPS_DETECTION_LATENESS="2s", KEYOPS_DETECTION_MAX_BUFFERED="50")


def issue(app: App, name: str) -> str:
    return app.keys.issue(name, owner="lab", profile="interactive", policy="standard", actor="test").key.id


def test_an_event_from_the_near_future_does_not_make_the_next_ones_late(
    live: tuple[App, TestClient, dict[str, str]],
) -> None:
    app, client, headers = live
    bogus, honest = issue(app, "lab/bogus"), issue(app, "lab/honest")
    now = time.time()
    future = {"ts": now + 290, "key_id": bogus, "input_tokens": 1}
    answer = client.post("/v1/usage", content=orjson.dumps([future]), headers=headers)
    assert answer.status_code == 202, answer.text
    events = [{"ts": now, "key_id": honest, "ip": "10.0.0.1", "input_tokens": 3} for _ in range(1000)]
    answer = client.post("/v1/usage", content=orjson.dumps(events), headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 1000, "rejected": [], "detection": {"accepted": 1000, "rejected": []}}
    engine = app.detection.engine
    app.detection.advance(now + 3)  # the daemon's tick once the lateness (2 s) has passed
    assert engine.processed == 1000 and engine.late == 0
    assert engine.keys[honest].tok_in == 3000
    app.detection.advance(now + 293)  # the clock has reached the future event
    assert engine.processed == 1001 and engine.keys[bogus].tok_in == 1


def test_a_full_engine_buffer_is_named_in_the_answer_and_counted(
    small: tuple[App, TestClient, dict[str, str]],
) -> None:
    app, client, headers = small
    key_id = issue(app, "lab/flood")
    now = time.time()
    events = [{"ts": now, "key_id": key_id, "input_tokens": 1} for _ in range(60)]
    events += [{"ts": now + 200, "key_id": key_id, "input_tokens": 1} for _ in range(8)]
    events.append({"ts": "soon", "key_id": key_id})
    answer = client.post("/v1/usage", content=orjson.dumps(events), headers=headers)
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert doc["accepted"] == 68, "the usage of every well-formed event is kept"
    assert [(r["index"], r["reason"]) for r in doc["rejected"]] == [(68, "invalid")]
    refused = doc["detection"]["rejected"]
    assert doc["detection"]["accepted"] == 45 + 5
    assert [(r["index"], r["reason"]) for r in refused] == [(i, "buffer_full") for i in range(45, 60)] + [
        (i, "ahead_of_clock_buffer_full") for i in range(65, 68)
    ]
    assert all("detection.max_buffered" in r["error"] for r in refused)
    text = client.get("/metrics", headers=headers).text
    counts = dict(re.findall(r'^keyops_usage_events_rejected_total\{reason="(\w+)"\} (\d+)$', text, re.M))
    assert counts == {
        "invalid": "1",
        "unknown_key": "0",
        "unknown_profile": "0",
        "late": "0",
        "buffer_full": "15",
        "ahead_of_clock_buffer_full": "3",
        "engine_error": "0",
    }
    assert 'keyops_usage_events_total{result="accepted"} 68' in text
