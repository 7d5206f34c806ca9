"""The admin routes in the OpenAPI document: every path with its request
and response schemas (merged into ``keyops.api.openapi.DOCUMENT``).

The response schemas are the CLI's ``--json`` documents; a test holds the
list of paths equal to the routes that exist.
"""

from __future__ import annotations

from typing import Any

S = {"type": "string"}
NS = {"type": ["string", "null"]}
NT = {"type": ["string", "null"], "format": "date-time"}
NI = {"type": ["integer", "null"]}
STRS = {"type": "array", "items": S}


def _obj(props: dict[str, Any], required: list[str] | None = None, *, closed: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        doc["required"] = required
    if closed:
        doc["additionalProperties"] = False
    return doc


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_KEY_FIELDS = {
    "id": S,
    "name": S,
    "owner": S,
    "profile": S,
    "policy": S,
    "issuer": S,
    "state": {"type": "string", "enum": ["active", "suspended", "revoked", "expired"]},
    "state_reason": S,
    "description": S,
    "display_prefix": NS,
    "current_version": NI,
    "created_at": NT,
    "updated_at": NT,
    "expires_at": NT,
    "last_rotated_at": NT,
    "next_rotation_at": NT,
    "last_used_at": NT,
    "labels": {"type": "object"},
}
_VERSION = _obj(
    {
        "id": S,
        "number": {"type": "integer"},
        "state": {"type": "string", "enum": ["pending", "current", "previous", "retired", "revoked"]},
        "display_prefix": S,
        "created_at": NT,
        "activated_at": NT,
        "grace_ends_at": NT,
        "retired_at": NT,
        "revoked_at": NT,
        "external_id": NS,
        "last_used_at": NT,
    },
    closed=False,
)
_USAGE_WINDOW = _obj(
    {k: {"type": "integer"} for k in ("requests", "errors", "input_tokens", "output_tokens")}, closed=False
)
_ROTATION_FIELDS = {
    "id": S,
    "key_id": S,
    "key_name": S,
    "status": {"type": "string", "enum": ["running", "finished", "failed", "rolled_back"]},
    "step": S,
    "trigger": S,
    "actor": S,
    "reason": S,
    "grace_seconds": NI,
    "old_version": NI,
    "new_version": NI,
    "attempts": {"type": "integer"},
    "last_error": S,
    "created_at": NT,
    "finished_at": NT,
    "next_attempt_at": NT,
}
_FINDING = _obj(
    {
        "id": S,
        "key_id": NS,
        "key_name": NS,
        "cluster_id": NS,
        "detector": S,
        "severity": S,
        "score": {"type": "number"},
        "summary": S,
        "action": S,
        "status": {"type": "string", "enum": ["open", "acknowledged", "dismissed"]},
        "enforcement": NS,
        "case_id": NS,
        "at": NT,
        "created_at": S,
        "evidence": {"type": ["object", "null"]},
    },
    closed=False,
)
_AUDIT_EVENT = _obj(
    {
        "seq": {"type": "integer"},
        "id": S,
        "at": S,
        "actor": {"type": "string", "description": "token:<name>@<client address>[ note=<note>] through the API."},
        "action": S,
        "key_id": NS,
        "key_name": NS,
        "reason": S,
        "details": {"type": "object"},
        "hash": S,
        "prev_hash": NS,
        "hash_alg": S,
        "seal_key_id": NS,
    },
    closed=False,
)
_HEAD = _obj({"seq": NI, "hash": NS}, closed=False)

SCHEMAS: dict[str, Any] = {
    "Key": _obj(_KEY_FIELDS, list(_KEY_FIELDS), closed=False),
    "KeyDetail": _obj(
        {
            **_KEY_FIELDS,
            "versions": {"type": "array", "items": _VERSION},
            "destinations": STRS,
            "usage": {"type": "object", "additionalProperties": _USAGE_WINDOW},
        },
        [*_KEY_FIELDS, "versions", "destinations", "usage"],
        closed=False,
    ),
    "IssuedKey": _obj(
        {
            "id": S,
            "name": S,
            "owner": S,
            "profile": S,
            "policy": S,
            "state": S,
            "key": {"type": ["string", "null"], "description": "The plaintext, this once; null with no_print."},
            "display_prefix": NS,
            "version": NI,
            "destinations": STRS,
            "created_at": NT,
        },
        closed=False,
    ),
    "IssueRequest": _obj(
        {
            "name": {"type": "string", "description": "team/name"},
            "owner": S,
            "profile": NS,
            "policy": NS,
            "description": S,
            "expires": {"type": ["string", "null"], "description": "ISO 8601 time with a zone, or a duration (90d)."},
            "destinations": {**STRS, "description": "vault:<mount>/<path>, aws-sm:<name or ARN>, file:<path>"},
            "adopt": {"type": "boolean"},
            "no_print": {"type": "boolean"},
            "reason": {"type": "string", "maxLength": 1000},
        },
        ["name", "owner"],
    ),
    "UpdateRequest": _obj({"owner": NS, "profile": NS, "policy": NS, "reason": S}),
    "ReasonRequest": _obj({"reason": {"type": "string", "maxLength": 1000}}),
    "RotateRequest": _obj(
        {
            "grace": {"type": ["string", "integer", "null"], "description": "90m, 1h, 0; default: the policy's."},
            "reason": S,
            "evict_oldest_inactive": {"type": "boolean"},
        }
    ),
    "Rotation": _obj(_ROTATION_FIELDS, list(_ROTATION_FIELDS), closed=False),
    "RotationDetail": _obj({**_ROTATION_FIELDS, "steps": {"type": "array", "items": {"type": "object"}}}, closed=False),
    "RotationStarted": _obj(
        {**_ROTATION_FIELDS, "key": {"type": "string", "description": "Only for a key without destinations."}},
        closed=False,
    ),
    "RotationFailed": _obj({"error": S, "rotation": ref("Rotation")}, ["error", "rotation"], closed=False),
    "RotationSummary": _obj(
        {
            "rotated": {"type": "integer"},
            "failed": {"type": "integer"},
            "rotations": {"type": "array", "items": ref("Rotation")},
        },
        ["rotated", "failed", "rotations"],
        closed=False,
    ),
    "ResumeRequest": _obj({"force": {"type": "boolean"}}),
    "Finding": _FINDING,
    "AuditEvent": _AUDIT_EVENT,
    "AuditVerdict": _obj(
        {
            "ok": {"type": "boolean"},
            "events": {"type": "integer"},
            "sealed_events": {"type": "integer"},
            "legacy_events": {"type": "integer"},
            "problems": STRS,
            "first_bad_seq": NI,
            "head": _HEAD,
            "expected_head": {"type": ["object", "null"]},
            "expected_head_problem": NS,
            "error": {"type": "string", "description": "When not ok: the line the CLI prints."},
        },
        ["ok", "events", "problems", "head"],
        closed=False,
    ),
    "Token": _obj({"name": S, "scopes": STRS, "display_prefix": S, "created_at": NT, "revoked_at": NT}, closed=False),
    "TokenRequest": _obj(
        {
            "name": S,
            "scopes": {
                "oneOf": [STRS, S],
                "description": "verify, usage, admin, operator, auditor, owner:<owner>, alerts:<source>",
            },
        },
        ["name", "scopes"],
    ),
    "CreatedToken": _obj({"name": S, "token": S, "scopes": STRS}, ["name", "token", "scopes"], closed=False),
}

SCHEMAS["ReconcileReport"] = _obj(
    {
        "ok": {"type": "boolean"},
        "rows": {
            "type": "array",
            "items": _obj({"key": S, "destination": S, "status": S, "detail": S, "repaired": {"type": "boolean"}}),
        },
    },
    ["ok", "rows"],
    closed=False,
)
SCHEMAS["Delivery"] = _obj(
    {
        "delivery_id": S,
        "event_id": S,
        "seq": {"type": "integer"},
        "type": S,
        "key_id": NS,
        "key_name": NS,
        "sink": S,
        "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
        "attempts": {"type": "integer"},
        "next_attempt_at": NT,
        "delivered_at": NT,
        "last_error": NS,
        "created_at": NT,
    },
    closed=False,
)
_SPEC = {"type": "object", "description": "The profile's or policy's document, with builtin in lists."}

_ERR = {"content": {"application/json": {"schema": ref("Error")}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad input: the line the CLI prints; nothing changed.",
        401: "Missing or unknown bearer token.",
        403: "The token lacks the role (the error names the roles needed); nothing changed.",
        404: "Not found (the CLI exits 4).",
        409: "Conflict: duplicate, or not allowed in this state (the CLI exits 5).",
        413: "Body too large.",
        502: "A secret store or issuer failed (the CLI exits 8).",
    }
    return {str(c): {"description": text[c], **_ERR} for c in (400, 401, 403, *codes)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or S, "description": description}


def _p(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": S, "description": description}


def _op(summary: str, roles: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": f"{summary} (roles: {roles}).", "security": [{"bearer": []}], "responses": responses, **extra}


_KEY = _p("key", "Key name (team/name, slashes as they are) or id.")
_ID_ROT = _p("rotation_id", "Rotation id.")
_ID_FIND = _p("finding_id", "Finding id.")
_LIMIT = {"type": "integer", "minimum": 1}
_ACT = "admin, operator"
_READ = "admin, operator, auditor"
_OWNER = " or owner:<the key's owner>"


def _key_action(action: str, what: str) -> dict[str, Any]:
    return {
        "post": _op(
            what,
            _ACT,
            {"200": _json(ref("Key"), "The key after the change."), **_errors(404, 409, 502)},
            parameters=[_KEY],
            requestBody=_body(ref("ReasonRequest")),
        )
    }


PATHS: dict[str, Any] = {
    "/v1/admin/keys": {
        "get": _op(
            "List keys in name order, a page at a time (an owner token lists its owner's keys)",
            _READ + _OWNER,
            {
                "200": {
                    **_json({"type": "array", "items": ref("Key")}, "One page: the keys list --json documents."),
                    "headers": {
                        "Keyops-Next-Cursor": {
                            "schema": S,
                            "description": "Present when there are more: pass it as cursor= for the next page.",
                        }
                    },
                },
                **_errors(),
            },
            parameters=[
                _q("owner", "Only keys of this owner."),
                _q("state", "active, suspended, revoked or expired."),
                _q("profile", "Only keys with this profile."),
                _q("limit", "Page size (default 100).", {**_LIMIT, "maximum": 1000, "default": 100}),
                _q("cursor", "From Keyops-Next-Cursor of the previous page."),
            ],
        ),
        "post": _op(
            "Issue a key (the keys issue options as fields)",
            _ACT,
            {"201": _json(ref("IssuedKey"), "Issued; key holds the plaintext once."), **_errors(404, 409, 413, 502)},
            requestBody=_body(ref("IssueRequest"), required=True),
        ),
    },
    "/v1/admin/keys/bulk": {
        "post": _op(
            "Issue many keys: the body is a keys issue --from-file file (JSON lines); all or nothing",
            _ACT,
            {
                "201": {
                    "description": "One IssuedKey document per line, as the CLI prints.",
                    "content": {"application/x-ndjson": {"schema": ref("IssuedKey")}},
                },
                **_errors(404, 409, 413),
            },
            parameters=[
                _q("reason", "Why: recorded in the audit log."),
                _q("no_print", "true: key is null in the answer.", {"type": "boolean"}),
            ],
            requestBody={"required": True, "content": {"application/x-ndjson": {"schema": ref("IssueRequest")}}},
        )
    },
    "/v1/admin/keys/{key}": {
        "get": _op(
            "One key with its versions, destinations and usage (keys show --json)",
            _READ + _OWNER,
            {"200": _json(ref("KeyDetail"), "The key."), **_errors(404)},
            parameters=[_KEY],
        ),
        "patch": _op(
            "Change a key's owner, profile or policy",
            _ACT,
            {"200": _json(ref("Key"), "The key after the change."), **_errors(404)},
            parameters=[_KEY],
            requestBody=_body(ref("UpdateRequest"), required=True),
        ),
    },
    "/v1/admin/keys/{key}/suspend": _key_action("suspend", "Suspend a key: verify rejects it until resumed"),
    "/v1/admin/keys/{key}/resume": _key_action("resume", "Resume a suspended key"),
    "/v1/admin/keys/{key}/revoke": _key_action("revoke", "Revoke a key and all its versions, for good"),
    "/v1/admin/keys/{key}/rotate": {
        "post": _op(
            "Rotate a key now",
            _ACT + _OWNER,
            {
                "200": _json(ref("RotationStarted"), "The rotation (keys rotate --json)."),
                "502": _json(ref("RotationFailed"), "The rotation failed (the CLI exits 8)."),
                **_errors(404, 409),
            },
            parameters=[_KEY],
            requestBody=_body(ref("RotateRequest")),
        )
    },
    "/v1/admin/rotations": {
        "get": _op(
            "List rotations, newest first",
            _READ,
            {"200": _json({"type": "array", "items": ref("Rotation")}, "rotations list --json."), **_errors(404)},
            parameters=[
                _q("status", "running, finished, failed or rolled_back."),
                _q("key", "Only this key's rotations."),
                _q("limit", "At most this many (default 100).", {**_LIMIT, "maximum": 100000}),
            ],
        )
    },
    "/v1/admin/rotations/resume": {
        "post": _op(
            "Finish unfinished rotations (failed ones, and those of a dead worker; force: live leases too)",
            _ACT,
            {"200": _json(ref("RotationSummary"), "failed > 0 is where the CLI exits 8."), **_errors()},
            requestBody=_body(ref("ResumeRequest")),
        )
    },
    "/v1/admin/rotations/{rotation_id}": {
        "get": _op(
            "One rotation with its steps",
            _READ,
            {"200": _json(ref("RotationDetail"), "rotations show --json."), **_errors(404)},
            parameters=[_ID_ROT],
        )
    },
    "/v1/admin/findings": {
        "get": _op(
            "List findings, newest first (an owner token: key= one of its keys)",
            _READ + _OWNER,
            {"200": _json({"type": "array", "items": ref("Finding")}, "findings list --json."), **_errors(404)},
            parameters=[
                _q("key", "Only findings about this key."),
                _q("case", "Only the findings of this case."),
                _q("limit", "At most this many (default 100).", {**_LIMIT, "maximum": 10000}),
            ],
        )
    },
    "/v1/admin/findings/{finding_id}": {
        "get": _op(
            "One finding with its evidence",
            _READ + _OWNER,
            {"200": _json(ref("Finding"), "findings show --json."), **_errors(404)},
            parameters=[_ID_FIND],
        )
    },
    "/v1/admin/findings/{finding_id}/acknowledge": {
        "post": _op(
            "Acknowledge a finding (seen, being handled); audited",
            _ACT,
            {"200": _json(ref("Finding"), "The finding, status acknowledged."), **_errors(404, 409)},
            parameters=[_ID_FIND],
            requestBody=_body(ref("ReasonRequest")),
        )
    },
    "/v1/admin/findings/{finding_id}/dismiss": {
        "post": _op(
            "Dismiss a finding (not a problem); a reason is required; final",
            _ACT,
            {"200": _json(ref("Finding"), "The finding, status dismissed."), **_errors(404, 409)},
            parameters=[_ID_FIND],
            requestBody=_body(ref("ReasonRequest"), required=True),
        )
    },
    "/v1/admin/audit": {
        "get": _op(
            "The newest audit events, oldest of them first",
            "admin, auditor",
            {"200": _json({"type": "array", "items": ref("AuditEvent")}, "audit list --json."), **_errors(404)},
            parameters=[
                _q("key", "Only events of this key."),
                _q("action", "Only this action, e.g. key.revoked."),
                _q("limit", "At most this many (default 100).", {**_LIMIT, "maximum": 100000}),
            ],
        )
    },
    "/v1/admin/audit/verify": {
        "get": _op(
            "Verify the whole chain under the audit key",
            "admin, auditor",
            {"200": _json(ref("AuditVerdict"), "audit verify --json; ok false: the CLI exits 9 (10)."), **_errors()},
            parameters=[_q("expect_head", "SEQ:HASH exported earlier by keyops audit head.")],
        )
    },
    "/v1/admin/tokens": {
        "get": _op(
            "List tokens (never their values)",
            "admin, auditor",
            {"200": _json({"type": "array", "items": ref("Token")}, "tokens list --json."), **_errors()},
        ),
        "post": _op(
            "Create a token; its value is in this answer once",
            "admin",
            {"201": _json(ref("CreatedToken"), "tokens create --json."), **_errors(409)},
            requestBody=_body(ref("TokenRequest"), required=True),
        ),
    },
    "/v1/admin/tokens/{name}": {
        "delete": _op(
            "Revoke a token: running servers refuse it within a second",
            "admin",
            {"204": {"description": "Revoked."}, **_errors(404, 409)},
            parameters=[_p("name", "Token name."), _q("reason", "Why: recorded in the audit log.")],
        )
    },
    "/v1/admin/rotations/due": {
        "post": _op(
            "Rotate every key whose policy says it is due (keys rotate --due)",
            _ACT,
            {"200": _json(ref("RotationSummary"), "failed > 0 is where the CLI exits 8."), **_errors()},
            requestBody=_body(_obj({"limit": {"type": "integer", "minimum": 1, "maximum": 100000}})),
        )
    },
    "/v1/admin/profiles": {
        "get": _op(
            "List usage profiles",
            _READ,
            {"200": _json({"type": "array", "items": _SPEC}, "profiles list --json."), **_errors()},
        )
    },
    "/v1/admin/profiles/{name}": {
        "get": _op(
            "One profile with the detector settings it really uses",
            _READ,
            {"200": _json(_SPEC, "profiles show --json."), **_errors(404)},
            parameters=[_p("name", "Profile name.")],
        )
    },
    "/v1/admin/policies": {
        "get": _op(
            "List rotation policies",
            _READ,
            {"200": _json({"type": "array", "items": _SPEC}, "policies list --json."), **_errors()},
        )
    },
    "/v1/admin/policies/{name}": {
        "get": _op(
            "One rotation policy",
            _READ,
            {"200": _json(_SPEC, "policies show --json."), **_errors(404)},
            parameters=[_p("name", "Policy name.")],
        )
    },
    "/v1/admin/specs": {
        "post": _op(
            "Create or update profiles and policies from a TOML document ([profiles.NAME], [policies.NAME])",
            "admin",
            {
                "200": _json(
                    {"type": "array", "items": _obj({"kind": S, "name": S, "result": S}, ["kind", "name", "result"])},
                    "result: created, updated, unchanged, or valid (dry run).",
                ),
                **_errors(413),
            },
            parameters=[_q("dry_run", "true: validate only, change nothing.", {"type": "boolean"})],
            requestBody={"required": True, "content": {"application/toml": {"schema": S}}},
        )
    },
    "/v1/admin/reconcile": {
        "post": _op(
            "Compare the inventory with what the stores hold; repair: re-deliver where it drifted",
            _ACT,
            {
                "200": _json(ref("ReconcileReport"), "No drift (reconcile --json)."),
                "409": _json(
                    _obj({"error": S, "report": ref("ReconcileReport")}, ["error", "report"], closed=False),
                    "Drift remains (the CLI exits 5).",
                ),
                **_errors(502),
            },
            requestBody=_body(_obj({"repair": {"type": "boolean"}})),
        )
    },
    "/v1/admin/events": {
        "get": _op(
            "The newest outbox deliveries (events list)",
            _READ,
            {"200": _json({"type": "array", "items": ref("Delivery")}, "events list --json."), **_errors()},
            parameters=[
                _q("status", "pending, delivered or dead."),
                _q("limit", "At most this many (default 100).", {**_LIMIT, "maximum": 100000}),
            ],
        )
    },
    "/v1/admin/audit/head": {
        "get": _op(
            "The chain's head, SEQ:HASH, to anchor outside the database",
            "admin, auditor",
            {
                "200": _json(
                    _obj(
                        {"seq": NI, "hash": NS, "anchor": S, "hash_alg": NS, "seal_key_id": NS, "at": NS},
                        ["seq", "hash", "anchor"],
                        closed=False,
                    ),
                    "audit head --json.",
                ),
                **_errors(),
            },
        )
    },
    "/v1/admin/cases": {
        "get": _op(
            "List cases, most recent first",
            _READ,
            {"200": _json({"type": "array", "items": {"type": "object"}}, "cases list --json."), **_errors()},
            parameters=[
                _q("status", "open, acknowledged or closed."),
                _q("limit", "At most this many (default 100).", {**_LIMIT, "maximum": 10000}),
            ],
        )
    },
    "/v1/admin/cases/{case_id}": {
        "get": _op(
            "One case with its findings",
            _READ,
            {"200": _json({"type": "object"}, "cases show --json."), **_errors(404)},
            parameters=[_p("case_id", "Case id.")],
        )
    },
}
