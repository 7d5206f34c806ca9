"""Built-in profiles and policies: shipped definitions arrive on upgrade,
operator overrides survive it."""

from __future__ import annotations

import tomllib

from sqlalchemy import update

from keyops.bootstrap import App, build
from keyops.config import builtin_spec_text, load_settings
from keyops.domain.specs import parse_profile, parse_spec_document
from keyops.inventory import models


def _shipped_interactive_burst() -> int:
    profiles, _ = parse_spec_document(tomllib.loads(builtin_spec_text()))
    return next(p for p in profiles if p.name == "interactive").limits.burst


def test_stale_builtin_is_updated_and_override_is_kept(app: App, env: dict[str, str]) -> None:
    with app.sessions.begin() as session:
        row = session.get(models.Profile, "interactive")
        assert row is not None and row.builtin
        stale = dict(row.spec)
        stale["limits"] = {**stale["limits"], "burst": 1}
        session.execute(update(models.Profile).where(models.Profile.name == "interactive").values(spec=stale))
    assert app.specs.profile("interactive").limits.burst == 1

    # The next start (an upgrade, say) brings the shipped definition back.
    build(load_settings(env=env)).close()
    assert app.specs.profile("interactive").limits.burst == _shipped_interactive_burst()

    # An operator's override is not a built-in any more and survives restarts.
    doc = app.specs.profile("batch").to_document()
    doc.pop("name")
    doc["limits"]["burst"] = 7
    app.specs.apply([parse_profile("batch", doc)], [], actor="test", source="test")
    build(load_settings(env=env)).close()
    assert app.specs.profile("batch").limits.burst == 7
    assert {p.name: builtin for p, builtin in app.specs.profiles()}["batch"] is False
