"""deploy/systemd: the unit's hardening really takes effect (systemd's own
analysis says so, not just the text), and keyops-start turns systemd
credentials into keyops settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "keyops.service"
WRAPPER = ROOT / "deploy" / "systemd" / "keyops-start"
MAX_EXPOSURE = 1.4

HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "StateDirectory": "keyops",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
    "LoadCredential": "keyops:/etc/keyops/credentials",
    "Restart": "on-failure",
}
#: Lines of `systemd-analyze security` that must show a check mark: systemd
#: itself confirms the setting is in force for this unit.
MUST_PASS = (
    "NoNewPrivileges=",
    "ProtectSystem=",
    "ProtectHome=",
    "PrivateTmp=",
    "PrivateDevices=",
    "User=/DynamicUser=",
    "CapabilityBoundingSet=~CAP_SYS_ADMIN",
    "RestrictAddressFamilies=~AF_PACKET",
    "SystemCallFilter=~@privileged",
    "MemoryDenyWriteExecute=",
)


def unit_options() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        else:
            key, sep, value = line.partition("=")
            assert sep, f"unparsable line in keyops.service: {raw!r}"
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_hardening_options_are_set() -> None:
    service = unit_options()["Service"]
    for option, value in HARDENING.items():
        assert service.get(option, [None])[-1] == value, f"{option}={value} expected, got {service.get(option)}"
    assert service["ExecStart"] == ["/opt/keyops/bin/keyops-start /opt/keyops/bin/keyops serve"]
    # keyops serve has no SIGHUP handler: a reload must not signal it.
    assert "HUP" not in service["ExecReload"][0]
    assert "StartLimitBurst" in unit_options()["Unit"]


def _scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy2(UNIT, root / "etc/systemd/system/keyops.service")
    (root / "opt/keyops/bin").mkdir(parents=True)
    shutil.copy2(WRAPPER, root / "opt/keyops/bin/keyops-start")
    stand_in = root / "opt/keyops/bin/keyops"
    stand_in.write_text("#!/bin/sh\n", encoding="utf-8")
    stand_in.chmod(0o755)
    (root / "bin").mkdir()
    for name in ("sh", "kill"):
        found = shutil.which(name)
        assert found, name
        shutil.copy2(Path(found).resolve(), root / "bin" / name)
    return root


@pytest.fixture
def analyze(tmp_path: Path) -> tuple[str, Path]:
    path = shutil.which("systemd-analyze")
    if path is None or not Path("/usr/lib/systemd/system").is_dir():
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI: run sh deploy/tools.sh")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return path, _scratch_root(tmp_path)


def test_systemd_verify_accepts_the_unit(analyze: tuple[str, Path]) -> None:
    tool, root = analyze
    result = subprocess.run(
        [tool, "verify", f"--root={root}", "keyops.service"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_systemd_security_score(analyze: tuple[str, Path]) -> None:
    tool, root = analyze
    result = subprocess.run(
        [tool, "security", "--offline=true", f"--root={root}", "--no-pager", "keyops.service"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for keyops.service: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    score = float(match.group(1))
    print(f"systemd-analyze security keyops.service: exposure {score} {match.group(2)}")
    assert score <= MAX_EXPOSURE
    lines = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines() if line[:1] in ("✓", "✗")}
    for name in MUST_PASS:
        assert lines.get(name) == "✓", f"systemd does not consider {name} in force: {lines.get(name)}"


def _run_wrapper(credentials: Path | None, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYOPS_", "AWS_", "VAULT_"))}
    env.pop("CREDENTIALS_DIRECTORY", None)
    if credentials is not None:
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
    return subprocess.run(
        ["sh", str(WRAPPER), *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _print_env(credentials: Path | None) -> dict[str, str]:
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = _run_wrapper(credentials, sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    import json

    env: dict[str, str] = json.loads(result.stdout)
    return env


def test_credentials_become_settings(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    # Names as systemd writes them for LoadCredential=keyops:/etc/keyops/credentials.
    (creds / "keyops_database-url").write_text("postgresql+psycopg://u:p@db/keyops\n")
    (creds / "keyops_stores-vault-token").write_text("s.vault-token")
    (creds / "keyops_aws-secret-access-key").write_text("aws-secret\n")
    (creds / "redis-url").write_text("redis://cache:6379/0")
    (creds / "tls.key").write_text("-----BEGIN PRIVATE KEY-----\n")  # a file, read by path
    env = _print_env(creds)
    assert not [k for k, v in env.items() if "PRIVATE KEY" in v]
    assert env["KEYOPS_DATABASE_URL"] == "postgresql+psycopg://u:p@db/keyops"
    assert env["KEYOPS_STORES_VAULT_TOKEN"] == "s.vault-token"
    assert env["AWS_SECRET_ACCESS_KEY"] == "aws-secret"
    assert env["KEYOPS_REDIS_URL"] == "redis://cache:6379/0"


def test_without_credentials_nothing_changes() -> None:
    env = _print_env(None)
    assert not [k for k in env if k.startswith("KEYOPS_")]


def test_bad_credential_name_is_refused_without_showing_the_value(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "keyops_database url").write_text("postgresql+psycopg://u:hunter2@db/keyops")
    result = _run_wrapper(creds, "true")
    assert result.returncode == 1
    assert "credential 'database url' does not name a setting" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_credentials_directory_is_an_error(tmp_path: Path) -> None:
    result = _run_wrapper(tmp_path / "nope", "true")
    assert result.returncode == 1
    assert "is not a directory" in result.stderr


def test_keyops_reads_its_database_from_a_credential(tmp_path: Path) -> None:
    """End to end: the URL in the credential file is the one keyops uses."""
    creds = tmp_path / "creds"
    creds.mkdir()
    db = tmp_path / "from-credential.db"
    (creds / "keyops_database-url").write_text(f"sqlite:///{db}\n")
    result = _run_wrapper(creds, sys.executable, "-m", "keyops", "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert db.exists()
    assert str(db) in result.stdout.replace("\n", "")  # rich wraps long lines
