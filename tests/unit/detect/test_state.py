"""Per-key state: the recent-prompt rings count repeats exactly like a list
of the last ``RING`` prompts' values would, although they are packed."""

from __future__ import annotations

import random

from keyops.detect.model import KeyMeta
from keyops.detect.sketches import BANDS, SKETCH_VERSION
from keyops.detect.state import RING, KeyState
from tests.traffic.harness import builtin_configs

META = KeyMeta("01a219fe-a712-7523-b8e2-f2e4c2e6d38e", "team/app", "team", "interactive")
T0 = 1793491200.0


def sketch(skel: int, bands: tuple[int, ...]) -> tuple[int, ...]:
    return (SKETCH_VERSION, 100, 0, skel, *bands)


def fresh() -> KeyState:
    return KeyState(META, builtin_configs()["interactive"], T0)


def test_a_value_straddling_two_remembered_words_is_not_a_repeat() -> None:
    st = fresh()
    # Packed big-endian, bands 0x00000001 then 0x02000000 read "00 00 00 01 02 00 00 00":
    # 0x01020000 appears in those bytes, but across the two words.
    st.remember_prompt(sketch(0x00000001, (0x00000001, 0x02000000, 7, 8, 9)), "")
    st.remember_prompt(sketch(0x02000000, (0x01020000, 11, 12, 13, 14)), "")
    assert st.dup_hits == 0
    st.remember_prompt(sketch(0x01020000, (0x01020000, 21, 22, 23, 24)), "")
    assert st.dup_hits == 1  # a real repeat of a remembered band still counts
    st.remember_prompt(sketch(0x00010200, (31, 32, 33, 34, 35)), "")
    assert st.skel_hits == 0  # skeletons 0x01020000 / 0x02000000 straddle too, none repeats


def test_the_rings_count_repeats_as_a_list_of_the_last_ring_prompts_would() -> None:
    rng = random.Random(3)
    st = fresh()
    history: list[tuple[int, ...]] = []
    skel_hits = dup_hits = 0
    for _ in range(2000):
        # Small value spaces make repeats (and evictions of repeated values) common.
        skel = rng.choice((1, 2, 3, 0x0100, 0x01000000, rng.getrandbits(32)))
        bands = tuple(rng.choice((0, 5, 0x0500, 0x05000000, rng.getrandbits(32))) for _ in range(BANDS))
        recent = history[-RING:]
        skel_hits += any(s[3] == skel for s in recent)
        dup_hits += any(b in s[4:] for s in recent for b in bands)
        st.remember_prompt(sketch(skel, bands), "")
        history.append(sketch(skel, bands))
    assert (st.skel_hits, st.dup_hits) == (skel_hits, dup_hits)
    assert len(st.skel_ring) == RING * 4 and len(st.band_ring) == RING * BANDS * 4
