"""Invariant 1: the plaintext of a key is printed once and is nowhere else —
not in the database (file or server), not in a log line, not in the audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text

from keyops.domain.keyformat import secret_part


def _database_text(db_url: str, tmp_path: Path) -> bytes:
    """Everything the database holds, as bytes to search."""
    if db_url.startswith("sqlite"):
        files = [p for p in tmp_path.iterdir() if p.name.startswith("keyops.db")]
        assert files, "the SQLite inventory should exist"
        return b"".join(p.read_bytes() for p in files)
    engine = create_engine(db_url)
    chunks: list[str] = []
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                rows = conn.execute(text(f'SELECT row_to_json(t)::text FROM "{table}" t')).scalars().all()  # noqa: S608
                chunks.extend(rows)
    finally:
        engine.dispose()
    assert any("kops_live_" in c for c in chunks), "the dump should contain display prefixes"
    return "\n".join(chunks).encode()


def test_plaintext_appears_only_in_the_one_output(cli: Any, db_url: str, env: dict[str, str], tmp_path: Path) -> None:
    debug = {"KEYOPS_LOG_LEVEL": "DEBUG", "KEYOPS_LOG_FORMAT": "json", "KEYOPS_DATABASE_ECHO": "true"}
    outputs: list[str] = []
    secrets: list[str] = []
    for i in range(3):
        result = cli("keys", "issue", f"team/key-{i}", "--owner", "team", "--json", extra_env=debug)
        assert result.code == 0, result.stderr
        key = json.loads(result.stdout)["key"]
        secrets.append(secret_part(key))
        outputs.append(result.stderr)
    for args in (
        ("keys", "list", "--json"),
        ("keys", "show", "team/key-0", "--json"),
        ("keys", "suspend", "team/key-1", "--reason", "test"),
        ("keys", "revoke", "team/key-2", "--reason", "test"),
        ("audit", "list", "--json"),
        ("audit", "verify"),
    ):
        result = cli(*args, extra_env=debug)
        assert result.code == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    haystack_text = "\n".join(outputs)
    # The debug run really logged SQL (so the search below means something).
    assert "INSERT INTO key_versions" in haystack_text or "key_versions" in haystack_text
    db_bytes = _database_text(db_url, tmp_path)
    for secret in secrets:
        assert secret not in haystack_text
        assert secret.encode() not in db_bytes
        # not even a large chunk of it
        assert secret[8:28] not in haystack_text
        assert secret[8:28].encode() not in db_bytes


def test_concurrent_issue_of_one_name_exactly_one_wins(db_url: str, env: dict[str, str], tmp_path: Path) -> None:
    # Migrate first so both processes race on the insert, not on the schema.
    subprocess.run(
        [sys.executable, "-m", "keyops", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "keyops", "keys", "issue", "race/same-name", "--owner", f"o{i}", "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 5], results
    loser = next(r for r in results if r[0] == 5)
    assert "already exists" in loser[2]
    listed = subprocess.run(
        [sys.executable, "-m", "keyops", "keys", "list", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [k["name"] for k in json.loads(listed.stdout)] == ["race/same-name"]
