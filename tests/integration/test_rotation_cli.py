"""The CLI as a user runs it (subprocess), on SQLite with real stores:
issue with destinations, bad input that must change nothing, bulk issue,
rotate/resume/reconcile, and a search for plaintext everywhere afterwards.
(The engine itself is tested on both databases in test_rotation_engine.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from keyops.domain.keyformat import secret_part
from tests.conftest import CliResult
from tests.support.databases import sqlite_url
from tests.support.servers import MotoServer, OpenBaoServer, keyops_policy


@pytest.fixture
def run(base_env: dict[str, str], vault_env: dict[str, str], aws_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**base_env, **vault_env, **aws_env, "KEYOPS_DATABASE_URL": sqlite_url(tmp_path)}
    env["KEYOPS_LOG_LEVEL"] = "DEBUG"  # so the plaintext search also covers debug logs
    transcript: list[CliResult] = []

    def invoke(*args: str, extra: dict[str, str] | None = None) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "keyops", *args],
            cwd=tmp_path,
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        transcript.append(result)
        return result

    invoke.transcript = transcript  # type: ignore[attr-defined]
    invoke.db_path = tmp_path / "keyops.db"  # type: ignore[attr-defined]
    return invoke


def _count(db: Path, table: str) -> int:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        value = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
    engine.dispose()
    return value


def test_bad_destinations_change_nothing(
    run,
    store_prefix: str,
    moto_server: MotoServer,
    openbao: OpenBaoServer,  # type: ignore[no-untyped-def]
) -> None:
    ok = run("keys", "issue", "pay/first", "--owner", "pay", "--json")
    assert ok.code == 0, ok.stderr
    before = _count(run.db_path, "audit_events")
    cases = [
        (["--dest", "nope:secret/x"], 6, "unknown scheme"),
        (["--dest", "vault:secret"], 6, "not a Vault KV path"),
        (["--dest", "aws-sm:bad name"], 6, "not a valid Secrets Manager name"),
        (["--dest", f"vault:secret/{store_prefix}a", "--dest", f"vault:secret/{store_prefix}a"], 6, "given twice"),
        (["--no-print"], 6, "--no-print needs"),
    ]
    for args, code, message in cases:
        result = run("keys", "issue", "pay/bad", "--owner", "pay", *args)
        assert result.code == code and message in result.stderr, (args, result)
        assert result.stderr.count("\n") == 1  # one line
    # A store that is not configured: the error names the setting.
    unset = run(
        "keys",
        "issue",
        "pay/bad",
        "--owner",
        "pay",
        "--dest",
        f"vault:secret/{store_prefix}u",
        extra={"KEYOPS_STORES_VAULT_ADDR": ""},
    )
    assert unset.code == 3 and "stores.vault.addr" in unset.stderr, unset
    # Wrong Vault credentials: refused before anything is written.
    wrong = run(
        "keys",
        "issue",
        "pay/bad",
        "--owner",
        "pay",
        "--dest",
        f"vault:secret/{store_prefix}w",
        extra={"KEYOPS_STORES_VAULT_TOKEN": "wrong"},
    )
    assert wrong.code == 8 and "permission denied" in wrong.stderr, wrong
    # Foreign data: refused without --adopt, the secret untouched.
    sm = moto_server.client()
    sm.create_secret(Name=f"{store_prefix}legacy", SecretString="someone-elses-value")
    foreign = run("keys", "issue", "pay/bad", "--owner", "pay", "--dest", f"aws-sm:{store_prefix}legacy")
    assert foreign.code == 8 and "--adopt" in foreign.stderr, foreign
    assert sm.get_secret_value(SecretId=f"{store_prefix}legacy")["SecretString"] == "someone-elses-value"
    # A failure at the second destination undoes the first and names the culprit.
    openbao.write_policy(
        "keyops-readonly",
        keyops_policy(store_prefix)
        .replace('"create", "read", "update"', '"read"')
        .replace('"create", "read", "update", "delete", "list"', '"read", "list"'),
    )
    readonly = openbao.create_token(["keyops-readonly"])
    partial = run(
        "keys",
        "issue",
        "pay/bad",
        "--owner",
        "pay",
        "--dest",
        "file:pay-bad.key",
        "--dest",
        f"vault:secret/{store_prefix}ro",
        extra={"KEYOPS_STORES_VAULT_TOKEN": readonly},
    )
    assert partial.code == 8 and f"vault:secret/{store_prefix}ro" in partial.stderr, partial
    assert not (Path(run.db_path).parent / "secrets" / "pay-bad.key").exists()
    # Nothing changed: no key, no audit event.
    listing = json.loads(run("keys", "list", "--json").stdout)
    assert [k["name"] for k in listing] == ["pay/first"]
    assert _count(run.db_path, "audit_events") == before
    # --adopt takes the foreign secret over.
    adopted = run(
        "keys", "issue", "pay/legacy", "--owner", "pay", "--dest", f"aws-sm:{store_prefix}legacy", "--adopt", "--json"
    )
    assert adopted.code == 0, adopted.stderr
    key = json.loads(adopted.stdout)["key"]
    assert sm.get_secret_value(SecretId=f"{store_prefix}legacy", VersionStage="AWSCURRENT")["SecretString"] == key


def test_bulk_issue(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "keys.jsonl"
    good.write_text(
        '{"name": "bulk/a", "owner": "team"}\n\n'
        '{"name": "bulk/b", "owner": "team", "profile": "batch", "policy": "short"}\n'
        '{"name": "bulk/c", "owner": "team", "policy": "manual"}\n'
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "bulk/x", "owner": "team"}\n{"name": "bulk/y", "owner": \n')
    result = run("keys", "issue", "--from-file", str(bad))
    assert result.code == 6 and "line 2" in result.stderr, result
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"name": "bulk/x", "owner": "team"}\n{"name": "bulk/x", "owner": "team"}\n')
    result = run("keys", "issue", "--from-file", str(dup))
    assert result.code == 5 and "line 2" in result.stderr, result
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"name": "bulk/x", "owner": "team"}\n{"name": "bulk/z", "owner": "team", "policy": "nope"}\n')
    result = run("keys", "issue", "--from-file", str(unknown))
    assert result.code == 4 and "line 2" in result.stderr, result
    assert json.loads(run("keys", "list", "--json").stdout) == []  # nothing issued
    result = run("keys", "issue", "--from-file", str(good))
    assert result.code == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["name"] for d in docs] == ["bulk/a", "bulk/b", "bulk/c"]
    assert docs[1]["profile"] == "batch" and docs[1]["policy"] == "short"
    assert all(d["key"] and d["version"] == 1 and d["state"] == "active" for d in docs)


def test_rotate_reconcile_and_no_plaintext_anywhere(  # type: ignore[no-untyped-def]
    run, store_prefix: str, openbao: OpenBaoServer, moto_server: MotoServer
) -> None:
    vault_uri, aws_uri = f"vault:secret/{store_prefix}llm-key", f"aws-sm:{store_prefix}prod-llm"
    issued = run(
        "keys",
        "issue",
        "payments/prod-llm",
        "--owner",
        "payments",
        "--policy",
        "standard",
        "--dest",
        vault_uri,
        "--dest",
        aws_uri,
        "--dest",
        "file:payments.key",
        "--no-print",
        "--json",
    )
    assert issued.code == 0, issued.stderr
    assert json.loads(issued.stdout)["key"] is None
    secrets_seen: list[str] = []
    sm = moto_server.client()

    def current_in_aws() -> str:
        value = sm.get_secret_value(SecretId=f"{store_prefix}prod-llm", VersionStage="AWSCURRENT")["SecretString"]
        secrets_seen.append(value)
        return str(value)

    first = current_in_aws()
    rotated = run("keys", "rotate", "payments/prod-llm", "--grace", "1h", "--json")
    assert rotated.code == 0, rotated.stderr
    assert json.loads(rotated.stdout)["status"] == "finished"
    second = current_in_aws()
    assert second != first
    assert run("keys", "rotate", "payments/prod-llm", "--grace", "nonsense").code == 6
    assert run("keys", "rotate").code == 6
    listed = json.loads(run("rotations", "list", "--json").stdout)
    assert [r["status"] for r in listed] == ["finished"]
    shown = json.loads(run("rotations", "show", listed[0]["id"], "--json").stdout)
    assert [s["step"] for s in shown["steps"]][-1] == "finished"

    # Someone changes the Vault copy by hand: reconcile notices, --repair fixes it.
    import hvac

    client = hvac.Client(url=openbao.addr, token=openbao.root_token)
    client.secrets.kv.v2.create_or_update_secret(
        path=f"{store_prefix}llm-key", secret={"api_key": "tampered"}, mount_point="secret"
    )
    drift = run("reconcile", "--json")
    assert drift.code == 5, drift.stderr
    rows = {r["destination"]: r["status"] for r in json.loads(drift.stdout)["rows"]}
    assert rows == {vault_uri: "changed", aws_uri: "ok", "file:payments.key": "ok"}
    repaired = run("reconcile", "--repair", "--json")
    assert repaired.code == 0, repaired.stdout

    # Leaked: grace 0 retires every old version at once.
    leaked = run("keys", "rotate", "payments/prod-llm", "--grace", "0", "--reason", "leaked")
    assert leaked.code == 0, leaked.stderr
    current_in_aws()
    shown_key = json.loads(run("keys", "show", "payments/prod-llm", "--json").stdout)
    assert {v["number"]: v["state"] for v in shown_key["versions"]} == {1: "retired", 2: "retired", 3: "current"}
    assert run("audit", "verify").code == 0

    # No plaintext in the database file (and its WAL), any table, any output.
    parts = [secret_part(s) for s in secrets_seen]
    db = Path(run.db_path)
    for path in db.parent.glob("keyops.db*"):
        raw = path.read_bytes()
        for part in parts:
            assert part.encode() not in raw, path
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            dump = repr(conn.execute(text(f"SELECT * FROM {table}")).all())  # noqa: S608
            for part in parts:
                assert part not in dump, table
    engine.dispose()
    for result in run.transcript:
        for part in parts:
            assert part not in result.stdout and part not in result.stderr
    # The file store keeps material encrypted at rest, 0600.
    stored = db.parent / "secrets" / "payments.key"
    assert stored.stat().st_mode & 0o777 == 0o600
    for part in parts:
        assert part.encode() not in stored.read_bytes()


def test_outage_then_rotations_resume(run, store_prefix: str, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    fast = {"KEYOPS_ROTATION_MAX_ATTEMPTS": "2", "KEYOPS_ROTATION_BACKOFF_INITIAL": "1s"}
    aws_uri = f"aws-sm:{store_prefix}outage"
    assert run("keys", "issue", "pay/outage", "--owner", "pay", "--dest", aws_uri, "--no-print").code == 0
    with moto_server.outage():
        failed = run("keys", "rotate", "pay/outage", extra=fast)
    assert failed.code == 8, failed
    error = failed.stderr.strip().splitlines()[-1]  # (the lines before it are the retry warnings)
    assert error.startswith("keyops: error:") and "failed" in error and aws_uri in error, error
    listed = json.loads(run("rotations", "list", "--status", "failed", "--json").stdout)
    assert len(listed) == 1 and aws_uri in listed[0]["last_error"]
    resumed = run("rotations", "resume", "--json")
    assert resumed.code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["rotated"] == 1
    shown = json.loads(run("keys", "show", "pay/outage", "--json").stdout)
    assert {v["number"]: v["state"] for v in shown["versions"]} == {1: "previous", 2: "current"}
