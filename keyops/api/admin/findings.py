"""``/v1/admin/findings``: list, show, acknowledge, dismiss.

An owner token sees the findings of its owner's keys: it lists them with
``key=`` naming one of those keys, and shows one finding about such a key.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from keyops.api.admin import access
from keyops.api.admin.access import ACT, READ, Need
from keyops.api.admin.http import AdminRequest, endpoint, int_param, json_response
from keyops.api.admin.keys import allow_for_key
from keyops.errors import NotFoundError

LIST = Need("GET /v1/admin/findings", READ, for_owner=True)
SHOW = Need("GET /v1/admin/findings/{id}", READ, for_owner=True)
REVIEW = {d: Need(f"POST /v1/admin/findings/{{id}}/{d}", ACT) for d in ("acknowledge", "dismiss")}


@endpoint
async def list_findings(req: AdminRequest) -> Response:
    params = req.query(("key", "case", "limit"))
    limit = int_param(params, "limit", 100, 1, 10000)
    if not access.has_role(req.caller, LIST):
        if "key" not in params:
            raise access.refuse(req.caller, LIST)
        await allow_for_key(req, LIST, params["key"])
    items = await req.call(
        req.state.app.detection.findings.list, key=params.get("key"), case=params.get("case"), limit=limit
    )
    return json_response(items)


def _owner_of(req: AdminRequest, doc: dict[str, Any]) -> str | None:
    if doc.get("key_id") is None:
        return None
    try:
        return req.state.app.keys.show(str(doc["key_id"])).owner
    except NotFoundError:
        return None


@endpoint
async def show_finding(req: AdminRequest) -> Response:
    req.query(())
    finding_id = str(req.request.path_params["finding_id"])
    if access.has_role(req.caller, SHOW):
        return json_response(await req.call(req.state.app.detection.findings.show, finding_id))
    if not access.owner_scopes(req.caller):
        raise access.refuse(req.caller, SHOW)
    try:
        doc = await req.call(req.state.app.detection.findings.show, finding_id)
    except NotFoundError:
        raise access.refuse(req.caller, SHOW) from None
    req.allow(SHOW, key_owner=await req.call(_owner_of, req, doc))
    return json_response(doc)


def review(decision: str) -> Any:
    need = REVIEW[decision]

    @endpoint
    async def decide(req: AdminRequest) -> Response:
        req.allow(need)
        req.query(())
        doc = await req.body({"reason": str}, required=("reason",) if decision == "dismiss" else ())
        result = await req.call(
            req.state.app.detection.findings.review,
            str(req.request.path_params["finding_id"]),
            decision,
            actor=req.actor,
            reason=doc.get("reason", ""),
        )
        return json_response(result)

    decide.__name__ = f"{decision}_finding"
    return decide
