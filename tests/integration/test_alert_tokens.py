"""``alerts:<source>`` token scopes, enforced over HTTP against the real app and
its real token table (SQLite and PostgreSQL): a source set to ``require_token``
takes a delivery only with a keyops token allowing it, beside (standard) or as
(Alertmanager) the source's own credential. Refusals record nothing. Unknown
scopes are refused when a token is created. ``/openapi.json`` follows
``server.public_metrics`` like ``/metrics``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.lifecycle.tokens import TokenService
from tests.integration.test_alerts_receiver import issue, key_state, snapshot
from tests.support.waiting import wait_for
from tests.unit.alerts import vendors


@pytest.fixture
def token_app(env: dict[str, str]) -> Iterator[App]:
    env = {
        **env,
        "KEYOPS_ALERTS_STANDARD_ENABLED": "true",
        "KEYOPS_ALERTS_STANDARD_SECRETS": vendors.STANDARD_SECRET,
        "KEYOPS_ALERTS_STANDARD_REQUIRE_TOKEN": "true",
        "KEYOPS_ALERTS_ALERTMANAGER_ENABLED": "true",
        "KEYOPS_ALERTS_ALERTMANAGER_REQUIRE_TOKEN": "true",
        "KEYOPS_ALERTS_GRAFANA_ENABLED": "true",
        "KEYOPS_ALERTS_GRAFANA_HMAC_SECRET": vendors.GRAFANA_SECRET,
        "KEYOPS_ALERTS_GRAFANA_TIMESTAMP_HEADER": "X-Grafana-Alerting-Timestamp",
    }
    app = build(load_settings(env=env))
    try:
        yield app
    finally:
        app.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_tokens(app: App) -> dict[str, str]:
    service = TokenService(app.sessions)
    wanted = {
        "am": "alerts:alertmanager",
        "std": "alerts:standard",
        "all": "alerts:*",
        "gw": "verify,usage",
        "ops": "admin",
    }
    return {name: service.create(name, scopes, actor="test")[1] for name, scopes in wanted.items()}


def am_body(key: str = "payments/prod-llm") -> bytes:
    return json.dumps(vendors.alert_group(key)).encode()


def test_alertmanager_needs_a_token_with_its_scope(token_app: App) -> None:
    key_id, _ = issue(token_app)
    tokens = make_tokens(token_app)
    before = snapshot(token_app)
    with TestClient(create_app(token_app)) as client:
        refusals: list[tuple[dict[str, str], int, str]] = [
            ({}, 401, "missing_token"),
            (bearer("kopt_" + "x" * 43), 401, "missing_token"),
            ({"Authorization": f"Basic {tokens['am']}"}, 401, "missing_token"),
            (bearer(tokens["std"]), 403, "missing_scope"),
            (bearer(tokens["gw"]), 403, "missing_scope"),
        ]
        for headers, status, code in refusals:
            answer = client.post("/v1/alerts/alertmanager", content=am_body(), headers=headers)
            assert answer.status_code == status, (headers, answer.text)
            assert answer.json()["error"] == code
            assert snapshot(token_app) == before, headers
        refused = client.post("/v1/alerts/alertmanager", content=am_body(), headers=bearer(tokens["std"]))
        assert refused.json()["message"] == "token 'std' lacks the scope 'alerts:alertmanager'"
        missing = client.post("/v1/alerts/alertmanager", content=am_body())
        assert "alerts:alertmanager" in missing.json()["message"]

        accepted = client.post("/v1/alerts/alertmanager", content=am_body(), headers=bearer(tokens["am"]))
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["keys"][0]["result"] == "suspended"
        assert key_state(token_app, key_id) == "suspended"
        metrics = client.get("/metrics").text
    assert 'keyops_webhook_signature_failures_total{source="alertmanager"} 7' in metrics


def test_wildcard_and_admin_tokens_allow_every_token_source(token_app: App) -> None:
    issue(token_app, "team/one")
    issue(token_app, "team/two")
    tokens = make_tokens(token_app)
    with TestClient(create_app(token_app)) as client:
        for name, key in (("all", "team/one"), ("ops", "team/two")):
            answer = client.post("/v1/alerts/alertmanager", content=am_body(key), headers=bearer(tokens[name]))
            assert answer.status_code == 200, (name, answer.text)
            assert answer.json()["keys"][0]["result"] == "suspended"


def test_a_revoked_token_is_refused_within_a_second(token_app: App) -> None:
    issue(token_app)
    tokens = make_tokens(token_app)
    with TestClient(create_app(token_app)) as client:
        TokenService(token_app.sessions).revoke("am", actor="test")

        def refused() -> bool:
            answer = client.post("/v1/alerts/alertmanager", content=b"[1,", headers=bearer(tokens["am"]))
            return answer.status_code == 401

        wait_for(refused, timeout=5, what="the revoked token refused")
        before = snapshot(token_app)
        answer = client.post("/v1/alerts/alertmanager", content=am_body(), headers=bearer(tokens["am"]))
        assert answer.status_code == 401 and snapshot(token_app) == before


def test_standard_needs_both_its_signature_and_the_token(token_app: App) -> None:
    key_id, _ = issue(token_app)
    tokens = make_tokens(token_app)
    before = snapshot(token_app)
    data = {"key_id": key_id, "action": "suspend", "reason": "second factor"}
    with TestClient(create_app(token_app)) as client:
        signed, body = vendors.standard_delivery(data)
        forged = {**signed, "webhook-signature": "v1," + "A" * 44}
        for headers, status, code in [
            (signed, 401, "missing_token"),
            ({**signed, **bearer(tokens["am"])}, 403, "missing_scope"),
            ({**forged, **bearer(tokens["std"])}, 401, "bad_signature"),
        ]:
            answer = client.post("/v1/alerts/standard", content=body, headers=headers)
            assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
            assert snapshot(token_app) == before
        wrong = client.post("/v1/alerts/standard", content=body, headers={**signed, **bearer(tokens["am"])})
        assert wrong.json()["message"] == "token 'am' lacks the scope 'alerts:standard'"
        answer = client.post("/v1/alerts/standard", content=body, headers={**signed, **bearer(tokens["std"])})
        assert answer.status_code == 200, answer.text
        assert key_state(token_app, key_id) == "suspended"


def test_a_source_without_require_token_ignores_tokens(token_app: App) -> None:
    key_id, _ = issue(token_app)
    tokens = make_tokens(token_app)
    body = vendors.grafana_body(key_id)
    with TestClient(create_app(token_app)) as client:
        headers = {**vendors.grafana_headers(body), **bearer(tokens["gw"])}
        answer = client.post("/v1/alerts/grafana", content=body, headers=headers)
        assert answer.status_code == 200, answer.text


def test_the_receiver_without_a_token_table_refuses_token_sources(token_app: App) -> None:
    """Called directly (no HTTP layer to resolve tokens), a source that
    requires one fails closed."""
    issue(token_app)
    tokens = make_tokens(token_app)
    before = snapshot(token_app)
    outcome = token_app.alerts.receive("alertmanager", bearer(tokens["am"]), am_body())
    assert outcome.status == 401 and outcome.body["error"] == "missing_token"
    assert snapshot(token_app) == before


# -- scopes at creation --------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "named"),
    [
        ("alerts:nosuch", "unknown scope 'alerts:nosuch' (no such alert source)"),
        ("verify,alerts:sns", "unknown scope 'alerts:sns' (sns deliveries cannot carry a keyops token)"),
        ("alerts:github", "unknown scope 'alerts:github' (github deliveries cannot carry a keyops token)"),
        ("alerts:Standard", "unknown scope 'alerts:Standard'"),
    ],
)
def test_tokens_create_refuses_alert_scopes_nothing_checks(cli: Any, app: App, scopes: str, named: str) -> None:
    result = cli("tokens", "create", "monitoring", "--scopes", scopes)
    assert result.code == 6, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"keyops: error: {named}")
    assert line.endswith("alert scopes are alerts:standard, alerts:alertmanager, alerts:grafana, alerts:*")
    assert TokenService(app.sessions).list() == []


def test_tokens_create_refuses_other_unknown_scopes(cli: Any, app: App) -> None:
    result = cli("tokens", "create", "monitoring", "--scopes", "verify,write")
    assert result.code == 6
    [line] = result.stderr.strip().splitlines()
    assert line == (
        "keyops: error: unknown scope 'write': use verify, usage, admin, operator, auditor, owner:<owner>, "
        "or alerts:<source> for standard, "
        "alertmanager, grafana (alerts:* for all of them)"
    )
    assert TokenService(app.sessions).list() == []
    ok = cli("tokens", "create", "monitoring", "--scopes", "alerts:grafana,alerts:*", "--json")
    assert ok.code == 0, ok.stderr
    assert json.loads(ok.stdout)["scopes"] == ["alerts:*", "alerts:grafana"]


# -- /openapi.json and /metrics --------------------------------------------------


def test_openapi_and_metrics_follow_public_metrics(env: dict[str, str]) -> None:
    app = build(load_settings(env={**env, "KEYOPS_SERVER_PUBLIC_METRICS": "false"}))
    try:
        tokens = make_tokens(app)
        with TestClient(create_app(app)) as client:
            for path in ("/openapi.json", "/metrics"):
                assert client.get(path).status_code == 401, path
                denied = client.get(path, headers=bearer(tokens["gw"]))
                assert denied.status_code == 403 and denied.json()["error"] == "token 'gw' lacks the scope 'admin'"
                assert client.get(path, headers=bearer(tokens["ops"])).status_code == 200, path
            doc = client.get("/openapi.json", headers=bearer(tokens["ops"])).json()
            assert "/v1/alerts/{source}" in doc["paths"]
    finally:
        app.close()
    public = build(load_settings(env=env))
    try:
        with TestClient(create_app(public)) as client:
            assert client.get("/openapi.json").status_code == 200
            assert client.get("/metrics").status_code == 200
    finally:
        public.close()
