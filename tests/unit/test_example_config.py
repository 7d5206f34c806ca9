"""config/keyops.example.toml documents every setting and loads as it is."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

from keyops.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "keyops.example.toml"


def _setting_paths(cls: type[Any], prefix: str = "") -> list[str]:
    paths: list[str] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source" or f.metadata.get("derived"):
            continue
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            paths += _setting_paths(hints[f.name], f"{path}.")
        else:
            paths.append(path)
    return paths


def _lookup(doc: dict[str, Any], path: str) -> bool:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_setting_is_in_the_example_file() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    # Tables of named tables ([notify.webhooks.<name>]) are shown as a
    # commented example, since there is no sensible default entry.
    missing = [p for p in _setting_paths(Settings) if not _lookup(doc, p) and f"[{p}." not in text]
    assert missing == [], f"settings missing from {EXAMPLE.name}: {missing}"


def test_the_example_file_loads_and_matches_the_defaults() -> None:
    settings = load_settings(str(EXAMPLE), env={})
    defaults = load_settings(env={})
    settings.source = defaults.source
    assert settings == defaults
