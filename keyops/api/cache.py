"""The verify cache: every key version's hash -> what verify needs to answer.

Sized for a million keys in well under 300 bytes each, so it avoids one
Python object per field. Per version *slot*: a dict entry from 60 bits
of the SHA-256 (an int) to the slot number, the digest's other 24 bytes in
one ``bytearray`` (compared on every hit, so a prefix collision can never
authenticate), and compact ``array`` columns for the version's key index,
number, state and grace end. Per *key*: its 16-byte id in one ``bytearray``,
its name in a byte blob with offsets, owner and profile as indexes into small
interned tables, its state and expiry. Replacing a key appends new slots and
drops the old dict entries; the garbage left behind is reclaimed by the
periodic full rebuild.

Pure data structure: no I/O. Loading and invalidation are in ``cache_sync``.
Writers (one thread at a time) and the event-loop readers share it without a
lock: each update is a handful of GIL-atomic list/array operations that
leave every slot readable.
"""

from __future__ import annotations

import uuid
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: Version and key states as small integers.
VERSION_STATES = ("pending", "current", "previous", "retired", "revoked")
KEY_STATES = ("active", "suspended", "revoked", "expired")
_VSTATE = {s: i for i, s in enumerate(VERSION_STATES)}
_KSTATE = {s: i for i, s in enumerate(KEY_STATES)}
NO_TIME = 0.0  # "no grace end" / "no expiry" in the float columns


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version as loaded from the inventory (input to the cache)."""

    digest: bytes  # 32-byte SHA-256
    number: int
    state: str
    grace_ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    name: str
    owner: str
    profile: str
    state: str
    expires_at: datetime | None
    versions: tuple[VersionRow, ...]


@dataclass(frozen=True, slots=True)
class Hit:
    """What verify learns from one lookup."""

    key_index: int
    key_id: str
    name: str
    owner: str
    profile: str
    key_state: str
    expires_at: float
    version: int
    version_state: str
    grace_ends_at: float


def _prefix(digest: bytes) -> int:
    """The dict key: 60 bits of the digest (a two-digit int, 32 bytes)."""
    return int.from_bytes(digest[:8], "big") >> 4


def _uuid_text(raw: bytes | bytearray) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ts(value: datetime | None) -> float:
    return NO_TIME if value is None else value.timestamp()


class _Interned:
    """Small string table: owners and profiles repeat across many keys."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}

    def get(self, value: str) -> int:
        found = self.index.get(value)
        if found is None:
            found = len(self.values)
            self.values.append(value)
            self.index[value] = found
        return found


class VerifyCache:
    def __init__(self) -> None:
        self._slots: dict[int, int] = {}
        self._digests = bytearray()
        self._v_key = array("I")
        self._v_number = array("I")
        self._v_state = array("B")
        self._v_grace = array("d")
        self._k_ids = bytearray()
        self._k_name_off = array("Q", [0])
        self._k_names = bytearray()
        self._k_owner = array("I")
        self._k_profile = array("I")
        self._k_state = array("B")
        self._k_expires = array("d")
        self._owners = _Interned()
        self._profiles = _Interned()
        self._key_count = 0
        self._live_keys = 0
        self._state_counts: dict[str, int] = {}

    # ------------------------------------------------------------ reading --

    def lookup(self, digest: bytes) -> Hit | None:
        slot = self._slots.get(int.from_bytes(digest[:8], "big") >> 4)
        if slot is None:
            return None
        start = slot * 24
        if self._digests[start : start + 24] != digest[8:]:
            return None
        k = self._v_key[slot]
        name_start, name_end = self._k_name_off[k], self._k_name_off[k + 1]
        return Hit(
            key_index=k,
            key_id=_uuid_text(self._k_ids[k * 16 : k * 16 + 16]),
            name=self._k_names[name_start:name_end].decode("utf-8"),
            owner=self._owners.values[self._k_owner[k]],
            profile=self._profiles.values[self._k_profile[k]],
            key_state=KEY_STATES[self._k_state[k]],
            expires_at=self._k_expires[k],
            version=self._v_number[slot],
            version_state=VERSION_STATES[self._v_state[slot]],
            grace_ends_at=self._v_grace[slot],
        )

    def key_index_of(self, digest: bytes) -> int | None:
        hit = self.lookup(digest)
        return None if hit is None else hit.key_index

    def key_id_at(self, key_index: int) -> str:
        return _uuid_text(self._k_ids[key_index * 16 : key_index * 16 + 16])

    def __len__(self) -> int:
        """Keys currently represented (not counting garbage left by updates)."""
        return self._live_keys

    @property
    def version_count(self) -> int:
        return len(self._slots)

    # ------------------------------------------------------------ writing --

    def _add_key(self, row: KeyRow) -> int:
        return self._add_key_raw(row.id, row.name, row.owner, row.profile, row.state, _ts(row.expires_at))

    def _add_key_raw(self, key_id: str, name: str, owner: str, profile: str, state: str, expires: float) -> int:
        index = self._key_count
        self._k_ids += bytes.fromhex(key_id.replace("-", "")) if len(key_id) == 36 else uuid.UUID(key_id).bytes
        self._k_names += name.encode("utf-8")
        self._k_name_off.append(len(self._k_names))
        self._k_owner.append(self._owners.get(owner))
        self._k_profile.append(self._profiles.get(profile))
        self._k_state.append(_KSTATE.get(state, _KSTATE["revoked"]))
        self._k_expires.append(expires)
        self._key_count += 1
        return index

    def bulk_load(self, rows: Iterable[Any]) -> None:
        """Fill an empty cache from the load query's rows (id, name, owner,
        profile, state, expires epoch, digest hex, number, version state,
        grace epoch), ordered by key id. One tight loop with local names and
        no per-key calls (appending straight to the compact arrays, so the
        load never holds a second, list-shaped copy): this is most of the
        start-up time with 1M keys."""
        if self._key_count:
            raise ValueError("bulk_load fills an empty cache only")
        slots = self._slots
        digests, ids, names = self._digests, self._k_ids, self._k_names
        name_off, v_key, v_number, v_state, v_grace = (
            self._k_name_off, self._v_key, self._v_number, self._v_state, self._v_grace,
        )  # fmt: skip
        k_owner, k_profile, k_state, k_expires = self._k_owner, self._k_profile, self._k_state, self._k_expires
        owners, profiles = self._owners.get, self._profiles.get
        vstates, kstates = _VSTATE, _KSTATE
        fromhex = bytes.fromhex
        counts = self._state_counts
        last_id = None
        index = -1
        for key_id, name, owner, profile, state, expires, digest_hex, number, vstate, grace in rows:
            if key_id != last_id:
                last_id = key_id
                index += 1
                ids += fromhex(key_id.replace("-", ""))
                names += name.encode("utf-8")
                name_off.append(len(names))
                k_owner.append(owners(owner))
                k_profile.append(profiles(profile))
                k_state.append(kstates.get(state, 3))
                k_expires.append(expires)
                counts[state] = counts.get(state, 0) + 1
            digest = fromhex(digest_hex)
            slots[int.from_bytes(digest[:8], "big") >> 4] = len(v_key)
            digests += digest[8:]
            v_key.append(index)
            v_number.append(number)
            v_state.append(vstates.get(vstate, 4))
            v_grace.append(grace)
        self._key_count = self._live_keys = index + 1

    def add_raw(
        self,
        key: tuple[str, str, str, str, str, float],
        versions: list[tuple[bytes, int, str, float]],
    ) -> None:
        """``add`` without the row objects: the bulk loader's path for a
        million keys (id, name, owner, profile, state, expires epoch) and
        (digest, number, state, grace-end epoch) per version."""
        index = self._add_key_raw(*key)
        slots, digests, v_key, v_number = self._slots, self._digests, self._v_key, self._v_number
        for digest, number, state, grace in versions:
            slot = len(v_key)
            digests += digest[8:]
            v_key.append(index)
            v_number.append(number)
            self._v_state.append(_VSTATE.get(state, _VSTATE["revoked"]))
            self._v_grace.append(grace)
            slots[int.from_bytes(digest[:8], "big") >> 4] = slot
        self._live_keys += 1
        self._state_counts[key[4]] = self._state_counts.get(key[4], 0) + 1

    def _add_version(self, key_index: int, version: VersionRow) -> None:
        if len(version.digest) != 32:
            raise ValueError("a version digest must be 32 bytes")
        slot = len(self._v_key)
        self._digests += version.digest[8:]
        self._v_key.append(key_index)
        self._v_number.append(version.number)
        self._v_state.append(_VSTATE.get(version.state, _VSTATE["revoked"]))
        self._v_grace.append(_ts(version.grace_ends_at))
        self._slots[_prefix(version.digest)] = slot

    def add(self, row: KeyRow) -> None:
        """Append a key that is not in the cache yet (bulk loading)."""
        index = self._add_key(row)
        for version in row.versions:
            self._add_version(index, version)
        self._live_keys += 1
        self._state_counts[row.state] = self._state_counts.get(row.state, 0) + 1

    def _indexes_of(self, key_id: str, digests: Iterable[bytes]) -> dict[int, int]:
        """prefix -> key index, for the given digests that belong to ``key_id`` now."""
        found: dict[int, int] = {}
        for digest in digests:
            k = self.key_index_of(digest)
            if k is not None and self.key_id_at(k) == key_id:
                found[_prefix(digest)] = k
        return found

    def _forget(self, old: dict[int, int], keep: set[int]) -> None:
        for prefix in old:
            if prefix not in keep:
                self._slots.pop(prefix, None)
        for k in set(old.values()):
            state = KEY_STATES[self._k_state[k]]
            self._state_counts[state] = self._state_counts.get(state, 1) - 1
            self._live_keys -= 1

    def replace(self, row: KeyRow, old_digests: Iterable[bytes] = ()) -> None:
        """Make the cache hold exactly ``row`` for this key. Versions are never
        deleted from the inventory, so the row's own digests (plus any
        ``old_digests``) name every slot the key had. New slots are written
        before old ones are dropped: a concurrent reader never sees a gap."""
        old = self._indexes_of(row.id, (*old_digests, *(v.digest for v in row.versions)))
        self.add(row)
        self._forget(old, keep={_prefix(v.digest) for v in row.versions})

    def remove_key(self, key_id: str, digests: Iterable[bytes]) -> None:
        self._forget(self._indexes_of(key_id, digests), keep=set())

    def states(self) -> dict[str, int]:
        """Keys by state (for the keyops_keys gauge)."""
        return {s: max(0, self._state_counts.get(s, 0)) for s in KEY_STATES}

    def garbage_ratio(self) -> float:
        """Share of stored key records that no longer answer (rebuild when high)."""
        return 0.0 if not self._key_count else 1 - self._live_keys / self._key_count
