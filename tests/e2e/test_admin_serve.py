"""The admin API on ``keyops serve`` as a real process: the first admin
token made on the database with the CLI, the rest over HTTP, and the audit
log naming the token and the client address the server saw."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.serving import Served
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_admin_over_http(cli: Any, servers: Callable[..., Served], env: dict[str, str]) -> None:
    if not env["KEYOPS_DATABASE_URL"].startswith("sqlite"):
        pytest.skip("PostgreSQL runs the same routes in the in-process role matrix; a process start costs more here")
    made = cli("tokens", "create", "root", "--scopes", "admin", "--json")
    assert made.code == 0, made.stderr
    root = {"Authorization": f"Bearer {json.loads(made.stdout)['token']}"}
    server = servers()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        created = client.post("/v1/admin/tokens", json={"name": "ops", "scopes": ["operator"]}, headers=root)
        assert created.status_code == 201, created.text
        ops = {"Authorization": f"Bearer {created.json()['token']}", "X-Keyops-Actor-Note": "alice"}
        issued = wait_for(
            lambda: (
                (
                    r := client.post("/v1/admin/keys", json={"name": "team/e2e", "owner": "team"}, headers=ops)
                ).status_code
                != 401
                and r
            ),
            timeout=5,
            what="the new token known to the server",
        )
        assert issued.status_code == 201, issued.text
        assert issued.json()["key"].startswith("kops_")
        rotated = client.post("/v1/admin/keys/team/e2e/rotate", json={"grace": "1h"}, headers=ops)
        assert rotated.status_code == 200 and rotated.json()["new_version"] == 2, rotated.text
        denied = client.get("/v1/admin/tokens", headers=ops)
        assert denied.status_code == 403 and "needs admin or auditor" in denied.json()["error"]
        events = client.get("/v1/admin/audit", headers=root).json()
    actors = {e["action"]: e["actor"] for e in events}
    assert actors["token.created"] == "token:root@127.0.0.1"
    assert actors["key.issued"] == "token:ops@127.0.0.1 note=alice"
    assert actors["key.rotated"] == "token:ops@127.0.0.1 note=alice"
