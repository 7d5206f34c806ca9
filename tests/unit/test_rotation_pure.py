"""Pure parts of the rotation work: retry delays, bulk-issue parsing,
destination URIs."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from keyops.errors import InvalidInputError
from keyops.lifecycle import backoff
from keyops.lifecycle.bulk import parse_lines
from keyops.lifecycle.rotation_failure import RetryPlan
from keyops.stores.base import parse_destination


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff.delay(n, initial=1, maximum=60, rng=rng) for n in range(1, 10)]
    assert 0.5 <= delays[0] <= 1
    assert 4 <= delays[3] <= 8
    assert all(d <= 60 for d in delays) and delays[-1] >= 30
    assert backoff.delay(0, initial=1, maximum=60) == 0
    assert len({round(backoff.delay(5, initial=1, maximum=60), 6) for _ in range(20)}) > 1


def test_failed_rotations_are_retried_later_each_time_then_left_to_a_person() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    plan = RetryPlan(after_seconds=900, automatic_retries=3)
    rng = random.Random(3)
    waits = [plan.next_attempt(n, now, rng) for n in (1, 2, 3)]
    assert all(w is not None for w in waits)
    seconds = [(w - now).total_seconds() for w in waits if w is not None]
    assert 450 <= seconds[0] <= 900 and 900 <= seconds[1] <= 1800 and 1800 <= seconds[2] <= 3600
    assert plan.next_attempt(4, now) is None  # the fourth failure: a person decides
    assert RetryPlan(after_seconds=900, automatic_retries=0).next_attempt(1, now) is None
    assert RetryPlan(after_seconds=0, automatic_retries=3).next_attempt(1, now) is None


def test_bulk_lines_parse_with_defaults() -> None:
    entries = parse_lines(
        '{"name": "a/b", "owner": "t"}\n\n{"name": "a/c", "owner": "t", "policy": "short"}\n',
        source="f",
        default_profile="interactive",
        default_policy="standard",
    )
    assert [(e.line, e.request.name, e.request.profile, e.request.policy) for e in entries] == [
        (1, "a/b", "interactive", "standard"),
        (3, "a/c", "interactive", "short"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"name": "a/b", "owner": "t"}\n[1, 2]\n', "f line 2: expected a JSON object"),
        ('{"name": "a/b"}\n', "f line 1: 'owner' is missing"),
        ('{"name": "a/b", "owner": "t", "colour": "red"}\n', "f line 1: unknown field(s) colour"),
        ('{"name": "a/b", "owner": "t", "profile": 3}\n', "f line 1: 'profile' must be a string"),
        ("not json\n", "f line 1: not a JSON object"),
        ("\n\n", "no keys in the file"),
    ],
)
def test_bulk_lines_name_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_lines(text, source="f", default_profile="p", default_policy="q")
    assert message in info.value.message


def test_destination_uri_normalises_a_leading_slash() -> None:
    assert parse_destination("vault:/secret/a/b").uri == "vault:secret/a/b"
