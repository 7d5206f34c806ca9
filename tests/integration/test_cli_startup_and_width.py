"""The CLI as a new user meets it: fast to start (command modules load on
first use), output that fits 80 columns without breaking words, short id
prefixes that every id argument takes, and shell completion."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keyops.bootstrap import App
from keyops.cli import lazy
from keyops.cli.main import COMMANDS
from keyops.errors import NotFoundError
from keyops.inventory import models
from keyops.inventory.idprefix import resolve_id
from tests.conftest import CliResult
from tests.support.databases import sqlite_url

WIDE = 80


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: what is checked here is the CLI's own output."""
    return sqlite_url(tmp_path)


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, f"exit {result.code}: {result.stderr}"
    return result


def fits(text: str) -> None:
    long = [line for line in text.splitlines() if len(line) > WIDE]
    assert not long, long


def _sqlite_only(app: App) -> None:
    # Each CLI run is a fresh interpreter; what these check (imports, widths)
    # does not depend on the database.
    if app.settings.database.url.startswith("postgresql"):
        pytest.skip("CLI output is checked on SQLite; the database does not change it")


def test_importing_the_cli_or_running_version_and_help_loads_no_command_module_nor_sqlalchemy(tmp_path: Path) -> None:
    script = """
import json, sys
import keyops.cli.main as main
loaded = {"import": sorted(sys.modules)}
for argv in (["version"], ["--help"]):
    sys.argv = ["keyops", *argv]
    try:
        main.run()
    except SystemExit:
        pass
    loaded[argv[0]] = sorted(sys.modules)
print(json.dumps(loaded), file=sys.stderr)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert "keyops 0." in done.stdout and "Commands:" in done.stdout
    for when, modules in loaded.items():
        heavy = [m for m in modules if m.split(".")[0] in ("sqlalchemy", "rich", "uvicorn", "starlette", "alembic")]
        commands = [m for m in modules if m.startswith("keyops.cli.") and m.endswith("_cmd")]
        assert not heavy and not commands, (when, heavy, commands)
    assert not (tmp_path / "keyops.db").exists()


def test_keys_list_builds_no_part_a_read_does_not_use(app: App, cli: Any, env: dict[str, str], tmp_path: Path) -> None:
    """``keys list`` imports neither the rotation engine, the detection engine,
    the alert receiver nor Alembic (most of its start-up time once was just
    that), and the App builds those parts only when something asks for them."""
    _sqlite_only(app)
    ok(cli("keys", "issue", "team/listed", "--owner", "o"))
    script = """
import json, sys
import keyops.cli.main as main
sys.argv = ["keyops", "keys", "list", "--json"]
try:
    main.run()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [k["name"] for k in json.loads(done.stdout)] == ["team/listed"]
    modules = json.loads(done.stderr.strip().splitlines()[-1])
    unneeded = ("keyops.lifecycle.rotation", "keyops.detect", "keyops.alerts.receiver", "keyops.lifecycle.checkpoint")
    heavy = [m for m in modules if m.startswith(unneeded) or m.split(".")[0] in ("alembic", "uvicorn", "starlette")]
    assert not heavy, heavy
    assert "rich.progress" not in modules
    built = set(vars(app))
    assert not built & {"alerts", "detection", "checkpoints", "rotations", "issuers"}, built
    assert app.rotations is app.rotations  # built once, on first use


def test_the_root_help_lists_each_command_with_its_own_help() -> None:
    for entry in COMMANDS:
        command = lazy.load(entry)
        assert command.get_short_help_str(limit=300) == entry.help, entry.name


def test_every_help_page_fits_80_columns_and_names_options_whole(tmp_path: Path) -> None:
    """Every command's --help as Click renders it at 80 columns (one process walks the tree)."""
    script = """
import sys
import typer.main
from typer import _click as click
from keyops.cli.main import app
root = typer.main.get_command(app)
def walk(command, path, parent):
    ctx = click.Context(command, info_name=path[-1], parent=parent, terminal_width=80, max_content_width=80)
    print("=== " + " ".join(path))
    print(command.get_help(ctx))
    for name in getattr(command, "list_commands", lambda ctx: [])(ctx):
        walk(command.get_command(ctx, name), [*path, name], ctx)
walk(root, ["keyops"], None)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    pages = done.stdout
    assert pages.count("=== ") > 40  # every group and command
    fits(pages)
    assert "<bool>" not in pages and "…" not in pages
    assert "--evict-oldest-inactive" in pages  # cut to "--evict-oldest-inacti…" by rich help before
    assert "--install-completion" in pages


def test_user_output_fits_80_columns_without_splitting_words(app: App, cli: Any) -> None:
    _sqlite_only(app)
    names = ["payments/prod-llm-eu-west-primary", "search/indexer-batch", "support/chat-assistant"]
    for name in names:
        app.keys.issue(name, owner="payments-platform-team", profile="interactive", policy="standard", actor="t")
    app.rotations.rotate(names[0], actor="t")
    narrow = {"COLUMNS": str(WIDE)}
    outputs = {
        args: ok(cli(*args.split(), extra_env=narrow)).stdout
        for args in ("keys list", f"keys show {names[0]}", "profiles list", "rotations list")
    }
    for args, text in outputs.items():
        fits(text)
        assert "┃" not in text and "│" not in text, args
    words = {w for text in outputs.values() for w in re.split(r"[\s,:]+", text)}
    for whole in ["profile", "version", "interactive", "standard", "payments-platform-team", *names]:
        assert whole in words, whole
    assert "profil" not in words and "versi" not in words
    # profiles list: one profile a row, not one word a line
    profiles = outputs["profiles list"].splitlines()
    assert [line.split()[0] for line in profiles if not line.startswith(" ")] == [
        "name",
        "batch",
        "interactive",
        "service",
    ]


def test_short_id_prefixes_are_accepted_and_an_ambiguous_one_names_the_candidates(app: App, cli: Any) -> None:
    ids = [
        app.keys.issue(f"team/key-{i}", owner="team", profile="interactive", policy="standard", actor="t").key.id
        for i in range(3)
    ]
    rotation = app.rotations.rotate("team/key-0", actor="t").rotation_id
    listing = ok(cli("keys", "list", extra_env={"COLUMNS": "200"})).stdout
    shown = [line.split()[1] for line in listing.splitlines()[1:]]
    assert len(shown) == 3 and all(len(s) >= 8 for s in shown)
    assert sorted(shown) == sorted(i[: len(shown[0])] for i in ids)
    assert json.loads(ok(cli("keys", "show", shown[1], "--json")).stdout)["id"] in ids

    common = ids[0][:4]
    assert all(i.startswith(common) for i in ids)  # UUIDv7: made within the same minutes
    ambiguous = cli("keys", "revoke", common, "--reason", "x")
    assert ambiguous.code == 6, (ambiguous.code, ambiguous.stderr)
    line = ambiguous.stderr.strip()
    assert line.startswith("keyops: error: key id prefix") and "ambiguous" in line and "\n" not in line
    assert all(i in line for i in ids)
    assert [v.state for v in app.keys.list()] == ["active"] * 3  # nothing changed
    with app.sessions() as session:
        assert resolve_id(session, models.Key.id, ids[2][:13], what="key", listing="l") == ids[2]
        with pytest.raises(NotFoundError):
            resolve_id(session, models.Key.id, "ffffffff", what="key", listing="l")

    shown_rotation = ok(cli("rotations", "list")).stdout.splitlines()[1].split()[0]
    assert rotation.startswith(shown_rotation) and len(shown_rotation) < len(rotation)
    assert json.loads(ok(cli("rotations", "show", shown_rotation, "--json")).stdout)["id"] == rotation


def test_shell_completion_is_on_and_completes_lazily_loaded_commands(cli: Any) -> None:
    script = ok(cli("--show-completion", "bash")).stdout
    assert "_KEYOPS_COMPLETE" in script and "complete -o default -F _keyops_completion keyops" in script
    words = {"_KEYOPS_COMPLETE": "complete_bash", "COMP_WORDS": "keyops keys re", "COMP_CWORD": "2"}
    completed = ok(cli(extra_env=words)).stdout.split()
    assert {"revoke", "resume"} <= set(completed), completed


def test_warnings_are_text_lines_on_a_terminal_and_json_when_piped(env: dict[str, str], tmp_path: Path) -> None:
    """The file store's first-use warning: read as a line by a person at a
    terminal (stderr a pty), as JSON by a log pipeline (stderr a pipe)."""
    import os
    import pty

    def issue(name: str, stderr: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keyops", "keys", "issue", name, "--owner", "o", "--dest", f"file:{name}.key"],
            cwd=tmp_path,
            env={**env, "KEYOPS_LOG_FORMAT": "json"},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    master, replica = pty.openpty()
    try:
        done = issue("team/first", replica)
        os.close(replica)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the pty's other end is closed: everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert done.returncode == 0
    warning = [line for line in seen.decode().splitlines() if "file-store encryption key" in line]
    assert len(warning) == 1 and " WARNING keyops." in warning[0] and not warning[0].lstrip().startswith("{")

    (tmp_path / "xdg-config" / "keyops" / "file-store.key").unlink()  # the next issue warns again
    piped = issue("team/second", subprocess.PIPE)
    assert piped.returncode == 0, piped.stderr
    lines = [json.loads(line) for line in piped.stderr.splitlines() if "file-store encryption key" in line]
    assert len(lines) == 1 and lines[0]["level"] == "warning"
