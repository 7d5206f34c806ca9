"""Every labeled scenario of the traffic generator, through the real engine.

Attacks must be acted on (rotate, suspend or revoke); benign keys, including
the look-alikes that resemble an attack on one axis, must not be. The
integration tests run a subset of the same traffic through the inventory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyops.client import sketch
from tests.traffic.generator import Traffic, generate
from tests.traffic.harness import Outcome, run

ACTED = ("rotate", "suspend", "revoke")


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Traffic, Outcome]]:
    traffic = generate(seed=11, days=4, scale=0.25, attack_hours=1.5)
    yield traffic, run(traffic)


def keys_of(traffic: Traffic, scenario: str) -> list[str]:
    names = [k.name for k in traffic.keys if k.scenario == scenario]
    assert names, scenario
    return names


ATTACKS = [
    "attack-volumetric",
    "attack-low-slow-reasoning",
    "attack-leaked-key",
    "attack-proxy-mix",
]
BENIGN = [
    "benign-interactive",
    "benign-batch",
    "benign-service",
    "benign-demo-day",
    "benign-growth",
    "lookalike-templated-interactive",
    "lookalike-step-by-step",
    "lookalike-popular-system-prompt",
    "lookalike-moved-office",
]


@pytest.mark.parametrize("scenario", ATTACKS)
def test_attacks_are_acted_on(world: tuple[Traffic, Outcome], scenario: str) -> None:
    traffic, outcome = world
    for name in keys_of(traffic, scenario):
        assert outcome.strongest(name) in ACTED, (scenario, name, outcome.strongest(name))
        spec = next(k for k in traffic.keys if k.name == name)
        assert spec.attack_start is not None
        assert outcome.first_action_at[name] >= spec.attack_start


@pytest.mark.parametrize("scenario", BENIGN)
def test_benign_keys_are_not_acted_on(world: tuple[Traffic, Outcome], scenario: str) -> None:
    traffic, outcome = world
    for name in keys_of(traffic, scenario):
        assert outcome.strongest(name) in ("none", "notify"), (scenario, name, outcome.strongest(name))


def test_coordinated_cluster_is_found_with_its_members(world: tuple[Traffic, Outcome]) -> None:
    traffic, outcome = world
    members = keys_of(traffic, "attack-coordinated")
    assert len(members) >= 30
    acted = [m for m in members if outcome.strongest(m) in ACTED]
    assert len(acted) >= 0.9 * len(members)
    clusters = [f for f in outcome.output.findings if f.detector == "coordinated" and f.key_id is None]
    assert clusters, "the cluster is one finding naming its members"
    biggest = max(clusters, key=lambda f: f.evidence["members"])
    assert set(biggest.evidence["keys"]) <= set(members)
    assert biggest.evidence["owners"] >= 30
    per_member = {f.key_name for f in outcome.output.findings if f.detector == "coordinated" and f.key_id}
    assert len(per_member & set(members)) >= 0.9 * len(members), "each member gets its own finding"


def test_decisions_rest_on_the_right_evidence(world: tuple[Traffic, Outcome]) -> None:
    traffic, outcome = world
    by_key: dict[str, set[str]] = {}
    for f in outcome.output.findings:
        if f.key_name:
            by_key.setdefault(f.key_name, set()).add(f.detector)
    assert "network" in by_key[keys_of(traffic, "attack-leaked-key")[0]]
    assert "reasoning" in by_key[keys_of(traffic, "attack-low-slow-reasoning")[0]]
    assert "reasoning" not in by_key.get(keys_of(traffic, "lookalike-step-by-step")[0], set())
    assert "network" not in by_key.get(keys_of(traffic, "lookalike-moved-office")[0], set())
    assert "coordinated" not in {
        d for name in keys_of(traffic, "lookalike-popular-system-prompt") for d in by_key.get(name, set())
    }


def test_sketches_give_the_same_findings_as_prompts(world: tuple[Traffic, Outcome]) -> None:
    traffic, _ = world
    name = keys_of(traffic, "attack-proxy-mix")[0]
    subset = Traffic(seed=traffic.seed, days=traffic.days, keys=[k for k in traffic.keys if k.name == name])
    subset.events = [e for e in traffic.events if e["_key"] == name]
    with_prompts = run(subset)
    sketched = Traffic(seed=subset.seed, days=subset.days, keys=subset.keys)
    sketched.events = [
        {**{k: v for k, v in e.items() if k != "prompt"}, "prompt_sketch": sketch(e["prompt"])} for e in subset.events
    ]
    without = run(sketched)
    assert [f.identity() for f in with_prompts.output.findings] == [f.identity() for f in without.output.findings]
    assert with_prompts.output.actions
