"""Issue 17, as a new user meets the CLI (``python -m keyops`` in a scratch
directory, SQLite): usage errors are one line; bad revisions, ports, settings,
policies and filters are refused with the valid values; a revoked token's
name can be reused; keys list says what a page left out; keys issue
--from-file names every bad line, accepts dest, and shows progress only on a
terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_cli
from tests.support.databases import sqlite_url


@pytest.fixture
def run(base_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**base_env, "KEYOPS_DATABASE_URL": sqlite_url(tmp_path)}

    def invoke(*args: str, extra: dict[str, str] | None = None) -> CliResult:
        return run_cli(args, env={**env, **(extra or {})}, cwd=tmp_path)

    invoke.env = env  # type: ignore[attr-defined]
    return invoke


def one_line(result: CliResult, code: int, *needles: str) -> str:
    assert result.code == code, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("keyops: error: "), result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_usage_errors_revisions_and_ports_are_one_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one_line(run("keys", "issue", "pay/x"), 2, "--owner", "keyops keys issue --help")
    one_line(run("keys", "rotate", "pay/x", "--grace", "5", "minutes"), 2, "unexpected extra argument", "minutes")
    one_line(run("serve", "--port", "70000"), 2, "--port", "65535")
    for action in ("upgrade", "downgrade"):
        one_line(run("db", action, "nosuchrev"), 6, "'nosuchrev'", "known revisions: 0001")


def test_settings_policies_and_tokens(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    created = run("tokens", "create", "gw", "--scopes", "verify", "--json", extra={"KEYOPS_SERVR_PORT": "9999"})
    assert created.code == 0, created.stderr
    assert created.stderr.strip() == (
        "keyops: warning: ignoring unknown environment variable KEYOPS_SERVR_PORT (did you mean KEYOPS_SERVER_PORT?)"
    )
    one_line(
        run("keys", "list", extra={"KEYOPS_KEYS_DEFAULT_PROFILE": "nosuch"}),
        3,
        "keys.default_profile = 'nosuch'",
        "interactive",
    )
    one_line(run("tokens", "create", "gw", "--scopes", "verify"), 5, "keyops tokens revoke gw")
    assert run("tokens", "revoke", "gw").code == 0
    again = run("tokens", "create", "gw", "--scopes", "verify", "--json")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["token"] != json.loads(created.stdout)["token"]
    names = [t["name"] for t in json.loads(run("tokens", "list", "--json").stdout)]
    assert names[0] == "gw" and names[1].startswith("gw~revoked-") and len(names) == 2
    policy = tmp_path / "p.toml"
    policy.write_text('[policies.odd]\nrotate_every = "1h"\ngrace = "2h"\n')
    one_line(run("policies", "apply", "-f", str(policy)), 6, "policies.odd.grace", "rotate_every")


def test_list_paging_filters_and_bulk_issue(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"name": "pay/a", "owner": "pay"}\n'
        '{"name": "pay/b", "owner": \n'
        '{"name": "pay/c", "owner": "pay", "dest": "nope:x"}\n'
        '{"name": "pay/d", "owner": "pay", "policy": "nosuch"}\n'
        '{"name": "pay/a", "owner": "pay"}\n'
    )
    line = one_line(run("keys", "issue", "--from-file", str(bad)), 6, "nothing was issued")
    positions = [line.index(f"line {n}:") for n in (2, 3, 4, 5)]
    assert positions == sorted(positions), line
    assert "unknown scheme" in line and "'nosuch'" in line and "appears twice" in line
    good = tmp_path / "good.jsonl"
    good.write_text(
        "".join(f'{{"name": "pay/{c}", "owner": "pay"}}\n' for c in "abcd")
        + '{"name": "pay/e", "owner": "pay", "dest": ["file:pay/e.key"]}\n'
    )
    issued = run("keys", "issue", "--from-file", str(good))
    assert issued.code == 0, issued.stderr
    docs = [json.loads(x) for x in issued.stdout.splitlines()]
    assert [d["name"] for d in docs] == ["pay/a", "pay/b", "pay/c", "pay/d", "pay/e"]
    assert docs[4]["destinations"] == ["file:pay/e.key"] and docs[4]["state"] == "active"
    assert "issuing" not in issued.stderr and "\x1b" not in issued.stderr  # piped: no progress

    page = run("keys", "list", "--limit", "2", "--json")
    assert [k["name"] for k in json.loads(page.stdout)] == ["pay/a", "pay/b"]
    assert "3 more key(s) after pay/b" in page.stderr and "--cursor pay/b" in page.stderr and "--all" in page.stderr
    rest = run("keys", "list", "--limit", "2", "--cursor", "pay/d", "--json")
    assert [k["name"] for k in json.loads(rest.stdout)] == ["pay/e"] and rest.stderr == ""
    every = run("keys", "list", "--limit", "2", "--all", "--json")
    assert len(json.loads(every.stdout)) == 5 and every.stderr == ""
    one_line(run("keys", "list", "--profile", "nosuch"), 6, "unknown profile 'nosuch'", "interactive")
    one_line(run("audit", "list", "--action", "revoke"), 6, "did you mean key.revoked", "key.issued")


def _on_a_terminal(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    """Run with stderr (and stdout) on a pseudo-terminal; return exit code and all it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyops", *args],
        cwd=cwd,
        env={**env, "COLUMNS": "80", "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("no output within 60 s")
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_only(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    many = tmp_path / "many.jsonl"
    many.write_text('{"name": "bulk/one", "owner": "pay", "dest": "file:bulk/one.key"}\n')
    code, shown = _on_a_terminal(run.env, tmp_path, "keys", "issue", "--from-file", str(many), "--no-print")
    assert code == 0, shown
    assert "issuing 1 keys" in shown or "delivering bulk/one" in shown, shown
    code, shown = _on_a_terminal(run.env, tmp_path, "reconcile", "--json")
    assert code == 0, shown
    assert "reading every destination" not in shown and '"ok": true' in shown, shown


def _stderr_on_a_terminal(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    """stderr on a pseudo-terminal, stdout a pipe (``keyops ... | jq``):
    exit code, stdout, and what the terminal showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyops", *args],
        cwd=cwd,
        env={**env, "COLUMNS": "80", "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    shown: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("no end within 60 s")
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        shown.append(data)
    os.close(leader)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=60), out, b"".join(shown).decode(errors="replace")


def test_rotate_due_and_replay_show_progress_on_a_terminal_only(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3
    import time

    ids = []
    for name in ("due/one", "due/two"):
        issued = run("keys", "issue", name, "--owner", "pay", "--dest", f"file:{name}.key", "--json")
        assert issued.code == 0, issued.stderr
        ids.append(json.loads(issued.stdout)["id"])

    def make_due() -> None:
        with sqlite3.connect(tmp_path / "keyops.db") as db:
            db.execute("UPDATE keys SET next_rotation_at = '2000-01-01 00:00:00.000000'")

    make_due()
    code, shown = _on_a_terminal(run.env, tmp_path, "keys", "rotate", "--due")
    assert code == 0, shown
    assert "rotating 2 due keys" in shown and "2/2" in shown and "rotated, " in shown, shown
    make_due()
    code, out, shown = _stderr_on_a_terminal(run.env, tmp_path, "keys", "rotate", "--due", "--json")
    assert code == 0, shown
    assert "rotating" not in shown, shown  # --json: no bar, even on a terminal
    assert json.loads(out)["rotated"] == 2, out

    now = time.time()
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps({"key_id": ids[i % 2], "ts": now - 60 + i, "ip": "10.0.0.1", "status": 200}) + "\n"
            for i in range(50)
        )
    )
    code, out, shown = _stderr_on_a_terminal(run.env, tmp_path, "replay", str(events), "--dry-run")
    assert code == 0, shown
    assert "replaying" in shown and "replaying" not in out, (out, shown)  # the bar on stderr, never in stdout
    assert "50 events replayed" in out, out
    code, out, shown = _stderr_on_a_terminal(run.env, tmp_path, "replay", str(events), "--dry-run", "--json")
    assert code == 0, shown
    assert "replaying" not in shown and json.loads(out)["events"] == 50, (out, shown)


def test_repair_that_cannot_repair_says_rotate(run, tmp_path: Path, base_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    issued = run("keys", "issue", "pay/lost", "--owner", "pay", "--dest", "file:pay/lost.key", "--no-print")
    assert issued.code == 0, issued.stderr
    stored = Path(base_env["KEYOPS_STORES_FILE_DIRECTORY"]) / "pay" / "lost.key"
    stored.unlink()  # the only copy of the current material is gone
    repaired = run("reconcile", "--repair")
    assert repaired.code == 5, repaired
    # The file store's single-host warning is a log line; the error is the last line.
    line = repaired.stderr.strip().splitlines()[-1]
    assert line.startswith("keyops: error: ") and "still differ after --repair" in line, line
    assert "keyops keys rotate pay/lost" in line and "run keyops reconcile --repair" not in repaired.stderr


def test_a_rotation_against_an_unreachable_store_says_what_it_waits_for(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A Vault destination whose address nothing listens on (a closed
    loopback port): the terminal shows the failed step and when it is tried
    again, and the rotation ends within the configured attempts with one line."""
    import sqlite3
    import time

    from tests.support.servers import free_port

    issued = run("keys", "issue", "pay/far", "--owner", "pay", "--dest", "file:pay/far.key", "--no-print")
    assert issued.code == 0, issued.stderr
    with sqlite3.connect(tmp_path / "keyops.db") as db:
        db.execute("UPDATE destinations SET uri = 'vault:secret/pay/far', kind = 'vault'")
    env = {
        **run.env,
        "VAULT_ADDR": f"http://127.0.0.1:{free_port()}",  # closed: nothing listens there
        "VAULT_TOKEN": "not-used",
        "KEYOPS_ROTATION_MAX_ATTEMPTS": "2",
        "KEYOPS_ROTATION_BACKOFF_INITIAL": "1s",
    }
    started = time.monotonic()
    code, shown = _on_a_terminal(env, tmp_path, "keys", "rotate", "pay/far")
    elapsed = time.monotonic() - started
    assert code != 0, shown
    assert "waiting: attempt 2 of 2 in" in shown and "vault:secret/pay/far" in shown, shown
    errors = [line for line in shown.splitlines() if "keyops: error:" in line]
    assert len(errors) == 1 and "Vault unavailable" in errors[0] and "stores.vault.addr" in errors[0], shown
    assert elapsed < 20, elapsed
