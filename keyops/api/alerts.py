"""``POST /v1/alerts/{source}``: hands the raw delivery to ``app.alerts``.

Every supported format proves its own authenticity (Standard Webhooks and
Grafana sign the body with a shared secret, SNS with AWS' certificate, GitHub
with its ECDSA key, Alertmanager with the bearer/basic credentials configured
for that source). A source set to ``require_token`` also wants a keyops API
token with scope ``alerts:<source>``: this route hands the receiver a lookup
into the process's token table, and the receiver checks it before anything
else. This route bounds the body, moves the work off the event loop (at most
``alerts.max_concurrency`` deliveries at once) and counts verdicts.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from keyops.api.auth import caller_for
from keyops.api.state import ApiState, json_error
from keyops.api.usage import BodyTooLarge, read_body
from keyops.inventory.types import utcnow

_SIGNATURE_STATUSES = (401, 403)


def _verdict(status: int, body: Any) -> str:
    if isinstance(body, dict):
        value = body.get("verdict") or body.get("error")
        if isinstance(value, str):
            return value[:32]
    return "acted" if status == 200 else f"http_{status}"


def _token_of(state: ApiState, authorization: str | None) -> tuple[str, Collection[str]] | None:
    caller = caller_for(state.sync.callers, authorization)
    return None if caller is None else (caller.name, caller.scopes)


async def alerts_endpoint(request: Request) -> Response:
    state: ApiState = request.app.state.keyops
    source = str(request.path_params["source"])[:32]
    receiver = getattr(state.app, "alerts", None)
    if receiver is None:
        return json_error(404, "alert intake is not configured in this build")
    limit = state.app.settings.server.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return json_error(413, f"body too large: at most {limit} bytes (server.max_body_bytes)")
    headers = {k.lower(): v for k, v in request.headers.items()}
    limiter = getattr(request.app.state, "alert_limiter", None)
    if limiter is None:
        # Alert handling waits on the inventory and sometimes on a vendor's key
        # endpoint: its own bound keeps a flood of deliveries from taking every
        # worker thread that /readyz, /metrics and /v1/usage need too.
        limiter = anyio.CapacityLimiter(receiver.settings.max_concurrency)
        request.app.state.alert_limiter = limiter
    receive = partial(receiver.receive, tokens=partial(_token_of, state))
    outcome = await anyio.to_thread.run_sync(receive, source, headers, body, utcnow(), limiter=limiter)
    status = int(outcome.status)
    label_source = source if receiver.enabled(source) else "unknown"
    verdict = _verdict(status, outcome.body)
    key = (label_source, verdict)
    state.metrics.alerts[key] = state.metrics.alerts.get(key, 0) + 1
    if status in _SIGNATURE_STATUSES:
        state.metrics.signature_failures[label_source] = state.metrics.signature_failures.get(label_source, 0) + 1
    return Response(outcome.json(), status_code=status, media_type="application/json")
