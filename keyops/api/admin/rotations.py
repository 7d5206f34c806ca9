"""``/v1/admin/rotations``: list, show, resume (the CLI's ``rotations``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from keyops.api.admin.access import ACT, READ, Need
from keyops.api.admin.http import AdminRequest, endpoint, int_param, json_response
from keyops.errors import InvalidInputError
from keyops.lifecycle.rotation_result import RotationResult

LIST = Need("GET /v1/admin/rotations", READ)
SHOW = Need("GET /v1/admin/rotations/{id}", READ)
RESUME = Need("POST /v1/admin/rotations/resume", ACT)


def summary(results: list[RotationResult]) -> dict[str, Any]:
    """``rotations resume --json`` and ``keys rotate --due --json``."""
    failed = sum(1 for r in results if not r.ok)
    return {"rotated": len(results) - failed, "failed": failed, "rotations": [r.to_document() for r in results]}


@endpoint
async def list_rotations(req: AdminRequest) -> Response:
    req.allow(LIST)
    params = req.query(("status", "key", "limit"))
    limit = int_param(params, "limit", 100, 1, 100000)
    results = await req.call(
        req.state.app.rotations.list, status=params.get("status"), key=params.get("key"), limit=limit
    )
    return json_response([r.to_document() for r in results])


@endpoint
async def show_rotation(req: AdminRequest) -> Response:
    req.allow(SHOW)
    req.query(())
    result = await req.call(req.state.app.rotations.show, str(req.request.path_params["rotation_id"]))
    return json_response(result.to_document(with_steps=True))


@endpoint
async def resume_rotations(req: AdminRequest) -> Response:
    """Finish unfinished rotations. 200 with the summary; ``failed`` > 0 is
    where the CLI exits 8."""
    req.allow(RESUME)
    req.query(())
    doc = await req.body({"force": bool})
    results = await req.call(
        req.state.app.rotations.resume,
        only_expired_leases=not doc.get("force", False),
        include_failed=True,
        limit=10000,
    )
    return json_response(summary(results))


DUE = Need("POST /v1/admin/rotations/due", ACT)


def _rotate_due(req: AdminRequest, limit: int) -> list[RotationResult]:
    engine = req.state.app.rotations
    results: list[RotationResult] = []
    while len(results) < limit:
        batch = engine.rotate_due(limit=min(100, limit - len(results)))
        if not batch:
            break
        results.extend(batch)
    return results


@endpoint
async def rotate_due(req: AdminRequest) -> Response:
    """``keys rotate --due``: every key whose policy says it is due (at most
    ``limit``), each exactly once across replicas; 200 with the summary."""
    req.allow(DUE)
    req.query(())
    doc = await req.body({"limit": int})
    limit = doc.get("limit", 10000)
    if not 1 <= limit <= 100000:
        raise InvalidInputError("field 'limit' must be an integer from 1 to 100000")
    return json_response(summary(await req.call(_rotate_due, req, limit)))
