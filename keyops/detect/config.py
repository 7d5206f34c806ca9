"""A profile compiled for the hot path.

Profiles are validated data (``keyops.domain.specs``); the engine reads their
detector settings once per profile into a slotted object, so judging a window
never walks dictionaries or applies defaults.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from keyops.domain.specs import DETECTOR_SETTINGS, SEVERITIES, Profile

#: Engine constants (event time, seconds).
WINDOW = 300  # detectors judge each key once per 5-minute window
HALF_LIFE = 3600.0  # evidence halves every hour without new signal
COORDINATION_EVERY = 600  # the inventory-wide cluster search runs every 10 minutes
LEVEL_THRESHOLDS = (1.0, 2.5, 5.0, 8.0)  # accumulated evidence for low, medium, high, critical


def _setting(profile: Profile, detector: str, name: str) -> Any:
    value = profile.detectors.get(detector, {}).get(name)
    return DETECTOR_SETTINGS[detector][name][3] if value is None else value


def enabled(profile: Profile, detector: str) -> bool:
    """A detector runs when the profile lists it and does not disable it."""
    return detector in profile.detectors and bool(_setting(profile, detector, "enabled"))


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    name: str
    enforcement: str
    learning_period: float
    rpm: int
    burst: int
    concurrency: int
    tokens_per_day: int
    max_ratio: float
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    ladder: tuple[str, str, str, str, str]  # action per extraction severity 0..4
    leak_action: str  # the answer to a leaked key (someone else holds it)
    volume: bool
    volume_z: float
    volume_factor: float
    concurrency_on: bool
    concurrency_factor: float
    network: bool
    novelty: float
    templated: bool
    skeleton_expected: float
    duplicate_expected: float
    templated_min: int
    reasoning: bool
    reasoning_expected: float
    reasoning_min: int
    harvesting: bool
    harvesting_z: float
    coordinated: bool
    min_keys: int
    min_owners: int

    @classmethod
    def of(cls, profile: Profile) -> DetectorConfig:
        ladder = ["none"] + [profile.ladder.get(s, "none") for s in SEVERITIES]
        lim = profile.limits
        return cls(
            name=profile.name,
            enforcement=profile.enforcement,
            learning_period=float(profile.learning_period),
            rpm=lim.requests_per_minute,
            burst=lim.burst,
            concurrency=lim.concurrency,
            tokens_per_day=lim.tokens_per_day,
            max_ratio=lim.max_output_input_ratio,
            allowed=tuple(ipaddress.ip_network(n, strict=False) for n in profile.allowed_networks),
            ladder=(ladder[0], ladder[1], ladder[2], ladder[3], ladder[4]),
            leak_action=profile.ladder.get("leak", "none"),
            volume=enabled(profile, "volume"),
            volume_z=float(_setting(profile, "volume", "baseline_z")),
            volume_factor=float(_setting(profile, "volume", "limit_factor")),
            concurrency_on=enabled(profile, "concurrency"),
            concurrency_factor=float(_setting(profile, "concurrency", "limit_factor")),
            network=enabled(profile, "network"),
            novelty=float(_setting(profile, "network", "novelty_hours")) * 3600.0,
            templated=enabled(profile, "templated"),
            skeleton_expected=float(_setting(profile, "templated", "expected_share")),
            duplicate_expected=float(_setting(profile, "templated", "expected_near_duplicate_share")),
            templated_min=int(_setting(profile, "templated", "min_prompts")),
            reasoning=enabled(profile, "reasoning"),
            reasoning_expected=float(_setting(profile, "reasoning", "expected_share")),
            reasoning_min=int(_setting(profile, "reasoning", "min_prompts")),
            harvesting=enabled(profile, "harvesting"),
            harvesting_z=float(_setting(profile, "harvesting", "baseline_z")),
            coordinated=enabled(profile, "coordinated"),
            min_keys=int(_setting(profile, "coordinated", "min_keys")),
            min_owners=int(_setting(profile, "coordinated", "min_owners")),
        )
