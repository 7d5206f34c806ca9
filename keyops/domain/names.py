"""Key names: ``team/name`` style, validated so they are safe in paths,
URLs, metric labels and shell commands."""

from __future__ import annotations

import re

from keyops.errors import InvalidInputError

MAX_NAME_LENGTH = 128
_SEGMENT = r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?"
NAME_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{1,3}}")
OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
PROFILE_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def validate_key_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid key name {name!r}: use 'team/name' (2 to 4 segments of lowercase letters, "
            f"digits, '.', '_' or '-', each starting and ending with a letter or digit, "
            f"at most {MAX_NAME_LENGTH} characters)"
        )
    return name


def validate_owner(owner: str) -> str:
    if not isinstance(owner, str) or not OWNER_RE.fullmatch(owner):
        raise InvalidInputError(
            f"invalid owner {owner!r}: use letters, digits, '.', '_', '@' or '-', at most 64 characters"
        )
    return owner


def validate_profile_name(name: str, what: str = "profile") -> str:
    if not isinstance(name, str) or not PROFILE_NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid {what} name {name!r}: use lowercase letters, digits, '_' or '-', starting with a letter"
        )
    return name
