"""Severity combination: one axis alone never reaches the ladder's hard steps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keyops.detect.policy import AXIS, SOLO_CAP, combine, level
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


def test_load_alone_stops_at_medium_even_with_concurrency() -> None:
    assert combine(levels(volume=4, concurrency=4)) == 2


def test_templated_alone_stops_at_medium() -> None:
    assert combine(levels(templated=4)) == 2


def test_two_axes_lift_the_severity() -> None:
    assert combine(levels(volume=4, templated=4)) == 4
    assert combine(levels(volume=4, harvesting=2)) == 3
    assert combine(levels(reasoning=3, templated=3)) == 4


def test_combined_detectors_may_go_further_alone() -> None:
    assert combine(levels(network=4)) == 3
    assert combine(levels(coordinated=4)) == 4


@given(st.lists(st.integers(0, 4), min_size=7, max_size=7))
def test_single_axis_never_exceeds_its_cap(raw: list[int]) -> None:
    for axis in set(AXIS):
        only = [v if AXIS[d] == axis else 0 for d, v in enumerate(raw)]
        cap = max(SOLO_CAP[d] for d in range(7) if AXIS[d] == axis)
        assert combine(only) <= cap


@given(st.lists(st.integers(0, 4), min_size=7, max_size=7), st.integers(0, 6), st.integers(1, 4))
def test_more_evidence_never_lowers_severity(raw: list[int], d: int, bump: int) -> None:
    more = list(raw)
    more[d] = min(4, more[d] + bump)
    assert combine(more) >= combine(raw)
