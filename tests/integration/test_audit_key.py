"""The audit key file: created once and atomically, private, never empty,
and by default outside the database and the file store's directory."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from keyops.audit_key import load_audit_key
from keyops.config import AuditSettings, load_settings
from keyops.errors import ConfigError

ROUNDS = 15
RACERS = 4


def _race(paths: list[str], barrier: object, results: object) -> None:
    """One racer: for every round, wait for the others, then load (and
    perhaps create) the key at the same moment as they do."""
    for path in paths:
        barrier.wait(60)  # type: ignore[attr-defined]
        try:
            key = load_audit_key(AuditSettings(key_file=path))
            results.put((path, key.key_id))  # type: ignore[attr-defined]
        except ConfigError as exc:
            results.put((path, f"error: {exc}"))  # type: ignore[attr-defined]


def test_processes_creating_the_key_at_once_end_with_one_key(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"round-{i}" / "audit.key") for i in range(ROUNDS)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACERS)
    results = ctx.Queue()
    racers = [ctx.Process(target=_race, args=(paths, barrier, results)) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    seen: dict[str, set[str]] = {p: set() for p in paths}
    for _ in range(ROUNDS * RACERS):
        path, key_id = results.get(timeout=120)
        seen[path].add(key_id)
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    for path in paths:
        assert len(seen[path]) == 1, seen[path]  # every racer got the same key, none an error
        (only,) = seen[path]
        assert not only.startswith("error"), only
        assert load_audit_key(AuditSettings(key_file=path)).key_id == only
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert os.listdir(Path(path).parent) == ["audit.key"]  # no temporary file left behind


def test_a_new_key_file_is_private_and_long(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "audit.key"
    key = load_audit_key(AuditSettings(key_file=str(path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_text().strip()) == 64
    assert load_audit_key(AuditSettings(key_file=str(path))).key_id == key.key_id
    assert path.read_text().strip() not in repr(key)


def test_key_file_readable_by_others_is_refused(tmp_path: Path, cli, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    path = Path(env["KEYOPS_AUDIT_KEY_FILE"])
    path.parent.mkdir(parents=True)
    path.write_text("k" * 64 + "\n")
    path.chmod(0o644)
    run = cli("keys", "issue", "team/a", "--owner", "t")
    assert run.code == 3
    assert run.stderr == (
        f"keyops: error: setting audit.key_file: {path} is accessible by group or others (mode 0644); "
        f"the audit key must be private: chmod 600 {path}\n"
    )
    assert path.read_text() == "k" * 64 + "\n" and stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o600)
    listed = cli("keys", "list", "--json")  # nothing was issued, nor an inventory made
    assert listed.stdout.strip() in ("", "[]") and "team/a" not in listed.stdout + listed.stderr


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_any_group_or_other_permission_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "audit.key"
    path.write_text("k" * 64)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o}"):
        load_audit_key(AuditSettings(key_file=str(path)))


@pytest.mark.parametrize(("content", "problem"), [("", "is empty"), ("\n", "is empty"), ("short", "holds only 5")])
def test_empty_or_short_key_file_is_refused(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "audit.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=problem):
        load_audit_key(AuditSettings(key_file=str(path)))
    assert path.read_text() == content  # never replaced by a new key


def test_short_key_from_the_environment_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    run = cli("audit", "verify", extra_env={"KEYOPS_AUDIT_KEY": "too-short"})
    assert run.code == 3
    assert run.stderr.startswith("keyops: error: setting audit.key is too short (9 characters, at least 32)")


def test_unusable_key_location_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^setting audit.key_file: cannot use .*a-file/audit.key"):
        load_audit_key(AuditSettings(key_file=str(blocker / "audit.key")))


def test_default_key_location_is_keyops_own_directory(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": str(tmp_path)})
    assert settings.audit.key_file == str(tmp_path / ".config" / "keyops" / "audit.key")
    xdg = load_settings(env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert xdg.audit.key_file == str(tmp_path / "xdg" / "keyops" / "audit.key")
    systemd = load_settings(env={"HOME": "/", "STATE_DIRECTORY": "/var/lib/keyops:/var/lib/other"})
    assert systemd.audit.key_file == "/var/lib/keyops/audit.key"
    explicit = load_settings(env={"HOME": str(tmp_path), "KEYOPS_AUDIT_KEY_FILE": "/etc/keyops/audit.key"})
    assert explicit.audit.key_file == "/etc/keyops/audit.key"
    # Never the database's or the file store's directory (both default to the working directory).
    key_dir = Path(settings.audit.key_file).parent
    assert key_dir != Path(settings.stores.file.directory).resolve()
    assert key_dir != Path.cwd()
