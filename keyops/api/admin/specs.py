"""``/v1/admin/profiles``, ``/v1/admin/policies`` and ``/v1/admin/specs``:
list and show usage profiles and rotation policies; apply a TOML document
of them (the ``profiles apply -f FILE`` file as the body), with dry run.

Applying changes what every key of a profile is judged against, so it is
``admin`` only; reading is for every reading role.
"""

from __future__ import annotations

import tomllib
from typing import Any

from starlette.responses import Response

from keyops.api.admin.access import READ, Need
from keyops.api.admin.http import MAX_BODY, AdminRequest, PayloadTooLarge, bool_param, endpoint, json_response
from keyops.api.usage import BodyTooLarge, read_body
from keyops.domain.specs import DETECTOR_SETTINGS, Profile, SpecError, find_line, parse_spec_document
from keyops.errors import InvalidInputError
from keyops.lifecycle.specs import spec_error_to_input_error

PROFILES = Need("GET /v1/admin/profiles", READ)
POLICIES = Need("GET /v1/admin/policies", READ)
APPLY = Need("POST /v1/admin/specs", ("admin",))


def profile_detail(profile: Profile) -> dict[str, Any]:
    """``profiles show --json``: the profile and what its detectors really
    use (the built-in defaults, then the profile's own settings)."""
    doc = profile.to_document()
    doc["effective_detectors"] = {
        det: {key: spec[3] for key, spec in schema.items()} | dict(profile.detectors.get(det, {}))
        for det, schema in DETECTOR_SETTINGS.items()
    }
    return doc


@endpoint
async def list_profiles(req: AdminRequest) -> Response:
    req.allow(PROFILES)
    req.query(())
    items = await req.call(req.state.app.specs.profiles)
    return json_response([{**p.to_document(), "builtin": b} for p, b in items])


@endpoint
async def show_profile(req: AdminRequest) -> Response:
    req.allow(PROFILES)
    req.query(())
    profile = await req.call(req.state.app.specs.profile, str(req.request.path_params["name"]))
    return json_response(profile_detail(profile))


@endpoint
async def list_policies(req: AdminRequest) -> Response:
    req.allow(POLICIES)
    req.query(())
    items = await req.call(req.state.app.specs.policies)
    return json_response([{**p.to_document(), "builtin": b} for p, b in items])


@endpoint
async def show_policy(req: AdminRequest) -> Response:
    req.allow(POLICIES)
    req.query(())
    policy = await req.call(req.state.app.specs.policy, str(req.request.path_params["name"]))
    return json_response(policy.to_document())


@endpoint
async def apply_specs(req: AdminRequest) -> Response:
    """The body is TOML with ``[profiles.NAME]`` and ``[policies.NAME]``;
    ``dry_run=true`` validates only. Answers ``[{"kind", "name", "result"}]``."""
    req.allow(APPLY)
    params = req.query(("dry_run",))
    dry_run = bool_param(params, "dry_run")
    try:
        raw = await read_body(req.request, MAX_BODY)
    except BodyTooLarge:
        raise PayloadTooLarge(f"body too large: at most {MAX_BODY} bytes") from None
    try:
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError:
        raise InvalidInputError("body: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"body: not valid TOML: {exc}") from None
    try:
        profiles, policies = parse_spec_document(doc)
    except SpecError as exc:
        raise spec_error_to_input_error(exc, "body", find_line(text, exc.path)) from None
    if dry_run:
        results = [("profile", p.name, "valid") for p in profiles] + [("policy", p.name, "valid") for p in policies]
    else:
        results = await req.call(req.state.app.specs.apply, profiles, policies, actor=req.actor, source="the admin API")
    return json_response([{"kind": k, "name": n, "result": r} for k, n, r in results])
