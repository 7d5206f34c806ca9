"""Who the audit log names as the actor of a change.

Through the admin API the actor is what the server authenticated: the
token's name and the client's address, ``token:<name>@<address>``. Direct
use of the database (the CLI without a server) is ``local:<OS user>``. In
both, what a caller says about itself (``--actor``, the
``X-Keyops-Actor-Note`` header) is only a note after it, ``note=<text>``:
it can explain, never impersonate.
"""

from __future__ import annotations

import getpass
import os


def _with_note(actor: str, note: str | None) -> str:
    return f"{actor} note={note}" if note else actor


def api_actor(token_name: str, client: str, note: str | None = None) -> str:
    return _with_note(f"token:{token_name}@{client}", note)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def local_actor(note: str | None = None, user: str | None = None) -> str:
    """The actor of a command run on the database directly."""
    return _with_note(f"local:{user or os_user()}", note)
