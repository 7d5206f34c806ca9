"""deploy/check.py passes on the repository, and fails on each kind of
mistake it is there to catch (run on a scratch copy of deploy/ with one
mistake each). Outside CI a missing tool skips its check; in CI (CI=true)
it fails, because deploy/tools.sh installs them all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "deploy" / "check.py"
TOOLS = {
    "kubernetes": None,
    "dockerfile": "hadolint",
    "compose": "docker-compose",
    "systemd": "systemd-analyze",
    "alerts": "promtool",
    "dashboard": "promtool",
    "docs": None,
    "aws": None,
    "pins": None,
}


def run_check(check: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [] if os.environ.get("CI") else ["--skip-missing"]
    return subprocess.run(
        [sys.executable, str(check), *flags, *args],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def need_tool(group: str) -> None:
    name = TOOLS[group]
    if name and shutil.which(name) is None and not os.environ.get("CI"):
        pytest.skip(f"{name} is not installed (sh deploy/tools.sh)")
    if group == "kubernetes":
        pytest.importorskip("kubernetes_validate")


def test_everything_in_deploy_passes() -> None:
    result = run_check(CHECK)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy checks OK" in result.stdout


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A repository-shaped directory with a private copy of deploy/."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(ROOT / "deploy", root / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / ".dockerignore", root / ".dockerignore")
    shutil.copy2(ROOT / "constraints.txt", root / "constraints.txt")
    (root / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", root / ".ci" / "run")
    for name in ("keyops", "migrations", "config", "pyproject.toml", "README.md"):
        (root / name).symlink_to(ROOT / name)
    return root


# Each batch: one check group run on a copy with several mistakes; every
# mistake must be reported. Mistakes that would hide others (a file that no
# longer parses) get a batch of their own.
# (id, group, [(file under the scratch repo, text, replacement, what the check must say), ...])
K8S = "deploy/kubernetes/"
OBS = "deploy/observability/"
UNIT = "deploy/systemd/keyops.service"
BATCHES = [
    (
        "kubernetes",
        "kubernetes",
        [
            (K8S + "deployment.yaml", "readinessProbe:", "readinesProbe:", "readinesProbe"),
            (K8S + "deployment.yaml", "replicas: 3", "replicas: 1", "at least 2 replicas"),
            (K8S + "servicemonitor.yaml", "- port: http", "- port: web", "not in Service"),
            (K8S + "servicemonitor.yaml", "interval: 30s", "interval: half-minute", "endpoints/0/interval"),
            (K8S + "configmap.yaml", "pool_size = 10", "pool_sise = 10", "pool_sise"),
            (K8S + "deployment.yaml", "key: vault-token", "key: vault-tokn", "vault-tokn"),
            (
                K8S + "deployment.yaml",
                "KEYOPS_SCHEDULER_WORKER_ID",
                "KEYOPS_SCHEDULER_WORKERID",
                "KEYOPS_SCHEDULER_WORKERID is not a keyops setting",
            ),
            (OBS + "alerts.yaml", "for: 30m", "for: 31m", "prometheusrule.yaml differs"),
        ],
    ),
    (
        "dockerfile",
        "dockerfile",
        [
            ("deploy/Dockerfile", "USER 10001:10001", "USER root", "final USER is root"),
            ("deploy/Dockerfile", "WORKDIR /src", "WORKDIR src", "DL3000"),
            (".dockerignore", "!keyops/", "", "excluded by .dockerignore"),
        ],
    ),
    (
        "compose-schema",
        "compose",
        [
            (
                "deploy/compose.yaml",
                "    restart: unless-stopped\n\n  redis:",
                "    restarts: always\n\n  redis:",
                "restarts",
            ),
        ],
    ),
    (
        "compose-wiring",
        "compose",
        [
            ("deploy/compose.yaml", "KEYOPS_REDIS_URL:", "KEYOPS_REDIS_ULR:", "KEYOPS_REDIS_ULR"),
            (
                "deploy/compose.yaml",
                "condition: service_completed_successfully",
                "condition: service_started",
                "wait for the migrate service",
            ),
        ],
    ),
    (
        "systemd-options",
        "systemd",
        [
            (UNIT, "ProtectSystem=strict", "ProtectSystem=strikt", "ProtectSystem=strict is not set"),
            (UNIT, "ProtectSystem=strict", "ProtectSystem=strikt", "systemd-analyze verify"),
            (UNIT, "NoNewPrivileges=yes\n", "", "NoNewPrivileges=yes is not set"),
        ],
    ),
    (
        "systemd-exposure",
        "systemd",
        [
            (UNIT, "SystemCallFilter=~@privileged @resources\n", "", "exposure"),
        ],
    ),
    (
        "alerts-syntax",
        "alerts",
        [
            (
                OBS + "alerts.yaml",
                "max(keyops_rotations_stuck) > 0",
                "max(keyops_rotations_stuck > 0",
                "promtool check rules",
            ),
        ],
    ),
    (
        "alerts-meaning",
        "alerts",
        [
            (OBS + "alerts.yaml", "max(keyops_keys_overdue) > 0", "max(keyops_keys_overdue) > 5", "KeyopsKeysOverdue"),
            (
                OBS + "alerts.yaml",
                "keyops_rotations_stuck",
                "keyops_rotation_stuck",
                "keyops_rotation_stuck is not a keyops metric",
            ),
        ],
    ),
    (
        "dashboard",
        "dashboard",
        [
            (
                OBS + "grafana-dashboard.json",
                "keyops_usage_events_total",
                "keyops_usage_event_total",
                "no panel shows keyops_usage_events_total",
            ),
            (
                OBS + "grafana-dashboard.json",
                "max by (state) (keyops_keys",
                "max by (state (keyops_keys",
                "does not parse",
            ),
        ],
    ),
    (
        "aws",
        "aws",
        [
            (
                "deploy/aws/keyops-iam-policy.json",
                '"secretsmanager:TagResource",',
                "",
                "keyops calls secretsmanager:TagResource",
            ),
        ],
    ),
    (
        "pins",
        "pins",
        [
            ("constraints.txt", "starlette==", "starlette-old==", "does not pin runtime dependency starlette"),
            ("constraints.txt", "orjson==", "orjson>=", "'orjson>="),
            ("constraints.txt", "\nalembic==", "\nalembic==0.9.0\n# was ", "pins alembic==0.9.0, outside"),
            (
                "deploy/Dockerfile",
                "RUN sh /usr/local/bin/keyops-install",
                "RUN CONSTRAINTS=/src/other.txt sh /usr/local/bin/keyops-install",
                "overrides CONSTRAINTS",
            ),
            ("deploy/Dockerfile", "README.md constraints.txt ./", "README.md ./", "does not COPY constraints.txt"),
            ("deploy/install.sh", '--constraint "$constraints" ', "", "install.sh: its pip install does not use"),
            (".ci/run", "-c constraints.txt ", "", ".ci/run: the test environment is not installed"),
        ],
    ),
    (
        "docs",
        "docs",
        [
            ("deploy/README.md", "keyops keys rotate payments/demo", "keyops keys spin payments/demo", "command group"),
            ("deploy/README.md", "--owner team-payments", "--ownr team-payments", "--ownr is not an option"),
            (
                OBS + "alerts.yaml",
                "`keyops rotations list --status",
                "`keyops rotation list --status",
                "no such command",
            ),
        ],
    ),
]


@pytest.mark.parametrize(("group", "mistakes"), [b[1:] for b in BATCHES], ids=[b[0] for b in BATCHES])
def test_check_catches(scratch: Path, group: str, mistakes: list[tuple[str, str, str, str]]) -> None:
    need_tool(group)
    for path, old, new, _ in mistakes:
        target = scratch / path
        text = target.read_text(encoding="utf-8")
        if old in text:
            target.write_text(text.replace(old, new), encoding="utf-8")
        else:
            assert new in text, f"the mistake no longer applies to {path}: {old!r} not found"
    result = run_check(scratch / "deploy" / "check.py", "--only", group)
    assert result.returncode == 1, result.stdout + result.stderr
    for _, _, _, message in mistakes:
        assert message in result.stdout, f"{message!r} not reported:\n{result.stdout}"


def test_kubernetes_wait_for_schema_command(tmp_path: Path) -> None:
    """The Deployment's init container waits with `keyops db current`; its
    condition must be false before the migration Job ran and true after."""
    manifest = (ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text(encoding="utf-8")
    match = re.search(r"until (.+?); do", manifest)
    assert match, "wait-for-schema loop not found in deployment.yaml"
    condition = match.group(1)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "keyops").write_text(f'#!/bin/sh\nexec {sys.executable} -m keyops "$@"\n', encoding="utf-8")
    (shim / "keyops").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYOPS_", "VAULT_"))}
    env["PATH"] = f"{shim}:{env.get('PATH', '')}"
    env["KEYOPS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'inventory.db'}"
    env["KEYOPS_DATABASE_AUTO_MIGRATE"] = "false"

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert sh(condition).returncode != 0, "the schema is not migrated yet, but the init container would go on"
    assert sh("keyops db upgrade").returncode == 0  # what migrate-job.yaml runs
    assert sh(condition).returncode == 0, "the schema is current, but the init container would keep waiting"
