"""Verdicts: one axis alone never acts; origin is judged apart from extraction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keyops.detect.policy import AXIS, LEAK_EVIDENCE, NOTIFY_LEVEL, SOLO_CAP, combine, is_leak, level
from keyops.detect.state import CONCURRENCY, COORDINATED, HARVESTING, NETWORK, REASONING, TEMPLATED, VOLUME


def levels(**by_name: int) -> list[int]:
    out = [0] * 7
    index = {
        "volume": VOLUME,
        "concurrency": CONCURRENCY,
        "network": NETWORK,
        "templated": TEMPLATED,
        "reasoning": REASONING,
        "harvesting": HARVESTING,
        "coordinated": COORDINATED,
    }
    for name, value in by_name.items():
        out[index[name]] = value
    return out


def test_levels_need_accumulated_evidence() -> None:
    assert level(0.99) == 0
    assert level(1.0) == 1  # one fully anomalous window: low at most
    assert level(8.0) == 4


def test_load_alone_never_reaches_a_notification() -> None:
    assert combine(levels(volume=4, concurrency=4)) == 2 < NOTIFY_LEVEL


def test_templated_alone_is_only_recorded() -> None:
    assert combine(levels(templated=4)) == 1


def test_two_axes_lift_the_severity() -> None:
    assert combine(levels(volume=2, templated=2)) == 3  # two at medium: a case, no action
    assert combine(levels(volume=3, harvesting=3)) == 4  # two at high: act
    assert combine(levels(volume=2, templated=2, harvesting=2)) == 4  # three at medium: act


def test_strong_single_signals_may_go_further_alone() -> None:
    assert combine(levels(reasoning=4)) == 4
    assert combine(levels(coordinated=4)) == 4


def test_origin_never_counts_as_extraction() -> None:
    # A leaked key is answered by rotation (the ladder's "leak"), never by suspending the owner.
    assert combine(levels(network=4)) == 0
    assert combine(levels(network=4, volume=2)) == 2
    assert not is_leak(LEAK_EVIDENCE - 0.01) and is_leak(LEAK_EVIDENCE)


def test_character_detectors_count_for_nothing_while_learning() -> None:
    # A product whose normal is templated with long answers, in its first days.
    assert combine(levels(templated=4, harvesting=4, volume=2), learned=False) == 2
    assert combine(levels(templated=4, harvesting=4, volume=2), learned=True) == 4
    # Reasoning elicitation and clusters count from the first request.
    assert combine(levels(reasoning=4), learned=False) == 4
    assert combine(levels(coordinated=4), learned=False) == 4


def test_a_cluster_members_own_severity_leaves_the_cluster_out() -> None:
    assert combine(levels(coordinated=4, templated=1), without_cluster=True) == 1


@given(st.lists(st.integers(0, 4), min_size=7, max_size=7), st.booleans())
def test_single_axis_never_exceeds_its_cap(raw: list[int], learned: bool) -> None:
    for axis in set(AXIS):
        only = [v if AXIS[d] == axis else 0 for d, v in enumerate(raw)]
        cap = max(SOLO_CAP[d] for d in range(7) if AXIS[d] == axis)
        assert combine(only, learned) <= cap


@given(st.lists(st.integers(0, 4), min_size=7, max_size=7), st.integers(0, 6), st.integers(1, 4), st.booleans())
def test_more_evidence_never_lowers_severity(raw: list[int], d: int, bump: int, learned: bool) -> None:
    more = list(raw)
    more[d] = min(4, more[d] + bump)
    assert combine(more, learned) >= combine(raw, learned)


@given(st.lists(st.integers(0, 4), min_size=7, max_size=7))
def test_learning_never_raises_severity(raw: list[int]) -> None:
    assert combine(raw, learned=False) <= combine(raw, learned=True)
