"""The admin API in-process (Starlette TestClient, real SQLite/PostgreSQL):
the role matrix (each role against each route: allowed and audited under the
token's name, or 403 with nothing changed), bad input, pagination, and the
answers being the CLI's documents and error lines."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from keyops import audit
from keyops.api.app import create_app
from keyops.bootstrap import App
from keyops.errors import InvalidInputError
from keyops.inventory import models
from keyops.lifecycle.tokens import TokenService

ROLES = {
    "admin": "admin",
    "operator": "operator",
    "auditor": "auditor",
    "owner": "owner:team",
    "stranger": "owner:other",
    "gateway": "verify,usage",
}
_names = itertools.count()


@pytest.fixture
def tokens(app: App) -> dict[str, str]:
    service = TokenService(app.sessions)
    return {role: service.create(f"t-{role}", scopes, actor="test")[1] for role, scopes in ROLES.items()}


@pytest.fixture
def client(app: App, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(app, worker_id="test")) as test_client:
        yield test_client


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def new_key(app: App, owner: str = "team") -> str:
    name = f"{owner}/k{next(_names)}"
    app.keys.issue(name, owner=owner, profile="interactive", policy="standard", actor="test")
    return name


def new_finding(app: App, owner: str = "team") -> str:
    key_id = app.keys.show(new_key(app, owner)).id
    with app.sessions.begin() as session:
        row = models.Finding(key_id=key_id, detector="volume", severity="high", summary="too many requests")
        session.add(row)
        session.flush()
        return row.id


def head_seq(app: App) -> int:
    with app.sessions() as session:
        return audit.head(session).seq


def snapshot(app: App) -> tuple[Any, ...]:
    """Everything an admin route could change: the audit head (every change
    appends to it), keys, versions, findings and tokens."""
    with app.sessions() as session:
        keys = session.execute(select(models.Key.name, models.Key.state, models.Key.owner)).all()
        versions = session.execute(select(models.KeyVersion.id, models.KeyVersion.state)).all()
        findings = session.execute(select(models.Finding.id, models.Finding.status)).all()
        tokens = session.execute(select(models.ApiToken.name, models.ApiToken.revoked_at)).all()
        return audit.head(session).seq, sorted(keys), sorted(versions), sorted(findings), sorted(tokens)


@dataclass(frozen=True)
class Case:
    """One route: how to set up its target, the request, who may call it."""

    name: str
    setup: Callable[[App], dict[str, str]]
    request: Callable[[dict[str, str]], tuple[str, str, Any]]
    allowed: frozenset[str]
    changes: bool = False
    status: int = 200


READERS = frozenset({"admin", "operator", "auditor"})
ACTORS = frozenset({"admin", "operator"})


def _rotation(app: App) -> dict[str, str]:
    name = new_key(app)
    return {"id": app.rotations.rotate(name, actor="test", trigger="manual").rotation_id}


def _suspended(app: App) -> dict[str, str]:
    name = new_key(app)
    app.keys.suspend(name, actor="test")
    return {"key": name}


def _token(app: App) -> dict[str, str]:
    name = f"victim-{next(_names)}"
    TokenService(app.sessions).create(name, "verify", actor="test")
    return {"name": name}


CASES = [
    Case("keys list", lambda a: {}, lambda c: ("GET", "/v1/admin/keys", None), READERS | {"owner", "stranger"}),
    Case(
        "keys issue",
        lambda a: {"name": f"team/new{next(_names)}"},
        lambda c: ("POST", "/v1/admin/keys", {"name": c["name"], "owner": "team"}),
        ACTORS,
        changes=True,
        status=201,
    ),
    Case(
        "keys bulk",
        lambda a: {"name": f"team/bulk{next(_names)}"},
        lambda c: ("POST", "/v1/admin/keys/bulk", orjson.dumps({"name": c["name"], "owner": "team"}) + b"\n"),
        ACTORS,
        changes=True,
        status=201,
    ),
    Case(
        "keys show",
        lambda a: {"key": new_key(a)},
        lambda c: ("GET", f"/v1/admin/keys/{c['key']}", None),
        READERS | {"owner"},
    ),
    Case(
        "keys update",
        lambda a: {"key": new_key(a)},
        lambda c: ("PATCH", f"/v1/admin/keys/{c['key']}", {"owner": "team2"}),
        ACTORS,
        changes=True,
    ),
    *(
        Case(
            f"keys {action}",
            _suspended if action == "resume" else (lambda a: {"key": new_key(a)}),
            lambda c, action=action: ("POST", f"/v1/admin/keys/{c['key']}/{action}", {"reason": "test"}),  # type: ignore[misc]
            ACTORS,
            changes=True,
        )
        for action in ("suspend", "resume", "revoke")
    ),
    Case(
        "keys rotate",
        lambda a: {"key": new_key(a)},
        lambda c: ("POST", f"/v1/admin/keys/{c['key']}/rotate", {"grace": "1h"}),
        ACTORS | {"owner"},
        changes=True,
    ),
    Case("rotations due", lambda a: {}, lambda c: ("POST", "/v1/admin/rotations/due", {"limit": 10}), ACTORS),
    Case("profiles list", lambda a: {}, lambda c: ("GET", "/v1/admin/profiles", None), READERS),
    Case("profiles show", lambda a: {}, lambda c: ("GET", "/v1/admin/profiles/interactive", None), READERS),
    Case("policies list", lambda a: {}, lambda c: ("GET", "/v1/admin/policies", None), READERS),
    Case("policies show", lambda a: {}, lambda c: ("GET", "/v1/admin/policies/standard", None), READERS),
    Case(
        "specs apply",
        lambda a: {"name": f"p{next(_names)}"},
        lambda c: ("POST", "/v1/admin/specs", f'[policies.{c["name"]}]\nrotate_every = "30d"\ngrace = "1h"\n'.encode()),
        frozenset({"admin"}),
        changes=True,
    ),
    Case("reconcile", lambda a: {}, lambda c: ("POST", "/v1/admin/reconcile", {}), ACTORS),
    Case("events list", lambda a: {}, lambda c: ("GET", "/v1/admin/events?status=pending", None), READERS),
    Case("rotations list", lambda a: {}, lambda c: ("GET", "/v1/admin/rotations", None), READERS),
    Case("rotations show", _rotation, lambda c: ("GET", f"/v1/admin/rotations/{c['id']}", None), READERS),
    Case("rotations resume", lambda a: {}, lambda c: ("POST", "/v1/admin/rotations/resume", {}), ACTORS),
    Case(
        "findings list",
        lambda a: {"key": a.keys.show(new_key(a)).name},
        lambda c: ("GET", f"/v1/admin/findings?key={c['key']}", None),
        READERS | {"owner"},
    ),
    Case(
        "findings show",
        lambda a: {"id": new_finding(a)},
        lambda c: ("GET", f"/v1/admin/findings/{c['id']}", None),
        READERS | {"owner"},
    ),
    *(
        Case(
            f"findings {decision}",
            lambda a: {"id": new_finding(a)},
            lambda c, d=decision: ("POST", f"/v1/admin/findings/{c['id']}/{d}", {"reason": "seen"}),  # type: ignore[misc]
            ACTORS,
            changes=True,
        )
        for decision in ("acknowledge", "dismiss")
    ),
    Case("audit list", lambda a: {}, lambda c: ("GET", "/v1/admin/audit", None), frozenset({"admin", "auditor"})),
    Case(
        "audit verify", lambda a: {}, lambda c: ("GET", "/v1/admin/audit/verify", None), frozenset({"admin", "auditor"})
    ),
    Case("audit head", lambda a: {}, lambda c: ("GET", "/v1/admin/audit/head", None), frozenset({"admin", "auditor"})),
    Case("cases list", lambda a: {}, lambda c: ("GET", "/v1/admin/cases?status=open", None), READERS),
    Case("tokens list", lambda a: {}, lambda c: ("GET", "/v1/admin/tokens", None), frozenset({"admin", "auditor"})),
    Case(
        "tokens create",
        lambda a: {"name": f"made-{next(_names)}"},
        lambda c: ("POST", "/v1/admin/tokens", {"name": c["name"], "scopes": ["verify"]}),
        frozenset({"admin"}),
        changes=True,
        status=201,
    ),
    Case(
        "tokens revoke",
        _token,
        lambda c: ("DELETE", f"/v1/admin/tokens/{c['name']}?reason=test", None),
        frozenset({"admin"}),
        changes=True,
        status=204,
    ),
]


def send(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    content = body if isinstance(body, bytes) else (None if body is None else orjson.dumps(body))
    return client.request(method, path, content=content, headers=headers)


def test_role_matrix(app: App, client: TestClient, tokens: dict[str, str]) -> None:
    """Each role against each route: allowed (a change audited under the
    token's name and the client's address; the answer matching its schema in
    /openapi.json), or 403 naming the roles the route needs, nothing changed."""
    doc = orjson.loads(orjson.dumps(client.get("/openapi.json").json()).replace(b"#/components/schemas/", b"#/$defs/"))
    shared: dict[str, dict[str, str]] = {}
    for case, role in itertools.product(CASES, ROLES):
        # A refusal changes nothing, so the refused roles share one target;
        # each allowed call gets its own (it may revoke or rename it).
        ctx = case.setup(app) if role in case.allowed or case.name not in shared else shared[case.name]
        if role not in case.allowed:
            shared[case.name] = ctx
        before = snapshot(app)
        method, path, body = case.request(ctx)
        response = send(client, method, path, body, auth(tokens[role]))
        where = f"{case.name} as {role}: {response.status_code} {response.text[:300]}"
        if role in case.allowed:
            assert response.status_code == case.status, where
            schema = response_schema(doc, _template(method, path), method.lower(), case.status)
            if schema is not None:
                jsonschema.Draft202012Validator(schema).validate(response.json())
            if case.changes:
                assert head_seq(app) > before[0], where
                with app.sessions() as session:
                    last = session.execute(select(models.AuditEvent).order_by(models.AuditEvent.seq.desc())).first()
                assert last is not None and last[0].actor == f"token:t-{role}@testclient", where
        else:
            assert response.status_code == 403, where
            assert "needs admin" in response.json()["error"], where
            assert snapshot(app) == before, where


def test_unauthenticated(client: TestClient) -> None:
    for headers in ({}, auth("kopt_unknown"), {"Authorization": "Basic x"}):
        response = client.get("/v1/admin/keys", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_owner_sees_only_its_keys(app: App, client: TestClient, tokens: dict[str, str]) -> None:
    mine, theirs = new_key(app, "team"), new_key(app, "other")
    names = [d["name"] for d in client.get("/v1/admin/keys", headers=auth(tokens["owner"])).json()]
    assert mine in names and theirs not in names
    assert client.get("/v1/admin/keys?owner=other", headers=auth(tokens["owner"])).status_code == 403
    for path in (f"/v1/admin/keys/{theirs}", "/v1/admin/keys/other/missing"):
        assert client.get(path, headers=auth(tokens["owner"])).status_code == 403
    assert client.get(f"/v1/admin/findings?key={theirs}", headers=auth(tokens["owner"])).status_code == 403
    before = snapshot(app)
    assert client.post(f"/v1/admin/keys/{theirs}/rotate", headers=auth(tokens["owner"])).status_code == 403
    assert snapshot(app) == before


def test_actor_note_and_token_created_by_api_works(app: App, client: TestClient, tokens: dict[str, str]) -> None:
    name = new_key(app)
    headers = auth(tokens["admin"], **{"X-Keyops-Actor-Note": "alice on call"})
    assert send(client, "POST", f"/v1/admin/keys/{name}/suspend", {"reason": "leak"}, headers).status_code == 200
    events = client.get(f"/v1/admin/audit?key={name}", headers=auth(tokens["auditor"])).json()
    assert events[-1]["action"] == "key.suspended"
    assert events[-1]["actor"] == "token:t-admin@testclient note=alice on call"
    assert events[-1]["reason"] == "leak"
    bad = auth(tokens["admin"], **{"X-Keyops-Actor-Note": "x" * 200})
    assert client.get("/v1/admin/keys", headers=bad).status_code == 400


def test_pagination_and_cursor_validation(app: App, client: TestClient, tokens: dict[str, str]) -> None:
    made = sorted(new_key(app, "pager") for _ in range(5))
    seen: list[str] = []
    path = "/v1/admin/keys?owner=pager&limit=2"
    for _ in range(10):
        response = client.get(path, headers=auth(tokens["auditor"]))
        assert response.status_code == 200, response.text
        seen += [d["name"] for d in response.json()]
        cursor = response.headers.get("keyops-next-cursor")
        if cursor is None:
            break
        path = f"/v1/admin/keys?owner=pager&limit=2&cursor={cursor}"
    assert seen == made
    for bad in ("nonsense!", "a2V5", "azE6Tk9UIEEgTkFNRQ", "x" * 300):
        response = client.get(f"/v1/admin/keys?cursor={bad}", headers=auth(tokens["auditor"]))
        assert response.status_code == 400
        assert "invalid cursor" in response.json()["error"]
    for query in ("limit=0", "limit=1001", "limit=x", "colour=red", "state=melted"):
        assert client.get(f"/v1/admin/keys?{query}", headers=auth(tokens["auditor"])).status_code == 400, query


def test_bad_input_is_refused_and_changes_nothing(app: App, client: TestClient, tokens: dict[str, str]) -> None:
    name = new_key(app)
    admin = auth(tokens["admin"])
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/v1/admin/keys", {"name": "team/x", "owner": "team", "colour": "red"}, 400, "unknown field 'colour'"),
        ("POST", "/v1/admin/keys", {"name": "team/x"}, 400, "field 'owner' is required"),
        ("POST", "/v1/admin/keys", {"name": 5, "owner": "team"}, 400, "field 'name' must be a string"),
        ("POST", "/v1/admin/keys", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/admin/keys", [1], 400, "must be a JSON object"),
        ("POST", "/v1/admin/keys", {"name": "team/x", "owner": "team", "expires": "soon"}, 400, "--expires"),
        ("POST", "/v1/admin/keys", {"name": "x" * 70000, "owner": "t"}, 413, "too large"),
        ("POST", "/v1/admin/keys", {"name": name, "owner": "team"}, 409, "already exists"),
        ("GET", "/v1/admin/keys/team/missing", None, 404, "no key named 'team/missing'"),
        ("POST", "/v1/admin/keys/team/missing/revoke", {}, 404, "no key named"),
        ("PATCH", f"/v1/admin/keys/{name}", {}, 400, "nothing to change"),
        ("POST", f"/v1/admin/keys/{name}/resume", {}, 409, ""),
        ("POST", f"/v1/admin/keys/{name}/rotate", {"grace": "forever"}, 400, "--grace"),
        ("GET", "/v1/admin/rotations/nope", None, 404, "no rotation"),
        ("GET", "/v1/admin/rotations?status=odd", None, 400, "unknown rotation status"),
        ("POST", "/v1/admin/findings/nope/dismiss", {"reason": "x"}, 404, "no finding"),
        ("POST", "/v1/admin/tokens", {"name": "t-admin", "scopes": "verify"}, 409, "already exists"),
        ("POST", "/v1/admin/tokens", {"name": "new-one", "scopes": "root"}, 400, "unknown scope 'root'"),
        ("DELETE", "/v1/admin/tokens/nobody", None, 404, "no token named"),
        ("GET", "/v1/admin/audit/verify?expect_head=zz", None, 400, "expect_head"),
        ("GET", "/v1/admin/audit?action=revoke", None, 400, "did you mean key.revoked"),
        ("POST", "/v1/admin/keys/bulk", b'{"name": "team/b"}\n', 400, "body line 1"),
        ("POST", "/v1/admin/specs", b"[policies.x\n", 400, "not valid TOML"),
        ("POST", "/v1/admin/specs", b'[policies.bad]\nrotate_every = "soon"\n', 400, "body"),
        ("GET", "/v1/admin/profiles/nope", None, 404, "nope"),
        ("GET", "/v1/admin/events?status=lost", None, 400, "unknown status"),
        ("GET", "/v1/admin/cases/nope", None, 404, "nope"),
        ("POST", "/v1/admin/rotations/due", {"limit": 0}, 400, "limit"),
    ]
    for method, path, body, status, words in cases:
        before = snapshot(app)
        response = send(client, method, path, body, admin)
        assert response.status_code == status, (method, path, response.text)
        error = response.json()["error"]
        assert words in error and "\n" not in error, (path, error)
        assert snapshot(app) == before, path


def test_findings_review(app: App, client: TestClient, tokens: dict[str, str]) -> None:
    finding = new_finding(app)
    operator = auth(tokens["operator"])
    answer = send(client, "POST", f"/v1/admin/findings/{finding}/acknowledge", {}, operator)
    assert answer.status_code == 200 and answer.json()["status"] == "acknowledged"
    refused = send(client, "POST", f"/v1/admin/findings/{finding}/dismiss", {}, operator)
    assert refused.status_code == 400 and "reason" in refused.json()["error"]
    done = send(client, "POST", f"/v1/admin/findings/{finding}/dismiss", {"reason": "a load test"}, operator)
    assert done.status_code == 200 and done.json()["status"] == "dismissed"
    again = send(client, "POST", f"/v1/admin/findings/{finding}/acknowledge", {}, operator)
    assert again.status_code == 409
    events = [e for e in audit_log(app) if e.action.startswith("finding.")]
    assert [(e.action, e.reason) for e in events] == [
        ("finding.acknowledged", ""),
        ("finding.dismissed", "a load test"),
    ]


def audit_log(app: App) -> list[models.AuditEvent]:
    with app.sessions() as session:
        return list(session.execute(select(models.AuditEvent).order_by(models.AuditEvent.seq)).scalars())


def test_answers_are_the_cli_documents(app: App, client: TestClient, tokens: dict[str, str], cli: Any) -> None:
    """The API's documents and error lines are what the CLI prints (SQLite
    only: the CLI's start-up is the slow part, and the database adds nothing)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("the same code path on PostgreSQL; the CLI start-up is the cost")
    name = new_key(app)
    over_api = client.get(f"/v1/admin/keys/{name}", headers=auth(tokens["auditor"])).json()
    over_cli = orjson.loads(cli("keys", "show", name, "--json").stdout)
    assert over_api == over_cli
    api = send(client, "POST", "/v1/admin/keys", {"name": "Bad Name", "owner": "team"}, auth(tokens["admin"]))
    with pytest.raises(InvalidInputError) as raised:  # what `keyops keys issue` prints after "keyops: error:"
        app.keys.issue("Bad Name", owner="team", profile="interactive", policy="standard", actor="test")
    assert api.status_code == 400 and api.json()["error"] == raised.value.message
    listed = client.get("/v1/admin/keys?limit=1000", headers=auth(tokens["auditor"])).json()
    assert listed == [v.to_document(with_versions=False) for v in app.keys.list()]


def test_openapi_lists_every_admin_route(client: TestClient) -> None:
    """The document is valid OpenAPI 3.1 and its admin paths are exactly the routes."""
    from openapi_spec_validator import validate

    from keyops.api import admin

    doc = client.get("/openapi.json").json()
    validate(doc)
    documented = {
        (path, method) for path, ops in doc["paths"].items() if path.startswith("/v1/admin/") for method in ops
    }
    served = {
        (route.path.replace("{key:path}", "{key}"), method.lower())
        for route in admin.routes()
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert documented == served
    for path, method in served:
        operation = doc["paths"][path][method]
        assert any(code in operation["responses"] for code in ("200", "201", "204")), (path, method)
        assert "403" in operation["responses"] and "400" in operation["responses"], (path, method)


def response_schema(doc: dict[str, Any], route: str, method: str, status: int) -> dict[str, Any] | None:
    """The documented JSON schema of one answer, references inlined."""
    answer = doc["paths"][route][method]["responses"].get(str(status), {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    return {**schema, "$defs": doc["components"]["schemas"]}


def _template(method: str, path: str) -> str:
    """The OpenAPI path a request was routed to (key names hold slashes)."""
    from keyops.api import admin

    bare = path.split("?")[0]
    for route in admin.routes():
        if method in (route.methods or ()) and route.path_regex.match(bare):
            return route.path.replace("{key:path}", "{key}")
    raise AssertionError(path)
