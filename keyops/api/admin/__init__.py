"""The admin API under ``/v1/admin/``: what the CLI does, over HTTP, for
tokens with roles (``keyops.domain.scopes``, ``access``).

One module per resource; each handler checks the caller's role, parses its
input strictly and calls the lifecycle function the CLI command calls, so
both answer the same documents with the same errors. The audit actor of
every change is the token's name and the client's address (``http``).
"""

from __future__ import annotations

from starlette.routing import Route

from keyops.api.admin import audit, cases, findings, keys, operations, rotations, specs, tokens

PREFIX = "/v1/admin"


def routes() -> list[Route]:
    """The admin routes, more specific first (a key's name holds slashes:
    the action routes must be tried before the bare key route)."""
    p = PREFIX
    return [
        Route(f"{p}/keys", keys.list_keys, methods=["GET"]),
        Route(f"{p}/keys", keys.issue_key, methods=["POST"]),
        Route(f"{p}/keys/bulk", keys.bulk_issue, methods=["POST"]),
        *(
            Route(f"{p}/keys/{{key:path}}/{action}", keys.state_change(action), methods=["POST"])
            for action in ("suspend", "resume", "revoke")
        ),
        Route(f"{p}/keys/{{key:path}}/rotate", keys.rotate_key, methods=["POST"]),
        Route(f"{p}/keys/{{key:path}}", keys.show_key, methods=["GET"]),
        Route(f"{p}/keys/{{key:path}}", keys.update_key, methods=["PATCH"]),
        Route(f"{p}/rotations", rotations.list_rotations, methods=["GET"]),
        Route(f"{p}/rotations/resume", rotations.resume_rotations, methods=["POST"]),
        Route(f"{p}/rotations/due", rotations.rotate_due, methods=["POST"]),
        Route(f"{p}/rotations/{{rotation_id}}", rotations.show_rotation, methods=["GET"]),
        Route(f"{p}/findings", findings.list_findings, methods=["GET"]),
        Route(f"{p}/findings/{{finding_id}}", findings.show_finding, methods=["GET"]),
        *(
            Route(f"{p}/findings/{{finding_id}}/{decision}", findings.review(decision), methods=["POST"])
            for decision in ("acknowledge", "dismiss")
        ),
        Route(f"{p}/audit", audit.list_audit, methods=["GET"]),
        Route(f"{p}/audit/verify", audit.verify_audit, methods=["GET"]),
        Route(f"{p}/audit/head", audit.audit_head, methods=["GET"]),
        Route(f"{p}/cases", cases.list_cases, methods=["GET"]),
        Route(f"{p}/cases/{{case_id}}", cases.show_case, methods=["GET"]),
        Route(f"{p}/tokens", tokens.list_tokens, methods=["GET"]),
        Route(f"{p}/tokens", tokens.create_token, methods=["POST"]),
        Route(f"{p}/tokens/{{name}}", tokens.revoke_token, methods=["DELETE"]),
        Route(f"{p}/profiles", specs.list_profiles, methods=["GET"]),
        Route(f"{p}/profiles/{{name}}", specs.show_profile, methods=["GET"]),
        Route(f"{p}/policies", specs.list_policies, methods=["GET"]),
        Route(f"{p}/policies/{{name}}", specs.show_policy, methods=["GET"]),
        Route(f"{p}/specs", specs.apply_specs, methods=["POST"]),
        Route(f"{p}/reconcile", operations.reconcile, methods=["POST"]),
        Route(f"{p}/events", operations.list_events, methods=["GET"]),
    ]
