"""Usage profiles and rotation policies as validated data.

Profiles say what usage a key was issued for and what to do when usage leaves
it; policies say how often a key rotates and how long the previous version
stays valid. Both are plain data (TOML in ``config/``) so they can be
reviewed, diffed and applied like any other configuration.

Validation errors carry the dotted path of the offending field
(``profiles.interactive.limits.burst``) so the file loader can point at the
line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from keyops.domain.durations import format_duration, parse_duration
from keyops.domain.names import PROFILE_NAME_RE
from keyops.domain.windows import RotationWindow, parse_window

ACTIONS = ("none", "notify", "rotate", "suspend", "revoke")
SEVERITIES = ("low", "medium", "high", "critical")
#: What a profile's ladder answers: each severity of evidence that the key's
#: owner is extracting (or abusing) capability, and ``leak``: evidence that
#: someone other than the owner holds the key.
LADDER_STEPS = (*SEVERITIES, "leak")
#: ``enforce``: act on the key and tell people (cases reach the sinks);
#: ``monitor``: act on no key, but tell people (a human decides);
#: ``shadow``: act on no key and tell no one; decisions and cases are only
#: recorded, for calibrating a profile on real traffic before enforcing it.
ENFORCEMENT_MODES = ("monitor", "enforce", "shadow")
DETECTORS = ("volume", "concurrency", "network", "templated", "reasoning", "harvesting", "coordinated")


class SpecError(ValueError):
    """A profile or policy document is invalid at ``path``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.problem = message


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int
    burst: int
    concurrency: int
    tokens_per_day: int
    max_output_input_ratio: float


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    limits: Limits
    allowed_networks: tuple[str, ...] = ()
    enforcement: str = "enforce"
    learning_period: int = 3 * 86400
    detectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ladder: Mapping[str, str] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["allowed_networks"] = list(self.allowed_networks)
        doc["learning_period"] = format_duration(self.learning_period)
        doc["detectors"] = {k: dict(v) for k, v in self.detectors.items()}
        doc["ladder"] = dict(self.ladder)
        return doc


@dataclass(frozen=True)
class RotationPolicy:
    name: str
    description: str
    rotate_every: int  # seconds; 0 means "never on schedule"
    grace: int  # seconds the previous version stays valid
    retire_when_idle: int | None = None  # usage-aware retirement, bounded by grace
    jitter: int = 0
    window: str | None = None

    @property
    def parsed_window(self) -> RotationWindow | None:
        return parse_window(self.window) if self.window else None

    def to_document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "rotate_every": format_duration(self.rotate_every),
            "grace": format_duration(self.grace),
            "retire_when_idle": None if self.retire_when_idle is None else format_duration(self.retire_when_idle),
            "jitter": format_duration(self.jitter),
            "window": self.window,
        }


_PROFILE_FIELDS = {"description", "limits", "allowed_networks", "enforcement", "learning_period", "detectors", "ladder"}
_LIMIT_FIELDS = {
    "requests_per_minute": int,
    "burst": int,
    "concurrency": int,
    "tokens_per_day": int,
    "max_output_input_ratio": float,
}
_POLICY_FIELDS = {"description", "rotate_every", "grace", "retire_when_idle", "jitter", "window"}


def _require_table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected a table, got {type(value).__name__}")
    return value


def _unknown(doc: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in doc:
        if key not in allowed:
            raise SpecError(f"{path}.{key}", f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def _duration(value: Any, path: str) -> int:
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise SpecError(path, str(exc)) from None


def _check_name(name: str, path: str) -> None:
    if not PROFILE_NAME_RE.fullmatch(name):
        raise SpecError(path, "name must be lowercase letters, digits, '_' or '-', starting with a letter")


#: Settings each detector understands: name -> (kind, minimum, maximum, default).
#: Defaults apply when a profile leaves a setting out (keyops/detect/config.py).
DETECTOR_SETTINGS: dict[str, dict[str, tuple[type, float, float, Any]]] = {
    "volume": {
        "enabled": (bool, 0, 1, True),
        "baseline_z": (float, 1.0, 100.0, 4.0),  # robust z over the key's own learned baseline
        "limit_factor": (float, 0.1, 100.0, 1.0),  # multiple of limits.requests_per_minute that counts
    },
    "concurrency": {"enabled": (bool, 0, 1, True), "limit_factor": (float, 0.1, 100.0, 1.0)},
    "network": {"enabled": (bool, 0, 1, True), "novelty_hours": (float, 1.0, 720.0, 24.0)},
    "templated": {
        "enabled": (bool, 0, 1, True),
        "expected_share": (float, 0.0, 1.0, 0.2),  # prompts sharing an instruction skeleton
        "expected_near_duplicate_share": (float, 0.0, 1.0, 0.1),  # MinHash LSH near duplicates
        "min_prompts": (int, 1, 100000, 8),
    },
    "reasoning": {
        "enabled": (bool, 0, 1, True),
        "expected_share": (float, 0.0, 1.0, 0.05),
        "min_prompts": (int, 1, 100000, 5),
    },
    "harvesting": {"enabled": (bool, 0, 1, True), "baseline_z": (float, 1.0, 100.0, 4.0)},
    "coordinated": {
        "enabled": (bool, 0, 1, True),
        "min_keys": (int, 2, 100000, 5),
        "min_owners": (int, 1, 100000, 2),
    },
}


def _detector_settings(det_name: str, settings: Mapping[str, Any], dpath: str) -> dict[str, Any]:
    schema = DETECTOR_SETTINGS[det_name]
    out: dict[str, Any] = {}
    for skey, sval in settings.items():
        spath = f"{dpath}.{skey}"
        if skey not in schema:
            raise SpecError(spath, f"unknown setting (expected one of: {', '.join(sorted(schema))})")
        kind, low, high, _ = schema[skey]
        if kind is bool:
            if not isinstance(sval, bool):
                raise SpecError(spath, f"expected true or false, got {sval!r}")
        elif isinstance(sval, bool) or not isinstance(sval, int if kind is int else (int, float)):
            raise SpecError(spath, f"expected {'an integer' if kind is int else 'a number'}, got {sval!r}")
        elif not low <= sval <= high:
            raise SpecError(spath, f"must be between {low:g} and {high:g}, got {sval!r}")
        out[skey] = kind(sval)
    return out


def parse_profile(name: str, doc: Any, path: str | None = None) -> Profile:
    path = path or f"profiles.{name}"
    _check_name(name, path)
    doc = _require_table(doc, path)
    _unknown(doc, _PROFILE_FIELDS, path)
    if "limits" not in doc:
        raise SpecError(f"{path}.limits", "missing (every profile states its limits)")
    limits_doc = _require_table(doc["limits"], f"{path}.limits")
    _unknown(limits_doc, set(_LIMIT_FIELDS), f"{path}.limits")
    values: dict[str, Any] = {}
    for key, kind in _LIMIT_FIELDS.items():
        fpath = f"{path}.limits.{key}"
        if key not in limits_doc:
            raise SpecError(fpath, "missing")
        raw = limits_doc[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (kind is int and not isinstance(raw, int)):
            raise SpecError(fpath, f"expected {'an integer' if kind is int else 'a number'}, got {raw!r}")
        if raw <= 0:
            raise SpecError(fpath, "must be greater than zero")
        values[key] = kind(raw)
    limits = Limits(**values)
    if limits.burst < 1:
        raise SpecError(f"{path}.limits.burst", "must be at least 1")

    networks = doc.get("allowed_networks", [])
    if not isinstance(networks, list):
        raise SpecError(f"{path}.allowed_networks", "expected a list of CIDRs")
    for i, net in enumerate(networks):
        try:
            ipaddress.ip_network(str(net), strict=False)
        except ValueError:
            raise SpecError(
                f"{path}.allowed_networks[{i}]", f"{net!r} is not a network (use CIDR like 10.0.0.0/8)"
            ) from None

    enforcement = doc.get("enforcement", "enforce")
    if enforcement not in ENFORCEMENT_MODES:
        raise SpecError(f"{path}.enforcement", f"must be one of {', '.join(ENFORCEMENT_MODES)}, got {enforcement!r}")

    learning = _duration(doc.get("learning_period", "3d"), f"{path}.learning_period")

    detectors_doc = _require_table(doc.get("detectors", {}), f"{path}.detectors")
    detectors: dict[str, dict[str, Any]] = {}
    for det_name, settings in detectors_doc.items():
        dpath = f"{path}.detectors.{det_name}"
        if det_name not in DETECTORS:
            raise SpecError(dpath, f"unknown detector (expected one of: {', '.join(DETECTORS)})")
        settings = _require_table(settings, dpath)
        detectors[det_name] = _detector_settings(det_name, settings, dpath)

    ladder_doc = _require_table(doc.get("ladder", {}), f"{path}.ladder")
    ladder: dict[str, str] = {}
    for severity, action in ladder_doc.items():
        lpath = f"{path}.ladder.{severity}"
        if severity not in LADDER_STEPS:
            raise SpecError(lpath, f"unknown ladder step (expected one of: {', '.join(LADDER_STEPS)})")
        if action not in ACTIONS:
            raise SpecError(lpath, f"unknown action {action!r} (expected one of: {', '.join(ACTIONS)})")
        ladder[severity] = action

    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{path}.description", "expected a string")
    return Profile(
        name=name,
        description=description,
        limits=limits,
        allowed_networks=tuple(str(n) for n in networks),
        enforcement=enforcement,
        learning_period=learning,
        detectors=detectors,
        ladder=ladder,
    )


def parse_policy(name: str, doc: Any, path: str | None = None) -> RotationPolicy:
    path = path or f"policies.{name}"
    _check_name(name, path)
    doc = _require_table(doc, path)
    _unknown(doc, _POLICY_FIELDS, path)
    for required in ("rotate_every", "grace"):
        if required not in doc:
            raise SpecError(f"{path}.{required}", "missing")
    rotate_every = _duration(doc["rotate_every"], f"{path}.rotate_every")
    grace = _duration(doc["grace"], f"{path}.grace")
    if rotate_every and grace > rotate_every:
        # The next rotation would come while the version before is still in
        # grace: two old versions valid at once, and the grace a lie.
        raise SpecError(
            f"{path}.grace",
            f"cannot be longer than rotate_every ({format_duration(grace)} > {format_duration(rotate_every)})",
        )
    idle = doc.get("retire_when_idle")
    retire_when_idle = None if idle in (None, "") else _duration(idle, f"{path}.retire_when_idle")
    if retire_when_idle is not None and retire_when_idle > grace:
        raise SpecError(f"{path}.retire_when_idle", "cannot be longer than the grace period it shortens")
    jitter = _duration(doc.get("jitter", 0), f"{path}.jitter")
    if rotate_every and jitter >= rotate_every:
        raise SpecError(f"{path}.jitter", "must be shorter than rotate_every")
    window = doc.get("window")
    if window is not None:
        if not isinstance(window, str):
            raise SpecError(f"{path}.window", "expected a string like 'Tue-Thu 09:00-16:00 UTC'")
        try:
            parse_window(window)
        except ValueError as exc:
            raise SpecError(f"{path}.window", str(exc)) from None
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{path}.description", "expected a string")
    return RotationPolicy(
        name=name,
        description=description,
        rotate_every=rotate_every,
        grace=grace,
        retire_when_idle=retire_when_idle,
        jitter=jitter,
        window=window,
    )


def parse_spec_document(doc: Mapping[str, Any]) -> tuple[list[Profile], list[RotationPolicy]]:
    """A spec file holds ``[profiles.NAME]`` and/or ``[policies.NAME]`` tables."""
    for top in doc:
        if top not in ("profiles", "policies"):
            raise SpecError(top, "unknown top-level table (expected 'profiles' or 'policies')")
    profiles = [parse_profile(n, d) for n, d in _require_table(doc.get("profiles", {}), "profiles").items()]
    policies = [parse_policy(n, d) for n, d in _require_table(doc.get("policies", {}), "policies").items()]
    return profiles, policies


def find_line(text: str, path: str) -> int | None:
    """Best-effort line number (1-based) of a dotted ``path`` in TOML ``text``.

    Walks the path's tables from the longest header that exists, then looks for
    the field's ``key =`` line inside that table. Good enough to point a user
    at the right place; returns None when it cannot tell.
    """
    parts = path.replace("[", ".[").split(".")
    parts = [p for p in parts if p and not p.startswith("[")]
    lines = text.splitlines()
    for cut in range(len(parts), 0, -1):
        header = ".".join(parts[:cut])
        for idx, line in enumerate(lines):
            stripped = line.strip()
            if stripped in (f"[{header}]", f"[[{header}]]"):
                rest = parts[cut:]
                if not rest:
                    return idx + 1
                key = rest[0]
                for j in range(idx + 1, len(lines)):
                    candidate = lines[j].strip()
                    if candidate.startswith("["):
                        break
                    if candidate.split("=", 1)[0].strip().strip('"') == key:
                        return j + 1
                return idx + 1
    # Inline key at top level or dotted keys: search for the last part.
    last = parts[-1] if parts else ""
    for idx, line in enumerate(lines):
        if line.strip().split("=", 1)[0].strip().strip('"') == last:
            return idx + 1
    return None
