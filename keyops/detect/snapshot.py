"""The engine's state as bytes, and back: checkpoints and partition takeover.

A snapshot holds everything the engine needs to go on as if it had never
stopped: every key's :class:`~keyops.detect.state.KeyState`, the events it
holds but has not processed yet (their lateness has not passed), the
watermark and clock, the event-time timers, and the cross-key coordination
index (template skeleton -> cluster, members reported, clusters announced).
Together with the *position* of the last event pushed into the engine (an
opaque value the caller chooses: the intake's count for one node, a stream
sequence past it), restoring a snapshot and pushing the events after that
position gives the same findings as a run that never stopped.

Format: ``MAGIC`` + one version byte + a zlib-compressed msgpack document.
Why msgpack: compact, fast (C extension), and typed enough to keep ints,
floats (exactly, as float64), bytes and maps with integer keys; tuples, sets
and bytearrays are tagged as extension types so they come back as they were.

Tolerance, so a detector that adds a slot to ``KeyState`` does not break
the checkpoints already written: key state is stored *by slot name* (the
names once, then one row of values per key, in that order); on restore each
stored slot that still exists is set, converted to the type the code keeps
it in where msgpack differs (a bytearray, a tuple, a float). A slot the code
no longer has is ignored; when the snapshot lacks a slot, each key is first
built by the constructor, so that slot keeps its default.
Only a different ``FORMAT`` number is refused (:class:`SnapshotError`).

What it holds of a user's data is what the engine holds in memory: prompt
sketches (integers), networks, user agents, the evidence samples (the first
60 characters of a few prompts), and for events still buffered, their 60
character prefix. Never a key: events refer to keys by inventory id or by
the SHA-256 hash the inventory stores.
"""

from __future__ import annotations

import ipaddress
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import fields
from heapq import heapify
from operator import attrgetter
from typing import Any

import msgpack

from keyops.detect.config import WINDOW, DetectorConfig
from keyops.detect.engine import Engine
from keyops.detect.events import UsageEvent
from keyops.detect.model import KeyMeta
from keyops.detect.state import KeyState

MAGIC = b"KOCK"
#: Bumped only for a change old code cannot read; slots added or removed are not one.
FORMAT = 1
_TUPLE, _SET, _BYTEARRAY = 1, 2, 3
#: Slots that are caches, rebuilt from the others (not stored).
_CACHES = frozenset({"pairs"})
#: A snapshot bigger than this once decompressed is refused (a corrupt or hostile row).
MAX_DECODED = 1 << 31

#: Resolves a key's detector configuration at restore time (the current
#: profile); ``None`` keeps the configuration stored in the snapshot.
ConfigResolver = Callable[[KeyMeta], DetectorConfig | None]


class SnapshotError(ValueError):
    """The bytes are not a snapshot this code can read (corrupt, truncated,
    or written by an incompatible version)."""


# ----------------------------------------------------------------- encode --


def _default(value: Any) -> Any:
    if isinstance(value, tuple):
        return msgpack.ExtType(_TUPLE, _pack(list(value)))
    if isinstance(value, (set, frozenset)):
        return msgpack.ExtType(_SET, _pack(sorted(value)))
    if isinstance(value, bytearray):
        return msgpack.ExtType(_BYTEARRAY, bytes(value))
    raise TypeError(f"cannot snapshot a {type(value).__name__}")


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)  # type: ignore[no-any-return]


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _SET:
        return set(_unpack(data))
    if code == _BYTEARRAY:
        return bytearray(data)
    raise SnapshotError(f"unknown extension type {code} in the snapshot")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, raw=False, use_list=True)


class _Tables:
    """Configurations and key metadata are shared by many keys and events:
    each is stored once and referred to by index."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []
        self.metas: list[list[str]] = []
        self._cfg_index: dict[int, int] = {}
        self._meta_index: dict[KeyMeta, int] = {}

    def cfg(self, cfg: DetectorConfig) -> int:
        i = self._cfg_index.get(id(cfg))
        if i is None:
            doc = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
            doc["allowed"] = [str(n) for n in cfg.allowed]
            i = self._cfg_index[id(cfg)] = len(self.configs)
            self.configs.append(doc)
        return i

    def meta(self, meta: KeyMeta) -> int:
        i = self._meta_index.get(meta)
        if i is None:
            i = self._meta_index[meta] = len(self.metas)
            self.metas.append([meta.key_id, meta.name, meta.owner, meta.profile, meta.overrides])
        return i


_SLOTS = frozenset(KeyState.__slots__)
_STORED = tuple(slot for slot in KeyState.__slots__ if slot not in _CACHES)
_GET = attrgetter(*_STORED)
_META_AT = _STORED.index("meta")
_CFG_AT = _STORED.index("cfg")


def _key_row(st: KeyState, tables: _Tables) -> list[Any]:
    """One key's slots, in ``_STORED`` order (the names are stored once)."""
    row = list(_GET(st))
    row[_META_AT] = tables.meta(st.meta)
    row[_CFG_AT] = tables.cfg(st.cfg)
    return row


def _item_doc(item: tuple[Any, ...], tables: _Tables) -> list[Any]:
    _ts, _ref, seq, event, meta, cfg = item
    return [seq, list(event), tables.meta(meta), tables.cfg(cfg)]


def encode_engine(engine: Engine, keys: Iterable[str] | None = None, *, position: Any = None) -> bytes:
    """The engine's state as snapshot bytes (see :func:`pack_engine`)."""
    return seal(pack_engine(engine, keys, position=position))


def seal(packed: bytes) -> bytes:
    """Snapshot bytes from :func:`pack_engine`'s output (compression: the
    slower half of encoding, which needs no lock on the engine)."""
    return MAGIC + bytes([FORMAT]) + zlib.compress(packed, 6)


def pack_engine(engine: Engine, keys: Iterable[str] | None = None, *, position: Any = None) -> bytes:
    """The engine's state, packed but not compressed (:func:`seal` makes
    snapshot bytes of it): the whole engine, or (``keys``: key ids) only
    those keys' states and buffered events, with the engine-wide parts
    (watermark, clock, timers, coordination index) in either case.

    ``position`` is the caller's marker of the last event pushed (any
    msgpack-able value); :func:`restore_engine` returns it. Call it between
    ingests (under the service's lock): what a release produced early must
    have been handed on (it always is when ``ingest`` returns)."""
    if engine._early is not None:
        raise ValueError("the engine holds output not handed on yet: snapshot it between ingests")
    wanted = None if keys is None else set(keys)
    tables = _Tables()
    states = [_key_row(st, tables) for key_id, st in sorted(engine.keys.items()) if wanted is None or key_id in wanted]

    def keep(item: tuple[Any, ...]) -> bool:
        return wanted is None or item[4].key_id in wanted

    buffered = [_item_doc(i, tables) for i in (*engine._run, *engine._heap) if keep(i)]
    ahead = [_item_doc(i, tables) for i in engine._ahead._heap if keep(i)]
    doc = {
        "position": position,
        "partial": wanted is not None,
        "engine": {
            "watermark": engine.watermark,
            "max_ts": engine._max_ts,
            "clock": engine.clock,
            "seq": engine._seq,
            "next_window": engine._next_window,
            "next_coordination": engine._next_coordination,
            "next_housekeeping": engine._next_housekeeping,
            "clusters": engine._clusters,
            "seen": engine._seen,
            "announced": engine._announced,
            "processed": engine.processed,
            "late": engine.late,
        },
        "configs": tables.configs,
        "metas": tables.metas,
        "slots": list(_STORED),
        "keys": states,
        "buffered": buffered,
        "ahead": ahead,
    }
    return _pack(doc)


# ---------------------------------------------------------------- decode --


def decode(data: bytes) -> dict[str, Any]:
    """The snapshot's document (checked for magic and format)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError("a snapshot is bytes")
    data = bytes(data)
    if len(data) < len(MAGIC) + 1 or not data.startswith(MAGIC):
        raise SnapshotError("not a keyops engine snapshot (bad magic)")
    version = data[len(MAGIC)]
    if version != FORMAT:
        raise SnapshotError(f"snapshot format {version} is not the format {FORMAT} this version reads")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data[len(MAGIC) + 1 :], MAX_DECODED)
        if inflater.unconsumed_tail or not inflater.eof:
            raise SnapshotError("snapshot is truncated or too large")
        doc = _unpack(raw)
    except SnapshotError:
        raise
    except (zlib.error, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SnapshotError(f"snapshot is corrupt ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("engine"), dict):
        raise SnapshotError("snapshot is corrupt (no engine part)")
    return doc


def position_of(data: bytes) -> Any:
    """The position a snapshot covers, without restoring it."""
    return decode(data).get("position")


def _config(doc: dict[str, Any]) -> DetectorConfig:
    values = dict(doc)
    values["allowed"] = tuple(ipaddress.ip_network(n, strict=False) for n in values.get("allowed", ()))
    values["ladder"] = tuple(values.get("ladder", ()))
    names = {f.name for f in fields(DetectorConfig)}
    return DetectorConfig(**{k: v for k, v in values.items() if k in names})


class _KeyReader:
    """Rebuilds key states from rows whose columns are the writer's slot
    names: a slot this code lacks is skipped, a slot the writer lacked keeps
    its constructor default (the slower path, taken only then)."""

    def __init__(self, slots: list[str]) -> None:
        self.columns = [(i, name) for i, name in enumerate(slots) if name in _SLOTS and name not in ("meta", "cfg")]
        self.complete = set(_STORED) <= set(slots)
        self.first_at = slots.index("first_ts") if "first_ts" in slots else -1
        self._convert: dict[str, type] | None = None

    def _converters(self, template: KeyState) -> dict[str, type]:
        """Slots whose values msgpack does not give back as the code keeps them."""
        if self._convert is None:
            self._convert = {}
            for _, name in self.columns:
                default = getattr(template, name)
                if isinstance(default, (bytearray, tuple, float)):
                    self._convert[name] = type(default)
        return self._convert

    def read(self, row: list[Any], meta: KeyMeta, cfg: DetectorConfig) -> KeyState:
        if self.complete and self._convert is not None:
            st = KeyState.__new__(KeyState)
            st.meta = meta
            st.cfg = cfg
        else:
            first_ts = float(row[self.first_at]) if self.first_at >= 0 else 0.0
            st = KeyState(meta, cfg, first_ts)
        convert = self._converters(st)
        for i, name in self.columns:
            value = row[i]
            kind = convert.get(name)
            if kind is not None and type(value) is not kind:
                value = kind(value)
            setattr(st, name, value)
        st.pairs = None
        return st


def restore_engine(engine: Engine, data: bytes, *, configs: ConfigResolver | None = None) -> Any:
    """Load a snapshot into ``engine``; returns the position it covers.

    Into a fresh engine, this is a plain restore. Into an engine that
    already holds keys (a worker taking over one more partition), it
    merges: the snapshot's keys replace the engine's states of those keys,
    its buffered events join the buffer, the coordination index is united,
    the watermark, clock and timers take the larger (timers: the
    earlier pending) value, and the event counters add up.

    ``configs`` gives each key's current detector configuration (a profile
    edited while the engine was down applies at once); without it, or when
    it returns ``None``, the configuration stored in the snapshot is used.
    Raises :class:`SnapshotError` on unreadable bytes, before touching the
    engine."""
    doc = decode(data)
    try:
        stored_docs = doc.get("configs", [])
        stored: dict[int, DetectorConfig] = {}
        metas = [KeyMeta(*m[:5]) for m in doc.get("metas", [])]
        resolved: dict[int, DetectorConfig] = {}

        def cfg_for(meta_i: int, cfg_i: int) -> DetectorConfig:
            got = resolved.get(meta_i)
            if got is None:
                got = configs(metas[meta_i]) if configs is not None else None
                if got is None:
                    got = stored.get(cfg_i)
                    if got is None:
                        got = stored[cfg_i] = _config(stored_docs[cfg_i])
                resolved[meta_i] = got
            return got

        slots = [str(name) for name in doc.get("slots", [])]
        reader = _KeyReader(slots)
        meta_at, cfg_at = slots.index("meta"), slots.index("cfg")
        states = [
            reader.read(row, metas[row[meta_at]], cfg_for(row[meta_at], row[cfg_at])) for row in doc.get("keys", [])
        ]

        def item(row: list[Any]) -> tuple[Any, ...]:
            seq, fields_, meta_i, cfg_i = row
            fields_[9] = tuple(fields_[9])  # the sketch
            event = UsageEvent(*fields_[: len(UsageEvent._fields)])
            return (event.ts, event.key_ref, seq, event, metas[meta_i], cfg_for(meta_i, cfg_i))

        buffered = [item(r) for r in doc.get("buffered", [])]
        ahead = [item(r) for r in doc.get("ahead", [])]
        eng = _engine_part(doc["engine"])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"snapshot is corrupt ({type(exc).__name__}: {exc})") from None
    _merge(engine, eng, states, buffered, ahead)
    return doc.get("position")


def _engine_part(eng: dict[str, Any]) -> dict[str, Any]:
    """The engine-wide values, checked and typed (so merging cannot fail halfway)."""
    clock = eng.get("clock")
    return {
        "watermark": float(eng.get("watermark", -math.inf)),
        "max_ts": float(eng.get("max_ts", -math.inf)),
        "clock": None if clock is None else float(clock),
        "seq": int(eng.get("seq", 0)),
        "next_window": int(eng.get("next_window", -1)),
        "next_coordination": int(eng.get("next_coordination", -1)),
        "next_housekeeping": int(eng.get("next_housekeeping", -1)),
        "clusters": {int(k): str(v) for k, v in dict(eng.get("clusters", {})).items()},
        "seen": {str(k): {str(m) for m in v} for k, v in dict(eng.get("seen", {})).items()},
        "announced": {str(c) for c in eng.get("announced", ())},
        "processed": int(eng.get("processed", 0)),
        "late": int(eng.get("late", 0)),
    }


def _merge(
    engine: Engine,
    eng: dict[str, Any],
    states: list[KeyState],
    buffered: list[tuple[Any, ...]],
    ahead: list[tuple[Any, ...]],
) -> None:
    for st in states:
        engine.keys[st.meta.key_id] = st
    engine.watermark = max(engine.watermark, eng["watermark"])
    engine._max_ts = max(engine._max_ts, eng["max_ts"])
    engine._seq = max(engine._seq, eng["seq"])
    for name in ("next_window", "next_coordination", "next_housekeeping"):
        ours = getattr(engine, "_" + name)
        theirs = eng[name]
        if ours < 0 or (0 <= theirs < ours):
            setattr(engine, "_" + name, theirs)
    engine._clusters.update(eng["clusters"])
    for cid, members in eng["seen"].items():
        engine._seen.setdefault(cid, set()).update(members)
    engine._announced.update(eng["announced"])
    engine.processed += eng["processed"]
    engine.late += eng["late"]
    # Buffered events: the ordinary buffer (a heap keeps the order whatever
    # the merge), and those ahead of the clock in their own wait.
    engine._heap.extend(buffered)
    heapify(engine._heap)
    engine._ahead._heap.extend(ahead)
    heapify(engine._ahead._heap)
    if eng["clock"] is not None:
        engine.tick(eng["clock"])  # sets the horizon; admits what the clock has reached
    # Keys with an open window are due at its end (the timer heap is derived).
    for st in states:
        if st.n:
            engine._due.append((st.win_start + WINDOW, st.meta.key_id))
    heapify(engine._due)
