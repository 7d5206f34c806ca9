"""Settings: sources, precedence, and one-line errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyops.config import load_settings
from keyops.errors import ConfigError


def test_defaults_use_sqlite_in_the_working_directory() -> None:
    settings = load_settings(env={})
    assert settings.database.url == "sqlite:///keyops.db"
    assert settings.keys.prefix == "kops_live"


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[database]\nurl = "sqlite:///from-file.db"\n[keys]\nprefix = "acme_live"\n')
    settings = load_settings(str(path), env={})
    assert settings.database.url == "sqlite:///from-file.db"
    assert settings.source == str(path)
    settings = load_settings(str(path), env={"KEYOPS_DATABASE_URL": "sqlite:///from-env.db"})
    assert settings.database.url == "sqlite:///from-env.db"
    assert settings.keys.prefix == "acme_live"


def test_keyops_config_variable(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[keys]\nprefix = "kops_test"\n')
    assert load_settings(env={"KEYOPS_CONFIG": str(path)}).keys.prefix == "kops_test"


def test_vault_variables_are_defaults() -> None:
    settings = load_settings(env={"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t"})
    assert settings.stores.vault.addr == "http://127.0.0.1:8200"
    assert settings.stores.vault.token == "t"
    settings = load_settings(env={"VAULT_ADDR": "http://a", "KEYOPS_STORES_VAULT_ADDR": "http://b"})
    assert settings.stores.vault.addr == "http://b"


@pytest.mark.parametrize(
    ("content", "env", "needle"),
    [
        ('[database]\nurl = "mysql://x"\n', {}, "database.url"),
        ("[database]\npool_size = 'big'\n", {}, "database.pool_size"),
        ("[databse]\nurl = 'sqlite://'\n", {}, "unknown setting databse"),
        ("[keys]\nprefix = 'Bad-Prefix'\n", {}, "keys.prefix"),
        ("", {"KEYOPS_DATABASE_AUTO_MIGRATE": "perhaps"}, "KEYOPS_DATABASE_AUTO_MIGRATE"),
        ("[log]\nlevel = 'LOUD'\n", {}, "log.level"),
        ("[detection]\nmax_buffered = 5\n", {}, "detection.max_buffered"),
        ("", {"KEYOPS_DETECTION_MAX_BUFFERED": "lots"}, "KEYOPS_DETECTION_MAX_BUFFERED"),
        ("not toml at all = = =", {}, "not valid TOML"),
        ("[redis]\ntimeout_ms = 0\n", {}, "redis.timeout_ms"),
        ("", {"KEYOPS_REDIS_TIMEOUT_MS": "fast"}, "KEYOPS_REDIS_TIMEOUT_MS"),
        ("[redis]\nbreaker_failures = 0\n", {}, "redis.breaker_failures"),
        ("[redis]\nbreaker_cooldown = 'soon'\n", {}, "redis.breaker_cooldown"),
        ("[redis]\nbreaker_cooldown = '0'\n", {}, "redis.breaker_cooldown"),
    ],
)
def test_bad_settings_give_one_line_naming_the_setting(
    tmp_path: Path, content: str, env: dict[str, str], needle: str
) -> None:
    path = tmp_path / "k.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_redis_resilience_defaults_and_overrides() -> None:
    redis = load_settings(env={}).redis
    assert (redis.timeout_ms, redis.breaker_failures, redis.breaker_cooldown) == (250, 3, "5s")
    redis = load_settings(env={"KEYOPS_REDIS_TIMEOUT_MS": "100", "KEYOPS_REDIS_BREAKER_COOLDOWN": "1m"}).redis
    assert (redis.timeout_ms, redis.breaker_cooldown) == (100, "1m")


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "nope.toml"), env={})
