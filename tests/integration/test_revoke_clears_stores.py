"""What revocation leaves in the stores (issue 17): nothing. ``keys revoke``
deletes the key's secret from Vault, AWS Secrets Manager and the file store
(only secrets keyops owns for that key), and audits what it deleted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from keyops.bootstrap import build
from keyops.config import load_settings
from tests.support.databases import sqlite_url
from tests.support.servers import MotoServer, OpenBaoServer


def test_revoke_deletes_the_secret_everywhere(
    base_env: dict[str, str],
    vault_env: dict[str, str],
    aws_env: dict[str, str],
    tmp_path: Path,
    store_prefix: str,
    openbao: OpenBaoServer,
    moto_server: MotoServer,
) -> None:
    env = {**base_env, **vault_env, **aws_env, "KEYOPS_DATABASE_URL": sqlite_url(tmp_path)}
    uris = [f"vault:secret/{store_prefix}gone", f"aws-sm:{store_prefix}gone", f"file:{store_prefix}gone.key"]
    # A secret keyops does not own for this key is left alone: another key's.
    other = f"vault:secret/{store_prefix}other"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keyops", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    dest_args = [a for uri in uris for a in ("--dest", uri)]
    issued = cli("keys", "issue", "pay/gone", "--owner", "pay", *dest_args, "--no-print", "--json")
    assert issued.returncode == 0, issued.stderr
    kept = cli("keys", "issue", "pay/kept", "--owner", "pay", "--dest", other, "--no-print")
    assert kept.returncode == 0, kept.stderr
    revoked = cli("keys", "revoke", "pay/gone", "--reason", "left the company")
    assert revoked.returncode == 0, revoked.stderr
    app = build(load_settings(env=env))
    try:
        for uri in uris:
            dest, store = app.stores.resolve(uri)
            assert not store.describe(dest).exists, uri
        dest, store = app.stores.resolve(other)
        assert store.describe(dest).exists
    finally:
        app.close()
    events = json.loads(cli("audit", "list", "--action", "key.destinations_cleared", "--json").stdout)
    assert [(e["key_name"], e["details"]["deleted"], e["details"]["failed"]) for e in events] == [
        ("pay/gone", uris, [])
    ]
