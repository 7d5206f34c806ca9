"""``/v1/authz`` in process (the real app over a real SQLite inventory, and
a real Redis for the shared-bucket case): every answer, the gateway's own
authentication, X-Forwarded-For trust, and bad input that must count nothing."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.api.state import ApiState
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.errors import ConfigError
from keyops.lifecycle.tokens import TokenService
from tests.support.databases import REDIS_ENV, sqlite_url
from tests.support.waiting import wait_for

BURST = 30  # the built-in "interactive" profile: burst 30, 60 per minute


def make(base_env: dict[str, str], tmp_path: Path, **settings: str) -> App:
    env = dict(base_env)
    env["KEYOPS_DATABASE_URL"] = sqlite_url(tmp_path)
    env.update({f"KEYOPS_{name.upper()}": value for name, value in settings.items()})
    return build(load_settings(env=env))


@pytest.fixture
def app(base_env: dict[str, str], tmp_path: Path) -> Iterator[App]:
    application = make(base_env, tmp_path, server_trusted_proxies="10.0.0.0/8")
    try:
        yield application
    finally:
        application.close()


@pytest.fixture
def token(app: App) -> str:
    return TokenService(app.sessions).create("nginx", "verify", actor="test")[1]


@pytest.fixture
def client(app: App, token: str) -> Iterator[TestClient]:
    with TestClient(create_app(app, worker_id="test"), client=("192.0.2.10", 40000)) as test_client:
        yield test_client


def issue(app: App, name: str = "team/api", client: TestClient | None = None) -> str:
    """A new key; with ``client``, once that app's cache holds it (no use counted)."""
    key = app.keys.issue(name, owner="team", profile="interactive", policy="standard", actor="test").plaintext
    if client is not None:
        digest = hashlib.sha256(key.encode()).digest()
        cache = state_of(client).sync
        wait_for(lambda: cache.cache.lookup(digest) is not None, timeout=5, interval=0.02, what="key in the cache")
    return key


def state_of(client: TestClient) -> ApiState:
    state: ApiState = client.app.inner.state.keyops  # type: ignore[attr-defined]
    return state


def authz(
    client: TestClient, token: str | None, key: str | None = None, path: str = "/v1/authz", **headers: str
) -> Any:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if token is not None:
        sent["X-Keyops-Token"] = token
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    return client.get(path, headers=sent)


def remaining_after_one_verify(client: TestClient, token: str, key: str) -> int:
    answer = client.post("/v1/keys/verify", json={"key": key}, headers={"Authorization": f"Bearer {token}"})
    return int(answer.json()["ratelimit"]["remaining"])


def test_valid_key_gets_200_with_identity_and_limit_headers(app: App, client: TestClient, token: str) -> None:
    key = issue(app, client=client)
    answer = authz(client, token, key, X_Original_URI="/v1/chat/completions")
    assert answer.status_code == 200, answer.text
    view = app.keys.show("team/api")
    assert answer.headers["x-keyops-key-id"] == view.id
    assert answer.headers["x-keyops-key-name"] == "team/api"
    assert answer.headers["x-keyops-owner"] == "team"
    assert answer.headers["x-keyops-profile"] == "interactive"
    assert "x-keyops-code" not in answer.headers  # the status says it
    assert answer.headers["ratelimit-limit"] == str(BURST)
    assert answer.headers["ratelimit-remaining"] == str(BURST - 1)
    assert int(answer.headers["ratelimit-reset"]) >= 1
    assert answer.content == b""
    # Counted like verify: the code counter and the version's last use.
    state = state_of(client)
    assert state.metrics.verify == {"VALID": 1}
    assert len(state.last_use.seen) == 1
    # Any method, any path under /v1/authz, the other key headers.
    for method in ("POST", "DELETE", "HEAD", "OPTIONS"):
        again = client.request(
            method, "/v1/authz/v1/chat/completions", headers={"X-Keyops-Token": token, "x-api-key": key}
        )
        assert again.status_code == 200, (method, again.text)
    assert client.get("/v1/authz", headers={"X-Keyops-Token": token, "api-key": key}).status_code == 200
    assert state.metrics.http[("/v1/authz", 200)] == 6


def test_authz_and_verify_draw_from_one_bucket(app: App, client: TestClient, token: str) -> None:
    key = issue(app, client=client)
    codes = []
    for i in range(BURST + 4):
        if i % 2:
            answer = authz(client, token, key)
            codes.append("VALID" if answer.status_code == 200 else answer.headers["x-keyops-code"])
        else:
            body = client.post("/v1/keys/verify", json={"key": key}, headers={"Authorization": f"Bearer {token}"})
            codes.append(body.json()["code"])
    # One bucket of 30 (refilled at 1/s; the loop takes well under 4 s).
    assert codes[:BURST].count("VALID") == BURST
    assert "RATE_LIMITED" in codes[BURST:]
    counted = state_of(client).metrics.verify
    assert counted["VALID"] + counted["RATE_LIMITED"] == BURST + 4


def test_unknown_malformed_and_missing_keys_get_401_invalid_token(app: App, client: TestClient, token: str) -> None:
    key = issue(app, client=client)
    unknown = key[:-12] + ("A" if key[-12] != "A" else "B") + key[-11:]  # checksum no longer matches: MALFORMED
    from keyops.domain import keyformat

    stranger = keyformat.generate("kops_live").plaintext
    for sent, code in ((stranger, "NOT_FOUND"), (unknown, "MALFORMED"), (None, "MISSING"), ("x" * 40, "MALFORMED")):
        answer = authz(client, token, sent)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert answer.json()["code"] == code
        assert answer.headers["x-keyops-code"] == code
    # Basic credentials are for the upstream, not a key.
    basic = client.get("/v1/authz", headers={"X-Keyops-Token": token, "Authorization": "Basic dTpw"})
    assert basic.status_code == 401 and basic.json()["code"] == "MISSING"


def test_revoked_within_a_second_and_suspended_get_403_naming_the_code(
    app: App, client: TestClient, token: str
) -> None:
    key = issue(app, client=client)
    other = issue(app, "team/other", client)
    assert authz(client, token, key).status_code == 200
    app.keys.revoke("team/api", actor="test")
    started = time.monotonic()
    wait_for(lambda: authz(client, token, key).status_code == 403, timeout=1.0, interval=0.02, what="403 after revoke")
    assert time.monotonic() - started < 1.0
    answer = authz(client, token, key)
    assert answer.json()["code"] == "REVOKED" and answer.headers["x-keyops-code"] == "REVOKED"
    assert "www-authenticate" not in answer.headers
    app.keys.suspend("team/other", actor="test")
    wait_for(lambda: authz(client, token, other).status_code == 403, timeout=1.0, interval=0.02, what="suspended")
    assert authz(client, token, other).json()["code"] == "SUSPENDED"


def test_rate_limited_gets_429_with_retry_after(app: App, client: TestClient, token: str) -> None:
    key = issue(app, client=client)
    answers = [authz(client, token, key) for _ in range(BURST + 5)]
    assert [a.status_code for a in answers[:BURST]] == [200] * BURST
    answer = next(a for a in answers if a.status_code != 200)
    assert answer.status_code == 429, answer.text
    assert answer.json()["code"] == "RATE_LIMITED"
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.headers["ratelimit-remaining"] == "0"


def test_rate_limited_status_403_setting(base_env: dict[str, str], tmp_path: Path) -> None:
    app = make(base_env, tmp_path, authz_rate_limited_status="403")
    try:
        token = TokenService(app.sessions).create("nginx", "verify", actor="test")[1]
        key = issue(app)
        with TestClient(create_app(app)) as client:
            answers = [authz(client, token, key) for _ in range(BURST + 5)]
        assert [a.status_code for a in answers[:BURST]] == [200] * BURST
        last = next(a for a in answers if a.status_code != 200)
        assert last.status_code == 403 and last.json()["code"] == "RATE_LIMITED" and "retry-after" in last.headers
    finally:
        app.close()
    with pytest.raises(ConfigError, match=r"authz\.rate_limited_status"):
        load_settings(env={**base_env, "KEYOPS_AUTHZ_RATE_LIMITED_STATUS": "500"})
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies"):
        load_settings(env={**base_env, "KEYOPS_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,not-an-ip"})
    with pytest.raises(ConfigError, match=r"authz\.token_header"):
        load_settings(env={**base_env, "KEYOPS_AUTHZ_TOKEN_HEADER": "x-api-key"})


def test_gateway_must_authenticate_and_nothing_is_counted_otherwise(app: App, client: TestClient, token: str) -> None:
    key = issue(app, client=client)
    usage_only = TokenService(app.sessions).create("reporter", "usage", actor="test")[1]
    wait_for(lambda: len(state_of(client).sync.callers) == 2, timeout=5, what="token table reload")
    for sent in (None, "kot_" + "x" * 40, usage_only, f"{token}, {token}"):
        answer = authz(client, sent, key)
        assert answer.status_code == 500, (sent is None, answer.text)
        assert answer.json()["code"] == "GATEWAY_UNAUTHORIZED"
    assert state_of(client).metrics.verify == {} and not state_of(client).last_use.seen
    assert remaining_after_one_verify(client, token, key) == BURST - 1  # the bucket was not touched
    # Both spellings of the token header value.
    assert authz(client, f"Bearer {token}", key).status_code == 200
    # A revoked gateway token stops working (the memo follows the token table).
    TokenService(app.sessions).revoke("nginx", actor="test")
    wait_for(lambda: authz(client, token, key).status_code == 500, timeout=5, interval=0.05, what="token revoked")


def test_token_header_name_and_key_header_order_are_settings(base_env: dict[str, str], tmp_path: Path) -> None:
    app = make(base_env, tmp_path, authz_token_header="X-Gateway-Auth", authz_key_headers="x-api-key")
    try:
        token = TokenService(app.sessions).create("envoy", "verify", actor="test")[1]
        key = issue(app)
        with TestClient(create_app(app)) as client:
            assert client.get("/v1/authz", headers={"X-Gateway-Auth": token, "x-api-key": key}).status_code == 200
            # Authorization is no longer a key header, X-Keyops-Token no longer the token header.
            assert (
                client.get("/v1/authz", headers={"X-Gateway-Auth": token, "Authorization": f"Bearer {key}"}).json()[
                    "code"
                ]
                == "MISSING"
            )
            assert client.get("/v1/authz", headers={"X-Keyops-Token": token, "x-api-key": key}).status_code == 500
    finally:
        app.close()


def test_peer_allow_list_and_forwarded_for_trust(base_env: dict[str, str], tmp_path: Path) -> None:
    app = make(base_env, tmp_path, authz_allowed_peers="10.0.0.0/8,2001:db8::/32", server_trusted_proxies="10.0.0.0/8")
    try:
        key = issue(app)
        asgi = create_app(app)
        with TestClient(asgi, client=("10.1.2.3", 1000)) as gateway:
            answer = gateway.get("/v1/authz", headers={"x-api-key": key, "X-Forwarded-For": "203.0.113.9, 10.9.9.9"})
            assert answer.status_code == 200, answer.text
            # The right-most address that is not a trusted proxy.
            assert answer.headers["x-keyops-client-ip"] == "203.0.113.9"
            forged = gateway.get(
                "/v1/authz", headers={"x-api-key": key, "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
            )
            assert forged.headers["x-keyops-client-ip"] == "203.0.113.9"
            broken = gateway.get("/v1/authz", headers={"x-api-key": key, "X-Forwarded-For": "nonsense"})
            assert broken.headers["x-keyops-client-ip"] == "10.1.2.3"
        with TestClient(asgi, client=("192.0.2.7", 1000)) as stranger:
            refused = stranger.get("/v1/authz", headers={"x-api-key": key, "X-Forwarded-For": "10.1.2.3"})
            assert refused.status_code == 500 and refused.json()["code"] == "GATEWAY_UNAUTHORIZED"
        token = TokenService(app.sessions).create("gw", "verify", actor="test")[1]
        with TestClient(create_app(app), client=("192.0.2.7", 1000)) as untrusted:
            # Allowed by token; its X-Forwarded-For is not believed.
            answer = untrusted.get(
                "/v1/authz", headers={"X-Keyops-Token": token, "x-api-key": key, "X-Forwarded-For": "203.0.113.9"}
            )
            assert answer.status_code == 200 and "x-keyops-client-ip" not in answer.headers
    finally:
        app.close()


BAD_INPUT = [
    ("several keys", {"x-api-key": "{other}"}, "SEVERAL_KEYS"),
    ("oversized", {"x-api-key": "k" * 2000}, "OVERSIZED"),
    ("key in X-Original-URI", {"X-Original-URI": "/v1/chat?api_key={key}"}, "KEY_IN_QUERY"),
    ("key-shaped value in X-Forwarded-Uri", {"X-Forwarded-Uri": "/v1/chat?q={key}"}, "KEY_IN_QUERY"),
    ("key parameter, percent-encoded", {"X-Original-URI": "/x?a=1&API%5FKEY=whatever"}, "KEY_IN_QUERY"),
]


@pytest.mark.parametrize(("label", "extra", "code"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_refused_and_counts_nothing(
    app: App,
    client: TestClient,
    token: str,
    caplog: pytest.LogCaptureFixture,
    label: str,
    extra: dict[str, str],
    code: str,
) -> None:
    key = issue(app, client=client)
    other = issue(app, "team/other", client)
    headers = {k: v.format(key=key, other=other) for k, v in extra.items()}
    with caplog.at_level(logging.DEBUG):
        answer = authz(client, token, key, **{k.replace("-", "_"): v for k, v in headers.items()})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert answer.json()["code"] == code
    state = state_of(client)
    assert state.metrics.verify == {} and not state.last_use.seen
    assert remaining_after_one_verify(client, token, key) == BURST - 1
    assert key not in caplog.text and key not in answer.text


def test_query_string_of_the_authz_request_and_odd_headers(app: App, client: TestClient, token: str) -> None:
    """Envoy puts the original path (and query) under /v1/authz; a key there
    is refused too. The same key twice is one key; undecodable bytes are a
    malformed key, not an error."""
    key = issue(app, client=client)
    answer = client.get(f"/v1/authz/v1/chat?key={key}", headers={"X-Keyops-Token": token, "x-api-key": key})
    assert answer.status_code == 401 and answer.json()["code"] == "KEY_IN_QUERY"
    assert state_of(client).metrics.verify == {}
    same = client.get(
        "/v1/authz", headers={"X-Keyops-Token": token, "x-api-key": key, "Authorization": f"Bearer {key}"}
    )
    assert same.status_code == 200
    raw = client.get(
        "/v1/authz", headers=[("X-Keyops-Token", token), ("x-api-key", "kops_live_\xff\xfe".encode("latin-1"))]
    )  # type: ignore[arg-type]
    assert raw.status_code == 401 and raw.json()["code"] == "MALFORMED"
    harmless = client.get(
        "/v1/authz?page=2", headers={"X-Keyops-Token": token, "x-api-key": key, "X-Original-URI": "/a?page=2&q=hello"}
    )
    assert harmless.status_code == 200


def test_openapi_lists_authz(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    operation = doc["paths"]["/v1/authz"]["get"]
    assert {"200", "401", "403", "429", "500"} <= set(operation["responses"])
    assert "X-Keyops-Key-Id" in operation["responses"]["200"]["headers"]


def test_shared_redis_bucket_is_the_same_for_authz_and_verify(base_env: dict[str, str], tmp_path: Path) -> None:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis tests skipped: {REDIS_ENV} is not set")
    prefix = f"keyops-test-{secrets.token_hex(4)}:"
    first = make(base_env, tmp_path, redis_url=url, redis_key_prefix=prefix)
    second = build(
        load_settings(
            env={
                **base_env,
                "KEYOPS_DATABASE_URL": sqlite_url(tmp_path),
                "KEYOPS_REDIS_URL": url,
                "KEYOPS_REDIS_KEY_PREFIX": prefix,
            }
        )
    )
    try:
        token = TokenService(first.sessions).create("gw", "verify", actor="test")[1]
        key = issue(first)
        with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
            statuses = []
            for i in range(BURST + 2):
                if i % 2:
                    statuses.append(authz(a, token, key).status_code)
                else:
                    body = b.post(
                        "/v1/keys/verify",
                        content=orjson.dumps({"key": key}),
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    statuses.append(429 if body.json()["code"] == "RATE_LIMITED" else 200)
        assert statuses[:BURST] == [200] * BURST and 429 in statuses[BURST:]
    finally:
        first.close()
        second.close()
