"""The file store's safety rules, as a user meets them through the CLI:
``file:`` destinations stay inside ``stores.file.directory`` (links and
``..`` resolved), a wrong key is named as such and never adopted over, the
key file must be private, is created atomically, and lives apart from the
data directory (an install with the old key beside the directory keeps it)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from keyops.errors import InvalidInputError, StoreConflictError
from keyops.stores.base import SecretContext, parse_destination
from keyops.stores.file import FileStore, StoreUndecryptableError, load_key
from tests.conftest import CliResult
from tests.integration.test_cli_keys import ok, one_line_error

CTX = SecretContext(key_id="01900000-0000-7000-8000-0000000000aa", key_name="team/files")
PRECIOUS = b"root:x:0:0:root:/root:/bin/bash\n"
#: The file store warns (single-host use) whenever it is built; errors are what these tests read.
QUIET = {"KEYOPS_LOG_LEVEL": "ERROR"}


def secrets_dir(tmp_path: Path) -> Path:
    return tmp_path / "secrets"  # stores.file.directory in tests/conftest.py's base_env


def default_key(tmp_path: Path) -> Path:
    return tmp_path / "xdg-config" / "keyops" / "file-store.key"  # $XDG_CONFIG_HOME/keyops


def inventory(cli: Any) -> tuple[str, str]:
    keys = ok(cli("keys", "list", "--json")).stdout
    events = ok(cli("audit", "list", "--json", "--limit", "1000")).stdout
    return keys, events


def tree(path: Path) -> dict[str, bytes | str]:
    """Everything under ``path``: file contents and link targets."""
    found: dict[str, bytes | str] = {}
    for item in sorted(path.rglob("*")) if path.exists() else []:
        if item.is_symlink():
            found[str(item)] = "-> " + os.readlink(item)
        elif item.is_file():
            found[str(item)] = item.read_bytes()
    return found


# -- confinement ---------------------------------------------------------------


def _outside_cases(tmp_path: Path) -> dict[str, str]:
    """Destinations that reach outside the store's directory, each a way an
    attacker or a careless operator would write one."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "passwd").write_bytes(PRECIOUS)
    directory = secrets_dir(tmp_path)
    directory.mkdir()
    (directory / "link.key").symlink_to(outside / "passwd")
    (directory / "sub").symlink_to(outside)
    (tmp_path / "alias").symlink_to(outside)
    return {
        "absolute": f"file:{outside / 'passwd'}",
        "link inside pointing out": "file:link.key",
        "linked directory": "file:sub/passwd",
        "absolute through a link": f"file:{tmp_path / 'alias' / 'passwd'}",
        "absolute with dot-dot": f"file:{directory}/x/../../elsewhere/passwd",
    }


@pytest.mark.parametrize(
    "case",
    ["absolute", "link inside pointing out", "linked directory", "absolute through a link", "absolute with dot-dot"],
)
def test_a_destination_outside_the_directory_is_refused_and_nothing_changes(
    cli: Any, tmp_path: Path, case: str
) -> None:
    uri = _outside_cases(tmp_path)[case]
    ok(cli("keys", "issue", "team/first", "--owner", "team"))  # read-only commands do not create the inventory
    before_inventory, before_files = inventory(cli), tree(tmp_path / "elsewhere")
    before_secrets = tree(secrets_dir(tmp_path))
    result = cli("keys", "issue", "team/escape", "--owner", "team", "--dest", uri, "--adopt")
    if case == "absolute with dot-dot":
        one_line_error(result, 6, "may not contain '..'")
    else:
        one_line_error(
            result,
            6,
            f"destination {uri} is outside stores.file.directory ({secrets_dir(tmp_path).resolve()}); "
            f"use a path under it",
        )
    assert "--adopt" not in result.stderr
    assert (tmp_path / "elsewhere" / "passwd").read_bytes() == PRECIOUS
    assert tree(tmp_path / "elsewhere") == before_files
    assert tree(secrets_dir(tmp_path)) == before_secrets
    assert inventory(cli) == (before_inventory[0], before_inventory[1])
    assert not default_key(tmp_path).exists(), "refusing bad input must not even create the key file"


def test_relative_and_absolute_paths_inside_the_directory_are_accepted(cli: Any, tmp_path: Path) -> None:
    directory = secrets_dir(tmp_path)
    directory.mkdir()
    (tmp_path / "alias").symlink_to(directory)  # the same directory under another name
    destinations = ["file:team/rel.key", f"file:{directory / 'abs.key'}", f"file:{tmp_path / 'alias' / 'via.key'}"]
    for i, uri in enumerate(destinations):
        issued = json.loads(ok(cli("keys", "issue", f"team/in-{i}", "--owner", "team", "--dest", uri, "--json")).stdout)
        assert issued["destinations"] == [uri]
    assert sorted(p.name for p in directory.rglob("*.key")) == ["abs.key", "rel.key", "via.key"]


def test_a_link_planted_after_issue_is_not_written_through(cli: Any, tmp_path: Path) -> None:
    ok(cli("keys", "issue", "team/planted", "--owner", "team", "--dest", "file:planted.key"))
    target = tmp_path / "passwd"
    target.write_bytes(PRECIOUS)
    planted = secrets_dir(tmp_path) / "planted.key"
    planted.unlink()
    planted.symlink_to(target)
    # reconcile reports that destination and carries on; repairing writes nothing through the link.
    report = cli("reconcile", "--repair", "--json")
    assert "Traceback" not in report.stderr, report.stderr
    rows = json.loads(report.stdout)["rows"]
    found = [(r["destination"], r["status"], r["repaired"]) for r in rows]
    assert found == [("file:planted.key", "unreachable", False)]
    assert "is outside stores.file.directory" in rows[0]["detail"]
    assert target.read_bytes() == PRECIOUS
    result = cli("keys", "rotate", "team/planted")
    assert result.code != 0, result.stdout
    assert "is outside stores.file.directory" in result.stderr
    assert target.read_bytes() == PRECIOUS
    assert os.readlink(planted) == str(target)
    shown = json.loads(ok(cli("keys", "show", "team/planted", "--json")).stdout)
    assert [v["number"] for v in shown["versions"] if v["state"] == "current"] == [1]


def test_the_store_itself_refuses_links(tmp_path: Path) -> None:
    """Defence in depth, below the CLI: the store checks the real path before
    every write and opens its own files without following links."""
    directory = tmp_path / "secrets"
    store = FileStore(directory, Fernet(Fernet.generate_key()))
    directory.mkdir()
    target = tmp_path / "passwd"
    target.write_bytes(PRECIOUS)
    (directory / "a.key").symlink_to(target)
    with pytest.raises(InvalidInputError, match=r"outside stores\.file\.directory"):
        store.put_initial(parse_destination("file:a.key"), "v1", "material", CTX, adopt=True)
    assert target.read_bytes() == PRECIOUS
    # A planted lock file link would be created or opened where it points.
    created_elsewhere = tmp_path / "created-elsewhere"
    (directory / "b.key.lock").symlink_to(created_elsewhere)
    with pytest.raises(StoreConflictError, match="symbolic link is in the way"):
        store.put_initial(parse_destination("file:b.key"), "v1", "material", CTX)
    assert not created_elsewhere.exists()
    assert not (directory / "b.key").exists()


# -- a wrong key -----------------------------------------------------------------


def test_a_wrong_key_is_named_and_never_adopted_over(cli: Any, tmp_path: Path) -> None:
    ok(cli("keys", "issue", "team/kept", "--owner", "team", "--dest", "file:kept.key"))
    data_file = secrets_dir(tmp_path) / "kept.key"
    original = data_file.read_bytes()
    right_key = default_key(tmp_path).read_bytes()
    default_key(tmp_path).write_bytes(Fernet.generate_key())  # the wrong key, still 0600
    before = inventory(cli)
    expected = (
        f"cannot decrypt {data_file} with the configured key "
        f"(stores.file.encryption_key_file={default_key(tmp_path)}); restore the right key"
    )

    adopt = cli("keys", "issue", "team/thief", "--owner", "team", "--dest", "file:kept.key", "--adopt", extra_env=QUIET)
    one_line_error(adopt, 8, expected)
    assert "--adopt" not in adopt.stderr
    plain = cli("keys", "issue", "team/thief", "--owner", "team", "--dest", "file:kept.key", extra_env=QUIET)
    one_line_error(plain, 8, expected)
    assert "--adopt" not in plain.stderr
    rotate = cli("keys", "rotate", "team/kept")
    assert rotate.code == 8 and expected in rotate.stderr and "--adopt" not in rotate.stderr
    assert data_file.read_bytes() == original
    assert json.loads(inventory(cli)[0]) == json.loads(before[0])

    # With the right key back, the versions are all still there.
    default_key(tmp_path).write_bytes(right_key)
    ok(cli("rotations", "resume"))
    shown = json.loads(ok(cli("keys", "show", "team/kept", "--json")).stdout)
    assert [v["state"] for v in shown["versions"]] == ["previous", "current"]


def test_an_inline_key_is_named_by_its_setting(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    writer = FileStore(directory, Fernet(Fernet.generate_key()))
    dest = parse_destination("file:a.key")
    writer.put_initial(dest, "v1", "material", CTX)
    key = load_key(Fernet.generate_key().decode(), "", directory)
    reader = FileStore(directory, key.fernet, key_source=key.source)
    for call in (lambda: reader.describe(dest), lambda: reader.put_initial(dest, "v2", "m", CTX, adopt=True)):
        with pytest.raises(StoreUndecryptableError, match=r"\(stores\.file\.encryption_key\); restore the right key"):
            call()
    assert writer.read(dest).material == "material"  # type: ignore[union-attr]


def test_foreign_data_still_offers_adopt(cli: Any, tmp_path: Path) -> None:
    directory = secrets_dir(tmp_path)
    directory.mkdir()
    (directory / "foreign.key").write_text("sk-an-api-key-someone-put-here\n")
    result = cli("keys", "issue", "team/foreign", "--owner", "team", "--dest", "file:foreign.key", extra_env=QUIET)
    one_line_error(result, 8, "pass --adopt to take it over")
    ok(cli("keys", "issue", "team/foreign", "--owner", "team", "--dest", "file:foreign.key", "--adopt"))


# -- the key file ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644])
def test_a_key_file_open_to_others_is_refused(cli: Any, tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(mode)
    extra = {"KEYOPS_STORES_FILE_ENCRYPTION_KEY_FILE": str(key_file)}
    ok(cli("keys", "issue", "team/first", "--owner", "team"))  # read-only commands do not create the inventory
    before = inventory(cli)
    result = cli("keys", "issue", "team/loose", "--owner", "team", "--dest", "file:loose.key", extra_env=extra)
    one_line_error(result, 3, f"{key_file} is readable or writable by group or others")
    assert f"chmod 600 {key_file}" in result.stderr
    assert inventory(cli) == before
    assert not (secrets_dir(tmp_path) / "loose.key").exists()
    key_file.chmod(0o600)
    ok(cli("keys", "issue", "team/loose", "--owner", "team", "--dest", "file:loose.key", extra_env=extra))


def test_the_default_key_lives_apart_from_the_data_directory(cli: Any, tmp_path: Path) -> None:
    ok(cli("keys", "issue", "team/first", "--owner", "team", "--dest", "file:first.key"))
    key_file = default_key(tmp_path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_bytes().strip())
    # Nothing key-like beside or inside the data directory, where `git add -A` would pick it up.
    assert not (tmp_path / "secrets.key").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".key") == []
    assert [p.name for p in secrets_dir(tmp_path).rglob("*.key")] == ["first.key"]


def test_an_existing_key_beside_the_directory_keeps_being_used(cli: Any, tmp_path: Path) -> None:
    legacy = tmp_path / "secrets.key"  # <directory>.key, where earlier versions created it
    fd = os.open(legacy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, Fernet.generate_key())
    os.close(fd)
    old_store = FileStore(secrets_dir(tmp_path), Fernet(legacy.read_bytes()))
    ok(cli("keys", "issue", "team/old", "--owner", "team", "--dest", "file:old.key"))
    assert old_store.read(parse_destination("file:old.key")) is not None  # written under the legacy key
    rotated = cli("keys", "rotate", "team/old", extra_env={"KEYOPS_LOG_LEVEL": "DEBUG"})  # the CLI hides INFO
    ok(rotated)
    notes = [line for line in rotated.stderr.splitlines() if "where earlier versions put it" in line]
    assert len(notes) == 1 and str(legacy) in notes[0]
    assert not default_key(tmp_path).exists()


def test_a_configured_key_file_that_is_missing_is_not_created(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "mounted" / "store.key"
    extra = {"KEYOPS_STORES_FILE_ENCRYPTION_KEY_FILE": str(missing)}
    result = cli("keys", "issue", "team/none", "--owner", "team", "--dest", "file:none.key", extra_env=extra)
    one_line_error(result, 3, f"stores.file.encryption_key_file: cannot use {missing}")
    assert not missing.exists()


# -- creating the key: several processes at once --------------------------------------


def _first_starts(key_homes: list[str], directory: str, barrier: Any, out: Any) -> None:
    """One worker's first starts, one per key home: wait until every worker
    is ready, then load the key (creating it if it is missing)."""
    for i, key_home in enumerate(key_homes):
        barrier.wait(timeout=300)
        try:
            key = load_key("", "", Path(directory) / f"data-{i}", key_home)
            out.put((i, "ok", key.fernet.encrypt(b"probe").decode()))
        except Exception as exc:  # reported to the test, which fails on it
            out.put((i, "error", f"{type(exc).__name__}: {exc}"))


def test_workers_starting_together_share_one_complete_key(tmp_path: Path) -> None:
    """Four processes start at the same moment, forty times over (a fresh key
    location each time): each time they all get the one key in the file, and
    the file is never seen empty."""
    workers, rounds = 4, 40
    homes = [tmp_path / f"home-{i}" / "keyops" for i in range(rounds)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_first_starts, args=([str(h) for h in homes], str(tmp_path), barrier, out))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        for i, home in enumerate(homes):
            key_file = home / "file-store.key"
            barrier.wait(timeout=300)
            results: list[tuple[int, str, str]] = []
            sizes_seen = set()
            deadline = time.monotonic() + 60
            while len(results) < workers:
                assert time.monotonic() < deadline, f"round {i}: workers did not answer"
                with contextlib.suppress(FileNotFoundError):
                    sizes_seen.add(key_file.stat().st_size)
                with contextlib.suppress(queue.Empty):
                    results.append(out.get(timeout=0.001))
            assert [(r, status) for r, status, _ in results] == [(i, "ok")] * workers, results
            final = Fernet(key_file.read_bytes().strip())
            assert all(final.decrypt(token.encode()) == b"probe" for _, _, token in results), f"round {i}: two keys"
            assert 0 not in sizes_seen, f"round {i}: the key file was seen empty"
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert [p.name for p in home.iterdir()] == ["file-store.key"], "a temporary file was left behind"
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()


def test_two_cli_processes_at_first_start_use_the_same_key(base_env: dict[str, str], tmp_path: Path) -> None:
    env = {**base_env, "KEYOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'race.db'}"}
    subprocess.run(  # the schema first, so the race is about the key alone
        [sys.executable, "-m", "keyops", "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    issue = [sys.executable, "-m", "keyops", "keys", "issue", "--owner", "team", "--no-print"]
    commands = [[*issue, f"team/race-{i}", "--dest", f"file:race-{i}.key"] for i in range(2)]
    procs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    results = [CliResult(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for result in results:
        ok(result)
    store = FileStore(secrets_dir(tmp_path), Fernet(default_key(tmp_path).read_bytes().strip()))
    for i in range(2):
        assert store.read(parse_destination(f"file:race-{i}.key")) is not None
