"""The [retention] section and the server's connection limits: defaults,
"forever", and one-line errors naming the setting."""

from __future__ import annotations

import pytest

from keyops.config import load_settings
from keyops.domain.retention import parse_retention
from keyops.errors import ConfigError


def test_retention_periods_and_forever() -> None:
    assert parse_retention("90d") == 90 * 86400
    assert parse_retention("12w") == 12 * 7 * 86400
    for keep in ("forever", "FOREVER", "never", "0", " forever "):
        assert parse_retention(keep) is None
    with pytest.raises(ValueError, match="not a retention period"):
        parse_retention("a year")


def test_defaults() -> None:
    settings = load_settings(env={})
    assert (settings.retention.inbound_alerts, settings.retention.findings) == ("90d", "365d")
    assert settings.retention.outbox_delivered == "30d"
    assert settings.server.limit_concurrency == 1000
    assert (settings.server.keepalive_timeout, settings.server.body_timeout) == ("5s", "10s")
    forever = load_settings(env={"KEYOPS_RETENTION_FINDINGS": "forever"})
    assert forever.retention.findings == "forever"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KEYOPS_RETENTION_FINDINGS": "a year"}, "setting retention.findings: 'a year' is not a retention period"),
        ({"KEYOPS_RETENTION_INBOUND_ALERTS": "1h"}, "setting retention.inbound_alerts must be at least 1d"),
        ({"KEYOPS_RETENTION_OUTBOX_DELIVERED": "5m"}, "setting retention.outbox_delivered must be at least 1h"),
        ({"KEYOPS_RETENTION_BATCH_SIZE": "1"}, "setting retention.batch_size must be between 10 and 100000"),
        ({"KEYOPS_SERVER_LIMIT_CONCURRENCY": "-1"}, "setting server.limit_concurrency must be 0 (no limit)"),
        ({"KEYOPS_SERVER_LIMIT_CONCURRENCY": "3"}, "setting server.limit_concurrency must be 0 (no limit)"),
        ({"KEYOPS_SERVER_BODY_TIMEOUT": "soon"}, "setting server.body_timeout:"),
        ({"KEYOPS_SERVER_KEEPALIVE_TIMEOUT": "0"}, "setting server.keepalive_timeout must be at least 1s"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    text = str(info.value)
    assert message in text and "\n" not in text, text
