"""``keyops keys adopt``: manage a credential keyops did not mint (an IAM access key).

Registered on the ``keys`` group by ``keys_cmd``; ``sync_credentials`` is what
``keys revoke/suspend/resume`` call so a cloud key's access keys follow its state at once.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json


def adopt(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name for the key in keyops (team/purpose).")],
    issuer: Annotated[str, typer.Option("--issuer", help="Who mints the material: aws-iam.")] = "aws-iam",
    iam_user: Annotated[str, typer.Option("--iam-user", help="The IAM user whose access key is adopted.")] = "",
    owner: Annotated[str, typer.Option("--owner", help="Owning team.")] = "",
    policy: Annotated[str | None, typer.Option("--policy", help="Rotation policy.")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Usage profile (default: keys.default_profile).")
    ] = None,
    dest: Annotated[
        list[str] | None,
        typer.Option("--dest", help="Where rotations deliver the credentials (repeatable), e.g. aws-sm:NAME."),
    ] = None,
    access_key_id: Annotated[
        str | None, typer.Option("--access-key-id", help="Which of the user's keys (when it has two).")
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Adopt an existing IAM user's access key; its first rotation retires it."""
    from keyops.errors import InvalidInputError

    if not iam_user:
        raise InvalidInputError("give --iam-user: the IAM user whose access key keyops takes over")
    if not owner:
        raise InvalidInputError("give --owner: the team that owns the key")
    st = state(ctx)
    from keyops.lifecycle.adopt import AdoptService  # SQLAlchemy: imported when adopting

    app = st.app()
    service = AdoptService(app.sessions, app.issuers, app.stores)
    view = service.adopt(
        name,
        issuer=issuer,
        owner=owner,
        profile=profile or app.settings.keys.default_profile,
        policy=policy or app.settings.keys.default_policy,
        actor=st.actor,
        iam_user=iam_user,
        destinations=dest or (),
        access_key_id=access_key_id,
        reason=reason,
        description=description,
    )
    if as_json:
        print_json(view.to_document())
        return
    current = view.current_version
    console.print(
        f"adopted access key {current.display_prefix if current else '?'} of IAM user {iam_user} as {view.name}; "
        f"its first rotation (keyops keys rotate {view.name}) retires it"
    )


def sync_credentials(ctx: typer.Context, name: str) -> None:
    """After ``keys revoke``/``suspend``/``resume``: bring a cloud key's
    credentials in line now (revoked or suspended: deactivated; resumed:
    reactivated; revoked ones are deleted after issuers.aws_iam.delete_hold).
    A failure is a warning: the scheduler's sweep retries."""
    app = state(ctx).app()
    janitor = app.rotations.janitor
    if janitor is None:
        return
    view = app.keys.show(name)
    if view.issuer == "native":
        return
    for swept in janitor.sweep(key_id=view.id, actor=state(ctx).actor):
        if swept.error:
            sys.stderr.write(f"keyops: warning: {swept.external_id} not {swept.action} yet: {swept.error}\n")
