"""Pure domain rules: names, durations, windows, schedules, states, specs."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import pytest

from keyops.config import builtin_spec_text
from keyops.domain.durations import format_duration, parse_duration
from keyops.domain.ids import uuid7, uuid7_time_ms
from keyops.domain.names import validate_key_name
from keyops.domain.schedule import next_rotation_at
from keyops.domain.specs import SpecError, find_line, parse_policy, parse_profile, parse_spec_document
from keyops.domain.states import KeyState, key_transition
from keyops.domain.windows import parse_window
from keyops.errors import InvalidInputError, InvalidStateError


def test_uuid7_sorts_by_creation_and_carries_time() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert ids[0][14] == "7"
    assert abs(uuid7_time_ms(ids[-1]) - datetime.now(UTC).timestamp() * 1000) < 5000


@pytest.mark.parametrize("name", ["payments/prod-llm", "a/b", "team.x/sub_1/name-2"])
def test_valid_names(name: str) -> None:
    assert validate_key_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "payments", "/x", "x/", "Payments/x", "a//b", "a/b/c/d/e", "a/-b", "a/b c", "a/b;rm", "a/" + "b" * 130]
)
def test_invalid_names_are_refused_with_a_hint(name: str) -> None:
    with pytest.raises(InvalidInputError, match="team/name"):
        validate_key_name(name)


def test_durations() -> None:
    assert parse_duration("90d") == 90 * 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("0") == 0
    assert parse_duration(42) == 42
    assert format_duration(5400) == "1h30m"
    for bad in ("", "ten days", "5x", "-1d", "1d2"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_rotation_window() -> None:
    window = parse_window("Tue-Thu 09:00-16:00 UTC")
    tuesday_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert window.contains(tuesday_10)
    friday_10 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert not window.contains(friday_10)
    assert window.next_start(friday_10) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for bad in ("Tue-Thu", "Xyz 09:00-10:00", "Mon 10:00-09:00", "Mon 09:00-10:00 Mars/Base"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_next_rotation_with_jitter_is_stable_and_bounded() -> None:
    policy = parse_policy("p", {"rotate_every": "90d", "grace": "24h", "jitter": "6h"})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = next_rotation_at(policy, from_time=now, key_id="k1", rotation_count=0)
    assert first == next_rotation_at(policy, from_time=now, key_id="k1", rotation_count=0)
    assert first is not None
    assert timedelta(days=90) <= first - now <= timedelta(days=90, hours=6)
    never = parse_policy("m", {"rotate_every": "0", "grace": "1h"})
    assert next_rotation_at(never, from_time=now, key_id="k1", rotation_count=0) is None


def test_key_transitions() -> None:
    assert key_transition("active", "suspend") is KeyState.SUSPENDED
    assert key_transition("suspended", "resume") is KeyState.ACTIVE
    with pytest.raises(InvalidStateError, match="cannot resume x: it is active"):
        key_transition("active", "resume", "x")
    with pytest.raises(InvalidStateError):
        key_transition("revoked", "resume")


def test_builtin_specs_parse() -> None:
    profiles, policies = parse_spec_document(tomllib.loads(builtin_spec_text()))
    assert {p.name for p in profiles} >= {"interactive", "batch", "service"}
    assert {p.name for p in policies} >= {"standard"}
    standard = next(p for p in policies if p.name == "standard")
    assert standard.rotate_every == 90 * 86400 and standard.grace == 86400


GOOD_LIMITS = {
    "requests_per_minute": 10,
    "burst": 5,
    "concurrency": 2,
    "tokens_per_day": 1000,
    "max_output_input_ratio": 4.0,
}


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({}, "profiles.p.limits"),
        ({"limits": {**GOOD_LIMITS, "burst": -1}}, "profiles.p.limits.burst"),
        ({"limits": {**GOOD_LIMITS, "burst": "many"}}, "profiles.p.limits.burst"),
        ({"limits": GOOD_LIMITS, "enforcement": "maybe"}, "profiles.p.enforcement"),
        ({"limits": GOOD_LIMITS, "allowed_networks": ["10.0.0.0/33"]}, "profiles.p.allowed_networks[0]"),
        ({"limits": GOOD_LIMITS, "ladder": {"high": "explode"}}, "profiles.p.ladder.high"),
        ({"limits": GOOD_LIMITS, "detectors": {"psychic": {}}}, "profiles.p.detectors.psychic"),
        ({"limits": GOOD_LIMITS, "colour": "red"}, "profiles.p.colour"),
    ],
)
def test_bad_profiles_name_the_field(doc: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_profile("p", doc)
    assert info.value.path == path


def test_bad_policies_name_the_field() -> None:
    with pytest.raises(SpecError, match=r"policies\.q\.grace"):
        parse_policy("q", {"rotate_every": "30d"})
    with pytest.raises(SpecError, match="retire_when_idle"):
        parse_policy("q", {"rotate_every": "30d", "grace": "1h", "retire_when_idle": "2h"})
    with pytest.raises(SpecError, match="window"):
        parse_policy("q", {"rotate_every": "30d", "grace": "1h", "window": "whenever"})


def test_find_line_points_at_the_field() -> None:
    text = "[profiles.x]\ndescription = 'd'\n\n[profiles.x.limits]\nrequests_per_minute = 1\nburst = -3\n"
    assert find_line(text, "profiles.x.limits.burst") == 6
    assert find_line(text, "profiles.x.limits") == 4
    assert find_line(text, "profiles.x.description") == 2
