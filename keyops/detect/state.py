"""Per-key state: small, bounded, and split into hot and cold parts.

Hot state (the open window's counters, in-flight requests, recent prompt
signatures) is what a busy key needs minute to minute; it is dropped when the
key goes idle. Cold state (learned baselines, known networks and clients,
accumulated evidence) survives idleness up to the engine's retention, so a
key that sleeps over the weekend keeps its baseline.

Every container has a hard bound (``*_MAX`` below); nothing grows with the
number of events. ``bench/engine.py`` measures the bytes per active key.
"""

from __future__ import annotations

import struct
from ipaddress import ip_address
from itertools import product
from typing import Any

from keyops.detect.config import WINDOW, DetectorConfig
from keyops.detect.model import KeyMeta
from keyops.detect.sketches import BANDS

DETECTORS = ("volume", "concurrency", "network", "templated", "reasoning", "harvesting", "coordinated")
VOLUME, CONCURRENCY, NETWORK, TEMPLATED, REASONING, HARVESTING, COORDINATED = range(7)

RING = 24  # recent prompts remembered for near-duplicate checks
_PACK_WORD = struct.Struct(">I").pack
_PACK_BANDS = struct.Struct(f">{BANDS}I").pack
_BAND_BYTES = 4 * BANDS
assert BANDS == 5, "remember_prompt slices the packed bands into 5 words"
NETS_MAX = 16
UAS_MAX = 8
INFLIGHT_MAX = 512
SKELETONS_MAX = 4  # Misra-Gries counters of frequent skeletons (for coordination)
SAMPLES_MAX = 3
NETS_PER_KEY = 4  # the most recent networks and clients a key is joined on
UAS_PER_KEY = 2  # in the coordination search (see infra_pairs)


class KeyState:
    """Everything the engine keeps about one key."""

    __slots__ = (
        "acc_dup",
        "acc_prompts",
        "acc_req",
        "acc_skel",
        "acc_strong",
        "acc_switch",
        "acc_ts",
        "acc_weak",
        "acted",
        "band_ring",
        "base_dup",
        "base_n",
        "base_skel",
        "base_strong",
        "case_id",
        "case_last",
        "case_sev",
        "cfg",
        "cluster",
        "cusum",
        "day",
        "day_tokens",
        "details",
        "dup_hits",
        "errors",
        "evidence",
        "evidence_ts",
        "first_ts",
        "inflight",
        "known_req",
        "last_net",
        "last_net_novel",
        "last_net_outside",
        "last_ts",
        "last_ua",
        "last_ua_novel",
        "meta",
        "minute",
        "minute_count",
        "n",
        "net_switch",
        "nets",
        "novel_net",
        "novel_ua",
        "out_mu",
        "out_n",
        "out_var",
        "outside",
        "pairs",
        "peak_inflight",
        "peak_minute",
        "prompts",
        "rat_mu",
        "rat_n",
        "rat_var",
        "reported",
        "ring_pos",
        "run_strong",
        "samples",
        "skel_hits",
        "skel_ring",
        "skeletons",
        "strong",
        "strong_n",
        "tok_in",
        "tok_out",
        "uas",
        "vol_mu",
        "vol_n",
        "vol_var",
        "weak",
        "win_start",
    )

    def __init__(self, meta: KeyMeta, cfg: DetectorConfig, ts: float) -> None:
        self.meta = meta
        self.cfg = cfg
        self.first_ts = ts
        self.last_ts = ts
        self.win_start = int(ts // WINDOW) * WINDOW
        self.inflight: list[float] = []
        self.skel_ring = bytearray()  # RING skeletons, 4 bytes each
        self.band_ring = bytearray()  # RING x BANDS bands, 4 bytes each
        self.ring_pos = 0
        self.samples: list[list[str]] = []
        self.reset_window(self.win_start)
        self.skeletons: dict[int, int] = {}
        self.nets: dict[str, float] = {}
        self.last_net = ""
        self.last_net_novel = False
        self.last_net_outside = False
        self.uas: dict[str, float] = {}
        self.last_ua = ""
        self.last_ua_novel = False
        self.pairs: list[tuple[str, str]] | None = None
        self.vol_mu = 0.0
        self.vol_var = 0.0
        self.vol_n = 0
        self.out_mu = 0.0
        self.out_var = 0.0
        self.out_n = 0
        self.day = int(ts // 86400)
        self.day_tokens = 0
        self.evidence = [0.0] * 7
        self.acc_prompts = 0.0
        self.acc_skel = 0.0
        self.acc_dup = 0.0
        self.acc_strong = 0.0
        self.acc_weak = 0.0
        self.acc_ts = ts
        self.base_skel = 0.0
        self.base_dup = 0.0
        self.base_n = 0
        self.evidence_ts = ts
        self.reported = [0] * 7
        self.details: dict[int, dict[str, Any]] = {}
        self.acted = 0
        self.cluster: str | None = None
        # The key's own output/input ratio (log) and elicitation share,
        # learned from windows without an open finding on that detector.
        self.rat_mu = 0.0
        self.rat_var = 0.0
        self.rat_n = 0
        self.base_strong = 0.0
        self.cusum = 0.0  # reasoning elicitation's sequential test (see reasoning.py)
        self.strong_n = 0
        self.run_strong = 0  # elicitation prompts since the CUSUM was last 0
        # How often consecutive requests change network (decayed): a key
        # reached through a residential proxy pool changes at nearly every
        # request, a product's backend almost never.
        self.acc_req = 0.0
        self.acc_switch = 0.0
        # The open case (severity 0 = none), for notices people can keep up with.
        self.case_sev = 0
        self.case_id = ""
        self.case_last = 0.0

    def reset_window(self, start: int) -> None:
        self.win_start = start
        self.n = 0
        self.errors = 0
        self.tok_in = 0
        self.tok_out = 0
        self.minute = -1
        self.minute_count = 0
        self.peak_minute = 0
        self.peak_inflight = 0
        self.prompts = 0
        self.strong = 0
        self.weak = 0
        self.skel_hits = 0
        self.dup_hits = 0
        self.novel_net = 0
        self.novel_ua = 0
        self.outside = 0
        self.net_switch = 0
        self.known_req = 0
        if self.samples:
            self.samples = []

    def drop_hot(self) -> None:
        """Forget what only matters while the key is busy (idle eviction)."""
        self.inflight = []
        self.skel_ring = bytearray()
        self.band_ring = bytearray()
        self.ring_pos = 0
        self.samples = []

    def accumulate(self, at: float, factor: float) -> None:
        """Fold the window's prompt counts into decayed running counts, so
        share tests gain power over hours on a quiet key (low and slow)."""
        self.acc_prompts = self.acc_prompts * factor + self.prompts
        self.acc_skel = self.acc_skel * factor + self.skel_hits
        self.acc_dup = self.acc_dup * factor + self.dup_hits
        self.acc_strong = self.acc_strong * factor + self.strong
        self.acc_weak = self.acc_weak * factor + self.weak
        self.acc_ts = at

    def accumulate_origin(self, factor: float) -> None:
        """Fold the window's network changes into decayed running counts."""
        self.acc_req = self.acc_req * factor + self.n
        self.acc_switch = self.acc_switch * factor + self.net_switch

    @property
    def proxy_like(self) -> bool:
        """Most requests arrive from a different network than the one before."""
        return self.acc_req >= 6.0 and self.acc_switch >= 0.5 * self.acc_req

    @property
    def learned(self) -> bool:
        return self.last_ts >= self.first_ts + self.cfg.learning_period

    def remember_prompt(self, sketch: tuple[int, ...], prefix: str) -> None:
        """Count the prompt against recent ones, then remember it (bounded ring).

        The rings hold the last ``RING`` prompts' skeletons and bands packed
        as 4-byte big-endian words in a ``bytearray``: "seen recently?" is a
        C-level ``find`` per value (a hit counts only at a word boundary),
        with no int object per remembered value to allocate, keep or chase."""
        skel = sketch[3]
        packed_skel = _PACK_WORD(skel)
        ring = self.skel_ring
        if ring and _has_word(ring, packed_skel):
            self.skel_hits += 1
        packed = _PACK_BANDS(*sketch[4:])
        ring_bands = self.band_ring
        dup = False
        if ring_bands:
            words = (packed[0:4], packed[4:8], packed[8:12], packed[12:16], packed[16:20])
            if max(map(ring_bands.find, words)) >= 0:
                dup = any(_has_word(ring_bands, word) for word in words)
        if dup:
            self.dup_hits += 1
        flags = sketch[2]
        if flags:
            if flags & 1:
                self.strong += 1
            if flags & 2:
                self.weak += 1
        if (dup or flags & 1) and prefix and len(self.samples) < SAMPLES_MAX:
            self.samples.append(["reasoning" if flags & 1 else "near-duplicate", prefix])
        if len(ring) < RING * 4:
            ring += packed_skel
            ring_bands += packed
        else:
            pos = self.ring_pos
            ring[pos * 4 : pos * 4 + 4] = packed_skel
            ring_bands[pos * _BAND_BYTES : pos * _BAND_BYTES + _BAND_BYTES] = packed
            self.ring_pos = (pos + 1) % RING
        # Misra-Gries: the few skeletons this key sends most, in O(SKELETONS_MAX).
        counts = self.skeletons
        if skel in counts:
            counts[skel] += 1
        elif len(counts) < SKELETONS_MAX:
            counts[skel] = 1
        else:
            for k in list(counts):
                counts[k] -= 1
                if counts[k] <= 0:
                    del counts[k]

    def see_network(self, net: str, ip: str, ts: float) -> None:
        """Update known networks (LRU, bounded) and cache novelty for ``net``."""
        first = _first_seen(self.nets, net, ts, NETS_MAX)
        self.last_net = net
        self.pairs = None
        cfg = self.cfg
        self.last_net_novel = self._novel(first, ts)
        if cfg.allowed:
            address = ip_address(ip)
            self.last_net_outside = not any(address in allowed for allowed in cfg.allowed)

    def see_user_agent(self, ua: str, ts: float) -> None:
        first = _first_seen(self.uas, ua[:128], ts, UAS_MAX)
        self.last_ua = ua
        self.last_ua_novel = self._novel(first, ts)
        self.pairs = None

    def infra_pairs(self) -> list[tuple[str, str]]:
        """The (network, client) pairs of the key's most recent networks and
        clients. Cached until either list changes: the coordination search
        asks for every active key each round, and most keys did not move."""
        pairs = self.pairs
        if pairs is None:
            pairs = self.pairs = list(product(list(self.nets)[-NETS_PER_KEY:], list(self.uas)[-UAS_PER_KEY:]))
        return pairs

    def _novel(self, first: float, ts: float) -> bool:
        """First seen after the learning period, and recently."""
        return first >= self.first_ts + self.cfg.learning_period and ts - first < self.cfg.novelty


def _has_word(ring: bytearray, word: bytes) -> bool:
    """Whether the 4-byte ``word`` is one of ``ring``'s words (a match that
    straddles two words is not one)."""
    i = ring.find(word)
    while i > 0 and i & 3:
        i = ring.find(word, i + 1)
    return i >= 0


def _first_seen(lru: dict[str, float], label: str, ts: float, cap: int) -> float:
    """When ``label`` was first seen; refreshes its place in the bounded LRU
    (the least recently seen label is dropped when full)."""
    first = lru.pop(label, None)
    if first is None:
        first = ts
        if len(lru) >= cap:
            del lru[next(iter(lru))]
    lru[label] = first
    return first
