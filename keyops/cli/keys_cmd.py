"""``keyops keys``: issue, list, show, update, suspend, resume, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table, short_time
from keyops.domain.durations import parse_duration
from keyops.errors import InvalidInputError
from keyops.inventory.types import utcnow
from keyops.lifecycle.views import KeyView

app = typer.Typer(help="Issue and manage keys.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable shape, see README).")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")]


def _parse_expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return utcnow() + timedelta(seconds=parse_duration(value))
        except ValueError:
            raise InvalidInputError(
                f"--expires {value!r} is neither an ISO 8601 time (2027-01-31T00:00Z) nor a duration (90d)"
            ) from None
    if moment.tzinfo is None:
        raise InvalidInputError(f"--expires {value!r} has no time zone: add Z or +00:00")
    return moment


def issued_document(view: KeyView, plaintext: str | None) -> dict[str, object]:
    current = view.current_version
    return {
        "id": view.id,
        "name": view.name,
        "owner": view.owner,
        "profile": view.profile,
        "policy": view.policy,
        "state": view.state,
        "key": plaintext,
        "display_prefix": current.display_prefix if current else None,
        "version": current.number if current else None,
        "destinations": list(view.destinations),
        "created_at": view.to_document(with_versions=False)["created_at"],
    }


@app.command("issue")
def issue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Key name, 'team/name'.")],
    owner: Annotated[str, typer.Option("--owner", "-o", help="Owning team or person.")],
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="Usage profile (default from settings).")
    ] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Rotation policy (default from settings).")] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    expires: Annotated[
        str | None, typer.Option("--expires", help="End of life: ISO 8601 time or a duration such as 90d.")
    ] = None,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Issue a new key. The plaintext is printed once and never stored."""
    st = state(ctx)
    expires_at = _parse_expiry(expires)
    keys = st.app().keys
    result = keys.issue(
        name,
        owner=owner,
        profile=profile or st.settings.keys.default_profile,
        policy=policy or st.settings.keys.default_policy,
        actor=st.actor,
        reason=reason,
        description=description,
        expires_at=expires_at,
    )
    doc = issued_document(result.key, result.plaintext)
    if as_json:
        print_json(doc)
        return
    console.print(
        f"Issued [bold]{result.key.name}[/bold] (id {result.key.id}, profile {result.key.profile}, "
        f"policy {result.key.policy})."
    )
    console.print("Key (shown once, store it now):", style="yellow")
    typer.echo(result.plaintext)


@app.command("list")
def list_keys(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner", help="Only keys of this owner.")] = None,
    key_state: Annotated[str | None, typer.Option("--state", help="active, suspended, revoked or expired.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Only keys with this profile.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List keys, filtered by owner, state or profile."""
    views = state(ctx).app().keys.list(owner=owner, state=key_state, profile=profile, limit=limit)
    if as_json:
        print_json([v.to_document(with_versions=False) for v in views])
        return
    print_table(
        None,
        ["name", "owner", "state", "profile", "policy", "version", "prefix", "next rotation", "last used"],
        [
            (
                v.name,
                v.owner,
                v.state,
                v.profile,
                v.policy,
                v.current_version.number if v.current_version else "-",
                v.current_version.display_prefix if v.current_version else "-",
                short_time(v.to_document(with_versions=False)["next_rotation_at"]),
                short_time(v.to_document(with_versions=False)["last_used_at"]),
            )
            for v in views
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Key name or id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one key with its versions and destinations."""
    view = state(ctx).app().keys.show(name)
    doc = view.to_document()
    if as_json:
        print_json(doc)
        return
    for field in (
        "name",
        "id",
        "owner",
        "state",
        "state_reason",
        "profile",
        "policy",
        "issuer",
        "description",
        "created_at",
        "expires_at",
        "last_rotated_at",
        "next_rotation_at",
        "last_used_at",
    ):
        value = doc.get(field)
        if value not in (None, ""):
            console.print(f"[bold]{field:>17}[/bold]  {value}")
    if view.destinations:
        console.print(f"[bold]{'destinations':>17}[/bold]  {', '.join(view.destinations)}")
    print_table(
        "versions",
        ["#", "state", "prefix", "created", "activated", "grace ends", "retired", "revoked"],
        [
            (
                v["number"],
                v["state"],
                v["display_prefix"],
                short_time(v["created_at"]),
                short_time(v["activated_at"]),
                short_time(v["grace_ends_at"]),
                short_time(v["retired_at"]),
                short_time(v["revoked_at"]),
            )
            for v in doc["versions"]
        ],
    )


def _state_change(ctx: typer.Context, name: str, action: str, reason: str, as_json: bool) -> None:
    st = state(ctx)
    keys = st.app().keys
    view = getattr(keys, action)(name, actor=st.actor, reason=reason)
    if as_json:
        print_json(view.to_document(with_versions=False))
    else:
        console.print(f"{view.name} is now {view.state}.")


@app.command("suspend")
def suspend(ctx: typer.Context, name: str, reason: ReasonOpt = "", as_json: JsonOpt = False) -> None:
    """Suspend a key: verify rejects it until it is resumed."""
    _state_change(ctx, name, "suspend", reason, as_json)


@app.command("resume")
def resume(ctx: typer.Context, name: str, reason: ReasonOpt = "", as_json: JsonOpt = False) -> None:
    """Resume a suspended key."""
    _state_change(ctx, name, "resume", reason, as_json)


@app.command("revoke")
def revoke(ctx: typer.Context, name: str, reason: ReasonOpt = "", as_json: JsonOpt = False) -> None:
    """Revoke a key and all its versions, for good."""
    _state_change(ctx, name, "revoke", reason, as_json)


@app.command("update")
def update(
    ctx: typer.Context,
    name: str,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    profile: Annotated[str | None, typer.Option("--profile")] = None,
    policy: Annotated[str | None, typer.Option("--policy")] = None,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Change a key's owner, profile or rotation policy."""
    st = state(ctx)
    view = st.app().keys.update(name, actor=st.actor, reason=reason, owner=owner, profile=profile, policy=policy)
    if as_json:
        print_json(view.to_document(with_versions=False))
    else:
        console.print(f"{view.name}: owner {view.owner}, profile {view.profile}, policy {view.policy}.")
