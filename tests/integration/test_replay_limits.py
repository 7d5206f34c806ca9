"""``keyops replay`` applies the [detection] limits on one event that the
live intake applies: a prompt over ``max_prompt_chars`` and a timestamp
further ahead than ``max_future`` are skipped with their line number and
reason, and nothing else is disturbed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest


def test_replay_uses_the_configured_event_limits(cli: Any, env: dict[str, str], tmp_path: Path) -> None:
    if not env["KEYOPS_DATABASE_URL"].startswith("sqlite"):
        pytest.skip("CLI paths are exercised on SQLite; the service's parser is shared with the live intake")
    issued = cli("keys", "issue", "lab/limits", "--owner", "lab", "--profile", "interactive", "--json")
    assert issued.code == 0, issued.stderr
    key_id = json.loads(issued.stdout)["id"]
    now = time.time()
    base = {"key_id": key_id, "ip": "10.0.0.1", "status": 200, "input_tokens": 10, "output_tokens": 20}
    events = [
        {**base, "ts": now - 60, "prompt": "short and fine"},
        {**base, "ts": now - 50, "prompt": "x" * 1500},  # line 2: over the configured 1000
        {**base, "ts": now + 3600, "prompt": "an hour ahead"},  # line 3: within the configured 2h
        {**base, "ts": now + 3 * 3600, "prompt": "three hours ahead"},  # line 4: beyond it
        {**base, "ts": now - 40, "prompt": "y" * 900},
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    limits = {"KEYOPS_DETECTION_MAX_PROMPT_CHARS": "1000", "KEYOPS_DETECTION_MAX_FUTURE": "2h"}

    result = cli("replay", str(path), "--dry-run", "--json", extra_env=limits)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["events"] == 3
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 2, result.stderr
    assert "line 2:" in skipped[0] and "1500 characters" in skipped[0] and "1000" in skipped[0]
    assert "line 4:" in skipped[1] and "future" in skipped[1]

    # With the defaults (200,000 characters, 5 minutes) the long prompt is
    # fine and both future lines are too far ahead.
    default = cli("replay", str(path), "--dry-run", "--json")
    assert default.code == 0, default.stderr
    assert json.loads(default.stdout)["events"] == 3
    assert "line 3:" in default.stderr and "line 4:" in default.stderr and "line 2:" not in default.stderr
