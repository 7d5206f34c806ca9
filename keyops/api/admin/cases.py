"""``/v1/admin/cases``: list and show cases (read only over HTTP for now:
``cases ack``/``close`` change a case without an audit event, so they stay
with the CLI until they record who did it)."""

from __future__ import annotations

from starlette.responses import Response

from keyops.api.admin.access import READ, Need
from keyops.api.admin.http import AdminRequest, endpoint, int_param, json_response

LIST = Need("GET /v1/admin/cases", READ)
SHOW = Need("GET /v1/admin/cases/{id}", READ)


@endpoint
async def list_cases(req: AdminRequest) -> Response:
    req.allow(LIST)
    params = req.query(("status", "limit"))
    limit = int_param(params, "limit", 100, 1, 10000)
    items = await req.call(req.state.app.detection.findings.cases.list, status=params.get("status"), limit=limit)
    return json_response(items)


@endpoint
async def show_case(req: AdminRequest) -> Response:
    req.allow(SHOW)
    req.query(())
    doc = await req.call(req.state.app.detection.findings.cases.show, str(req.request.path_params["case_id"]))
    return json_response(doc)
