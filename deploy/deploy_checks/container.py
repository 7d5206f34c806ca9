"""The Dockerfile (hadolint, plus the properties issue 7 asks for) and the
compose file (the real Compose v2 `config` command, plus the wiring)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from typing import Any

import yaml

from .common import DEPLOY, ROOT, Report, check_env_names, check_settings_file, first_line, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_SERVICES = {"keyops", "migrate", "postgres", "redis", "vault", "moto"}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; "!" re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes) or (
            pat.startswith("**/") and any(fnmatch.fnmatchcase(part, pat[3:]) for part in parts)
        ):
            ignored = not negate
    return ignored


def check_dockerfile(report: Report) -> None:
    hadolint = tool("hadolint", "KEYOPS_HADOLINT")
    version = first_line(run([hadolint, "--version"]).stdout)
    report.note(f"hadolint: {version}")
    result = run([hadolint, "--no-color", str(DOCKERFILE)])
    if result.returncode != 0:
        for line in (result.stdout + result.stderr).strip().splitlines():
            report.fail(f"hadolint: {line}")
    text = DOCKERFILE.read_text(encoding="utf-8")
    steps = _instructions(text)
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    report.expect(len(froms) >= 2, "Dockerfile: not multi-stage")
    final = steps[froms[-1] :] if froms else steps
    base = final[0][1] if final else ""
    report.expect("slim" in base or "${PYTHON_IMAGE}" in base, f"Dockerfile: final base {base!r} is not a slim image")
    arg_default = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    report.expect(bool(arg_default and "slim" in arg_default.group(1)), "Dockerfile: PYTHON_IMAGE must default to slim")
    users = [args for word, args in final if word == "USER"]
    report.expect(bool(users) and users[-1].split(":")[0] not in ("root", "0"), "Dockerfile: final USER is root")
    checks = [args for word, args in final if word == "HEALTHCHECK"]
    report.expect(bool(checks) and "/healthz" in checks[-1], "Dockerfile: no HEALTHCHECK on /healthz")
    entry = [json.loads(args) for word, args in final if word == "ENTRYPOINT"]
    cmd = [json.loads(args) for word, args in final if word == "CMD"]
    report.expect(bool(entry) and entry[-1] == ["keyops"], "Dockerfile: ENTRYPOINT must be keyops")
    report.expect(bool(cmd) and cmd[-1] == ["serve"], "Dockerfile: CMD must be serve")
    for word, args in final:
        if word == "RUN" and re.search(r"\b(apt-get|apk|gcc|pip)\b", args):
            report.fail(f"Dockerfile: the final stage must not install anything: RUN {args[:60]}")
        if word == "COPY" and "--from=" not in args:
            report.fail(f"Dockerfile: the final stage copies from the build context: COPY {args[:60]}")
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]
    for word, args in steps:
        if word != "COPY" or "--from=" in args:
            continue
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            path = source.rstrip("/")
            report.expect((ROOT / path).exists(), f"Dockerfile: COPY {source}: no such path")
            report.expect(not _ignored(path, patterns), f"Dockerfile: COPY {source} is excluded by .dockerignore")
    for leak in (".git", "tests", "keyops.db", "keyops-secrets", ".venv"):
        report.expect(_ignored(leak, patterns), f".dockerignore lets {leak} into the build context")


def check_compose(report: Report) -> None:
    compose = tool("docker-compose", "KEYOPS_DOCKER_COMPOSE")
    report.note(f"docker-compose: {first_line(run([compose, 'version']).stdout)}")
    result = run([compose, "--file", str(COMPOSE), "config", "--quiet"], cwd=ROOT)
    if result.returncode != 0:
        report.fail(f"docker compose config: {(result.stderr or result.stdout).strip()}")
        return
    rendered = run([compose, "--file", str(COMPOSE), "config", "--format", "json"], cwd=ROOT)
    doc: dict[str, Any] = json.loads(rendered.stdout)
    services: dict[str, Any] = doc.get("services", {})
    missing = COMPOSE_SERVICES - set(services)
    report.expect(not missing, f"compose.yaml: missing services {sorted(missing)}")
    if missing:
        return
    keyops = services["keyops"]
    depends = keyops.get("depends_on", {})
    report.expect(
        depends.get("migrate", {}).get("condition") == "service_completed_successfully",
        "compose.yaml: keyops must wait for the migrate service to finish",
    )
    for name in ("redis", "vault", "moto"):
        report.expect(depends.get(name, {}).get("condition") == "service_healthy", f"compose: keyops -> {name} healthy")
    report.expect(services["migrate"].get("command") == ["db", "upgrade"], "compose.yaml: migrate runs db upgrade")
    report.expect(
        services["postgres"].get("healthcheck", {}).get("test") is not None, "compose.yaml: postgres has no healthcheck"
    )
    for name, service in services.items():
        for port in service.get("ports", []):
            report.expect(port.get("host_ip") == "127.0.0.1", f"compose.yaml: {name} publishes beyond loopback")
    env_names = [n for s in services.values() for n in (s.get("environment") or {})]
    check_env_names(report, env_names, "compose.yaml")
    url = keyops.get("environment", {}).get("KEYOPS_DATABASE_URL", "")
    report.expect(url.startswith("postgresql+psycopg://"), "compose.yaml: keyops must use PostgreSQL")
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    config_file = raw.get("configs", {}).get("keyops-toml", {}).get("file", "")
    config_path = (COMPOSE.parent / config_file).resolve()
    if config_path.is_file():
        check_settings_file(report, config_path.read_text(encoding="utf-8"), str(config_path.relative_to(ROOT)))
    else:
        report.fail(f"compose.yaml: config file {config_file} does not exist")
