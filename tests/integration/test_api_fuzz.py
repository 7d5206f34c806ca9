"""Fuzzing the HTTP intake (verify, usage, alerts) with hypothesis, guided by
the OpenAPI document's request schemas: whatever arrives, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.api.openapi import DOCUMENT
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.detect.refusals import REASONS
from keyops.lifecycle.tokens import TokenService
from tests.support.databases import sqlite_url

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _object_from_schema(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects using the schema's property names with values that are right-typed or anything."""
    if "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    props = schema.get("properties", {})
    typed = {
        "string": st.text(max_size=80),
        "integer": st.integers(min_value=-(2**40), max_value=2**40),
        "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63 - 1),
        "array": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
    }
    values = {}
    for name, prop in props.items():
        kind = prop.get("type")
        base = typed.get(kind if isinstance(kind, str) else "string", st.text(max_size=20))
        values[name] = base | json_values
    return st.fixed_dictionaries({}, optional=values)


VERIFY = DOCUMENT["paths"]["/v1/keys/verify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
EVENT = DOCUMENT["components"]["schemas"]["UsageEvent"]
bodies_verify = _object_from_schema(VERIFY).map(orjson.dumps) | st.binary(max_size=200)
bodies_usage = (
    st.lists(_object_from_schema(EVENT) | json_values, max_size=6).map(orjson.dumps)
    | st.lists(_object_from_schema(EVENT), max_size=4).map(lambda evs: b"\n".join(orjson.dumps(e) for e in evs))
    | st.binary(max_size=300)
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    env = {"KEYOPS_DATABASE_URL": sqlite_url(directory), "KEYOPS_STORES_FILE_DIRECTORY": str(directory / "s")}
    app: App = build(load_settings(env=env))
    token = TokenService(app.sessions).create("fuzz", "admin", actor="test")[1]
    app.keys.issue("team/fuzz", owner="t", profile="interactive", policy="standard", actor="t")
    try:
        with TestClient(create_app(app), raise_server_exceptions=False) as client:
            yield client, {"Authorization": f"Bearer {token}"}
    finally:
        app.close()


@FUZZ
@given(body=bodies_verify)
def test_verify_never_500(served: tuple[TestClient, dict[str, str]], body: bytes) -> None:
    client, headers = served
    answer = client.post("/v1/keys/verify", content=body, headers=headers)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:
        assert answer.json()["code"] in ("MALFORMED", "NOT_FOUND", "VALID", "RATE_LIMITED")


@FUZZ
@given(body=bodies_usage)
def test_usage_never_500(served: tuple[TestClient, dict[str, str]], body: bytes) -> None:
    client, headers = served
    answer = client.post("/v1/usage", content=body, headers=headers)
    assert answer.status_code in (202, 400), answer.text
    if answer.status_code == 202:
        doc = answer.json()
        assert set(doc) == {"accepted", "rejected", "detection"}
        assert all(r["reason"] in REASONS for r in doc["rejected"] + doc["detection"]["rejected"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=st.sampled_from(["standard", "alertmanager", "grafana", "sns", "github", "nope"]),
    body=json_values.map(orjson.dumps) | st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "authorization",
                         "x-amz-sns-message-type", "github-public-key-identifier", "github-public-key-signature"]),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
        max_size=4,
    ),
)  # fmt: skip
def test_alerts_never_500(
    served: tuple[TestClient, dict[str, str]], source: str, body: bytes, headers: dict[str, str]
) -> None:
    client, _ = served
    answer = client.post(f"/v1/alerts/{source}", content=body, headers=headers)
    assert answer.status_code < 500 or answer.status_code == 503, answer.text
