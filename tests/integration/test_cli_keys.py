"""The admin CLI as users run it (``python -m keyops``), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import CliResult


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, f"exit {result.code}: {result.stderr}"
    return result


def one_line_error(result: CliResult, code: int, needle: str) -> None:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keyops: error: ")
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def snapshot(cli: Any) -> tuple[str, str]:
    keys = ok(cli("keys", "list", "--json")).stdout
    events = ok(cli("audit", "list", "--json", "--limit", "1000")).stdout
    return keys, events


def test_walkthrough_issue_list_show_suspend_resume_revoke_verify(cli: Any) -> None:
    issued = json.loads(
        ok(
            cli("keys", "issue", "payments/prod-llm", "--owner", "payments-team", "--profile", "interactive", "--json")
        ).stdout
    )
    assert {"id", "name", "owner", "profile", "policy", "state", "key", "display_prefix"} <= set(issued)
    assert issued["name"] == "payments/prod-llm" and issued["state"] == "active"
    assert issued["key"].startswith("kops_live_") and issued["key"].startswith(issued["display_prefix"])

    listed = json.loads(ok(cli("keys", "list", "--json")).stdout)
    assert [k["name"] for k in listed] == ["payments/prod-llm"]
    assert "key" not in listed[0]

    shown = json.loads(ok(cli("keys", "show", "payments/prod-llm", "--json")).stdout)
    assert shown["id"] == issued["id"]
    assert [v["state"] for v in shown["versions"]] == ["current"]
    assert shown["usage"]["last_24h"] == {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0}
    assert issued["key"] not in json.dumps(shown)

    assert (
        json.loads(ok(cli("keys", "suspend", "payments/prod-llm", "--reason", "investigating", "--json")).stdout)[
            "state"
        ]
        == "suspended"
    )
    assert json.loads(ok(cli("keys", "resume", "payments/prod-llm", "--json")).stdout)["state"] == "active"
    revoked = json.loads(ok(cli("keys", "revoke", "payments/prod-llm", "--reason", "owner left", "--json")).stdout)
    assert revoked["state"] == "revoked"
    shown = json.loads(ok(cli("keys", "show", issued["id"], "--json")).stdout)
    assert [v["state"] for v in shown["versions"]] == ["revoked"]

    verify = json.loads(ok(cli("audit", "verify", "--json")).stdout)
    head = verify.pop("head")
    assert verify == {
        "ok": True,
        "events": 4,
        "sealed_events": 4,
        "legacy_events": 0,
        "problems": [],
        "first_bad_seq": None,
        "expected_head": None,
        "expected_head_problem": None,
    }
    assert head["seq"] == 4 and f"{head['seq']}:{head['hash']}" == ok(cli("audit", "head")).stdout.strip()
    events = json.loads(ok(cli("audit", "list", "--json")).stdout)
    assert [e["action"] for e in events] == ["key.issued", "key.suspended", "key.resumed", "key.revoked"]
    assert events[1]["reason"] == "investigating"
    assert re.fullmatch(r"local:[^ ]+", events[0]["actor"]), "direct database use names the OS user"
    assert ok(cli("--actor", "alice", "keys", "issue", "payments/other", "--owner", "p")).stdout
    assert json.loads(ok(cli("audit", "list", "--json", "--limit", "1")).stdout)[0]["actor"].endswith(" note=alice"), (
        "--actor adds a note; it cannot replace who acted"
    )


def test_list_filters(cli: Any) -> None:
    ok(cli("keys", "issue", "a/one", "--owner", "alpha", "--profile", "batch"))
    ok(cli("keys", "issue", "b/two", "--owner", "beta", "--profile", "service"))
    ok(cli("keys", "issue", "b/three", "--owner", "beta"))
    ok(cli("keys", "suspend", "b/three"))

    def names(*args: str) -> list[str]:
        return [k["name"] for k in json.loads(ok(cli("keys", "list", "--json", *args)).stdout)]

    assert names("--owner", "beta") == ["b/three", "b/two"]
    assert names("--state", "suspended") == ["b/three"]
    assert names("--profile", "batch") == ["a/one"]
    assert names("--owner", "nobody") == []
    assert "a/one" in ok(cli("keys", "list")).stdout


def test_update_profile_is_audited(cli: Any) -> None:
    ok(cli("keys", "issue", "a/one", "--owner", "alpha"))
    updated = json.loads(ok(cli("keys", "update", "a/one", "--profile", "batch", "--policy", "short", "--json")).stdout)
    assert updated["profile"] == "batch" and updated["policy"] == "short"
    last = json.loads(ok(cli("audit", "list", "--json", "--limit", "1")).stdout)[0]
    assert last["action"] == "key.updated"
    assert last["details"]["changes"]["profile"] == {"from": "interactive", "to": "batch"}


BAD_INPUT: list[tuple[tuple[str, ...], int, str]] = [
    (("keys", "show", "nobody/here"), 4, "no key named 'nobody/here'"),
    (("keys", "revoke", "nobody/here"), 4, "no key named"),
    (("keys", "issue", "a/one", "--owner", "x"), 5, "already exists"),
    (("keys", "issue", "new/key", "--owner", "x", "--profile", "nosuch"), 4, "unknown profile 'nosuch'"),
    (("keys", "issue", "new/key", "--owner", "x", "--policy", "nosuch"), 4, "unknown policy 'nosuch'"),
    (("keys", "issue", "Not A Name", "--owner", "x"), 6, "invalid key name"),
    (("keys", "issue", "new/key", "--owner", "bad owner!"), 6, "invalid owner"),
    (("keys", "issue", "a/one\n", "--owner", "x"), 6, "invalid key name"),
    (("keys", "issue", "new/key", "--owner", "alpha\n"), 6, "invalid owner"),
    (("keys", "issue", "new/key", "--owner", "x", "--profile", "batch\n"), 4, "unknown profile"),
    (("tokens", "create", "gateway\n", "--scopes", "verify"), 6, "invalid token name"),
    (("keys", "issue", "new/key", "--owner", "x", "--expires", "yesterday"), 6, "--expires"),
    (("keys", "issue", "new/key", "--owner", "x", "--expires", "2001-01-01T00:00Z"), 6, "future"),
    (("keys", "resume", "a/one"), 5, "cannot resume a/one: it is active"),
    (("keys", "list", "--state", "sleepy"), 6, "unknown state"),
    (("keys", "update", "a/one"), 6, "nothing to change"),
    (("keys", "suspend", "a/one", "--reason", "x" * 1001), 6, "reason is too long"),
    (("profiles", "show", "nosuch"), 4, "unknown profile"),
    (("policies", "show", "nosuch"), 4, "unknown policy"),
    (("audit", "list", "--key", "nobody/here"), 4, "no key named"),
]


def test_bad_input_is_one_clear_line_and_changes_nothing(cli: Any) -> None:
    ok(cli("keys", "issue", "a/one", "--owner", "alpha"))
    before = snapshot(cli)
    for args, code, needle in BAD_INPUT:
        one_line_error(cli(*args), code, needle)
    # None of the refused commands changed a key or wrote an audit event.
    assert snapshot(cli) == before


def test_usage_errors_exit_2(cli: Any) -> None:
    result = cli("keys", "issue", "a/one")  # --owner missing
    assert result.code == 2
    assert "--owner" in result.stderr
    assert "Traceback" not in result.stderr


def test_database_unreachable(cli: Any, tmp_path: Path) -> None:
    result = cli("keys", "list", extra_env={"KEYOPS_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/test"})
    one_line_error(result, 7, "cannot use the database at postgresql+psycopg://postgres@127.0.0.1:1/test")
    assert "KEYOPS_DATABASE_URL" in result.stderr
    nowhere = {"KEYOPS_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/keyops.db"}
    # A read-only command does not create an inventory: it says where it looked.
    one_line_error(cli("keys", "list", extra_env=nowhere), 7, f"no inventory at {tmp_path}/no/such/dir/keyops.db")
    result = cli("keys", "issue", "pay/x", "--owner", "pay", extra_env=nowhere)
    one_line_error(result, 7, "cannot use the database")


def test_bad_config_is_exit_3(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[log]\nformat = "xml"\n')
    one_line_error(cli("--config", str(bad), "keys", "list"), 3, "log.format")
    one_line_error(cli("keys", "list", extra_env={"KEYOPS_KEYS_PREFIX": "NOPE"}), 3, "keys.prefix")


BAD_PROFILE = """\
[profiles.team-x]
description = "ok so far"

[profiles.team-x.limits]
requests_per_minute = 100
burst = 10
concurrency = -4
tokens_per_day = 1000
max_output_input_ratio = 3.0
"""

GOOD_SPECS = """\
[profiles.team-x]
description = "Team X's batch jobs"
enforcement = "monitor"
allowed_networks = ["10.0.0.0/8"]

[profiles.team-x.limits]
requests_per_minute = 100
burst = 10
concurrency = 4
tokens_per_day = 1000
max_output_input_ratio = 3.0

[profiles.team-x.ladder]
high = "notify"

[policies.weekly]
rotate_every = "7d"
grace = "1h"
window = "Tue-Thu 09:00-16:00 UTC"
"""


def test_profile_files_apply_and_bad_files_name_the_line(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_PROFILE)
    # Read-only commands do not create the inventory (issue 17): a writer does.
    ok(cli("keys", "issue", "a/zero", "--owner", "alpha"))
    before = snapshot(cli)
    one_line_error(cli("profiles", "apply", "-f", str(bad)), 6, f"{bad}:7: profiles.team-x.limits.concurrency")
    broken = tmp_path / "broken.toml"
    broken.write_text("[profiles.x\nburst = 1\n")
    one_line_error(cli("profiles", "apply", "-f", str(broken)), 6, "line 1")
    one_line_error(cli("profiles", "apply", "-f", str(tmp_path / "missing.toml")), 6, "no such file")
    assert snapshot(cli) == before

    good = tmp_path / "good.toml"
    good.write_text(GOOD_SPECS)
    dry = json.loads(ok(cli("profiles", "apply", "-f", str(good), "--dry-run", "--json")).stdout)
    assert {d["result"] for d in dry} == {"valid"}
    assert snapshot(cli) == before
    applied = json.loads(ok(cli("profiles", "apply", "-f", str(good), "--json")).stdout)
    assert {(d["kind"], d["name"], d["result"]) for d in applied} == {
        ("profile", "team-x", "created"),
        ("policy", "weekly", "created"),
    }
    again = json.loads(ok(cli("policies", "apply", "-f", str(good), "--json")).stdout)
    assert {d["result"] for d in again} == {"unchanged"}
    profiles = {p["name"]: p for p in json.loads(ok(cli("profiles", "list", "--json")).stdout)}
    assert {"interactive", "batch", "service", "team-x"} <= set(profiles)
    assert profiles["team-x"]["enforcement"] == "monitor" and not profiles["team-x"]["builtin"]
    shown = json.loads(ok(cli("profiles", "show", "team-x", "--json")).stdout)
    assert shown["limits"]["burst"] == 10
    weekly = json.loads(ok(cli("policies", "show", "weekly", "--json")).stdout)
    assert weekly["rotate_every"] == "7d" and weekly["window"] == "Tue-Thu 09:00-16:00 UTC"
    issued = json.loads(
        ok(cli("keys", "issue", "x/jobs", "--owner", "x", "--profile", "team-x", "--policy", "weekly", "--json")).stdout
    )
    assert (issued["profile"], issued["policy"]) == ("team-x", "weekly")
    actions = [e["action"] for e in json.loads(ok(cli("audit", "list", "--json")).stdout)]
    assert actions == ["key.issued", "profile.created", "policy.created", "key.issued"]
    assert ok(cli("profiles", "show", "interactive")).stdout
    assert ok(cli("policies", "list")).stdout


def test_db_commands(cli: Any) -> None:
    assert "(current)" in ok(cli("db", "upgrade")).stdout + ok(cli("db", "current")).stdout
    ok(cli("db", "downgrade", "base"))
    assert ok(cli("db", "current")).stdout.startswith("base")
    ok(cli("db", "upgrade"))
    assert "(current)" in ok(cli("db", "current")).stdout
    assert ok(cli("version")).stdout.startswith("keyops ")


def test_first_use_creates_and_migrates_sqlite(base_env: dict[str, str], tmp_path: Path) -> None:
    import subprocess
    import sys

    workdir = tmp_path / "fresh"
    workdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "keyops", "keys", "issue", "t/first", "--owner", "me", "--json"],
        cwd=workdir,
        env=base_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (workdir / "keyops.db").exists()
