"""Alert rules: which inbound alert leads to which action.

Pure code (no I/O) so configuration validation and the receiver share it.
A rule is one line, ``<source|*> [field=value ...] -> <action>``, evaluated
in order; the first rule whose source and every condition match decides.

Fields a condition may test (case-insensitive equality, ``*`` = anything):
``severity``, ``status`` (firing|resolved), ``kind`` (what the alert is:
``leak``, ``guardduty``, ``cloudwatch``, ``alert``...), ``type`` (the sender's
own event type or alert name) and ``action`` (what the sender asked for).

Actions: ``none`` (record only), ``notify`` (a finding and an outbound event),
``rotate`` (policy grace), ``rotate_now`` (zero grace: the old key dies now),
``suspend``, ``revoke``, and ``requested`` (the action the payload names, if it
is in ``alerts.allowed_requested``; otherwise ``notify``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from keyops.alerts import severity

ACTIONS = ("none", "notify", "rotate", "rotate_now", "suspend", "revoke")
RULE_ACTIONS = (*ACTIONS, "requested")
FIELDS = ("severity", "status", "kind", "type", "action")
#: How strongly each action acts; when one delivery names a key several
#: times, the strongest action wins.
STRENGTH = {"none": 0, "notify": 1, "rotate": 2, "rotate_now": 3, "suspend": 4, "revoke": 5}


class RuleError(ValueError):
    """A rule line that cannot be understood (the message says which and why)."""


@dataclass(frozen=True)
class Rule:
    source: str
    conditions: tuple[tuple[str, str], ...]
    action: str
    text: str

    def matches(self, source: str, facts: Mapping[str, str]) -> bool:
        if self.source not in ("*", source):
            return False
        for name, wanted in self.conditions:
            if wanted == "*":
                continue
            if (facts.get(name) or "").lower() != wanted:
                return False
        return True


def normalise_action(action: str) -> str | None:
    """``rotate-now``/``Rotate_Now`` -> ``rotate_now``; None when unknown."""
    value = action.strip().lower().replace("-", "_")
    return value if value in RULE_ACTIONS else None


def parse_rule(text: str, index: int = 0) -> Rule:
    if "->" not in text:
        raise RuleError(f"rule {index + 1} {text!r}: expected '<source> [field=value ...] -> <action>'")
    left, right = text.split("->", 1)
    action = normalise_action(right)
    if action is None:
        raise RuleError(f"rule {index + 1} {text!r}: unknown action {right.strip()!r} (use {', '.join(RULE_ACTIONS)})")
    words = left.split()
    if not words:
        raise RuleError(f"rule {index + 1} {text!r}: name a source or '*' before '->'")
    source = words[0].lower()
    conditions: list[tuple[str, str]] = []
    for word in words[1:]:
        name, sep, value = word.partition("=")
        if not sep or not value or name.lower() not in FIELDS:
            raise RuleError(
                f"rule {index + 1} {text!r}: condition {word!r} must be field=value, field one of {', '.join(FIELDS)}"
            )
        value = value.lower()
        if name.lower() == "severity" and value != "*":
            # Alerts carry only the fixed severities, so a rule's word is mapped the same way.
            mapped = severity.known(value)
            if mapped is None:
                raise RuleError(
                    f"rule {index + 1} {text!r}: unknown severity {value!r} (use {', '.join(severity.SEVERITIES)}"
                    " or a sender's word from the table in keyops/alerts/severity.py)"
                )
            value = mapped
        conditions.append((name.lower(), value))
    return Rule(source=source, conditions=tuple(conditions), action=action, text=text)


def parse_rules(lines: Iterable[str], *, allowed_requested: Sequence[str] = ACTIONS) -> list[Rule]:
    for item in allowed_requested:
        if normalise_action(item) not in ACTIONS:
            raise RuleError(f"allowed_requested: unknown action {item!r} (use {', '.join(ACTIONS)})")
    return [parse_rule(line, i) for i, line in enumerate(lines)]


def decide(
    rules: Sequence[Rule],
    source: str,
    facts: Mapping[str, str],
    *,
    allowed_requested: Sequence[str] = ACTIONS,
) -> tuple[str, str]:
    """The action for one alert and the rule text that chose it.

    No matching rule means ``notify``: an alert nobody wrote a rule for is
    still worth a human's look, never silently dropped.
    """
    for rule in rules:
        if rule.matches(source, facts):
            if rule.action != "requested":
                return rule.action, rule.text
            requested = normalise_action(facts.get("action") or "")
            allowed = {normalise_action(a) for a in allowed_requested}
            if requested is not None and requested in allowed and requested != "requested":
                return requested, rule.text
            return "notify", rule.text
    return "notify", "(no rule matched)"


def strongest(actions: Iterable[str]) -> str:
    return max(actions, key=lambda a: STRENGTH.get(a, 0), default="none")
