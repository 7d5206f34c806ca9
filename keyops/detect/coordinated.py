"""Coordinated keys: many keys, different owners, one operation.

Each of those keys stays under every per-key limit; what gives them away is
what they share. Every ``COORDINATION_EVERY`` seconds of event time the
engine indexes the active keys by their frequent prompt skeletons (a
Misra-Gries summary per key, see ``KeyState.remember_prompt``), and inside
each skeleton group joins keys that also share a (network, client) pair.
A connected group of at least ``min_keys`` keys with at least ``min_owners``
owners is a cluster.

Operations that spread their keys over a residential proxy pool share no
network at all; what they share instead is the way they arrive: each of
their requests comes from a different network. Keys of one skeleton group
that all arrive that way, with clients in common, are joined too.

A popular system prompt used by many unrelated owners shares the skeleton but
not the networks, nor a changing origin, so it never forms a cluster: the
decision rests on templates *and* infrastructure together.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

from keyops.detect.state import KeyState

PROXY = "(changing networks)"
MIN_SKELETON_COUNT = 3  # a skeleton must recur in a key's traffic to count
ACTIVE_WITHIN = 86400.0
_key_id = attrgetter("meta.key_id")


@dataclass(slots=True)
class Cluster:
    skeleton: int
    members: list[KeyState]
    owners: list[str]
    networks: list[str]
    clients: list[str]
    proxied: int = 0  # members reached through changing networks


def cluster_id(skeleton: int, first_seen: float) -> str:
    """Deterministic id: the same events give the same cluster id in every run."""
    digest = hashlib.sha256(f"cluster:{skeleton}:{first_seen:.3f}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def _links(st: KeyState) -> list[tuple[str, str]]:
    """What joins a key to others of its skeleton group: its (network,
    client) pairs, and, for a key whose requests keep changing network (a
    residential proxy pool), its clients behind that changing origin."""
    pairs = st.infra_pairs()
    if st.proxy_like:
        return [*pairs, *((PROXY, ua) for ua in st.uas)]
    return pairs


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def find_clusters(states: Iterable[KeyState], now: float) -> list[Cluster]:
    """Clusters among ``states`` at event time ``now``.

    This runs over the whole inventory every round, so it avoids per-pair
    work: a (network, client) pair used by one key of a skeleton group cannot
    join it to anything, so only shared pairs are unioned, and only
    components big enough to matter are described."""
    groups: dict[int, list[KeyState]] = {}
    for st in states:
        if not st.skeletons or now - st.last_ts > ACTIVE_WITHIN or not st.cfg.coordinated:
            continue  # (a key without prompts has no skeletons: the cheapest test first)
        for skel, count in st.skeletons.items():
            if count >= MIN_SKELETON_COUNT:
                if skel in groups:
                    groups[skel].append(st)
                else:
                    groups[skel] = [st]
    clusters: list[Cluster] = []
    for skel in sorted(groups):
        group = groups[skel]
        min_keys = min(st.cfg.min_keys for st in group)
        if len(group) < min_keys:
            continue
        group.sort(key=_key_id)
        combos_of = [_links(st) for st in group]
        shared = {c for c, n in Counter(chain.from_iterable(combos_of)).items() if n > 1}
        parent = list(range(len(group)))
        linked: list[int] = []  # keys with a shared pair; the others are alone
        if shared:
            first_with: dict[tuple[str, str], int] = {}
            for i, combos in enumerate(combos_of):
                if shared.isdisjoint(combos):
                    continue
                linked.append(i)
                for combo in combos:
                    if combo in shared:
                        j = first_with.setdefault(combo, i)
                        if j != i:
                            parent[_find(parent, i)] = _find(parent, j)
        components: dict[int, list[int]] = {}
        for i in linked if min_keys > 1 else range(len(group)):
            root = _find(parent, i)
            if root in components:
                components[root].append(i)
            else:
                components[root] = [i]
        for indexes in components.values():
            if len(indexes) < min_keys:
                continue
            members = [group[i] for i in indexes]
            owners = sorted({m.meta.owner for m in members})
            if len(owners) < min(m.cfg.min_owners for m in members):
                continue
            pairs = {c for i in indexes for c in combos_of[i]}
            clusters.append(
                Cluster(
                    skeleton=skel,
                    members=members,
                    owners=owners,
                    networks=sorted({c[0] for c in pairs if c[0] != PROXY})[:8],
                    clients=sorted({c[1] for c in pairs})[:4],
                    proxied=sum(1 for m in members if m.proxy_like),
                )
            )
    return clusters
