"""The scenario family is a fixed measuring stick: these pin its promises."""

from __future__ import annotations

import dataclasses
from functools import cache

from tests.traffic import family, heldout
from tests.traffic.family import ATTACK_KINDS, BENIGN_KINDS, draw
from tests.traffic.generator import Traffic, bind
from tests.traffic.scenes import FamilyKey, Texts

SCALE = 0.02


@cache
def small(seed: int, index: int, held: bool = False) -> Traffic:
    return draw(seed, index, heldout=held, scale=SCALE)


def test_same_seed_and_index_give_identical_traffic() -> None:
    a = draw(3, 1, scale=SCALE)
    b = small(3, 1)
    assert a.events == b.events
    assert [dataclasses.astuple(k) for k in a.keys] == [dataclasses.astuple(k) for k in b.keys]
    assert small(3, 2).events != b.events


def test_every_attack_key_has_its_start_at_its_first_attack_event() -> None:
    traffic = small(5, 0)
    first: dict[str, float] = {}
    for e in traffic.events:
        if e.get("_attack"):
            first.setdefault(e["_key"], e["ts"])
    for key in traffic.keys:
        assert isinstance(key, FamilyKey)
        if key.kind == "benign":
            assert not key.attacked and key.attack_start is None
        else:
            assert key.attacked and key.attack_start == first[key.name]


def test_events_are_sorted_and_bind() -> None:
    traffic = small(5, 0)
    stamps = [e["ts"] for e in traffic.events]
    assert stamps == sorted(stamps)
    docs = bind(traffic, {k.name: "id-" + k.name for k in traffic.keys})
    assert len(docs) == len(traffic.events) and all("_key" not in d for d in docs)
    assert all(k.days > 0 for k in traffic.keys)  # type: ignore[attr-defined]


def test_every_kind_appears_across_a_few_draws() -> None:
    scenarios: set[str] = set()
    kinds: set[str] = set()
    for index in range(3):
        for key in small(11, index).keys:
            scenarios.add(key.scenario)
            kinds.add(key.kind)  # type: ignore[attr-defined]
    assert set(BENIGN_KINDS) <= scenarios
    assert {"benign", *ATTACK_KINDS} == kinds


def _strings(texts: Texts) -> set[str]:
    out: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            out.add(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, tuple):
            for v in value:
                walk(v)

    for f in dataclasses.fields(texts):
        walk(getattr(texts, f.name))
    return out


def test_heldout_shares_no_template_string_with_the_family() -> None:
    ours, theirs = _strings(family.TEXTS), _strings(heldout.TEXTS)
    ours.discard("")
    theirs.discard("")
    assert not ours & theirs
    assert family.TEXTS.vocab_part != heldout.TEXTS.vocab_part
    held_prompts = {e["prompt"] for e in small(5, 0, True).events[:2000]}
    long_templates = [s.split("{")[0] for s in ours if len(s.split("{")[0]) >= 25]
    assert not [t for t in long_templates if any(t in p for p in held_prompts)]
