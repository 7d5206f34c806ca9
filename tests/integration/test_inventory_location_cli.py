"""Where the inventory is (issue 17): read-only commands never create or
migrate a database, and say which inventory they looked for and how to point
at one; keys issue creates the embedded SQLite inventory; on a PostgreSQL
database that holds other tables but no keyops tables only db upgrade
creates them."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import CliResult, run_cli
from tests.support.databases import POSTGRES_ENV, postgres_base_url, postgres_schema_url


def _cli(env: dict[str, str], cwd: Path, *args: str) -> CliResult:
    return run_cli(args, env=env, cwd=cwd)


def _one_error(result: CliResult, code: int) -> str:
    assert result.code == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keyops: error: "), result.stderr
    return lines[0]


def test_read_commands_in_an_empty_directory_create_nothing(base_env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    for args in (["keys", "list"], ["db", "current"]):
        line = _one_error(_cli(base_env, work, *args), 7)
        assert str(work / "keyops.db") in line and "KEYOPS_DATABASE_URL" in line and "--config" in line, line
    assert list(work.iterdir()) == []  # no keyops.db, no -wal, no -shm
    # Pointed at an empty file: still nothing written into it.
    empty = tmp_path / "empty.db"
    empty.touch()
    line = _one_error(_cli({**base_env, "KEYOPS_DATABASE_URL": f"sqlite:///{empty}"}, work, "keys", "list"), 7)
    assert "no keyops tables" in line and "KEYOPS_DATABASE_URL" in line
    with sqlite3.connect(empty) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    # keys issue creates the embedded inventory where the default says.
    assert _cli(base_env, work, "keys", "issue", "pay/first", "--owner", "pay").code == 0
    assert (work / "keyops.db").is_file()


def test_postgres_with_other_tables_is_not_migrated_by_reads(base_env: dict[str, str], tmp_path: Path) -> None:
    if postgres_base_url() is None:
        pytest.skip(f"PostgreSQL tests skipped: {POSTGRES_ENV} is not set")
    with postgres_schema_url() as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE someone_elses (id integer primary key)"))
        env = {**base_env, "KEYOPS_DATABASE_URL": url}
        for args in (["keys", "list"], ["keys", "issue", "pay/x", "--owner", "pay"]):
            line = _one_error(_cli(env, tmp_path, *args), 7)
            assert "1 other table(s) but no keyops tables" in line and "keyops db upgrade" in line, line
            assert "password" not in line.lower() or "***" in line
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == ["someone_elses"]
        upgraded = _cli(env, tmp_path, "db", "upgrade")
        assert upgraded.code == 0, upgraded.stderr
        listed = _cli(env, tmp_path, "keys", "list", "--json")
        assert listed.stdout.strip() == "[]", listed
        engine.dispose()
    assert os.listdir(tmp_path) == [] or "keyops.db" not in os.listdir(tmp_path)
