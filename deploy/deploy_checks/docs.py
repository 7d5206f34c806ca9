"""Commands the deployment files tell people (or pods) to run must exist:
every ``keyops COMMAND ... --option`` in deploy/README.md, the alert
descriptions, the manifests and the unit is looked up in keyops' own CLI."""

from __future__ import annotations

import re
from typing import Any

from .common import DEPLOY, Report

SOURCES = [
    DEPLOY / "README.md",
    DEPLOY / "observability" / "alerts.yaml",
    DEPLOY / "kubernetes" / "deployment.yaml",
    DEPLOY / "kubernetes" / "migrate-job.yaml",
    DEPLOY / "systemd" / "keyops.service",
    DEPLOY / "compose.yaml",
]
#: "keyops" followed by words; not a namespace (kubectl -n keyops ...) nor
#: the compose service (docker compose exec keyops ...).
_INVOCATION = re.compile(r"(?<!-n )(?<!namespace )(?<!exec )(?<![.-])\bkeyops((?: +[a-z][a-z0-9_./:-]*)+)([^`\n]*)")


def _cli() -> Any:
    """keyops' click command tree (typer may vendor its own click, so the
    objects are duck-typed: groups are what has ``get_command``)."""
    import typer.main

    from keyops.cli.main import app

    return typer.main.get_command(app)


def _is_group(command: Any) -> bool:
    return hasattr(command, "get_command")


def _resolve(root: Any, words: list[str]) -> tuple[Any, list[str]]:
    """Follow sub-commands as far as the words go; the rest are arguments."""
    ctx = root.context_class(root)
    command = root
    used = 0
    for word in words:
        if not _is_group(command):
            break
        sub = command.get_command(ctx, word)
        if sub is None:
            break
        command = sub
        used += 1
    return (command if used else None), words[used:]


def _in_code(line: str, start: int, fenced: bool) -> bool:
    """Inside a fenced block (but not a shell comment) or a `code span`."""
    before = line[:start]
    return (fenced and "#" not in before) or before.count("`") % 2 == 1


def check(report: Report) -> None:
    root = _cli()
    seen = 0
    for path in SOURCES:
        # Shell continuation lines belong to the command before them.
        text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
        fenced = False
        for line in text.splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            for match in _INVOCATION.finditer(line):
                words = match.group(1).split()
                while words and words[0] == "keyops":  # docker compose exec keyops keyops ...
                    words.pop(0)
                if not words:
                    continue
                command, _ = _resolve(root, words)
                where = f"{path.relative_to(DEPLOY.parent)}: `keyops {' '.join(words[:2])}`"
                if command is None:
                    # Prose ("keyops holds no state") unless written as code.
                    if _in_code(line, match.start(), fenced and path.suffix == ".md"):
                        report.fail(f"{where}: no such command")
                    continue
                if _is_group(command):
                    report.fail(f"{where}: names a command group, not a command")
                    continue
                seen += 1
                options = {opt for param in command.params for opt in getattr(param, "opts", [])}
                for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", match.group(2)):
                    if option not in options:
                        report.fail(f"{where}: {option} is not an option of that command")
    report.expect(seen > 0, "no keyops invocations found: is the pattern still right?")
    report.note(f"{seen} keyops invocations checked against the CLI")
