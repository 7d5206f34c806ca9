"""The local file store: the embedded default for one host without Vault or AWS.

One file per destination, holding every version keyops still keeps there with
its stage, encrypted as a whole with Fernet (AES-128-CBC + HMAC-SHA256) under a
key from the settings. Writes are atomic (temporary file, fsync, rename) and
files are created 0600. A per-file ``flock`` serialises writers across
processes on this host; it does nothing across hosts, which is why this store
warns that it is for single-host use.

Every file lives under ``stores.file.directory``: a destination whose real
path (symbolic links and ``..`` resolved) leaves it is refused, and file I/O
walks down from the directory without following links, so a link planted
inside it cannot redirect a write elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from keyops.errors import (
    ConfigError,
    InvalidInputError,
    StoreConflictError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from keyops.stores.base import Destination, SecretContext, SecretDescription, SecretStore, Stage, StoredVersion

log = logging.getLogger("keyops.stores.file")
FORMAT = "keyops-file-store/1"
#: Name of the key file in the default key location (see ``default_key_path``).
KEY_FILE_NAME = "file-store.key"

_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class DestinationOutsideStoreError(InvalidInputError, StoreError):
    """A ``file:`` destination outside ``stores.file.directory``. Invalid input
    where a user gives it (exit code 6); a store failure for a destination
    already in the inventory, so per-destination handling (rotation,
    reconcile, retire) reports it for that destination and goes on."""


class StoreUndecryptableError(StoreError):
    """A file keyops encrypted, under a key other than the configured one.
    Never treated as foreign data: adopting it would destroy its versions."""


# -- the encryption key --------------------------------------------------------


@dataclass(frozen=True)
class FileStoreKey:
    fernet: Fernet
    #: Which setting the key came from, for messages (never the key itself).
    source: str


def legacy_key_path(directory: Path) -> Path:
    """Where earlier versions created the key: beside the data directory."""
    return directory.with_name(directory.name + ".key")


def default_key_path(directory: Path, key_home: str) -> Path | None:
    """The key file used when no key is configured: the legacy file beside the
    data directory when one exists (so an existing install keeps its key),
    else ``file-store.key`` in keyops' own directory (``key_home``)."""
    legacy = legacy_key_path(directory)
    if legacy.exists():
        return legacy
    return Path(key_home) / KEY_FILE_NAME if key_home else None


def load_key(encryption_key: str, encryption_key_file: str, directory: Path, key_home: str = "") -> FileStoreKey:
    """The Fernet key from ``stores.file.encryption_key``, or the key file,
    or the default key file (created on first use, see ``default_key_path``)."""
    if encryption_key:
        try:
            return FileStoreKey(Fernet(encryption_key.encode()), "stores.file.encryption_key")
        except (ValueError, TypeError):
            raise ConfigError(
                "setting stores.file.encryption_key is not a Fernet key (32 bytes, urlsafe base64); "
                "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'"
            ) from None
    if encryption_key_file:
        key_path = Path(encryption_key_file)
    else:
        found = default_key_path(directory, key_home)
        if found is None:
            raise ConfigError(
                "setting stores.file.encryption_key_file is empty and there is no default location "
                "(neither XDG_CONFIG_HOME nor HOME is set): set it to a path outside stores.file.directory"
            )
        key_path = found
        if key_path == legacy_key_path(directory):
            log.info(
                f"using the file-store key beside the data directory ({key_path}), where earlier versions put it; "
                f"keep it, or move it and set stores.file.encryption_key_file"
            )
        elif not key_path.exists():
            _create_key_file(key_path)
    source = f"stores.file.encryption_key_file={key_path}"
    try:
        fd = os.open(key_path, os.O_RDONLY)
        try:
            mode = os.fstat(fd).st_mode
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"setting stores.file.encryption_key_file: cannot use {key_path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"setting stores.file.encryption_key_file: {key_path} is readable or writable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {key_path}"
        )
    try:
        return FileStoreKey(Fernet(raw.strip()), source)
    except ValueError:
        raise ConfigError(f"setting stores.file.encryption_key_file: {key_path} does not hold a Fernet key") from None


def load_fernet(encryption_key: str, encryption_key_file: str, directory: Path, key_home: str = "") -> Fernet:
    """The Fernet key alone (see ``load_key``)."""
    return load_key(encryption_key, encryption_key_file, directory, key_home).fernet


def _create_key_file(key_path: Path) -> None:
    """Create a new key file so that it is complete whenever it exists: the key
    is written and fsynced to a 0600 temporary file in the same directory,
    then hard-linked to its name. ``link`` fails when the name exists, so of
    several processes starting at once one wins and the others read its key."""
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = key_path.with_name(f".{key_path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.write(fd, Fernet.generate_key() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, key_path)
            except FileExistsError:
                return
            _fsync_dir(key_path.parent)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(
            f"setting stores.file.encryption_key_file: cannot create {key_path}: {exc.strerror}"
        ) from None
    log.warning(f"created a new file-store encryption key at {key_path}: back it up with the data it protects")


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- where a destination's file is ---------------------------------------------


def confine(directory: Path, dest: Destination) -> Path:
    """The real path of a ``file:`` destination (relative locations are under
    ``directory``). Refused with ``InvalidInputError`` unless that path, with
    every symbolic link and ``..`` resolved, lies inside the directory."""
    root = Path(os.path.realpath(directory))
    location = Path(dest.location)
    candidate = location if location.is_absolute() else Path(directory) / location
    real = Path(os.path.realpath(candidate))
    if root not in real.parents:
        raise DestinationOutsideStoreError(
            f"destination {dest.uri} is outside stores.file.directory ({root}); use a path under it"
        )
    return real


def _looks_like_fernet(raw: bytes) -> bool:
    """A Fernet token: version byte 0x80, timestamp, IV, whole AES blocks, HMAC."""
    try:
        data = base64.urlsafe_b64decode(raw.strip())
    except (binascii.Error, ValueError):
        return False
    return len(data) >= 73 and (len(data) - 57) % 16 == 0 and data[0] == 0x80


# -- the store -------------------------------------------------------------------


class FileStore(SecretStore):
    scheme = "file"

    def __init__(self, directory: Path, fernet: Fernet, *, key_source: str = "the configured key") -> None:
        self._directory = directory
        self._fernet = fernet
        self._key_source = key_source
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        log.warning(
            "the file secret store is for single-host use only: use Vault or AWS Secrets Manager for more hosts",
            extra={"directory": str(directory)},
        )

    # -- files ---------------------------------------------------------------

    def path_of(self, dest: Destination) -> Path:
        """The destination's real path, refused when outside the directory."""
        return confine(self._directory, dest)

    def _open_parent(self, path: Path, *, create: bool) -> int | None:
        """A descriptor of ``path``'s directory, reached from the store's
        directory one component at a time without following links (so a link
        swapped in after ``confine`` looked cannot redirect us). ``None`` when
        it does not exist and ``create`` is false."""
        root = Path(os.path.realpath(self._directory))
        try:
            if create:
                root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailableError(f"file store: cannot use directory {root}: {exc.strerror}") from None
        try:
            for part in path.parent.relative_to(root).parts:
                try:
                    child = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=fd)
                    child = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as exc:
            os.close(fd)
            raise self._os_error("open the directory of", path, exc) from None
        return fd

    def _os_error(self, doing: str, path: Path, exc: OSError) -> StoreError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symbolic link where a directory or file should be
            return StoreConflictError(
                f"file store: cannot {doing} {path}: a symbolic link is in the way "
                f"(links inside stores.file.directory are not followed)"
            )
        return StoreUnavailableError(f"file store: cannot {doing} {path}: {exc.strerror}")

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[int]:
        """Hold this file's lock (threads and processes); yields the
        descriptor of its directory."""
        with self._locks_guard:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            dir_fd = self._open_parent(path, create=True)
            assert dir_fd is not None
            try:
                try:
                    fd = os.open(path.name + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
                except OSError as exc:
                    raise self._os_error("lock", path, exc) from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    yield dir_fd
                finally:
                    os.close(fd)
            finally:
                os.close(dir_fd)

    def _read_doc(self, path: Path) -> dict[str, Any] | None:
        """``_load`` outside the lock (readers do not take it: writes are atomic)."""
        dir_fd = self._open_parent(path, create=False)
        if dir_fd is None:
            return None
        try:
            return self._load(path, dir_fd)
        finally:
            os.close(dir_fd)

    def _load(self, path: Path, dir_fd: int) -> dict[str, Any] | None:
        """The document, ``None`` when absent, ``{}`` when foreign (not ours).
        A file encrypted by keyops under another key raises
        ``StoreUndecryptableError``: it is not foreign, and must not be adopted."""
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._os_error("read", path, exc) from None
        try:
            with os.fdopen(fd, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise StoreUnavailableError(f"file store: cannot read {path}: {exc.strerror}") from None
        try:
            doc = orjson.loads(self._fernet.decrypt(raw))
        except InvalidToken:
            if _looks_like_fernet(raw):
                raise StoreUndecryptableError(
                    f"cannot decrypt {path} with the configured key ({self._key_source}); restore the right key"
                ) from None
            return {}
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return {}
        return doc

    def _save(self, path: Path, dir_fd: int, doc: dict[str, Any]) -> None:
        data = self._fernet.encrypt(orjson.dumps(doc))
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                # rename replaces a link at the name itself; it never writes through one.
                os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
            os.fsync(dir_fd)
        except OSError as exc:
            raise StoreUnavailableError(f"file store: cannot write {path}: {exc.strerror}") from None

    @staticmethod
    def _new_doc(ctx: SecretContext) -> dict[str, Any]:
        return {"format": FORMAT, "owner_key_id": ctx.key_id, "key_name": ctx.key_name, "versions": []}

    @staticmethod
    def _find(doc: dict[str, Any], version_id: str) -> dict[str, Any] | None:
        return next((v for v in doc.get("versions", []) if v["id"] == version_id), None)

    @staticmethod
    def _clear_stage(doc: dict[str, Any], stage: Stage) -> None:
        for version in doc["versions"]:
            if stage.value in version["stages"]:
                version["stages"].remove(stage.value)

    def _owned(self, dest: Destination, doc: dict[str, Any] | None, ctx: SecretContext) -> dict[str, Any]:
        if doc is None:
            return self._new_doc(ctx)
        if doc.get("owner_key_id") != ctx.key_id:
            raise StoreConflictError(
                f"{dest.uri} holds data keyops does not own for key {ctx.key_name}; "
                f"pick another destination or adopt it with --adopt"
            )
        return doc

    # -- the interface -------------------------------------------------------

    def describe(self, dest: Destination) -> SecretDescription:
        doc = self._read_doc(self.path_of(dest))
        if doc is None:
            return SecretDescription(exists=False)
        if not doc:
            return SecretDescription(exists=True)
        stages = {Stage(s): v["id"] for v in doc["versions"] for s in v["stages"]}
        return SecretDescription(
            exists=True,
            owner_key_id=doc.get("owner_key_id"),
            stages=stages,
            versions=tuple(v["id"] for v in doc["versions"]),
        )

    def put_initial(
        self, dest: Destination, version_id: str, material: str, ctx: SecretContext, *, adopt: bool = False
    ) -> None:
        path = self.path_of(dest)
        with self._locked(path) as dir_fd:
            doc = self._load(path, dir_fd)
            if doc is not None and doc.get("owner_key_id") != ctx.key_id:
                if not adopt:
                    self._owned(dest, doc, ctx)
                doc = None
            doc = self._owned(dest, doc, ctx)
            found = self._find(doc, version_id)
            if found is not None and Stage.CURRENT.value in found["stages"]:
                return
            self._clear_stage(doc, Stage.CURRENT)
            doc["versions"] = [v for v in doc["versions"] if v["id"] != version_id]
            doc["versions"].append({"id": version_id, "material": material, "stages": [Stage.CURRENT.value]})
            self._save(path, dir_fd, doc)

    def put_pending(self, dest: Destination, version_id: str, material: str, ctx: SecretContext) -> None:
        path = self.path_of(dest)
        with self._locked(path) as dir_fd:
            doc = self._owned(dest, self._load(path, dir_fd), ctx)
            found = self._find(doc, version_id)
            if found is not None:
                if found["material"] != material:
                    raise StoreConflictError(f"{dest.uri} already holds version {version_id} with other material")
                return
            self._clear_stage(doc, Stage.PENDING)
            doc["versions"] = [v for v in doc["versions"] if v["stages"]]
            doc["versions"].append({"id": version_id, "material": material, "stages": [Stage.PENDING.value]})
            self._save(path, dir_fd, doc)

    def read(self, dest: Destination, stage: Stage = Stage.CURRENT) -> StoredVersion | None:
        doc = self._read_doc(self.path_of(dest))
        if not doc:
            return None
        for version in doc["versions"]:
            if stage.value in version["stages"]:
                return StoredVersion(version["id"], version["material"], frozenset(Stage(s) for s in version["stages"]))
        return None

    def read_version(self, dest: Destination, version_id: str) -> StoredVersion | None:
        doc = self._read_doc(self.path_of(dest))
        found = self._find(doc, version_id) if doc else None
        if found is None:
            return None
        return StoredVersion(found["id"], found["material"], frozenset(Stage(s) for s in found["stages"]))

    def promote(self, dest: Destination, version_id: str, ctx: SecretContext) -> None:
        path = self.path_of(dest)
        with self._locked(path) as dir_fd:
            doc = self._owned(dest, self._load(path, dir_fd), ctx)
            found = self._find(doc, version_id)
            if found is None:
                raise StoreNotFoundError(f"{dest.uri} holds no version {version_id} to promote")
            if Stage.CURRENT.value in found["stages"]:
                return
            old = next((v for v in doc["versions"] if Stage.CURRENT.value in v["stages"]), None)
            self._clear_stage(doc, Stage.PREVIOUS)
            if old is not None:
                old["stages"] = [Stage.PREVIOUS.value]
            found["stages"] = [Stage.CURRENT.value]
            doc["versions"] = [v for v in doc["versions"] if v["stages"]]
            self._save(path, dir_fd, doc)

    def retire(self, dest: Destination, version_id: str) -> None:
        path = self.path_of(dest)
        with self._locked(path) as dir_fd:
            doc = self._load(path, dir_fd)
            if not doc:
                return
            found = self._find(doc, version_id)
            if found is None:
                return
            if Stage.CURRENT.value in found["stages"]:
                raise StoreConflictError(f"{dest.uri}: version {version_id} is current there and cannot be retired")
            doc["versions"].remove(found)
            self._save(path, dir_fd, doc)

    def delete(self, dest: Destination, key_id: str) -> None:
        path = self.path_of(dest)
        with self._locked(path) as dir_fd:
            doc = self._load(path, dir_fd)
            if not doc or doc.get("owner_key_id") != key_id:
                return
            try:
                os.unlink(path.name, dir_fd=dir_fd)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise StoreUnavailableError(f"file store: cannot delete {path}: {exc.strerror}") from None

    def health(self) -> None:
        try:
            self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"file store: cannot use directory {self._directory}: {exc.strerror}") from None
        if not os.access(self._directory, os.W_OK):
            raise StoreUnavailableError(f"file store: directory {self._directory} is not writable")
