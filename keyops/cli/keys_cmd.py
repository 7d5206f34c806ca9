"""``keyops keys``: issue, list, show, update, suspend, resume, revoke."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from keyops.cli import progress
from keyops.cli.adopt_cmd import adopt as adopt_command
from keyops.cli.adopt_cmd import sync_credentials
from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table, short_time
from keyops.cli.remote import key_path
from keyops.cli.rotations_cmd import print_rotation, print_summary, rotate_due, rotation_document, rotation_failed
from keyops.domain.abbrev import abbreviate
from keyops.domain.durations import parse_duration, parse_expiry
from keyops.errors import InvalidInputError, KeyOpsError

if TYPE_CHECKING:  # the lifecycle imports SQLAlchemy: API mode must start without it
    from keyops.cli.remote import Remote
    from keyops.lifecycle.keys import IssuedKey
    from keyops.lifecycle.views import KeyView

app = typer.Typer(help="Issue and manage keys.", no_args_is_help=True)

DEFAULT_LIST_LIMIT = 1000
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable shape, see README).")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")]


def _parse_expiry(value: str | None) -> datetime | None:
    from keyops.inventory.types import utcnow

    return parse_expiry(value, utcnow())


def issued_document(view: KeyView, plaintext: str | None) -> dict[str, Any]:
    from keyops.lifecycle.views import issued_document as document  # SQLAlchemy: only when issuing

    return document(view, plaintext)


@app.command("issue")
def issue(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Key name, 'team/name'.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", "-o", help="Owning team or person.")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="Usage profile (default from settings).")
    ] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Rotation policy (default from settings).")] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    expires: Annotated[
        str | None, typer.Option("--expires", help="End of life: ISO 8601 time or a duration such as 90d.")
    ] = None,
    dest: Annotated[
        list[str] | None,
        typer.Option(
            "--dest", help="Deliver to vault:<mount>/<path>, aws-sm:<name or ARN> or file:<path> (repeatable)."
        ),
    ] = None,
    adopt: Annotated[
        bool, typer.Option("--adopt", help="Take over destinations that already hold data keyops does not own.")
    ] = False,
    no_print: Annotated[
        bool, typer.Option("--no-print", help="Do not print the key (it is in the destinations).")
    ] = False,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file", help='Issue many: JSON lines of {"name","owner","profile","policy","description","dest"}.'
        ),
    ] = None,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Issue a new key. The plaintext is printed once and never stored."""
    st = state(ctx)
    if from_file is not None:
        if name or owner or dest:
            raise InvalidInputError("--from-file issues the keys named in the file: drop NAME, --owner and --dest")
        _issue_from_file(ctx, from_file, reason, no_print)
        return
    if not name:
        raise typer.BadParameter("missing: give the key NAME (or --from-file FILE)", param_hint="'NAME'")
    if not owner:
        raise typer.BadParameter("missing: who owns the key", param_hint="'--owner' / '-o'")
    if no_print and not dest:
        raise InvalidInputError("--no-print needs at least one --dest: otherwise the key would be lost")
    if st.remote is not None:
        body = {
            "name": name,
            "owner": owner,
            "profile": profile,
            "policy": policy,
            "description": description,
            "expires": expires,
            "destinations": dest or [],
            "adopt": adopt,
            "no_print": no_print,
            "reason": reason,
        }
        doc = st.remote.json("POST", "/v1/admin/keys", body=body)
    else:
        doc = _issue_local(ctx, name, owner, profile, policy, description, expires, dest, adopt, no_print, reason)
    if as_json:
        print_json(doc)
        return
    console.print(
        f"Issued [bold]{doc['name']}[/bold] (id {doc['id']}, profile {doc['profile']}, policy {doc['policy']})."
    )
    if doc["destinations"]:
        console.print(f"Delivered to {', '.join(doc['destinations'])}.")
    if no_print:
        return
    console.print("Key (shown once, store it now):", style="yellow")
    typer.echo(doc["key"])


def _issue_local(
    ctx: typer.Context,
    name: str,
    owner: str,
    profile: str | None,
    policy: str | None,
    description: str,
    expires: str | None,
    dest: list[str] | None,
    adopt: bool,
    no_print: bool,
    reason: str,
) -> dict[str, Any]:
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
        destinations=dest or (),
        adopt=adopt,
    )
    return issued_document(result.key, None if no_print else result.plaintext)


def _issue_from_file(ctx: typer.Context, path: str, reason: str, no_print: bool) -> None:
    """Every line is checked (format, names, profiles, policies, destinations)
    before anything is issued, and every bad one is named. Lines without
    ``dest`` are issued in one transaction; lines with ``dest`` are then
    delivered and issued one at a time, each becoming active only once every
    one of its destinations holds it."""
    st = state(ctx)
    if st.remote is not None:
        raise InvalidInputError(
            "keys issue --from-file does not work through the admin API yet: "
            "unset KEYOPS_ADDR to run it on the database"
        )
    from keyops.lifecycle import bulk

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    entries, bad = bulk.line_problems(
        text,
        source=path,
        default_profile=st.settings.keys.default_profile,
        default_policy=st.settings.keys.default_policy,
    )
    problems: list[tuple[int, KeyOpsError]] = [(line, InvalidInputError(message)) for line, message in bad]
    if not entries and not problems:
        raise InvalidInputError(f"{path}: no keys in the file; nothing was issued")
    app = st.app()
    labels = [f"{path} line {e.line}" for e in entries]
    problems += [(entries[i].line, exc) for i, exc in app.keys.request_problems([e.request for e in entries], labels)]
    for entry, label in zip(entries, labels, strict=True):
        for uri in entry.destinations:
            try:
                app.stores.resolve(uri)
            except KeyOpsError as exc:
                problems.append((entry.line, type(exc)(f"{label}: {exc.message}")))
    if problems:
        problems.sort(key=lambda p: p[0])  # stable: a line's problems keep their order
        first = problems[0][1]
        raise type(first)(bulk.joined(path, [(line, exc.message) for line, exc in problems]))
    plain = [e for e in entries if not e.destinations]
    delivered = [e for e in entries if e.destinations]
    results: list[tuple[int, IssuedKey]] = []
    with progress.bar(f"issuing {len(entries)} keys", len(entries)) as bar:
        if plain:
            issued = app.keys.issue_many(
                [e.request for e in plain],
                actor=st.actor,
                reason=reason,
                labels=[f"{path} line {e.line}" for e in plain],
            )
            results += [(e.line, r) for e, r in zip(plain, issued, strict=True)]
            bar.advance(len(plain))
        for entry in delivered:
            bar.note(f"{path} line {entry.line}: delivering {entry.request.name}")
            try:
                result = app.keys.issue(
                    entry.request.name,
                    owner=entry.request.owner,
                    profile=entry.request.profile,
                    policy=entry.request.policy,
                    description=entry.request.description,
                    actor=st.actor,
                    reason=reason,
                    destinations=entry.destinations,
                )
            except KeyOpsError as exc:
                done = f"; {len(results)} key(s) before it were issued" if results else ""
                _print_issued(results, no_print)
                raise type(exc)(f"{path} line {entry.line}: {exc.message}{done}") from None
            results.append((entry.line, result))
            bar.advance()
    _print_issued(results, no_print)


def _print_issued(results: list[tuple[int, IssuedKey]], no_print: bool) -> None:
    for _, result in sorted(results, key=lambda r: r[0]):
        doc = issued_document(result.key, None if no_print else result.plaintext)
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    sys.stdout.flush()


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Key name or id.")] = None,
    grace: Annotated[
        str | None,
        typer.Option("--grace", help="How long the old version stays valid (90m, 1h, 0 = now); default: the policy."),
    ] = None,
    due: Annotated[bool, typer.Option("--due", help="Rotate every key whose policy says it is due.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000, help="At most this many (--due).")] = 10000,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
    evict: Annotated[
        bool,
        typer.Option("--evict-oldest-inactive", help="aws-iam: delete the user's oldest Inactive key to make room."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Take over the key's rotation from a worker whose lease is live.")
    ] = False,
) -> None:
    """Rotate a key: a new version everywhere, the old one valid for the grace period."""
    st = state(ctx)
    if due == (name is not None):
        raise InvalidInputError("give either a key NAME or --due")
    grace_seconds: int | None = None
    if grace is not None:
        if due:
            raise InvalidInputError("--grace applies to one key; --due uses each key's policy")
        try:
            grace_seconds = parse_duration(grace)
        except ValueError as exc:
            raise InvalidInputError(f"--grace: {exc}") from None
    if st.remote is not None:
        _rotate_remote(st.remote, name, grace, reason, due=due, limit=limit, as_json=as_json, evict=evict, force=force)
        return
    engine = st.app().rotations
    if due:
        rotate_due(engine, limit=limit, as_json=as_json)
        return
    assert name is not None
    with progress.bar(f"rotating {name}", None, as_json=as_json) as bar:
        if progress.wanted(as_json):
            # A store that does not answer is retried until its timeout: say
            # which step the rotation is past, so the wait is not silent.
            engine.checkpoint = lambda _rid, label: bar.note(f"rotating {name}: {label} done, next step...")
            engine.runner.waiting = lambda text: bar.note(f"rotating {name}: waiting: {text}")
        result = engine.rotate(
            name,
            grace_seconds=grace_seconds,
            actor=st.actor,
            reason=reason,
            trigger="manual",
            evict_oldest_inactive=evict,
            force=force,
        )
    doc = rotation_document(result)
    if as_json:
        print_json(doc)
    else:
        print_rotation(doc)
    if not result.ok:
        raise rotation_failed(doc)


def _rotate_remote(
    remote: Remote,
    name: str | None,
    grace: str | None,
    reason: str,
    *,
    due: bool,
    limit: int,
    as_json: bool,
    evict: bool,
    force: bool,
) -> None:
    """``keys rotate`` through the API: a failed rotation is a 502 carrying
    its document, printed before exiting 8 as in database mode."""
    if force:
        raise InvalidInputError("--force does not work through the admin API: run it on the database")
    if due:
        print_summary(remote.json("POST", "/v1/admin/rotations/due", body={"limit": limit}), as_json)
        return
    assert name is not None
    body = {"grace": grace, "reason": reason, "evict_oldest_inactive": evict}
    answer = remote.request("POST", key_path(name) + "/rotate", body=body, ok=(502,))
    failed = answer.status_code == 502
    doc = answer.json()
    if failed and not isinstance(doc.get("rotation"), dict):
        raise remote.error(answer)
    doc = doc["rotation"] if failed else doc
    if as_json:
        print_json(doc)
    else:
        print_rotation(doc)
    if failed:
        raise rotation_failed(doc)


@app.command("list")
def list_keys(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner", help="Only keys of this owner.")] = None,
    key_state: Annotated[str | None, typer.Option("--state", help="active, suspended, revoked or expired.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Only keys with this profile.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=100000, help="At most this many keys (a page).")
    ] = DEFAULT_LIST_LIMIT,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Start after this key name (the next page; printed when more).")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every key, page after page (no --limit).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List keys by name, filtered by owner, state or profile; --limit, --cursor and --all page."""
    st = state(ctx)
    filters = {"owner": owner, "state": key_state, "profile": profile}
    if st.remote is not None:
        docs, more_after = _list_remote(st.remote, filters, limit, cursor, every)
        more = "more key(s)" if more_after else ""
    else:
        service = st.app(read_only=True).keys
        views = service.list(owner=owner, state=key_state, profile=profile, limit=limit, after=cursor)
        while every and views and len(views) % limit == 0:
            page = service.list(owner=owner, state=key_state, profile=profile, limit=limit, after=views[-1].name)
            if not page:
                break
            views.extend(page)
        count = 0
        if views and not every and len(views) == limit:
            count = service.count_after(views[-1].name, owner=owner, state=key_state, profile=profile)
        more = f"{count} more key(s)" if count else ""
        docs = [v.to_document(with_versions=False) for v in views]
    if more:
        # Said on stderr, so --json output stays one list.
        last = docs[-1]["name"]
        sys.stderr.write(
            f"keyops: {more} after {last}: next page with --cursor {last}, or --all (or a larger --limit)\n"
        )
    if as_json:
        print_json(docs)
        return
    ids = abbreviate(d["id"] for d in docs)
    print_table(
        None,
        ["name", "id", "owner", "state", "profile", "policy", "version", "prefix", "next rotation", "last used"],
        [
            (
                d["name"],
                ids[d["id"]],
                d["owner"],
                d["state"],
                d["profile"],
                d["policy"],
                d["current_version"] or "-",
                d["display_prefix"] or "-",
                short_time(d["next_rotation_at"]),
                short_time(d["last_used_at"]),
            )
            for d in docs
        ],
    )


#: The admin API's largest page (``/v1/admin/keys?limit=``).
API_PAGE = 1000


def _list_remote(
    remote: Remote, filters: dict[str, str | None], limit: int, cursor: str | None, every: bool
) -> tuple[list[dict[str, Any]], bool]:
    """Pages of at most :data:`API_PAGE` until ``limit`` keys (or all of
    them); whether more follow. ``--cursor`` is a key name, as in database
    mode: it becomes the API's cursor here."""
    from keyops.cli.remote import NEXT_CURSOR_HEADER, encode_cursor

    docs: list[dict[str, Any]] = []
    after = cursor
    while True:
        want = API_PAGE if every else min(API_PAGE, limit - len(docs))
        params: dict[str, Any] = {**filters, "limit": want, "cursor": encode_cursor(after) if after else None}
        answer = remote.request("GET", "/v1/admin/keys", params=params)
        page: list[dict[str, Any]] = answer.json()
        docs.extend(page)
        if not page or not answer.headers.get(NEXT_CURSOR_HEADER):
            return docs, False
        if not every and len(docs) >= limit:
            return docs, True
        after = page[-1]["name"]


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Key name or id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one key with its versions, destinations and recent usage."""
    st = state(ctx)
    if st.remote is not None:
        doc: dict[str, Any] = st.remote.json("GET", key_path(name))
    else:
        from keyops.lifecycle.usage import usage_summary

        app = st.app(read_only=True)
        view = app.keys.show(name)
        doc = view.to_document()
        doc["usage"] = usage_summary(app.sessions, view.id)
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
    if doc["destinations"]:
        console.print(f"[bold]{'destinations':>17}[/bold]  {', '.join(doc['destinations'])}")
    print_table(
        "versions",
        ["#", "state", "prefix", "created", "activated", "grace ends", "retired", "revoked", "last used"],
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
                short_time(v["last_used_at"]),
            )
            for v in doc["versions"]
        ],
    )
    print_table(
        "usage",
        ["window", "requests", "errors", "input tokens", "output tokens"],
        [
            (label.replace("_", " "), u["requests"], u["errors"], u["input_tokens"], u["output_tokens"])
            for label, u in doc["usage"].items()
        ],
    )


def _state_change(ctx: typer.Context, name: str, action: str, reason: str, as_json: bool) -> None:
    st = state(ctx)
    if st.remote is not None:
        # the server brings a cloud key's credentials in line too
        doc = st.remote.json("POST", f"{key_path(name)}/{action}", body={"reason": reason})
    else:
        doc = getattr(st.app().keys, action)(name, actor=st.actor, reason=reason).to_document(with_versions=False)
        sync_credentials(ctx, name)  # cloud keys: revoked/suspended deactivated (revoked deleted after the hold)
    if as_json:
        print_json(doc)
    else:
        console.print(f"{doc['name']} is now {doc['state']}.")


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
    if st.remote is not None:
        body = {"owner": owner, "profile": profile, "policy": policy, "reason": reason}
        doc = st.remote.json("PATCH", key_path(name), body=body)
    else:
        view = st.app().keys.update(name, actor=st.actor, reason=reason, owner=owner, profile=profile, policy=policy)
        doc = view.to_document(with_versions=False)
    if as_json:
        print_json(doc)
    else:
        console.print(f"{doc['name']}: owner {doc['owner']}, profile {doc['profile']}, policy {doc['policy']}.")


app.command("adopt")(adopt_command)
