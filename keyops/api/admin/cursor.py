"""Opaque cursors for keyset pagination: the last name of a page, encoded.

Opaque so clients pass them back unchanged (and the encoding may change);
validated on the way in so a damaged cursor is a clear 400, never a query
that silently starts somewhere else.
"""

from __future__ import annotations

import base64
import binascii

from keyops.domain.names import NAME_RE
from keyops.errors import InvalidInputError

_PREFIX = "k1:"
_MAX = 256


def encode(last_name: str) -> str:
    return base64.urlsafe_b64encode((_PREFIX + last_name).encode()).decode().rstrip("=")


def decode(cursor: str) -> str:
    """The name a page starts after; InvalidInputError for anything this
    server did not hand out."""
    bad = InvalidInputError("invalid cursor: pass the next_cursor of the previous page unchanged")
    if len(cursor) > _MAX:
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    name = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or not NAME_RE.fullmatch(name):
        raise bad
    return name
