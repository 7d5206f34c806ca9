"""The audit key: the secret that seals the audit chain, kept outside the database.

Whoever can write to the database can rewrite plain hashes; without this key
they cannot compute the chain's HMACs, so ``keyops audit verify`` names the
first event they touched. The key comes from ``audit.key`` (an environment
variable in containers) or from ``audit.key_file``, which is created on first
start when it does not exist yet.

Creation is atomic: the key is written to a private temporary file (0600)
beside the target, flushed, and then hard-linked into place. ``link`` fails
when the target exists, so of two processes starting at once exactly one key
wins, and neither can ever read an empty or half-written file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from keyops.config import AUDIT_KEY_MIN_CHARS, AuditSettings
from keyops.errors import ConfigError

log = logging.getLogger("keyops.audit")

_KEY_ID_LABEL = b"keyops audit key id v1"
_GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class AuditKey:
    """An HMAC-SHA256 key and its public fingerprint. The fingerprint is
    stored with every sealed event so a verifier holding a different key can
    say so plainly instead of calling every event edited."""

    secret: bytes = field(repr=False)
    #: Where the key came from (a path or "audit.key"), for messages.
    source: str

    @property
    def key_id(self) -> str:
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()


def _checked(raw: bytes, where: str) -> bytes:
    secret = raw.strip()
    if not secret:
        raise ConfigError(f"{where} is empty; delete it to have keyops create a new key, or {_GENERATE_HINT}")
    if len(secret) < AUDIT_KEY_MIN_CHARS:
        raise ConfigError(
            f"{where} holds only {len(secret)} characters; an audit key needs at least {AUDIT_KEY_MIN_CHARS}: "
            f"{_GENERATE_HINT}"
        )
    return secret


def _create(path: Path) -> bool:
    """Create ``path`` holding a new key unless it exists; True if this call
    created it. Safe against concurrent creators (see the module docstring)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode("ascii") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def _read(path: Path) -> bytes:
    where = f"setting audit.key_file: {path}"
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{where} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{where} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"the audit key must be private: chmod 600 {path}"
        )
    return _checked(path.read_bytes(), where)


def load_audit_key(settings: AuditSettings) -> AuditKey:
    """The configured audit key; creates the key file on first start."""
    if settings.key:
        return AuditKey(_checked(settings.key.encode("utf-8"), "setting audit.key"), "audit.key")
    path = Path(settings.key_file).expanduser()
    try:
        try:
            return AuditKey(_read(path), str(path))
        except FileNotFoundError:
            pass
        if _create(path):
            # INFO: the daemon shows it; a CLI command's one-line output stays clean.
            log.info(
                "created a new audit key; back it up and give the same key to every keyops process that "
                "shares this database: without it the audit chain cannot be verified",
                extra={"path": str(path)},
            )
        return AuditKey(_read(path), str(path))
    except OSError as exc:
        raise ConfigError(f"setting audit.key_file: cannot use {path}: {exc.strerror}") from None


class AuditKeySource:
    """Loads the audit key once, on first use, for every session of one
    application. The composition root forces the load at start (so a bad key
    stops the program there); commands that never touch the audit log, such
    as schema migrations, never need the key at all."""

    def __init__(self, settings: AuditSettings) -> None:
        self._settings = settings
        self._key: AuditKey | None = None
        self._lock = threading.Lock()

    def get(self) -> AuditKey:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = load_audit_key(self._settings)
        return self._key
