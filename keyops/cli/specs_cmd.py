"""``keyops profiles`` and ``keyops policies``: list, show, apply -f FILE."""

from __future__ import annotations

from typing import Annotated

import typer

from keyops.cli.context import state
from keyops.cli.output import console, print_json, print_table
from keyops.config import read_spec_file
from keyops.domain.durations import format_duration
from keyops.domain.specs import DETECTOR_SETTINGS, SpecError, find_line, parse_spec_document
from keyops.lifecycle.specs import spec_error_to_input_error

profiles_app = typer.Typer(help="Usage profiles: what usage a key was issued for.", no_args_is_help=True)
policies_app = typer.Typer(help="Rotation policies: how often keys rotate, how long grace lasts.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
FileOpt = Annotated[str, typer.Option("--file", "-f", help="TOML file with [profiles.NAME] / [policies.NAME].")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate only; change nothing.")]


def _apply(ctx: typer.Context, path: str, dry_run: bool, as_json: bool, only: str) -> None:
    st = state(ctx)
    text, doc = read_spec_file(path)
    try:
        profiles, policies = parse_spec_document(doc)
    except SpecError as exc:
        raise spec_error_to_input_error(exc, path, find_line(text, exc.path)) from None
    if only == "profile" and policies and not profiles:
        console.print("note: this file only holds policies; applying them anyway", style="yellow")
    if dry_run:
        results = [("profile", p.name, "valid") for p in profiles] + [("policy", p.name, "valid") for p in policies]
    else:
        results = st.app(check_defaults=False).specs.apply(profiles, policies, actor=st.actor, source=path)
    if as_json:
        print_json([{"kind": k, "name": n, "result": r} for k, n, r in results])
        return
    for kind, name, result in results:
        console.print(f"{kind} {name}: {result}")


@profiles_app.command("list")
def profiles_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List usage profiles."""
    items = state(ctx).app(check_defaults=False, read_only=True).specs.profiles()
    if as_json:
        print_json([{**p.to_document(), "builtin": b} for p, b in items])
        return
    print_table(
        None,
        ["name", "rpm", "burst", "concurrency", "tokens/day", "enforcement", "builtin", "description"],
        [
            (
                p.name,
                p.limits.requests_per_minute,
                p.limits.burst,
                p.limits.concurrency,
                p.limits.tokens_per_day,
                p.enforcement,
                "yes" if b else "no",
                p.description,
            )
            for p, b in items
        ],
    )


@profiles_app.command("show")
def profiles_show(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """Show one profile: limits, networks, detectors, response ladder."""
    profile = state(ctx).app(read_only=True).specs.profile(name)
    doc = profile.to_document()
    # What the detectors will really use: built-in defaults, then the profile's own settings.
    effective = {
        det: {key: spec[3] for key, spec in schema.items()} | dict(profile.detectors.get(det, {}))
        for det, schema in DETECTOR_SETTINGS.items()
    }
    doc["effective_detectors"] = effective
    if as_json:
        print_json(doc)
        return
    console.print(f"[bold]{profile.name}[/bold]: {profile.description}")
    console.print(f"enforcement: {profile.enforcement}; learning period: {format_duration(profile.learning_period)}")
    print_table("limits", ["limit", "value"], list(doc["limits"].items()))
    console.print(f"allowed networks: {', '.join(profile.allowed_networks) or 'any'}")
    print_table(
        "detectors",
        ["detector", "settings"],
        [
            (n, ", ".join(f"{k}={v}{'' if k in profile.detectors.get(n, {}) else ' (default)'}" for k, v in s.items()))
            for n, s in effective.items()
        ],
    )
    print_table("ladder", ["severity", "action"], list(doc["ladder"].items()))


@profiles_app.command("apply")
def profiles_apply(ctx: typer.Context, file: FileOpt, dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    """Create or update profiles (and policies) from a TOML file."""
    _apply(ctx, file, dry_run, as_json, "profile")


@policies_app.command("list")
def policies_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List rotation policies."""
    items = state(ctx).app(check_defaults=False, read_only=True).specs.policies()
    if as_json:
        print_json([{**p.to_document(), "builtin": b} for p, b in items])
        return
    print_table(
        None,
        ["name", "rotate every", "grace", "retire when idle", "jitter", "window", "builtin", "description"],
        [
            (
                p.name,
                format_duration(p.rotate_every) if p.rotate_every else "never",
                format_duration(p.grace),
                format_duration(p.retire_when_idle) if p.retire_when_idle is not None else "-",
                format_duration(p.jitter),
                p.window or "any time",
                "yes" if b else "no",
                p.description,
            )
            for p, b in items
        ],
    )


@policies_app.command("show")
def policies_show(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """Show one rotation policy."""
    policy = state(ctx).app(read_only=True).specs.policy(name)
    doc = policy.to_document()
    if as_json:
        print_json(doc)
        return
    for field, value in doc.items():
        console.print(f"[bold]{field:>16}[/bold]  {value if value is not None else '-'}")


@policies_app.command("apply")
def policies_apply(ctx: typer.Context, file: FileOpt, dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    """Create or update policies (and profiles) from a TOML file."""
    _apply(ctx, file, dry_run, as_json, "policy")
