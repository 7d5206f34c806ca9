"""Origin: who is using the key, from where.

* Requests from outside the profile's ``allowed_networks`` count at once.
* After the learning period, a network (IPv4 /24, IPv6 /48) or user agent
  first seen less than ``novelty_hours`` ago is *novel*.
* A leaked key looks like a second origin: a new network *and* a new client
  carrying a real share of the traffic while the key's usual origin is still
  active, or while volume or spend jump. That is strong evidence (a window
  can add 1; two such windows decide a leak, see ``keyops.detect.policy``).
* Novelty alone is weak evidence that never acts: a team moves office and
  upgrades its SDK the same day, and all of its traffic moves with it.
"""

from __future__ import annotations

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp
from keyops.detect.state import KeyState

JUMP_Z = 4.0  # without hour-of-day shape, a morning ramp alone reaches z 2 to 3
MIN_SECOND_ORIGIN = 0.1  # share of the window's requests from the new origin
BESIDE = 0.1  # share still from the usual origin for "beside it"
NOVELTY_ONLY = 0.08


def judge(st: KeyState, cfg: DetectorConfig, volume_z: float, spend_z: float) -> Signal | None:
    if not st.novel_net and not st.outside:
        return None  # nothing new and nothing outside: both parts below would be 0
    n = max(st.n, 1)
    outside = st.outside / n
    new_net = st.novel_net / n
    new_ua = st.novel_ua / n
    beside = st.known_req / n
    jumped = volume_z >= JUMP_Z or spend_z >= JUMP_Z
    second = min(new_net, new_ua)
    leak_shape = second >= MIN_SECOND_ORIGIN and (beside >= BESIDE or jumped)
    # Beside the usual origin is the clear shape; a jump alone (the owner may
    # be quiet at the moment) needs twice the windows.
    s_leak = clamp(second * 4.0) * (1.0 if beside >= BESIDE else 0.5) if leak_shape else 0.0
    s_novel = NOVELTY_ONLY * new_net
    s_outside = clamp(outside * 4.0) if outside > 0 else 0.0
    strength = max(s_leak, s_novel, s_outside)
    if strength <= 0.02:
        return None
    recent = [net for net, first in st.nets.items() if st.last_ts - first < cfg.novelty][-4:]
    clients = [ua for ua, first in st.uas.items() if st.last_ts - first < cfg.novelty][-2:]
    parts = []
    if s_outside:
        parts.append(f"{st.outside} of {st.n} requests from outside the allowed networks")
    if s_leak:
        parts.append(
            f"{second:.0%} of requests from a new network with a new client"
            + (f", beside the usual origin ({beside:.0%})" if beside >= BESIDE else "")
            + (" with a jump in volume or spend" if jumped else "")
        )
    elif s_novel:
        parts.append(f"{new_net:.0%} of requests from a new network" + (" and client" if new_ua else ""))
    return Signal(
        strength,
        "; ".join(parts),
        {
            "baseline": {
                "known_networks": len(st.nets) - len(recent),
                "known_clients": len(st.uas) - len(clients),
            },
            "observed": {
                "requests": st.n,
                "outside_allowed": st.outside,
                "new_network_share": round(new_net, 3),
                "new_client_share": round(new_ua, 3),
                "usual_origin_share": round(beside, 3),
                "volume_z": round(volume_z, 2),
                "spend_z": round(spend_z, 2),
                "new_networks": recent,
                "new_clients": clients,
            },
            "thresholds": {
                "second_origin_share": MIN_SECOND_ORIGIN,
                "usual_origin_share": BESIDE,
                "jump_z": JUMP_Z,
                "novelty_hours": cfg.novelty / 3600.0,
            },
        },
    )
