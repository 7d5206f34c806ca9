"""Find a row by its id or a unique prefix of it (see ``keyops.domain.abbrev``)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from keyops.domain.abbrev import MIN_ACCEPTED
from keyops.errors import InvalidInputError, NotFoundError

#: What an id (and so a prefix) may hold: UUIDs, and ids given by a source (cases).
ID_CHARS = re.compile(r"[0-9a-z._:-]+")

#: Candidates named in an ambiguity error.
SHOWN_CANDIDATES = 5


def resolve_id(session: Session, column: InstrumentedAttribute[Any], text: str, *, what: str, listing: str) -> str:
    """The full id that ``text`` is, or is the only prefix of.

    ``what`` names the thing in errors ("rotation"), ``listing`` the command
    that lists them ("keyops rotations list"). An unknown id or prefix is
    :class:`NotFoundError`; a prefix shared by several ids, or shorter than
    ``MIN_ACCEPTED``, is :class:`InvalidInputError` naming the candidates.
    """
    value = text.strip().lower()
    if session.execute(select(column).where(column == value)).scalar_one_or_none() is not None:
        return value
    if not ID_CHARS.fullmatch(value):
        raise NotFoundError(f"no {what} with id {text!r} (see {listing})")
    matches = list(
        session.execute(
            select(column).where(column.startswith(value, autoescape=True)).order_by(column).limit(SHOWN_CANDIDATES + 1)
        ).scalars()
    )
    if not matches:
        raise NotFoundError(f"no {what} with id {text!r} (see {listing})")
    if len(value) < MIN_ACCEPTED and len(matches) == 1:
        raise InvalidInputError(
            f"{what} id prefix {text!r} is too short: give at least {MIN_ACCEPTED} characters (see {listing})"
        )
    if len(matches) > 1:
        shown = ", ".join(str(m) for m in matches[:SHOWN_CANDIDATES])
        more = " and more" if len(matches) > SHOWN_CANDIDATES else ""
        raise InvalidInputError(
            f"{what} id prefix {text!r} is ambiguous: it matches {shown}{more}; give more characters"
        )
    return str(matches[0])
