"""Roles on tokens and the audit actor: pure rules, no database."""

from __future__ import annotations

import pytest

from keyops.api.admin import access, cursor
from keyops.api.cache_sync import Caller
from keyops.domain import actors, scopes
from keyops.errors import InvalidInputError


def test_roles_and_owner_scopes_parse() -> None:
    assert scopes.parse_scopes("operator, owner:payments,auditor") == ["auditor", "operator", "owner:payments"]
    assert scopes.owners(["owner:a", "owner:b@x", "verify"]) == {"a", "b@x"}


@pytest.mark.parametrize("bad", ["owner:", "owner:bad owner", "owner:-x", "owner:" + "a" * 65, "owner:a\nb", "root"])
def test_bad_roles_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        scopes.parse_scopes(bad)


def test_check_names_the_roles_a_route_needs() -> None:
    need = access.Need("POST /v1/admin/keys/{key}/rotate", access.ACT, for_owner=True)
    access.check(Caller("a", frozenset({"operator"})), need)
    access.check(Caller("o", frozenset({"owner:payments"})), need, key_owner="payments")
    for caller, owner in (
        (Caller("o", frozenset({"owner:payments"})), "search"),
        (Caller("r", frozenset({"auditor"})), None),
    ):
        with pytest.raises(access.Forbidden, match="it needs admin or operator \\(or owner:<the key's owner>\\)"):
            access.check(caller, need, key_owner=owner)
    reader = access.Need("GET /v1/admin/audit", access.AUDIT)
    with pytest.raises(
        access.Forbidden, match="'op' lacks the role for GET /v1/admin/audit: it needs admin or auditor"
    ):
        access.check(Caller("op", frozenset({"operator", "verify"})), reader)


def test_actors() -> None:
    assert actors.api_actor("ops", "10.0.0.7") == "token:ops@10.0.0.7"
    assert actors.api_actor("ops", "10.0.0.7", "alice") == "token:ops@10.0.0.7 note=alice"
    assert actors.local_actor(user="bob") == "local:bob"
    assert actors.local_actor("incident 42", user="bob") == "local:bob note=incident 42"


def test_cursor_round_trip_and_refusals() -> None:
    assert cursor.decode(cursor.encode("team/a-b.c")) == "team/a-b.c"
    for bad in ("", "!!", cursor.encode("team/a")[:-2] + "@@", "eDE6dGVhbS9h"):
        with pytest.raises(InvalidInputError, match="invalid cursor"):
            cursor.decode(bad)
