"""The alert rules: syntax errors name the rule; first match wins; requests are capped."""

from __future__ import annotations

import pytest

from keyops.alerts.rules import RuleError, decide, parse_rules, strongest
from keyops.config import DEFAULT_ALERT_RULES


def facts(**kw: str) -> dict[str, str]:
    base = {"severity": "", "status": "firing", "kind": "alert", "type": "", "action": ""}
    base.update(kw)
    return base


def test_defaults() -> None:
    rules = parse_rules(DEFAULT_ALERT_RULES)
    assert decide(rules, "github", facts(kind="leak"))[0] == "rotate_now"
    assert decide(rules, "sns", facts(kind="guardduty", severity="high"))[0] == "rotate_now"
    assert decide(rules, "sns", facts(kind="cloudwatch", severity="critical"))[0] == "suspend"
    assert decide(rules, "alertmanager", facts(severity="critical"))[0] == "suspend"
    assert decide(rules, "alertmanager", facts(severity="warning"))[0] == "notify"
    assert decide(rules, "alertmanager", facts(severity="critical", status="resolved"))[0] == "none"
    assert decide(rules, "standard", facts(action="revoke"))[0] == "revoke"
    assert decide(rules, "standard", facts(action="Rotate-Now"))[0] == "rotate_now"
    assert decide(rules, "standard", facts(action="explode"))[0] == "notify"


def test_requested_is_capped_by_allowed() -> None:
    rules = parse_rules(["standard -> requested"])
    assert decide(rules, "standard", facts(action="revoke"), allowed_requested=["notify", "suspend"])[0] == "notify"
    assert decide(rules, "standard", facts(action="suspend"), allowed_requested=["notify", "suspend"])[0] == "suspend"


def test_no_rule_means_notify() -> None:
    assert decide(parse_rules(["github -> revoke"]), "grafana", facts()) == ("notify", "(no rule matched)")


@pytest.mark.parametrize(
    "line", ["github", "github -> explode", " -> notify", "github sev=high -> notify", "github severity= -> notify"]
)
def test_bad_rules_are_named(line: str) -> None:
    with pytest.raises(RuleError, match="rule 2"):
        parse_rules(["* -> notify", line])


def test_bad_allowed_requested() -> None:
    with pytest.raises(RuleError):
        parse_rules([], allowed_requested=["nuke"])


def test_strongest() -> None:
    assert strongest(["notify", "revoke", "rotate"]) == "revoke"
    assert strongest([]) == "none"
