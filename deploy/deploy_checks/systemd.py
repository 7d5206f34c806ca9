"""The systemd unit: `systemd-analyze verify` and `systemd-analyze security`
run offline against a scratch root that holds the unit, the real
keyops-start wrapper and a stand-in for the keyops binary (verify insists
that every command exists)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from .common import DEPLOY, Report, check_env_names, first_line, run, tool

UNIT = DEPLOY / "systemd" / "keyops.service"
WRAPPER = DEPLOY / "systemd" / "keyops-start"
#: Above this exposure level (0 = locked down, 10 = exposed) the check fails;
#: the unit scores 1.2 with systemd 252, so losing any filter shows.
MAX_EXPOSURE = 1.4

#: Options issue 7 requires, with the value each must have.
REQUIRED = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "DynamicUser": "yes",
    "StateDirectory": "keyops",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "Restart": "on-failure",
    "CapabilityBoundingSet": "",
}


def parse_unit(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """Sections -> option -> every value given (systemd options may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[(.+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        if current is None or "=" not in line:
            raise ValueError(f"{path}: cannot parse line {raw!r}")
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def scratch_root(tmp: Path) -> Path:
    """A filesystem root where the unit's commands exist, for --root."""
    root = tmp / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy2(UNIT, root / "etc/systemd/system" / UNIT.name)
    bindir = root / "opt/keyops/bin"
    bindir.mkdir(parents=True)
    shutil.copy2(WRAPPER, bindir / "keyops-start")
    stand_in = bindir / "keyops"
    stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stand_in.chmod(0o755)
    (root / "bin").mkdir()
    for name in ("sh", "kill"):
        found = shutil.which(name)
        if found:
            shutil.copy2(Path(found).resolve(), root / "bin" / name)
    (root / "etc/keyops/credentials").mkdir(parents=True)
    return root


def security_score(analyze: str, root: Path) -> tuple[float | None, str]:
    result = run([analyze, "security", "--offline=true", f"--root={root}", "--no-pager", UNIT.name])
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    if not match:
        return None, (result.stderr or result.stdout).strip()
    return float(match.group(1)), match.group(2)


def check(report: Report) -> None:
    units = parse_unit()
    service = units.get("Service", {})
    for option, wanted in REQUIRED.items():
        values = service.get(option)
        report.expect(values is not None and values[-1] == wanted, f"keyops.service: {option}={wanted} is not set")
    for option in ("ExecStart", "ExecReload", "LoadCredential"):
        report.expect(option in service, f"keyops.service: no {option}=")
    exec_start = service.get("ExecStart", [""])[0]
    report.expect(exec_start.startswith("/opt/keyops/bin/keyops-start "), "ExecStart must go through keyops-start")
    env_names = [v.split("=", 1)[0] for line in service.get("Environment", []) for v in line.split()]
    check_env_names(report, env_names, "keyops.service")
    report.expect(WRAPPER.stat().st_mode & 0o111 != 0, "deploy/systemd/keyops-start is not executable")

    analyze = tool("systemd-analyze", "KEYOPS_SYSTEMD_ANALYZE")
    report.note(f"systemd-analyze: {first_line(run([analyze, '--version']).stdout)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = scratch_root(Path(tmp))
        result = run([analyze, "verify", f"--root={root}", UNIT.name])
        messages = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or messages:
            for line in messages.splitlines() or [f"exit code {result.returncode}"]:
                report.fail(f"systemd-analyze verify: {line}")
        score, verdict = security_score(analyze, root)
    if score is None:
        report.fail(f"systemd-analyze security gave no score: {first_line(verdict)}")
    else:
        report.note(f"systemd-analyze security: exposure {score} {verdict} (limit {MAX_EXPOSURE})")
        report.expect(score <= MAX_EXPOSURE, f"keyops.service exposure {score} is above {MAX_EXPOSURE}")
