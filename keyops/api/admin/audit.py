"""``/v1/admin/audit``: list events and verify the chain (admin, auditor).

Verifying answers 200 with the verdict document whether or not the chain
holds (the check itself worked); ``ok`` false is where the CLI exits 9, or
10 when ``expected_head_problem`` is set, and ``error`` then carries the
line the CLI prints.
"""

from __future__ import annotations

from starlette.responses import Response

from keyops.api.admin.access import AUDIT, Need
from keyops.api.admin.http import AdminRequest, endpoint, int_param, json_response
from keyops.lifecycle import audit_log

LIST = Need("GET /v1/admin/audit", AUDIT)
VERIFY = Need("GET /v1/admin/audit/verify", AUDIT)


@endpoint
async def list_audit(req: AdminRequest) -> Response:
    req.allow(LIST)
    params = req.query(("key", "action", "limit"))
    limit = int_param(params, "limit", 100, 1, audit_log.MAX_LIMIT)
    docs = await req.call(
        audit_log.list_events, req.state.app.sessions, key=params.get("key"), action=params.get("action"), limit=limit
    )
    return json_response(docs)


@endpoint
async def verify_audit(req: AdminRequest) -> Response:
    req.allow(VERIFY)
    params = req.query(("expect_head",))
    expected = audit_log.parse_expected_head(params.get("expect_head"), "expect_head")
    doc, failure = await req.call(audit_log.verify_report, req.state.app.sessions, expected)
    if failure is not None:
        doc["error"] = failure.message
    return json_response(doc)


HEAD = Need("GET /v1/admin/audit/head", AUDIT)


@endpoint
async def audit_head(req: AdminRequest) -> Response:
    req.allow(HEAD)
    req.query(())
    return json_response(await req.call(audit_log.head_document, req.state.app.sessions))
