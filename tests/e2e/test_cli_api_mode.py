"""The CLI as a client of the admin API, against a real ``keyops serve``:
each command in API mode (``KEYOPS_ADDR`` and ``KEYOPS_TOKEN`` or
``--addr``/``--token-file``) prints what database mode prints and exits
with the same code; the audit log names the token and the client address.

One server for all of it (a process start costs seconds), SQLite only:
the admin routes run on PostgreSQL in the in-process role matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serving import Served, free_port

pytestmark = pytest.mark.slow


def _same(db: Any, api: Any) -> None:
    assert (api.code, api.stdout, api.stderr) == (db.code, db.stdout, db.stderr), (db, api)


def test_every_client_command_matches_database_mode(
    cli: Any, servers: Callable[..., Served], env: dict[str, str], tmp_path: Path
) -> None:
    if not env["KEYOPS_DATABASE_URL"].startswith("sqlite"):
        pytest.skip("one keyops serve on SQLite; PostgreSQL runs the same routes in the in-process matrix")
    made = cli("tokens", "create", "root", "--scopes", "admin", "--json")
    assert made.code == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    server = servers()
    api_env = {"KEYOPS_ADDR": server.url, "KEYOPS_TOKEN": token}

    def both(*args: str) -> tuple[Any, Any]:
        return cli(*args), cli(*args, extra_env=api_env)

    def api(*args: str) -> Any:
        return cli(*args, extra_env=api_env)

    # keys issue: the same document, the key printed once
    issued = api("keys", "issue", "team/api", "--owner", "team", "--json")
    local = cli("keys", "issue", "team/db", "--owner", "team", "--json")
    assert issued.code == local.code == 0, issued.stderr
    assert set(json.loads(issued.stdout)) == set(json.loads(local.stdout))
    assert json.loads(issued.stdout)["key"].startswith("kops_")
    plain = api("keys", "issue", "team/plain", "--owner", "team")
    assert plain.code == 0 and plain.stdout.startswith("Issued team/plain"), plain

    for args in (
        ("keys", "list", "--json"),
        ("keys", "list"),
        ("keys", "list", "--limit", "1", "--json"),
        ("keys", "list", "--cursor", "team/api", "--json"),
        ("keys", "show", "team/api", "--json"),
        ("keys", "show", "team/missing"),
    ):
        db, remote = both(*args)
        if args[:3] == ("keys", "list", "--limit"):
            # the count of further keys needs the database; the page and exit code do not
            assert (remote.code, remote.stdout) == (db.code, db.stdout) and "--cursor team/api" in remote.stderr
            continue
        _same(db, remote)
    assert cli("keys", "show", "team/missing", extra_env=api_env).code == 4

    for action, want in (("suspend", "suspended"), ("resume", "active")):
        changed = api("keys", action, "team/api", "--reason", "e2e", "--json")
        assert changed.code == 0 and json.loads(changed.stdout)["state"] == want, changed
        again = cli("keys", "show", "team/api", "--json")
        assert json.loads(again.stdout)["state"] == want
    conflict_db, conflict_api = both("keys", "resume", "team/api")
    _same(conflict_db, conflict_api)
    assert conflict_api.code == 5

    rotated = api("keys", "rotate", "team/api", "--grace", "0", "--json")
    assert rotated.code == 0, rotated.stderr
    rotation = json.loads(rotated.stdout)
    assert rotation["new_version"] == 2 and rotation["status"] == "finished"
    revoked = api("keys", "revoke", "team/db", "--json")
    assert revoked.code == 0 and json.loads(revoked.stdout)["state"] == "revoked"

    for args in (
        ("rotations", "list", "--json"),
        ("rotations", "show", rotation["id"], "--json"),
        ("rotations", "show", "nope"),
        ("findings", "list", "--json"),
        ("findings", "show", "nope"),
        ("audit", "list", "--json"),
        ("audit", "verify", "--json"),
        ("tokens", "list", "--json"),
    ):
        _same(*both(*args))
    resumed_db, resumed_api = both("rotations", "resume", "--json")
    assert resumed_api.code == resumed_db.code == 0
    assert {**json.loads(resumed_api.stdout), "held": []} == json.loads(resumed_db.stdout)

    # tokens through the API, with the token given in a file and --addr
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    flags = ("--addr", server.url, "--token-file", str(token_file))
    created = cli(*flags, "tokens", "create", "ci", "--scopes", "verify", "--json")
    assert created.code == 0 and set(json.loads(created.stdout)) == {"name", "token", "scopes"}, created
    gone = cli(*flags, "tokens", "revoke", "ci")
    assert (gone.code, gone.stdout.strip()) == (0, "Revoked token ci."), gone
    listed = {t["name"]: t for t in json.loads(cli("tokens", "list", "--json").stdout)}
    assert listed["ci"]["revoked_at"] is not None and listed["root"]["revoked_at"] is None

    # the audit actor is the token the server authenticated, at the client's address
    events = json.loads(cli("audit", "list", "--json").stdout)
    actors = {(e["action"], e["key_name"]): e["actor"] for e in events}
    assert actors[("key.issued", "team/api")] == "token:root@127.0.0.1"
    assert actors[("key.issued", "team/db")].startswith("local:")
    assert actors[("key.suspended", "team/api")] == "token:root@127.0.0.1"
    assert actors[("key.revoked", "team/db")] == "token:root@127.0.0.1"
    assert actors[("token.created", None)] == "token:root@127.0.0.1"

    # commands not served by the API say so instead of opening the database
    refused = api("cases", "list")
    assert refused.code == 3 and "does not work through the admin API" in refused.stderr

    # an unreachable server, a bad token: one line each, with its exit code
    down = cli("keys", "list", extra_env={**api_env, "KEYOPS_ADDR": f"http://127.0.0.1:{free_port()}"})
    assert down.code == 7 and down.stdout == "", down
    assert down.stderr.count("\n") == 1 and down.stderr.startswith("keyops: error: cannot reach keyops at"), down
    bad = cli("keys", "list", extra_env={**api_env, "KEYOPS_TOKEN": "kops_tok_wrong"})
    assert bad.code == 3 and bad.stderr.count("\n") == 1 and "refused the token" in bad.stderr, bad
    half = cli("keys", "list", extra_env={"KEYOPS_ADDR": server.url})
    assert half.code == 3 and "no token" in half.stderr, half

    # API mode starts without SQLAlchemy (nor the lifecycle services)
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write(f\"sqlalchemy={'sqlalchemy' in sys.modules}\\n\"))\n"
        "sys.argv = ['keyops', 'keys', 'list', '--json']\n"
        "from keyops.cli.main import run\n"
        "run()\n"
    )
    light = cli_python(probe, {**env, **api_env}, tmp_path)
    assert "sqlalchemy=False" in light, light


def cli_python(code: str, env: dict[str, str], cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter with the CLI's environment; its stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    return proc.stderr
