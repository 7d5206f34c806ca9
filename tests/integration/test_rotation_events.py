"""Rotations announce themselves: key.rotated once every destination serves
the new version (so consumers can reload before the grace ends), and
rotation.failed when a rotation gives up."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from keyops.bootstrap import App
from keyops.inventory.models import OutboxEvent


def _events(app: App, type_: str) -> list[OutboxEvent]:
    with app.sessions() as session:
        return list(session.execute(select(OutboxEvent).where(OutboxEvent.type == type_)).scalars())


def test_key_rotated_is_announced_after_promotion(app: App, tmp_path: Path) -> None:
    dest = f"file:{tmp_path / 'secrets' / 'payments.key'}"
    app.keys.issue(
        "payments/llm", owner="payments", profile="interactive", policy="standard", actor="test", destinations=[dest]
    )
    assert _events(app, "key.rotated") == []
    result = app.rotations.rotate("payments/llm", grace_seconds=3600, actor="test", reason="scheduled")
    assert result.ok, result.last_error
    (event,) = _events(app, "key.rotated")
    assert event.payload["key_name"] == "payments/llm"
    assert event.payload["version"] == 2 and event.payload["previous_version"] == 1
    assert event.payload["grace_ends_at"] is not None
    assert "kops_live_" not in str({k: v for k, v in event.payload.items() if k != "display_prefix"})
