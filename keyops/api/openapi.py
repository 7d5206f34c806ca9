"""The OpenAPI 3.1 document of the HTTP API, written by hand (served at
``/openapi.json``; the fuzz tests generate requests from it)."""

from __future__ import annotations

from typing import Any

from keyops.detect.refusals import REASONS

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_NULLABLE_STR = {"type": ["string", "null"]}
_RATELIMIT = {
    "type": "object",
    "description": "The key's token bucket (its profile's burst, refilled at requests_per_minute). "
    "reset: seconds until the bucket is full again. All null when no limit applied.",
    "properties": {
        "limit": {"type": ["integer", "null"]},
        "remaining": {"type": ["integer", "null"]},
        "reset": {"type": ["integer", "null"]},
        "requests_per_minute": {
            "type": ["integer", "null"],
            "description": "the profile's sustained rate (what LiteLLM's rpm_limit is set to)",
        },
    },
    "required": ["limit", "remaining", "reset"],
}
_CODES = ["VALID", "MALFORMED", "NOT_FOUND", "SUSPENDED", "REVOKED", "EXPIRED", "RATE_LIMITED"]


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_AUTH = {"401": _err("Missing or unknown bearer token."), "403": _err("The token lacks the scope.")}

_USAGE_EVENT = {
    "type": "object",
    "description": "One request seen by a gateway. Name the key with exactly one of key_id, key_hash, key.",
    "properties": {
        "ts": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]},
        "key_id": {"type": "string"},
        "key_hash": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "key": {"type": "string"},
        "ip": {"type": "string"},
        "endpoint": {"type": "string"},
        "status": {"type": "integer", "minimum": 0},
        "duration_ms": {"type": "number", "minimum": 0},
        "input_tokens": {"type": "integer", "minimum": 0},
        "output_tokens": {"type": "integer", "minimum": 0},
        "prompt": {"type": "string"},
        "prompt_sketch": {"type": "array"},
        "user_agent": {"type": "string"},
    },
    "required": ["ts"],
}

_AUTHZ_REFUSED = {
    "type": "object",
    "properties": {"code": {"type": "string"}, "error": {"type": "string"}},
    "required": ["code", "error"],
}


def _authz_refusal(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Keyops-Code": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _AUTHZ_REFUSED}},
    }


_INT_HEADER = {"schema": {"type": "integer"}}
_AUTHZ_OPERATION: dict[str, Any] = {
    "summary": "Allow or refuse the request a gateway is holding (status decides).",
    "responses": {
        "200": {
            "description": "Allowed. Copy the X-Keyops-* headers to the upstream request.",
            "headers": {
                "X-Keyops-Key-Id": {"schema": {"type": "string"}},
                "X-Keyops-Key-Name": {"schema": {"type": "string"}},
                "X-Keyops-Owner": {"schema": {"type": "string"}},
                "X-Keyops-Profile": {"schema": {"type": "string"}},
                "X-Keyops-Client-Ip": {"schema": {"type": "string"}},
                "RateLimit-Limit": _INT_HEADER,
                "RateLimit-Remaining": _INT_HEADER,
                "RateLimit-Reset": _INT_HEADER,
            },
        },
        "401": _authz_refusal(
            'Missing, malformed or unknown key (WWW-Authenticate: Bearer error="invalid_token"); two different '
            'keys, an oversized key header or a key in the query string (error="invalid_request").'
        ),
        "403": _authz_refusal(
            "Suspended, revoked or expired key (code in the body); rate-limited when authz.rate_limited_status = 403."
        ),
        "429": _authz_refusal("Rate-limited (Retry-After, RateLimit-* headers)."),
        "500": _authz_refusal("The gateway is not authorized (code GATEWAY_UNAUTHORIZED), or an internal error."),
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "keyops",
        "version": "1",
        "description": "Verify API keys, report their usage, and receive alerts about them.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "keyops tokens create"}},
        "schemas": {
            "Error": _ERROR,
            "VerifyRequest": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "maxLength": 256},
                    "cost": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 1},
                },
                "required": ["key"],
            },
            "VerifyAnswer": {
                "type": "object",
                "properties": {
                    "valid": {"type": "boolean"},
                    "code": {"type": "string", "enum": _CODES},
                    "key_id": _NULLABLE_STR,
                    "name": _NULLABLE_STR,
                    "owner": _NULLABLE_STR,
                    "profile": _NULLABLE_STR,
                    "version": {"type": ["integer", "null"]},
                    "version_state": {
                        "type": ["string", "null"],
                        "enum": ["pending", "current", "previous", "retired", "revoked", None],
                        "description": "previous = an older version inside its grace period (still VALID).",
                    },
                    "grace_ends_at": {"type": ["string", "null"], "format": "date-time"},
                    "ratelimit": _RATELIMIT,
                },
                "required": [
                    "valid",
                    "code",
                    "key_id",
                    "name",
                    "owner",
                    "profile",
                    "version",
                    "grace_ends_at",
                    "ratelimit",
                ],
            },
            "UsageEvent": _USAGE_EVENT,
            "UsageRejection": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer", "description": "Position of the event in the body."},
                    "reason": {"type": "string", "enum": list(REASONS)},
                    "error": {"type": "string"},
                },
                "required": ["index", "reason", "error"],
            },
            "UsageAnswer": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer", "description": "Events kept (usage aggregates, last use)."},
                    "rejected": {
                        "type": "array",
                        "description": "Events not kept: reason invalid or unknown_key.",
                        "items": {"$ref": "#/components/schemas/UsageRejection"},
                    },
                    "detection": {
                        "type": ["object", "null"],
                        "description": "Of the kept events, those the detection engine took to judge and those "
                        "it refused (late, buffer_full, ahead_of_clock_buffer_full, ...); null without an engine.",
                        "properties": {
                            "accepted": {"type": "integer"},
                            "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/UsageRejection"}},
                        },
                        "required": ["accepted", "rejected"],
                    },
                },
                "required": ["accepted", "rejected", "detection"],
            },
        },
    },
    "paths": {
        "/v1/keys/verify": {
            "post": {
                "summary": "Check a key: the enforcement point for gateways (scope: verify).",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerifyRequest"}}},
                },
                "responses": {
                    "200": {
                        "description": "The verdict; always 200 for a well-formed request.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerifyAnswer"}}},
                    },
                    "400": _err("Not a JSON object with a string key, or a bad cost."),
                    **_AUTH,
                },
            }
        },
        "/v1/authz": {
            "summary": "Forward-auth for NGINX auth_request, Traefik ForwardAuth and Envoy ext_authz.",
            "description": "Any method, any path under /v1/authz, no body. The key comes from "
            "Authorization: Bearer, x-api-key or api-key (authz.key_headers); the gateway authenticates with "
            "a token of scope verify in X-Keyops-Token (authz.token_header) or by its address "
            "(authz.allowed_peers). Counts uses and rate limits exactly as POST /v1/keys/verify.",
            "parameters": [
                {"name": "X-Keyops-Token", "in": "header", "schema": {"type": "string"}},
                {"name": "X-Original-URI", "in": "header", "schema": {"type": "string"}},
                {"name": "X-Forwarded-Uri", "in": "header", "schema": {"type": "string"}},
                {"name": "X-Forwarded-For", "in": "header", "schema": {"type": "string"}},
            ],
            **{method: _AUTHZ_OPERATION for method in ("get", "post", "put", "patch", "delete", "head", "options")},
        },
        "/v1/authz/{path}": {
            "summary": "The same as /v1/authz (Envoy's path_prefix puts the original path here).",
            "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
            **{method: _AUTHZ_OPERATION for method in ("get", "post", "put", "patch", "delete", "head", "options")},
        },
        "/v1/usage": {
            "post": {
                "summary": "Report usage events (scope: usage). JSON array, NDJSON or one object; an event "
                "may also be LiteLLM's standard logging payload or use OpenTelemetry GenAI names.",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/UsageEvent"}}
                        },
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "202": {
                        "description": "Good events kept, bad ones named by index.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UsageAnswer"}}},
                    },
                    "400": _err("Not a JSON array, NDJSON or one object, or one malformed event."),
                    "413": _err("Body larger than server.max_body_bytes."),
                    "503": _err(
                        "The usage stream (stream.url) is unreachable: nothing was kept; send the body again "
                        "after Retry-After seconds."
                    ),
                    **_AUTH,
                },
            }
        },
        "/v1/alerts/{source}": {
            "post": {
                "summary": "Inbound alert webhook. Authenticity is checked per format (signatures or the "
                "source's configured credentials); a source set to require_token also needs a keyops token "
                "with scope alerts:<source>.",
                "parameters": [
                    {
                        "name": "source",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["standard", "alertmanager", "grafana", "sns", "github"]},
                    }
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
                "responses": {
                    "200": {
                        "description": "Recorded (and acted on per the alert rules).",
                        "content": {"application/json": {"schema": {}}},
                    },
                    "400": _err("Malformed payload."),
                    "401": _err("Missing or wrong signature, or stale timestamp."),
                    "403": _err("Authentic but not allowed (SNS topic, or a token without the scope)."),
                    "404": _err("Unknown or disabled source."),
                    "409": _err("Delivery id seen before (replay): nothing done."),
                    "413": _err("Body too large."),
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness.", "responses": {"200": {"description": "The process answers."}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: database reachable, verify cache loaded, destinations configured.",
                "description": (
                    "Redis is reported in checks.redis and checks.redis_fanout but does not decide readiness:"
                    " while it is down verify uses per-process rate-limit buckets and the answer says"
                    ' "degraded": true.'
                ),
                "responses": {"200": {"description": "Ready."}, "503": {"description": "Not ready; checks say why."}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (scope admin when server.public_metrics = false).",
                "responses": {"200": {"description": "Text format."}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document (scope admin when server.public_metrics = false).",
                "responses": {"200": {"description": "OpenAPI 3.1."}},
            }
        },
        "/v1/ping": {
            "get": {"summary": "Trivial endpoint (benchmark baseline).", "responses": {"200": {"description": "ok"}}}
        },
    },
}

# The admin API (/v1/admin/): its paths and schemas live with its routes.
from keyops.api.admin.schemas import PATHS as _ADMIN_PATHS  # noqa: E402
from keyops.api.admin.schemas import SCHEMAS as _ADMIN_SCHEMAS  # noqa: E402

DOCUMENT["components"]["schemas"].update(_ADMIN_SCHEMAS)
DOCUMENT["paths"].update(_ADMIN_PATHS)
