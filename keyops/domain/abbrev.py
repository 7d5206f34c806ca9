"""Short unique id prefixes, as git abbreviates commit hashes.

Listings print ids cut to the shortest length (at least ``MIN_SHOWN``) at
which the ids shown are still told apart; every command taking an id takes
such a prefix (``keyops.inventory.idprefix``), and an ambiguous one is
refused with the candidates. UUIDv7 ids begin with their creation time, so
ids made in the same minute need more characters than ``MIN_SHOWN``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

#: Fewest characters a listing shows of an id.
MIN_SHOWN = 8
#: Fewest characters accepted as a prefix (git's minimum too).
MIN_ACCEPTED = 4
#: A key id prefix: the characters of a canonical UUID (a key name has a "/").
PREFIX_RE = re.compile(r"[0-9a-f-]+")


def abbreviation_length(ids: Iterable[str], minimum: int = MIN_SHOWN) -> int:
    """The shortest length >= ``minimum`` at which the distinct ``ids`` have
    distinct prefixes (never ending on a hyphen)."""
    ordered = sorted(set(ids))
    length = minimum
    for before, after in itertools.pairwise(ordered):
        common = 0
        for a, b in zip(before, after, strict=False):
            if a != b:
                break
            common += 1
        length = max(length, common + 1)
    longest = max((len(i) for i in ordered), default=0)
    while length < longest and any(len(i) >= length and i[length - 1] == "-" for i in ordered):
        length += 1
    return length


def abbreviate(ids: Iterable[str | None], minimum: int = MIN_SHOWN) -> dict[str, str]:
    """Each id mapped to its prefix of :func:`abbreviation_length`: one
    length for the whole listing, so columns align."""
    present = [i for i in ids if i]
    length = abbreviation_length(present, minimum)
    return {i: i[:length] for i in present}
