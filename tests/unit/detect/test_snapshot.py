"""Engine snapshots: stop anywhere, restore, go on, and get what an
uninterrupted run gets; bad bytes are refused before anything changes."""

from __future__ import annotations

import functools
import zlib
from typing import Any

import msgpack
import pytest

from keyops.detect import snapshot
from keyops.detect.engine import Engine, Output
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.model import KeyMeta
from keyops.detect.snapshot import SnapshotError, encode_engine, position_of, restore_engine
from keyops.detect.state import KeyState
from tests.traffic import extraction
from tests.traffic.harness import builtin_configs

CFG = builtin_configs()
_HEAD = snapshot.MAGIC + bytes([snapshot.FORMAT])


@functools.cache
def _traffic() -> tuple[None, list[UsageEvent], dict[str, tuple[KeyMeta, Any]]]:
    key_ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(8)]
    metas = {
        "id:" + k: (KeyMeta(k, f"team{i}/app", f"owner{i}", "interactive"), CFG["interactive"])
        for i, k in enumerate(key_ids)
    }
    return None, extraction.stream(key_ids), metas


def _feed(engine: Engine, events: list[UsageEvent], out: Output, live: bool = False) -> None:
    metas = _traffic()[2]
    for event in events:
        meta, cfg = metas[event.key_ref]
        engine.push(event, meta, cfg)
        engine.release(out, now=event.ts + 1.0 if live else None)


def _ids(out: Output) -> list[tuple[Any, ...]]:
    return (
        [f.identity() for f in out.findings]
        + [(a.key_id, a.action, a.at) for a in out.actions]
        + [(n.case_id, n.kind, n.severity, n.at) for n in out.notifications]
    )


@pytest.mark.parametrize("live", [False, True])
def test_restore_then_continue_equals_an_uninterrupted_run(live: bool) -> None:
    _, events, _ = _traffic()
    whole = Output()
    engine = Engine()
    _feed(engine, events, whole, live)
    engine.flush(whole)
    assert whole.actions and any(f.detector == "coordinated" for f in whole.findings), "the traffic is acted on"

    out = Output()
    first = Engine()
    # Stop in the middle of the attack day (so buffered events, open
    # windows, clusters and cases are all in the snapshot), twice.
    cuts = [len(events) * 3 // 4, len(events) * 7 // 8]
    done = 0
    engine = first
    for cut in cuts:
        _feed(engine, events[done:cut], out, live)
        data = encode_engine(engine, position=cut)
        assert len(engine._run) + len(engine._heap) > 0, "the cut leaves events buffered"
        engine = Engine()
        assert restore_engine(engine, data) == cut
        assert position_of(data) == cut
        done = cut
    _feed(engine, events[done:], out, live)
    engine.flush(out)
    assert _ids(out) == _ids(whole)


def test_learned_keys_stay_learned() -> None:
    _, events, _ = _traffic()
    engine = Engine()
    _feed(engine, events[: len(events) * 7 // 8], Output())
    learned = {k for k, st in engine.keys.items() if st.learned}
    assert learned
    again = Engine()
    restore_engine(again, encode_engine(engine))
    assert {k for k, st in again.keys.items() if st.learned} == learned
    for key_id, st in engine.keys.items():
        other = again.keys[key_id]
        for slot in KeyState.__slots__:
            if slot != "pairs":
                assert getattr(other, slot) == getattr(st, slot), slot
                assert type(getattr(other, slot)) is type(getattr(st, slot)), slot


def test_partial_snapshots_merge_into_one_engine() -> None:
    _, events, _ = _traffic()
    engine = Engine()
    _feed(engine, events[: len(events) // 2], Output())
    keys = sorted(engine.keys)
    half = len(keys) // 2
    merged = Engine()
    restore_engine(merged, encode_engine(engine, keys[:half]))
    assert sorted(merged.keys) == keys[:half]
    restore_engine(merged, encode_engine(engine, keys[half:]))
    assert sorted(merged.keys) == keys
    assert merged.watermark == engine.watermark


def test_a_config_resolver_gives_the_current_profile() -> None:
    _, events, _ = _traffic()
    engine = Engine()
    _feed(engine, events[:2000], Output())
    replacement = CFG["batch"]
    again = Engine()
    restore_engine(again, encode_engine(engine), configs=lambda meta: replacement)
    assert all(st.cfg is replacement for st in again.keys.values())


def _doc(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(zlib.decompress(data[5:]), strict_map_key=False, ext_hook=snapshot._ext_hook)  # type: ignore[no-any-return]


def _bytes(doc: dict[str, Any]) -> bytes:
    return snapshot.MAGIC + bytes([snapshot.FORMAT]) + zlib.compress(snapshot._pack(doc))


def test_slots_added_or_removed_later_are_tolerated() -> None:
    _, events, _ = _traffic()
    engine = Engine()
    _feed(engine, events[:3000], Output())
    doc = _doc(encode_engine(engine))
    at = doc["slots"].index("cusum")
    doc["slots"][at] = "a_slot_from_a_later_version"  # and no cusum: its writer did not have it
    for row in doc["keys"]:
        row[at] = [1, 2, 3]
    for cfg in doc["configs"]:
        cfg["a_setting_from_a_later_version"] = 1.5
    again = Engine()
    restore_engine(again, _bytes(doc))
    assert sorted(again.keys) == sorted(engine.keys)
    assert all(st.cusum == 0.0 for st in again.keys.values())


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "bad magic"),
        (b"not a snapshot at all", "bad magic"),
        (snapshot.MAGIC + bytes([99]) + b"x", "format 99"),
        (snapshot.MAGIC + bytes([snapshot.FORMAT]) + b"\x78\x9cgarbage", "corrupt"),
        (snapshot.MAGIC + bytes([snapshot.FORMAT]) + zlib.compress(b"\xc1"), "corrupt"),
        (snapshot.MAGIC + bytes([snapshot.FORMAT]) + zlib.compress(msgpack.packb([1, 2])), "corrupt"),
        (
            snapshot.MAGIC + bytes([snapshot.FORMAT]) + zlib.compress(msgpack.packb({"engine": {}, "keys": [{}]})),
            "corrupt",
        ),
    ],
)
def test_bad_bytes_are_refused_and_change_nothing(data: bytes, says: str) -> None:
    _, events, _ = _traffic()
    engine = Engine()
    _feed(engine, events[:500], Output())
    before = encode_engine(engine)
    with pytest.raises(SnapshotError, match=says):
        restore_engine(engine, data)
    assert encode_engine(engine) == before


def test_truncated_snapshot_is_refused() -> None:
    _, events, _ = _traffic()
    engine = Engine()
    _feed(engine, events[:500], Output())
    data = encode_engine(engine)
    with pytest.raises(SnapshotError):
        restore_engine(Engine(), data[: len(data) // 2])


def test_no_key_material_in_a_snapshot() -> None:
    """Events posted with a plaintext key are referred to by its hash only."""
    secret = "ko_live_" + "S3cr3tMaterial" * 3
    meta = KeyMeta("01a219fe-a712-7523-b8e2-f2e4c2e6d38e", "team/app", "team", "interactive")
    engine = Engine()
    base = extraction.T0
    for i in range(20):
        parsed = parse_event({"ts": base + i, "key": secret, "ip": "10.0.0.1", "prompt": "hello there"})
        assert isinstance(parsed, UsageEvent)
        engine.push(parsed, meta, CFG["interactive"])
    data = encode_engine(engine)
    raw = zlib.decompress(data[5:])
    assert secret.encode() not in raw and b"S3cr3t" not in raw
