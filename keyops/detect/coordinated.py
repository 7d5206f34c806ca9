"""Coordinated keys: many keys, different owners, one operation.

Each of those keys stays under every per-key limit; what gives them away is
what they share. Every ``COORDINATION_EVERY`` seconds of event time the
engine indexes the active keys by their frequent prompt skeletons (a
Misra-Gries summary per key, see ``KeyState.remember_prompt``), and inside
each skeleton group joins keys that also share a (network, client) pair.
A connected group of at least ``min_keys`` keys with at least ``min_owners``
owners is a cluster.

A popular system prompt used by many unrelated owners shares the skeleton but
not the networks and clients, so it never forms a cluster: the decision
rests on templates *and* infrastructure together.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from keyops.detect.state import KeyState

MIN_SKELETON_COUNT = 3  # a skeleton must recur in a key's traffic to count
ACTIVE_WITHIN = 86400.0
NETS_PER_KEY = 4
UAS_PER_KEY = 2


@dataclass(slots=True)
class Cluster:
    skeleton: int
    members: list[KeyState]
    owners: list[str]
    networks: list[str]
    clients: list[str]


def cluster_id(skeleton: int, first_seen: float) -> str:
    """Deterministic id: the same events give the same cluster id in every run."""
    digest = hashlib.sha256(f"cluster:{skeleton}:{first_seen:.3f}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def find_clusters(states: Iterable[KeyState], now: float) -> list[Cluster]:
    groups: dict[int, list[KeyState]] = {}
    for st in states:
        if not st.cfg.coordinated or now - st.last_ts > ACTIVE_WITHIN:
            continue
        for skel, count in st.skeletons.items():
            if count >= MIN_SKELETON_COUNT:
                groups.setdefault(skel, []).append(st)
    clusters: list[Cluster] = []
    for skel in sorted(groups):
        group = groups[skel]
        min_keys = min(st.cfg.min_keys for st in group)
        if len(group) < min_keys:
            continue
        group.sort(key=lambda s: s.meta.key_id)
        parent = list(range(len(group)))
        first_with: dict[tuple[str, str], int] = {}
        for i, st in enumerate(group):
            nets = list(st.nets)[-NETS_PER_KEY:]
            uas = list(st.uas)[-UAS_PER_KEY:]
            for net in nets:
                for ua in uas:
                    j = first_with.setdefault((net, ua), i)
                    if j != i:
                        parent[_find(parent, i)] = _find(parent, j)
        components: dict[int, list[int]] = {}
        for i in range(len(group)):
            components.setdefault(_find(parent, i), []).append(i)
        for indexes in components.values():
            members = [group[i] for i in indexes]
            owners = sorted({m.meta.owner for m in members})
            if len(members) < min_keys or len(owners) < min(m.cfg.min_owners for m in members):
                continue
            combos = [c for c, i in first_with.items() if _find(parent, i) == _find(parent, indexes[0])]
            clusters.append(
                Cluster(
                    skeleton=skel,
                    members=members,
                    owners=owners,
                    networks=sorted({c[0] for c in combos})[:8],
                    clients=sorted({c[1] for c in combos})[:4],
                )
            )
    return clusters
