"""Run generated traffic through the real engine without an inventory.

Unit tests and ``bench/`` use this to judge scenarios quickly; the
integration tests run the same traffic through ``app.detection`` with a real
inventory instead.
"""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass, field
from typing import Any

from keyops.config import builtin_spec_text
from keyops.detect.config import DetectorConfig
from keyops.detect.engine import Engine, Output
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.model import ACTION_RANK, KeyMeta
from keyops.domain.specs import parse_spec_document
from tests.traffic.generator import Traffic, bind


def builtin_configs() -> dict[str, DetectorConfig]:
    profiles, _ = parse_spec_document(tomllib.loads(builtin_spec_text()))
    return {p.name: DetectorConfig.of(p) for p in profiles}


def fake_ids(traffic: Traffic) -> dict[str, str]:
    return {k.name: str(uuid.uuid5(uuid.NAMESPACE_URL, "keyops-test:" + k.name)) for k in traffic.keys}


@dataclass
class Outcome:
    output: Output
    ids: dict[str, str]
    events: int
    acted: dict[str, str] = field(default_factory=dict)  # key name -> strongest action
    first_action_at: dict[str, float] = field(default_factory=dict)

    def strongest(self, name: str) -> str:
        return self.acted.get(name, "none")


def parse_all(docs: list[dict[str, Any]]) -> list[UsageEvent]:
    events = []
    for doc in docs:
        parsed = parse_event(doc)
        assert not isinstance(parsed, str), parsed
        events.append(parsed)
    return events


def run(traffic: Traffic, *, configs: dict[str, DetectorConfig] | None = None, drop_prompts: bool = False) -> Outcome:
    configs = configs or builtin_configs()
    ids = fake_ids(traffic)
    metas = {
        f"id:{ids[k.name]}": (KeyMeta(ids[k.name], k.name, k.owner, k.profile), configs[k.profile])
        for k in traffic.keys
    }
    events = parse_all(bind(traffic, ids, drop_prompts=drop_prompts))
    engine = Engine()
    out = Output()
    for event in events:
        meta, cfg = metas[event.key_ref]
        engine.push(event, meta, cfg)
        engine.release(out)
    engine.flush(out)
    outcome = Outcome(output=out, ids=ids, events=len(events))
    for action in out.actions:
        if ACTION_RANK[action.action] > ACTION_RANK[outcome.strongest(action.key_name)]:
            outcome.acted[action.key_name] = action.action
        if action.action in ("rotate", "suspend", "revoke"):
            outcome.first_action_at.setdefault(action.key_name, action.at)
    return outcome
