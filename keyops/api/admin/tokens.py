"""``/v1/admin/tokens``: create, list, revoke (admin only; auditors may list).

Revoking is ``DELETE`` and answers 204, as Vault does for deletes; the
token's record stays (listed with ``revoked_at``) for the audit trail.
"""

from __future__ import annotations

from starlette.responses import Response

from keyops.api.admin.access import TOKENS_READ, TOKENS_WRITE, Need
from keyops.api.admin.http import AdminRequest, endpoint, json_response
from keyops.lifecycle.tokens import TokenService

LIST = Need("GET /v1/admin/tokens", TOKENS_READ)
CREATE = Need("POST /v1/admin/tokens", TOKENS_WRITE)
REVOKE = Need("DELETE /v1/admin/tokens/{name}", TOKENS_WRITE)


@endpoint
async def list_tokens(req: AdminRequest) -> Response:
    req.allow(LIST)
    req.query(())
    views = await req.call(TokenService(req.state.app.sessions).list)
    return json_response([v.to_document() for v in views])


@endpoint
async def create_token(req: AdminRequest) -> Response:
    """201 with ``{"name", "token", "scopes"}``: the token is in this answer
    once and stored only as a hash."""
    req.allow(CREATE)
    req.query(())
    doc = await req.body({"name": str, "scopes": (str, list)}, required=("name", "scopes"))
    view, token = await req.call(
        TokenService(req.state.app.sessions).create, doc["name"], doc["scopes"], actor=req.actor
    )
    return json_response({"name": view.name, "token": token, "scopes": list(view.scopes)}, status=201)


@endpoint
async def revoke_token(req: AdminRequest) -> Response:
    req.allow(REVOKE)
    params = req.query(("reason",))
    name = str(req.request.path_params["name"])
    await req.call(TokenService(req.state.app.sessions).revoke, name, actor=req.actor, reason=params.get("reason", ""))
    return Response(status_code=204)
