"""The CLI as a client of the admin API (``/v1/admin/``).

With ``KEYOPS_ADDR`` and ``KEYOPS_TOKEN`` (or ``--addr`` and
``--token-file``), a command sends its request to a running ``keyops
serve`` instead of opening the database, as ``vault`` does with
``VAULT_ADDR`` and ``VAULT_TOKEN``: the server authenticates the token and
records its name as the audit actor. The answers are the CLI's ``--json``
documents, so each command renders them with its own code.

Statuses map back to the CLI's exit codes (``keyops/errors.py``): 400 is
invalid input (6), 404 not found (4), 409 conflict (5), 502 a store or
issuer failure (8), 503 the database unreachable (7). A server that cannot
be reached is exit 7 too; a token the server refuses (401, 403) is exit 3,
a configuration error. Only httpx is imported here: API mode starts without
SQLAlchemy or the lifecycle services.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

if TYPE_CHECKING:
    import httpx

from keyops.errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    KeyOpsError,
    NotFoundError,
    StoreError,
)

PREFIX = "/v1/admin"
NEXT_CURSOR_HEADER = "Keyops-Next-Cursor"
NOTE_HEADER = "X-Keyops-Actor-Note"
#: A rotation waits on secret stores; everything else answers at once.
# (connect/write/pool, read) seconds: a rotation may take a while to answer.
TIMEOUT = (10.0, 120.0)

_BY_STATUS: dict[int, type[KeyOpsError]] = {
    400: InvalidInputError,
    404: NotFoundError,
    409: ConflictError,
    502: StoreError,
    503: DatabaseUnavailableError,
}


def encode_cursor(last_name: str) -> str:
    """The API's cursor for the page after ``last_name`` (the encoding of
    ``keyops.api.admin.cursor``, repeated here so the client imports no server code)."""
    return base64.urlsafe_b64encode(("k1:" + last_name).encode()).decode().rstrip("=")


def key_path(name: str) -> str:
    """A key's route: its name keeps its slashes (``team/name``)."""
    return f"{PREFIX}/keys/{quote(name, safe='/')}"


def segment(value: str) -> str:
    return quote(value, safe="")


def _token_from_file(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: cannot read: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError(f"--token-file {path}: the file is empty; put the API token in it")
    return token


def connection(addr: str | None, token_file: str | None, note: str | None) -> Remote | None:
    """The API to talk to, or ``None``: database mode. ``--addr`` and
    ``--token-file`` win over ``KEYOPS_ADDR`` and ``KEYOPS_TOKEN``."""
    addr = addr or os.environ.get("KEYOPS_ADDR") or None
    token = _token_from_file(token_file) if token_file else os.environ.get("KEYOPS_TOKEN") or None
    if addr is None and token is None:
        return None
    if addr is None:
        where = "--token-file" if token_file else "KEYOPS_TOKEN"
        raise ConfigError(f"{where} is set but no server: set KEYOPS_ADDR or --addr (or unset it for database mode)")
    if token is None:
        raise ConfigError("KEYOPS_ADDR is set but no token: set KEYOPS_TOKEN or --token-file")
    if not addr.startswith(("http://", "https://")):
        raise ConfigError(f"KEYOPS_ADDR {addr!r} is not a URL: give http(s)://host:port")
    return Remote(addr.rstrip("/"), token, note)


@dataclass
class Remote:
    """One admin API server and the token to present to it."""

    addr: str
    token: str
    note: str | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """The answer, or the keyops error its status stands for. Statuses in
        ``ok`` are returned as they are (a failed rotation's 502 carries its
        document)."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if self.note:
            headers[NOTE_HEADER] = self.note
        query = {k: v for k, v in (params or {}).items() if v is not None}
        content = orjson.dumps(body) if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        import httpx  # here: database-mode commands import this module too, and httpx loads rich.progress

        try:
            answer = httpx.request(
                method,
                self.addr + path,
                params=query,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(TIMEOUT[0], read=TIMEOUT[1]),
            )
        except httpx.TimeoutException:
            raise DatabaseUnavailableError(
                f"keyops at {self.addr} did not answer in time; check the server (KEYOPS_ADDR)"
            ) from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise DatabaseUnavailableError(
                f"cannot reach keyops at {self.addr}: {reason}; is keyops serve running there? check KEYOPS_ADDR"
            ) from None
        if answer.status_code < 400 or answer.status_code in ok:
            return answer
        raise self.error(answer)

    def error(self, answer: httpx.Response) -> KeyOpsError:
        message = _error_line(answer)
        status = answer.status_code
        if status == 401:
            return ConfigError(f"{self.addr} refused the token ({message}); check KEYOPS_TOKEN or --token-file")
        if status == 403:
            return ConfigError(f"{self.addr} refused: {message}")
        kind = _BY_STATUS.get(status)
        if kind is None:
            return KeyOpsError(f"keyops at {self.addr} answered {status}: {message}")
        return kind(message)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


def _error_line(answer: httpx.Response) -> str:
    try:
        doc = answer.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return f"HTTP {answer.status_code} {answer.reason_phrase}".strip()
