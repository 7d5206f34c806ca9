"""``/v1/admin/keys``: issue, bulk issue, list, show, update, suspend,
resume, revoke and rotate keys, on the lifecycle functions the CLI calls.

Bodies are the CLI's options by their long names (``owner``, ``profile``,
``dest`` as ``destinations``...); answers are the CLI's ``--json``
documents. Key names hold slashes, so a key's routes are
``/v1/admin/keys/<team>/<name>[/<action>]``: the last path segment of a POST
is the action, and a GET names a key (or its id) with the whole rest.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from keyops.api.admin import access, cursor
from keyops.api.admin.access import ACT, READ, Need
from keyops.api.admin.http import AdminRequest, PayloadTooLarge, bool_param, endpoint, int_param, json_response
from keyops.api.usage import BodyTooLarge, read_body
from keyops.domain.durations import parse_duration, parse_expiry
from keyops.errors import InvalidInputError, NotFoundError, StoreError
from keyops.inventory.types import utcnow
from keyops.lifecycle import bulk
from keyops.lifecycle.usage import usage_summary
from keyops.lifecycle.views import KeyView, issued_document

DEFAULT_PAGE = 100
MAX_PAGE = 1000
NEXT_CURSOR_HEADER = "Keyops-Next-Cursor"

LIST = Need("GET /v1/admin/keys", READ, for_owner=True)
SHOW = Need("GET /v1/admin/keys/{key}", READ, for_owner=True)
ISSUE = Need("POST /v1/admin/keys", ACT)
BULK = Need("POST /v1/admin/keys/bulk", ACT)
UPDATE = Need("PATCH /v1/admin/keys/{key}", ACT)
ROTATE = Need("POST /v1/admin/keys/{key}/rotate", ACT, for_owner=True)
STATE = {action: Need(f"POST /v1/admin/keys/{{key}}/{action}", ACT) for action in ("suspend", "resume", "revoke")}


async def allow_for_key(req: AdminRequest, need: Need, name: str) -> None:
    """Roles first; an owner token only for a key of its owner (a key it may
    not see is refused like a missing one: 403 either way)."""
    if access.has_role(req.caller, need):
        return
    if not need.for_owner or not access.owner_scopes(req.caller):
        raise access.refuse(req.caller, need)
    try:
        view = await req.call(req.state.app.keys.show, name)
    except NotFoundError:
        raise access.refuse(req.caller, need) from None
    req.allow(need, key_owner=view.owner)


def _list_owner(req: AdminRequest, owner: str | None) -> str | None:
    """The owner filter: as asked for a role; an owner token sees its own keys."""
    if access.has_role(req.caller, LIST):
        return owner
    mine = access.owner_scopes(req.caller)
    if not mine:
        raise access.refuse(req.caller, LIST)
    if owner is None:
        if len(mine) > 1:
            raise InvalidInputError(f"this token owns keys of {len(mine)} owners: give owner=<one of them>")
        return next(iter(mine))
    req.allow(LIST, key_owner=owner)
    return owner


@endpoint
async def list_keys(req: AdminRequest) -> Response:
    params = req.query(("owner", "state", "profile", "limit", "cursor"))
    limit = int_param(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    after = cursor.decode(params["cursor"]) if "cursor" in params else None
    owner = _list_owner(req, params.get("owner"))
    views: list[KeyView] = await req.call(
        req.state.app.keys.list,
        owner=owner,
        state=params.get("state"),
        profile=params.get("profile"),
        limit=limit + 1,
        after=after,
    )
    headers = {}
    if len(views) > limit:
        views = views[:limit]
        headers[NEXT_CURSOR_HEADER] = cursor.encode(views[-1].name)
    return json_response([v.to_document(with_versions=False) for v in views], headers=headers)


def _show(req: AdminRequest, name: str) -> dict[str, Any]:
    app = req.state.app
    view = app.keys.show(name)
    doc = view.to_document()
    doc["usage"] = usage_summary(app.sessions, view.id)
    return doc


@endpoint
async def show_key(req: AdminRequest) -> Response:
    name = str(req.request.path_params["key"])
    req.query(())
    await allow_for_key(req, SHOW, name)
    return json_response(await req.call(_show, req, name))


_ISSUE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "owner": str,
    "profile": (str, type(None)),
    "policy": (str, type(None)),
    "description": str,
    "expires": (str, type(None)),
    "destinations": list,
    "adopt": bool,
    "no_print": bool,
    "reason": str,
}


@endpoint
async def issue_key(req: AdminRequest) -> Response:
    req.allow(ISSUE)
    req.query(())
    doc = await req.body(_ISSUE_FIELDS, required=("name", "owner"))
    destinations = list(doc.get("destinations") or ())
    no_print = bool(doc.get("no_print", False))
    if no_print and not destinations:
        raise InvalidInputError("--no-print needs at least one --dest: otherwise the key would be lost")
    expires_at = parse_expiry(doc.get("expires"), utcnow())
    settings = req.state.app.settings.keys
    result = await req.call(
        req.state.app.keys.issue,
        doc["name"],
        owner=doc["owner"],
        profile=doc.get("profile") or settings.default_profile,
        policy=doc.get("policy") or settings.default_policy,
        actor=req.actor,
        reason=doc.get("reason", ""),
        description=doc.get("description", ""),
        expires_at=expires_at,
        destinations=destinations,
        adopt=bool(doc.get("adopt", False)),
    )
    return json_response(issued_document(result.key, None if no_print else result.plaintext), status=201)


@endpoint
async def bulk_issue(req: AdminRequest) -> Response:
    """The body is the ``keys issue --from-file`` file (JSON lines); the
    answer is what that command prints, one issued key per line."""
    req.allow(BULK)
    params = req.query(("reason", "no_print"))
    no_print = bool_param(params, "no_print")
    limit = req.state.app.settings.server.max_body_bytes
    try:
        raw = await read_body(req.request, limit)
    except BodyTooLarge:
        raise PayloadTooLarge(f"body too large: at most {limit} bytes (server.max_body_bytes)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("body: not UTF-8 text; nothing was issued") from None
    settings = req.state.app.settings.keys
    entries = bulk.parse_lines(
        text, source="body", default_profile=settings.default_profile, default_policy=settings.default_policy
    )
    issued = await req.call(
        req.state.app.keys.issue_many,
        [e.request for e in entries],
        actor=req.actor,
        reason=params.get("reason", ""),
        labels=[f"body line {e.line}" for e in entries],
    )
    lines = b"".join(orjson.dumps(issued_document(r.key, None if no_print else r.plaintext)) + b"\n" for r in issued)
    return Response(lines, status_code=201, media_type="application/x-ndjson")


@endpoint
async def update_key(req: AdminRequest) -> Response:
    name = str(req.request.path_params["key"])
    req.allow(UPDATE)
    req.query(())
    fields: dict[str, type | tuple[type, ...]] = {
        "owner": (str, type(None)),
        "profile": (str, type(None)),
        "policy": (str, type(None)),
        "reason": str,
    }
    doc = await req.body(fields)
    view = await req.call(
        req.state.app.keys.update,
        name,
        actor=req.actor,
        reason=doc.get("reason", ""),
        owner=doc.get("owner"),
        profile=doc.get("profile"),
        policy=doc.get("policy"),
    )
    return json_response(view.to_document(with_versions=False))


def _change_state(req: AdminRequest, name: str, action: str, reason: str) -> KeyView:
    app = req.state.app
    view: KeyView = getattr(app.keys, action)(name, actor=req.actor, reason=reason)
    janitor = app.rotations.janitor
    if janitor is not None and view.issuer != "native":
        # Cloud keys: bring their credentials in line now, as the CLI does
        # (a failure is retried by the scheduler's sweep).
        janitor.sweep(key_id=view.id, actor=req.actor)
    return view


def state_change(action: str) -> Any:
    need = STATE[action]

    @endpoint
    async def change(req: AdminRequest) -> Response:
        name = str(req.request.path_params["key"])
        req.allow(need)
        req.query(())
        doc = await req.body({"reason": str})
        view = await req.call(_change_state, req, name, action, doc.get("reason", ""))
        return json_response(view.to_document(with_versions=False))

    change.__name__ = f"{action}_key"
    return change


@endpoint
async def rotate_key(req: AdminRequest) -> Response:
    """One key's rotation; 502 with the rotation's document when it failed
    (the CLI prints it and exits 8)."""
    name = str(req.request.path_params["key"])
    req.query(())
    await allow_for_key(req, ROTATE, name)
    doc = await req.body({"grace": (str, int, type(None)), "reason": str, "evict_oldest_inactive": bool})
    grace_seconds = None
    if doc.get("grace") is not None:
        try:
            grace_seconds = parse_duration(doc["grace"])
        except ValueError as exc:
            raise InvalidInputError(f"--grace: {exc}") from None
    result = await req.call(
        req.state.app.rotations.rotate,
        name,
        grace_seconds=grace_seconds,
        actor=req.actor,
        reason=doc.get("reason", ""),
        trigger="manual",
        evict_oldest_inactive=bool(doc.get("evict_oldest_inactive", False)),
    )
    answer = result.to_document(with_steps=False)
    if result.plaintext is not None:
        answer["key"] = result.plaintext
    if not result.ok:
        error = StoreError(f"rotation {result.rotation_id} of {result.key_name} {result.status}: {result.last_error}")
        return json_response({"error": error.message, "rotation": answer}, status=502)
    return json_response(answer)
