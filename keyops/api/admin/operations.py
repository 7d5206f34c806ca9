"""``/v1/admin/reconcile`` and ``/v1/admin/events``: the inventory against
what the stores hold, and what the outbox delivered."""

from __future__ import annotations

from starlette.responses import Response

from keyops.api.admin.access import ACT, READ, Need
from keyops.api.admin.http import AdminRequest, endpoint, int_param, json_response
from keyops.errors import ConflictError, InvalidInputError
from keyops.lifecycle.views import delivery_document

RECONCILE = Need("POST /v1/admin/reconcile", ACT)
EVENTS = Need("GET /v1/admin/events", READ)
EVENT_STATUSES = ("pending", "delivered", "dead")


@endpoint
async def reconcile(req: AdminRequest) -> Response:
    """200 with the report when nothing drifted; 409 with the CLI's line and
    the report when drift remains (the CLI exits 5)."""
    req.allow(RECONCILE)
    req.query(())
    doc = await req.body({"repair": bool})
    report = await req.call(req.state.app.rotations.reconcile, repair=bool(doc.get("repair", False)), actor=req.actor)
    if report.ok:
        return json_response(report.to_document())
    error = ConflictError(
        f"{len(report.drift)} destination(s) differ from the inventory; run keyops reconcile --repair"
    )
    return json_response({"error": error.message, "report": report.to_document()}, status=409)


@endpoint
async def list_events(req: AdminRequest) -> Response:
    req.allow(EVENTS)
    params = req.query(("status", "limit"))
    status = params.get("status")
    if status is not None and status not in EVENT_STATUSES:
        raise InvalidInputError(f"unknown status {status!r}: use one of {', '.join(EVENT_STATUSES)}")
    limit = int_param(params, "limit", 100, 1, 100000)
    rows = await req.call(req.state.app.notify.list_deliveries, status=status, limit=limit)
    return json_response([delivery_document(r) for r in rows])
