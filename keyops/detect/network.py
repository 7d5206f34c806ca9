"""Network and client novelty.

* Requests from outside the profile's ``allowed_networks`` count at once.
* After the learning period, a network (IPv4 /24, IPv6 /48) or user agent
  first seen less than ``novelty_hours`` ago is *novel*. Novelty alone is
  weak evidence (a team moves office, a library is upgraded); a new network
  together with a new client *and* a jump in volume or spend is the shape of
  a leaked key, and counts fully.
"""

from __future__ import annotations

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp
from keyops.detect.state import KeyState

JUMP_Z = 2.0


def judge(st: KeyState, cfg: DetectorConfig, volume_z: float, spend_z: float) -> Signal | None:
    if not st.novel_net and not st.outside:
        return None  # nothing new and nothing outside: both parts below would be 0
    n = max(st.n, 1)
    outside = st.outside / n
    new_net = st.novel_net / n
    new_ua = st.novel_ua / n
    jumped = volume_z >= JUMP_Z or spend_z >= JUMP_Z
    s_novel = 0.15 * new_net + 0.45 * min(new_net, new_ua) + (0.4 * new_net if jumped else 0.0)
    s_outside = clamp(outside * 4.0) if outside > 0 else 0.0
    strength = max(s_novel, s_outside)
    if strength <= 0.02:
        return None
    recent = [net for net, first in st.nets.items() if st.last_ts - first < cfg.novelty][-4:]
    clients = [ua for ua, first in st.uas.items() if st.last_ts - first < cfg.novelty][-2:]
    parts = []
    if s_outside:
        parts.append(f"{st.outside} of {st.n} requests from outside the allowed networks")
    if s_novel:
        what = (
            "a new network"
            + (" and a new client" if new_ua else "")
            + (" with a jump in volume or spend" if jumped else "")
        )
        parts.append(f"{new_net:.0%} of requests from {what}")
    return Signal(
        strength,
        "; ".join(parts),
        {
            "requests": st.n,
            "outside_allowed": st.outside,
            "new_network_share": round(new_net, 3),
            "new_client_share": round(new_ua, 3),
            "volume_z": round(volume_z, 2),
            "spend_z": round(spend_z, 2),
            "new_networks": recent,
            "new_clients": clients,
        },
    )
