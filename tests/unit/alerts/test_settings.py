"""[alerts.*] and [notify.*] settings: defaults work, mistakes name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyops.config import load_settings
from keyops.errors import ConfigError

SECRET = "whsec_c2lua3Mtc2lnbmluZy1zZWNyZXQtMDAwMQ=="


def test_defaults_are_valid_and_sources_are_off() -> None:
    settings = load_settings(env={})
    assert not any(
        getattr(settings.alerts, s).enabled for s in ("standard", "alertmanager", "grafana", "sns", "github")
    )
    assert settings.notify.webhooks == {} and settings.notify.max_attempts == 0


def test_named_sinks_from_toml_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "keyops.toml"
    path.write_text(
        f"""
[notify.webhooks.ops]
url = "https://hooks.example/keyops"
secret = "{SECRET}"
events = ["key.rotated"]

[alerts]
rules = ["github -> revoke", "* -> notify"]
"""
    )
    env = {
        "KEYOPS_NOTIFY_WEBHOOKS_BILLING_URL": "https://billing.example/h",
        "KEYOPS_NOTIFY_WEBHOOKS_BILLING_SECRET": SECRET,
    }
    settings = load_settings(str(path), env=env)
    assert sorted(settings.notify.webhooks) == ["billing", "ops"]
    assert settings.notify.webhooks["ops"].events == ["key.rotated"]
    assert settings.notify.webhooks["billing"].url == "https://billing.example/h"
    assert settings.alerts.rules[0] == "github -> revoke"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KEYOPS_ALERTS_STANDARD_ENABLED": "true"}, "alerts.standard.secrets"),
        (
            {"KEYOPS_ALERTS_STANDARD_ENABLED": "true", "KEYOPS_ALERTS_STANDARD_SECRETS": "whsec_!!"},
            "alerts.standard.secrets",
        ),
        ({"KEYOPS_ALERTS_ALERTMANAGER_ENABLED": "true"}, "alerts.alertmanager"),
        ({"KEYOPS_ALERTS_GRAFANA_ENABLED": "true"}, "alerts.grafana"),
        ({"KEYOPS_ALERTS_SNS_ENABLED": "true"}, "alerts.sns.topic_arns"),
        ({"KEYOPS_ALERTS_SNS_TOPIC_ARNS": "not-an-arn"}, "alerts.sns.topic_arns"),
        ({"KEYOPS_ALERTS_RULES": "github -> explode"}, "alerts.rules"),
        ({"KEYOPS_ALERTS_TOLERANCE": "soon"}, "alerts.tolerance"),
        ({"KEYOPS_ALERTS_MAX_BODY_BYTES": "10"}, "alerts.max_body_bytes"),
        ({"KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": "ftp://x"}, "notify.webhooks.ops.url"),
        ({"KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": "https://x"}, "notify.webhooks.ops.secret"),
        (
            {"KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": "https://x", "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": "short"},
            "notify.webhooks.ops.secret",
        ),
        ({"KEYOPS_NOTIFY_SLACK_WEBHOOK_URL": "hooks.slack.com"}, "notify.slack.webhook_url"),
        ({"KEYOPS_NOTIFY_BACKOFF_MAX": "forever"}, "notify.backoff_max"),
        (
            {"KEYOPS_ALERTS_ALERTMANAGER_REQUIRE_TOKEN": "true", "KEYOPS_ALERTS_ALERTMANAGER_BEARER_TOKEN": "t"},
            "alerts.alertmanager.require_token",
        ),
        (
            {"KEYOPS_ALERTS_GRAFANA_REQUIRE_TOKEN": "true", "KEYOPS_ALERTS_GRAFANA_BASIC_USERNAME": "u"},
            "alerts.grafana.require_token",
        ),
        ({"KEYOPS_ALERTS_STANDARD_REQUIRE_TOKEN": "maybe"}, "alerts.standard.require_token"),
        ({"KEYOPS_ALERTS_SNS_SIGNATURE_VERSIONS": "3"}, "alerts.sns.signature_versions"),
        ({"KEYOPS_ALERTS_SNS_SIGNATURE_VERSIONS": ""}, "alerts.sns.signature_versions"),
    ],
)
def test_mistakes_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(env=env)


def test_unknown_sink_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyops.toml"
    path.write_text('[notify.webhooks.ops]\nurl = "https://x"\nsecret = "' + SECRET + '"\nsigning = "x"\n')
    with pytest.raises(ConfigError, match=r"notify\.webhooks\.ops\.signing"):
        load_settings(str(path), env={})


def test_a_required_token_is_the_credential_of_a_bearer_only_source() -> None:
    env = {"KEYOPS_ALERTS_ALERTMANAGER_ENABLED": "true", "KEYOPS_ALERTS_ALERTMANAGER_REQUIRE_TOKEN": "true"}
    assert load_settings(env=env).alerts.alertmanager.require_token
    settings = load_settings(env={"KEYOPS_ALERTS_SNS_SIGNATURE_VERSIONS": "2"})
    assert settings.alerts.sns.signature_versions == ["2"]
    assert load_settings(env={}).alerts.sns.signature_versions == ["1", "2"]


def test_sources_that_cannot_carry_a_token_have_no_such_setting(tmp_path: Path) -> None:
    path = tmp_path / "keyops.toml"
    for source in ("sns", "github"):
        path.write_text(f"[alerts.{source}]\nrequire_token = true\n")
        with pytest.raises(ConfigError, match=rf"unknown setting alerts\.{source}\.require_token"):
            load_settings(str(path), env={})
