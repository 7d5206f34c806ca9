"""Shared pieces of the deployment checks: the report, tool lookup, and the
facts about keyops that the deployment files must agree with (setting names,
metric names)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: Every series /metrics exposes (keyops/api/metrics.py), with its type.
KNOWN_METRICS: dict[str, str] = {
    "keyops_keys": "gauge",
    "keyops_rotations_total": "counter",
    "keyops_verify_total": "counter",
    "keyops_alerts_total": "counter",
    "keyops_webhook_signature_failures_total": "counter",
    "keyops_job_duration_seconds": "histogram",
    "keyops_job_failures_total": "counter",
    "keyops_usage_events_total": "counter",
    "keyops_keys_overdue": "gauge",
    "keyops_rotations_stuck": "gauge",
    "keyops_findings_total": "counter",
    "keyops_verify_cache_keys": "gauge",
    "keyops_http_requests_total": "counter",
}
#: Series Prometheus itself adds for every target.
PROMETHEUS_METRICS = {"up"}

_METRIC_RE = re.compile(r"\b(keyops_[a-z0-9_]+|up)\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class ToolMissing(Exception):
    """A checking tool is not installed (deploy/tools.sh installs them all)."""


@dataclass
class Report:
    """Findings of one check group: problems fail it, notes are informational."""

    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)


def tool(name: str, env_var: str | None = None) -> str:
    """Path of a checking tool, from ``env_var``, PATH or the tool cache;
    promtool is fetched into the cache on first use. ToolMissing if absent."""
    if env_var and os.environ.get(env_var):
        path = os.environ[env_var]
        if not os.access(path, os.X_OK):
            raise ToolMissing(f"{env_var}={path} is not an executable file")
        return path
    found = shutil.which(name) or shutil.which(name, path=str(TOOL_CACHE))
    if found is None and name == "promtool":
        found = fetch_promtool()
    if found is None:
        raise ToolMissing(f"{name} is not installed (run: sh deploy/tools.sh)")
    return found


TOOL_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "keyops-deploy" / "bin"


def fetch_promtool() -> str | None:
    """promtool from Debian's "prometheus" package, unpacked (not installed:
    no Prometheus server is set up) into the tool cache. None when apt is
    not available or the download fails."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        download = run(["apt-get", "download", "prometheus"], cwd=Path(tmp), timeout=300)
        if download.returncode != 0 and os.geteuid() == 0:  # no package lists yet on a fresh machine
            run(["apt-get", "update", "-qq"], timeout=300)
            download = run(["apt-get", "download", "prometheus"], cwd=Path(tmp), timeout=300)
        debs = sorted(Path(tmp).glob("prometheus_*.deb"))
        if download.returncode != 0 or not debs:
            return None
        unpacked = Path(tmp) / "unpacked"
        if run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)]).returncode != 0:
            return None
        TOOL_CACHE.mkdir(parents=True, exist_ok=True)
        target = TOOL_CACHE / "promtool"
        # Copy, then rename: checks running in parallel never see half a file.
        partial = TOOL_CACHE / f".promtool.{os.getpid()}"
        shutil.copy2(unpacked / "usr" / "bin" / "promtool", partial)
        partial.chmod(0o755)
        os.replace(partial, target)
    return str(target)


def run(args: list[str], *, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )


def first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else ""


def metric_names(expr: str) -> set[str]:
    """keyops metric families (and ``up``) named in a PromQL expression;
    ``_bucket``/``_sum``/``_count`` are mapped back to their histogram."""
    names = set()
    for name in _METRIC_RE.findall(expr):
        for suffix in _HISTOGRAM_SUFFIXES:
            base = name.removesuffix(suffix)
            if base != name and KNOWN_METRICS.get(base) == "histogram":
                name = base
                break
        names.add(name)
    return names


def unknown_metrics(exprs: Iterable[str]) -> set[str]:
    known = set(KNOWN_METRICS) | PROMETHEUS_METRICS
    return {name for expr in exprs for name in metric_names(expr)} - known


def setting_env_names() -> tuple[set[str], set[str]]:
    """Every KEYOPS_<SECTION>_<FIELD> variable keyops.config understands, and
    the prefixes of named tables, derived from the Settings dataclasses
    themselves (so sections added later count)."""
    from keyops.config import ENV_PREFIX, Settings

    names: set[str] = {"KEYOPS_CONFIG", "KEYOPS_DEBUG"}
    prefixes: set[str] = set()

    def walk(cls: type, path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "source":
                continue
            fpath = f"{path}_{f.name}" if path else f.name
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                walk(typing.cast(type, kind), fpath)
            elif typing.get_origin(kind) is dict:
                # Named tables ([notify.webhooks.<name>]): any suffix.
                prefixes.add(ENV_PREFIX + fpath.upper() + "_")
            else:
                names.add(ENV_PREFIX + fpath.upper())

    walk(Settings, "")
    return names, prefixes


def check_env_names(report: Report, names: Iterable[str], where: str) -> None:
    valid, prefixes = setting_env_names()
    for name in sorted(set(names)):
        if name.startswith("KEYOPS_") and name not in valid and not name.startswith(tuple(prefixes)):
            report.fail(f"{where}: {name} is not a keyops setting (see keyops/config.py)")


def check_settings_file(report: Report, text: str, where: str) -> None:
    """The TOML must load with keyops' own loader: unknown or ill-typed
    settings fail here instead of at the first start in production."""
    import tempfile

    from keyops.config import load_settings
    from keyops.errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keyops.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_settings(str(path), env={})
        except ConfigError as exc:
            report.fail(f"{where}: keyops rejects these settings: {exc.message}")
