"""Pure parts of the verify path: the fast well-formedness check, the code
decision, the compact cache and the local token bucket."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from keyops.api.cache import KeyRow, VerifyCache, VersionRow
from keyops.api.cache_sync import Limit
from keyops.api.ratelimit import LocalBuckets
from keyops.api.verify import decide, well_formed
from keyops.domain import keyformat

KEY_ALPHABET = keyformat.BASE62 + "_-"


@given(st.text(alphabet=KEY_ALPHABET, max_size=80) | st.text(max_size=80))
def test_fast_check_agrees_with_keyformat(text: str) -> None:
    assert well_formed(text) == keyformat.is_well_formed(text)


@given(st.sampled_from(["kops_live", "kops_test", "acme", "a_b_c"]), st.integers(0, 38))
def test_fast_check_on_real_keys_and_one_char_edits(prefix: str, position: int) -> None:
    key = keyformat.generate(prefix).plaintext
    assert well_formed(key) and keyformat.is_well_formed(key)
    index = len(key) - 1 - position
    replacement = "A" if key[index] != "A" else "B"
    edited = key[:index] + replacement + key[index + 1 :]
    assert well_formed(edited) == keyformat.is_well_formed(edited)


def _row(key_id: str, state: str, *versions: tuple[bytes, int, str, datetime | None]) -> KeyRow:
    return KeyRow(key_id, "team/a", "team", "interactive", state, None, tuple(VersionRow(*v) for v in versions))


def test_cache_replace_and_codes() -> None:
    cache = VerifyCache()
    key_id = str(uuid.uuid4())
    v1, v2 = hashlib.sha256(b"one").digest(), hashlib.sha256(b"two").digest()
    cache.add(_row(key_id, "active", (v1, 1, "current", None)))
    hit = cache.lookup(v1)
    assert hit is not None and hit.key_id == key_id and decide(hit, 0) == "VALID"
    assert cache.lookup(hashlib.sha256(b"three").digest()) is None
    forged = v1[:8] + bytes(24)  # same dict prefix, different digest
    assert cache.lookup(forged) is None
    grace = datetime(2030, 1, 1, tzinfo=UTC)
    cache.replace(_row(key_id, "active", (v1, 1, "previous", grace), (v2, 2, "current", None)))
    old, new = cache.lookup(v1), cache.lookup(v2)
    assert old is not None and new is not None
    assert decide(old, grace.timestamp() - 1) == "VALID" and old.version_state == "previous"
    assert decide(old, grace.timestamp()) == "EXPIRED"
    assert len(cache) == 1 and cache.states()["active"] == 1
    cache.replace(_row(key_id, "revoked", (v1, 1, "revoked", grace), (v2, 2, "revoked", None)))
    assert decide(cache.lookup(v2), 0) == "REVOKED"
    assert cache.states() == {"active": 0, "suspended": 0, "revoked": 1, "expired": 0}
    cache.replace(_row(key_id, "suspended", (v2, 2, "current", None)))
    assert decide(cache.lookup(v2), 0) == "SUSPENDED"
    assert decide(None, 0) == "NOT_FOUND"


def test_local_bucket_refills_at_the_profile_rate() -> None:
    buckets = LocalBuckets()
    limit = Limit(burst=3, rate=1.0, requests_per_minute=60)
    decisions = [buckets.take_now("k", limit, 1, 100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[2].remaining == 0 and decisions[3].reset == 3
    assert buckets.take_now("k", limit, 1, 101.0).allowed
    assert not buckets.take_now("k", limit, 2, 101.5).allowed


def test_bulk_load_matches_add() -> None:
    rows = []
    added = VerifyCache()
    for i in range(50):
        key_id = str(uuid.uuid4())
        versions = [(hashlib.sha256(f"{i}-{n}".encode()).digest(), n, "previous" if n == 1 else "current", None)
                    for n in (1, 2)]  # fmt: skip
        added.add(_row(key_id, "active" if i % 3 else "suspended", *versions))
        rows += [(key_id, "team/a", "team", "interactive", "active" if i % 3 else "suspended", 0.0,
                  d.hex(), n, s, 0.0) for d, n, s, _ in versions]  # fmt: skip
    bulk = VerifyCache()
    bulk.bulk_load(sorted(rows, key=lambda r: (r[0], r[7])))
    assert len(bulk) == len(added) == 50 and bulk.states() == added.states()
    for row in rows:
        one, two = bulk.lookup(bytes.fromhex(row[6])), added.lookup(bytes.fromhex(row[6]))
        assert one is not None and two is not None
        assert dataclasses.replace(one, key_index=0) == dataclasses.replace(two, key_index=0)
