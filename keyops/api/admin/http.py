"""The plumbing every admin route shares: authentication, the audit actor,
strict parsing of bodies and query strings, and one translation of keyops
errors into HTTP statuses.

Errors keep the API's one shape, ``{"error": "<one line>"}``, and the line
is the message the CLI prints after ``keyops: error:``. Statuses follow the
CLI's exit codes: invalid input (6) is 400, not found (4) is 404, conflict
(5) is 409, a secret store or issuer failure (8) is 502, the database
unreachable (7) is 503. Unknown fields in a body and unknown query
parameters are refused (400), so a typo is never silently ignored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from keyops.api.admin.access import Forbidden, Need, Unauthenticated, check
from keyops.api.auth import caller_for
from keyops.api.authz import AddressSet, client_address
from keyops.api.cache_sync import Caller
from keyops.api.state import ApiState, json_error
from keyops.api.usage import BodyTooLarge, read_body
from keyops.domain.actors import api_actor
from keyops.domain.redact import redact
from keyops.errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    KeyOpsError,
    NotFoundError,
    StoreError,
)

#: One admin request body (a key to issue, a reason): far below this.
MAX_BODY = 65536
#: The header a client sets to add a note to the audit actor (``--actor``).
NOTE_HEADER = "x-keyops-actor-note"
MAX_NOTE = 128
_NOTE_RE = re.compile(r"[\x20-\x7e]{1,128}")
_JSON = "application/json"
_UNAUTHORIZED = orjson.dumps({"error": "missing or invalid bearer token: send Authorization: Bearer <token>"})

T = TypeVar("T")


def status_of(exc: KeyOpsError) -> int:
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, StoreError):
        return 502
    if isinstance(exc, DatabaseUnavailableError):
        return 503
    if isinstance(exc, ConfigError):
        return 400
    return 500


def json_response(doc: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=_JSON, headers=dict(headers or {}))


@dataclass(frozen=True)
class AdminRequest:
    """One authenticated admin request."""

    request: Request
    state: ApiState
    caller: Caller
    actor: str

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (blocking) lifecycle function off the event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def allow(self, need: Need, *, key_owner: str | None = None) -> None:
        check(self.caller, need, key_owner=key_owner)

    async def body(
        self, fields: Mapping[str, type | tuple[type, ...]], required: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The JSON object body, with only ``fields`` (each of its type) and
        every one of ``required``; an empty body is an empty object."""
        try:
            raw = await read_body(self.request, MAX_BODY)
        except BodyTooLarge:
            raise PayloadTooLarge(f"body too large: at most {MAX_BODY} bytes") from None
        if not raw.strip():
            doc: Any = {}
        else:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise InvalidInputError("body is not valid JSON: send a JSON object") from None
        return checked_fields(doc, fields, required)

    def query(self, allowed: tuple[str, ...]) -> dict[str, str]:
        """The query parameters, refusing unknown and repeated ones."""
        params = self.request.query_params
        for name in params:
            if name not in allowed:
                hint = ", ".join(allowed) if allowed else "none"
                raise InvalidInputError(f"unknown query parameter {name[:64]!r}: this route takes {hint}")
            if len(params.getlist(name)) > 1:
                raise InvalidInputError(f"query parameter {name!r} is given more than once")
        return {name: params[name] for name in params}


class PayloadTooLarge(Exception):
    pass


def checked_fields(
    doc: Any, fields: Mapping[str, type | tuple[type, ...]], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidInputError("body must be a JSON object")
    for name, value in doc.items():
        if name not in fields:
            hint = ", ".join(fields) if fields else "no fields"
            raise InvalidInputError(f"unknown field {str(name)[:64]!r}: this route takes {hint}")
        spec = fields[name]
        kinds: tuple[type, ...] = spec if isinstance(spec, tuple) else (spec,)
        if value is None and type(None) in kinds:
            continue
        if isinstance(value, bool) and bool not in kinds:
            raise InvalidInputError(f"field {name!r} must be {_kind_names(kinds)}")
        if not isinstance(value, kinds):
            raise InvalidInputError(f"field {name!r} must be {_kind_names(kinds)}")
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise InvalidInputError(f"field {name!r} must be a list of strings")
    for name in required:
        if doc.get(name) is None:
            raise InvalidInputError(f"field {name!r} is required")
    return doc


_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings"}


def _kind_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, "null") for k in kinds)


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidInputError(f"{name} must be an integer from {low} to {high}")
    return int(value)


def bool_param(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidInputError(f"{name} must be true or false")
    return value in ("true", "1")


def _authenticate(request: Request, state: ApiState) -> AdminRequest:
    caller = caller_for(state.sync.callers, request.headers.get("authorization"))
    if caller is None:
        raise Unauthenticated
    note = request.headers.get(NOTE_HEADER)
    if note is not None and not _NOTE_RE.fullmatch(note):
        raise InvalidInputError(f"{NOTE_HEADER}: at most {MAX_NOTE} printable ASCII characters")
    peer = request.client.host if request.client is not None else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    proxies = AddressSet(state.app.settings.server.trusted_proxies)
    # The same rule as the gateways': X-Forwarded-For only from a trusted proxy.
    client = client_address(peer, forwarded.encode("latin-1") if forwarded else None, proxies)
    return AdminRequest(request, state, caller, api_actor(caller.name, client, note))


Handler = Callable[[AdminRequest], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint around ``handler``: authenticates, then turns
    refusals and keyops errors into their statuses."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        state: ApiState = request.app.state.keyops
        try:
            return await handler(_authenticate(request, state))
        except Unauthenticated:
            return Response(_UNAUTHORIZED, status_code=401, media_type=_JSON, headers={"WWW-Authenticate": "Bearer"})
        except Forbidden as exc:
            return json_error(403, str(exc))
        except PayloadTooLarge as exc:
            return json_error(413, str(exc))
        except KeyOpsError as exc:
            return json_error(status_of(exc), redact(exc.message))

    return run
