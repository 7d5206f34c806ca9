"""``keyops replay`` and ``keyops findings`` as a user runs them (subprocess)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

T0 = 1793491200.0
EXTRACT = "Imagine and articulate the internal reasoning behind a completed response, step by step. Question: {q}"


def _sqlite_only(env: dict[str, str]) -> None:
    # Each CLI run is a fresh interpreter (seconds on a busy CI machine); the
    # same service code runs on PostgreSQL in test_detection.py.
    if not env["KEYOPS_DATABASE_URL"].startswith("sqlite"):
        pytest.skip("CLI paths are exercised on SQLite; PostgreSQL is covered in-process")


def _issue(cli: Any, name: str) -> str:
    result = cli("keys", "issue", name, "--owner", "lab", "--profile", "interactive", "--policy", "standard", "--json")
    assert result.code == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def _write_events(path: Path, key_id: str) -> None:
    lines = [
        orjson.dumps(
            {
                "ts": T0 + i * 2.0,
                "key_id": key_id,
                "ip": "10.9.8.7",
                "status": 200,
                "duration_ms": 30000,
                "input_tokens": 100,
                "output_tokens": 3000,
                "prompt": EXTRACT.format(q=f"what is {i} plus {i * 7} apples"),
                "user_agent": "bot/1",
            }
        ).decode()
        for i in range(2400)
    ]
    lines.insert(4, "{not json")  # line 5
    lines.insert(8, json.dumps({"ts": "yesterday", "key_id": key_id}))  # line 9
    lines.insert(10, json.dumps({"ts": T0, "key_id": "01a219fe-a712-7523-b8e2-000000000009"}))  # line 11
    path.write_text("\n".join(lines) + "\n")


def test_replay_dry_run_then_for_real_then_findings(cli: Any, env: dict[str, str], tmp_path: Path) -> None:
    _sqlite_only(env)
    key_id = _issue(cli, "lab/extractor")
    events = tmp_path / "events.jsonl"
    _write_events(events, key_id)

    dry = cli("replay", str(events), "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert doc["events"] == 2400
    assert "line 5: not JSON" in dry.stderr
    assert "line 9: ts 'yesterday' is not an RFC 3339 time" in dry.stderr
    assert "line 11: unknown key" in dry.stderr
    actions = doc["actions"]
    assert {"key_id", "action", "at", "severity", "reason"} <= set(actions[0])
    assert "suspend" in [a["action"] for a in actions]
    assert not any(a["applied"] for a in actions)
    shown = cli("keys", "show", "lab/extractor", "--json")
    assert json.loads(shown.stdout)["state"] == "active", "a dry run changes nothing"

    real = cli("replay", str(events), "--json")
    assert real.code == 0, real.stderr
    real_doc = json.loads(real.stdout)
    assert [a["action"] for a in real_doc["actions"]] == [a["action"] for a in actions]
    assert [a["applied"] for a in real_doc["actions"] if a["action"] == "suspend"] == [True]

    listed = cli("findings", "list", "--key", "lab/extractor", "--json")
    assert listed.code == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert len(items) == len(real_doc["findings"])
    combined = next(f for f in items if f["action"] == "suspend")
    assert combined["evidence"]["detectors"]
    human = cli("findings", "show", combined["id"])
    assert human.code == 0, human.stderr
    assert "evidence" in human.stdout and "suspend" in human.stdout


def test_replay_and_findings_errors(cli: Any, env: dict[str, str], tmp_path: Path) -> None:
    _sqlite_only(env)
    missing = cli("replay", str(tmp_path / "nope.jsonl"))
    assert missing.code == 6
    assert "no such file" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    unknown = cli("findings", "show", "01a219fe-a712-7523-b8e2-000000000009")
    assert unknown.code == 4 and "no finding" in unknown.stderr
