"""Control characters in usage events (a NUL in a prompt, a lone surrogate in
a user agent) never cost a batch its findings or another key its action, on
SQLite and PostgreSQL (which refuses ``\\u0000`` in JSONB): free text is
cleaned when the event is parsed, each finding is stored in its own
savepoint, and JSON written to the inventory is made storable at the edge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from keyops import audit
from keyops.api.app import create_app
from keyops.bootstrap import App
from keyops.detect.engine import Output
from keyops.detect.model import ActionRecord, FindingRecord
from keyops.inventory import models
from keyops.lifecycle.detection import IngestResult
from keyops.lifecycle.tokens import TokenService
from tests.traffic.harness import parse_all

T0 = 1793491200.0
EXTRACT = "Imagine and articulate the internal reasoning behind a completed response, step by step. Question: {q}"
NUL_PROMPT = "\x00\x00" + EXTRACT + "\x00"


def extraction(key_id: str, *, prompt: str = EXTRACT, user_agent: str = "bot/1", n: int = 2400) -> list[dict[str, Any]]:
    """80 minutes of reasoning extraction: enough for a suspend."""
    return [
        {
            "ts": T0 + i * 2.0,
            "key_id": key_id,
            "ip": "10.9.8.7",
            "status": 200,
            "duration_ms": 30000,
            "input_tokens": 100,
            "output_tokens": 3000,
            "prompt": prompt.format(q=f"what is {i} plus {i * 7} apples"),
            "user_agent": user_agent,
            "endpoint": "/v1/chat\x00\x1b[2J",
        }
        for i in range(n)
    ]


def issue(app: App, name: str) -> str:
    return app.keys.issue(name, owner="lab", profile="interactive", policy="standard", actor="test").key.id


def mixed(nul_key: str, clean_key: str, *, surrogate: bool = False) -> list[dict[str, Any]]:
    """Both keys' traffic interleaved, so their findings fall in the same
    batches. A lone surrogate only reaches an in-process caller: it cannot
    be written as UTF-8 JSON."""
    dirty = extraction(nul_key, prompt=NUL_PROMPT, user_agent="bot\x00/1" + ("\ud800" if surrogate else ""))
    clean = extraction(clean_key)
    return [e for pair in zip(dirty, clean, strict=True) for e in pair]


def no_control_chars(value: Any) -> bool:
    text = json.dumps(value, ensure_ascii=True)
    return "\\u0000" not in text and "\\ud800" not in text and "\\u001b" not in text


def assert_both_acted_and_stored_clean(app: App, nul_key: str, clean_key: str) -> None:
    assert app.keys.show(clean_key).state == "suspended", "the clean key's action happened"
    assert app.keys.show(nul_key).state == "suspended", "the NUL key was judged like any other"
    with app.sessions() as session:
        rows = session.execute(select(models.Finding).where(models.Finding.key_id == nul_key)).scalars().all()
        assert rows, "the NUL key's findings are stored"
        assert all(no_control_chars(r.evidence) and no_control_chars(r.summary) for r in rows)
        quoted = json.dumps([r.evidence for r in rows])
        assert "Imagine and articulate" in quoted, "prompt prefixes are kept, cleaned"
        assert audit.verify(session).ok


def test_a_nul_in_prompts_costs_no_other_key_its_action(app: App) -> None:
    nul_key, clean_key = issue(app, "lab/nul"), issue(app, "lab/clean")
    events = parse_all(mixed(nul_key, clean_key, surrogate=True))
    for i in range(0, len(events), 500):
        result = app.detection.ingest(events[i : i + 500])
        assert not result.rejected and not result.unrecorded
    final = app.detection.flush()
    assert not final.unrecorded
    assert_both_acted_and_stored_clean(app, nul_key, clean_key)


def test_a_finding_the_database_refuses_is_dropped_alone(app: App) -> None:
    key_id = issue(app, "lab/acted")
    gone = "01a219fe-a712-7523-b8e2-000000000009"  # no such key: the row breaks a foreign key

    def finding(key: str, action: str = "none") -> FindingRecord:
        return FindingRecord(
            detector="combined" if action != "none" else "volume",
            key_id=key,
            key_name="lab/acted",
            severity="high",
            score=9.0,
            at=T0,
            summary="s\x00ummary",
            evidence={"samples": ["a\x00b"], "k\x00ey": "\ud800"},
            action=action,
        )

    refused, kept, combined = finding(gone), finding(key_id), finding(key_id, "suspend")
    action = ActionRecord(
        key_id=key_id,
        key_name="lab/acted",
        action="suspend",
        at=T0,
        severity="high",
        reason="high severity from volume (high)",
        enforcement="enforce",
        finding=combined,
    )
    result = IngestResult()
    app.detection._finish(Output(findings=[refused, kept, combined], actions=[action]), result)
    assert result.unrecorded == 1
    assert refused.id is None and kept.id is not None and combined.id is not None
    assert action.applied and app.keys.show(key_id).state == "suspended"
    with app.sessions() as session:
        rows = session.execute(select(models.Finding)).scalars().all()
        assert {r.id for r in rows} == {kept.id, combined.id}
        assert all(r.summary == "summary" and r.evidence == {"samples": ["ab"], "key": "\ufffd"} for r in rows)
        assert audit.verify(session).ok


def test_replay_of_a_file_with_nul_prompts_succeeds(cli: Any, tmp_path: Path) -> None:
    ids = []
    for name in ("lab/nul", "lab/clean"):
        issued = cli("keys", "issue", name, "--owner", "lab", "--profile", "interactive", "--json")
        assert issued.code == 0, issued.stderr
        ids.append(json.loads(issued.stdout)["id"])
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in mixed(ids[0], ids[1])) + b"\n")
    replayed = cli("replay", str(path), "--json", timeout=180)
    assert replayed.code == 0, replayed.stderr
    doc = json.loads(replayed.stdout)
    assert doc["events"] == 4800 and doc["skipped"] == 0
    suspended = {a["key_id"] for a in doc["actions"] if a["action"] == "suspend" and a["applied"]}
    assert suspended == set(ids)
    listed = cli("findings", "list", "--key", "lab/nul", "--json")
    assert listed.code == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert items and all(no_control_chars(f["evidence"]) for f in items)


@pytest.fixture
def client(app: App) -> Iterator[tuple[TestClient, str]]:
    token = TokenService(app.sessions).create("gateway", "usage", actor="test")[1]
    with TestClient(create_app(app, worker_id="test")) as test_client:
        yield test_client, token


def test_posted_nul_prompts_are_judged_and_stored_clean(app: App, client: tuple[TestClient, str]) -> None:
    http, token = client
    nul_key, clean_key = issue(app, "lab/nul"), issue(app, "lab/clean")
    events = mixed(nul_key, clean_key)
    for i in range(0, len(events), 1000):
        body = b"\n".join(orjson.dumps(e) for e in events[i : i + 1000])
        answer = http.post("/v1/usage", content=body, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == len(events[i : i + 1000]), answer.text
    app.detection.flush()
    assert_both_acted_and_stored_clean(app, nul_key, clean_key)
