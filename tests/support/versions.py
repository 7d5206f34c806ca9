"""Reading a key's versions and its file-store material in tests (shared by
the per-version last-use tests, in-process and end to end)."""

from __future__ import annotations

from sqlalchemy import select

from keyops.bootstrap import App
from keyops.inventory import models


def file_material(app: App, name: str) -> str:
    """What the key's ``file:<name>`` destination serves now."""
    dest, store = app.stores.resolve(f"file:{name}")
    stored = store.read(dest)
    assert stored is not None
    return str(stored.material)


def versions_by_number(app: App, name: str) -> dict[int, models.KeyVersion]:
    """The key's versions as rows (detached), by number."""
    with app.sessions() as session:
        rows = session.execute(select(models.KeyVersion).join(models.Key).where(models.Key.name == name)).scalars()
        return {v.number: v for v in rows}
