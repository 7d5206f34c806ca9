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
the checkpoints already written: key state is stored *by slot name*; on
restore a fresh ``KeyState`` is built (every slot at its constructor
default), then each stored slot that still exists is set, converted to the
type of the default where they differ (a bytearray, a tuple). A slot the
code no longer has is ignored; a slot the snapshot lacks keeps its default.
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


def _key_doc(st: KeyState, tables: _Tables) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for slot in KeyState.__slots__:
        if slot in _CACHES or not hasattr(st, slot):
            continue
        if slot == "meta":
            doc[slot] = tables.meta(st.meta)
        elif slot == "cfg":
            doc[slot] = tables.cfg(st.cfg)
        else:
            doc[slot] = getattr(st, slot)
    return doc


def _item_doc(item: tuple[Any, ...], tables: _Tables) -> list[Any]:
    _ts, _ref, seq, event, meta, cfg = item
    return [seq, list(event), tables.meta(meta), tables.cfg(cfg)]


def encode_engine(engine: Engine, keys: Iterable[str] | None = None, *, position: Any = None) -> bytes:
    """The engine's state as bytes: the whole engine, or (``keys``: key
    ids) only those keys' states and buffered events, with the engine-wide
    parts (watermark, clock, timers, coordination index) in either case.

    ``position`` is the caller's marker of the last event pushed (any
    msgpack-able value); :func:`restore_engine` returns it. Call it between
    ingests (under the service's lock): what a release produced early must
    have been handed on (it always is when ``ingest`` returns)."""
    wanted = None if keys is None else set(keys)
    tables = _Tables()
    states = [_key_doc(st, tables) for key_id, st in sorted(engine.keys.items()) if wanted is None or key_id in wanted]

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
        "keys": states,
        "buffered": buffered,
        "ahead": ahead,
    }
    return MAGIC + bytes([FORMAT]) + zlib.compress(_pack(doc), 6)


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


def _restore_key(doc: dict[str, Any], meta: KeyMeta, cfg: DetectorConfig) -> KeyState:
    st = KeyState(meta, cfg, float(doc.get("first_ts", 0.0)))
    for slot, value in doc.items():
        if slot in ("meta", "cfg") or slot in _CACHES or slot not in _SLOTS:
            continue
        default = getattr(st, slot, None)
        if isinstance(default, bytearray) and not isinstance(value, bytearray):
            value = bytearray(value)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        setattr(st, slot, value)
    st.pairs = None
    return st


_SLOTS = frozenset(KeyState.__slots__)


def restore_engine(engine: Engine, data: bytes, *, configs: ConfigResolver | None = None) -> Any:
    """Load a snapshot into ``engine``; returns the position it covers.

    Into a fresh engine, this is a plain restore. Into an engine that
    already holds keys (a worker taking over one more partition), it
    merges: the snapshot's keys replace the engine's states of those keys,
    its buffered events join the buffer, the coordination index is united,
    and the watermark, clock and counters take the larger value.

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

        states = [_restore_key(k, metas[k["meta"]], cfg_for(k["meta"], k["cfg"])) for k in doc.get("keys", [])]

        def item(row: list[Any]) -> tuple[Any, ...]:
            seq, fields_, meta_i, cfg_i = row
            fields_[9] = tuple(fields_[9])  # the sketch
            event = UsageEvent(*fields_[: len(UsageEvent._fields)])
            return (event.ts, event.key_ref, seq, event, metas[meta_i], cfg_for(meta_i, cfg_i))

        buffered = [item(r) for r in doc.get("buffered", [])]
        ahead = [item(r) for r in doc.get("ahead", [])]
        eng = doc["engine"]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot is corrupt ({type(exc).__name__}: {exc})") from None
    _merge(engine, eng, states, buffered, ahead)
    return doc.get("position")


def _merge(
    engine: Engine,
    eng: dict[str, Any],
    states: list[KeyState],
    buffered: list[tuple[Any, ...]],
    ahead: list[tuple[Any, ...]],
) -> None:
    for st in states:
        engine.keys[st.meta.key_id] = st
    engine.watermark = max(engine.watermark, float(eng.get("watermark", -math.inf)))
    engine._max_ts = max(engine._max_ts, float(eng.get("max_ts", -math.inf)))
    engine._seq = max(engine._seq, int(eng.get("seq", 0)))
    for name in ("next_window", "next_coordination", "next_housekeeping"):
        ours = getattr(engine, "_" + name)
        theirs = int(eng.get(name, -1))
        if ours < 0 or (0 <= theirs < ours):
            setattr(engine, "_" + name, theirs)
    engine._clusters.update(eng.get("clusters", {}))
    for cid, members in eng.get("seen", {}).items():
        engine._seen.setdefault(cid, set()).update(members)
    engine._announced.update(eng.get("announced", ()))
    engine.processed += int(eng.get("processed", 0))
    engine.late += int(eng.get("late", 0))
    # Buffered events: the ordinary buffer (a heap keeps the order whatever
    # the merge), and those ahead of the clock in their own wait.
    engine._heap.extend(buffered)
    heapify(engine._heap)
    engine._ahead._heap.extend(ahead)
    heapify(engine._ahead._heap)
    clock = eng.get("clock")
    if clock is not None:
        engine.tick(float(clock))  # sets the horizon; admits what the clock has reached
    # Keys with an open window are due at its end (the timer heap is derived).
    for st in states:
        if st.n:
            engine._due.append((st.win_start + WINDOW, st.meta.key_id))
    heapify(engine._due)
