"""The local file store: the embedded default for one host without Vault or AWS.

One file per destination, holding every version keyops still keeps there with
its stage, encrypted as a whole with Fernet (AES-128-CBC + HMAC-SHA256) under a
key from the settings. Writes are atomic (temporary file, fsync, rename) and
files are created 0600. A per-file ``flock`` serialises writers across
processes on this host; it does nothing across hosts, which is why this store
warns that it is for single-host use.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from keyops.errors import ConfigError, StoreConflictError, StoreError, StoreNotFoundError, StoreUnavailableError
from keyops.stores.base import Destination, SecretContext, SecretDescription, SecretStore, Stage, StoredVersion

log = logging.getLogger("keyops.stores.file")
FORMAT = "keyops-file-store/1"


def load_fernet(encryption_key: str, encryption_key_file: str, directory: Path) -> Fernet:
    """The Fernet key from ``stores.file.encryption_key``, or the key file,
    or a new key file created beside the directory (0600)."""
    if encryption_key:
        try:
            return Fernet(encryption_key.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                "setting stores.file.encryption_key is not a Fernet key (32 bytes, urlsafe base64); "
                "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'"
            ) from None
    key_path = Path(encryption_key_file) if encryption_key_file else directory.with_name(directory.name + ".key")
    try:
        if not key_path.exists() and not encryption_key_file:
            key_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
            log.warning("created a new file-store encryption key", extra={"path": str(key_path)})
        return Fernet(key_path.read_bytes().strip())
    except FileExistsError:
        return Fernet(key_path.read_bytes().strip())
    except OSError as exc:
        raise ConfigError(f"setting stores.file.encryption_key_file: cannot use {key_path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"setting stores.file.encryption_key_file: {key_path} does not hold a Fernet key") from None


class FileStore(SecretStore):
    scheme = "file"

    def __init__(self, directory: Path, fernet: Fernet) -> None:
        self._directory = directory
        self._fernet = fernet
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        log.warning(
            "the file secret store is for single-host use only: use Vault or AWS Secrets Manager for more hosts",
            extra={"directory": str(directory)},
        )

    # -- files ---------------------------------------------------------------

    def path_of(self, dest: Destination) -> Path:
        path = Path(dest.location)
        return path if path.is_absolute() else self._directory / path

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreUnavailableError(f"file store: cannot open {path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _load(self, path: Path) -> dict[str, Any] | None:
        """The document, ``None`` when absent, ``{}`` when foreign (not ours)."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailableError(f"file store: cannot read {path}: {exc.strerror}") from None
        try:
            doc = orjson.loads(self._fernet.decrypt(raw))
        except (InvalidToken, orjson.JSONDecodeError):
            return {}
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return {}
        return doc

    def _save(self, path: Path, doc: dict[str, Any]) -> None:
        data = self._fernet.encrypt(orjson.dumps(doc))
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
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
        doc = self._load(self.path_of(dest))
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
        with self._locked(path):
            doc = self._load(path)
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
            self._save(path, doc)

    def put_pending(self, dest: Destination, version_id: str, material: str, ctx: SecretContext) -> None:
        path = self.path_of(dest)
        with self._locked(path):
            doc = self._owned(dest, self._load(path), ctx)
            found = self._find(doc, version_id)
            if found is not None:
                if found["material"] != material:
                    raise StoreConflictError(f"{dest.uri} already holds version {version_id} with other material")
                return
            self._clear_stage(doc, Stage.PENDING)
            doc["versions"] = [v for v in doc["versions"] if v["stages"]]
            doc["versions"].append({"id": version_id, "material": material, "stages": [Stage.PENDING.value]})
            self._save(path, doc)

    def read(self, dest: Destination, stage: Stage = Stage.CURRENT) -> StoredVersion | None:
        doc = self._load(self.path_of(dest))
        if not doc:
            return None
        for version in doc["versions"]:
            if stage.value in version["stages"]:
                return StoredVersion(version["id"], version["material"], frozenset(Stage(s) for s in version["stages"]))
        return None

    def read_version(self, dest: Destination, version_id: str) -> StoredVersion | None:
        doc = self._load(self.path_of(dest))
        found = self._find(doc, version_id) if doc else None
        if found is None:
            return None
        return StoredVersion(found["id"], found["material"], frozenset(Stage(s) for s in found["stages"]))

    def promote(self, dest: Destination, version_id: str, ctx: SecretContext) -> None:
        path = self.path_of(dest)
        with self._locked(path):
            doc = self._owned(dest, self._load(path), ctx)
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
            self._save(path, doc)

    def retire(self, dest: Destination, version_id: str) -> None:
        path = self.path_of(dest)
        with self._locked(path):
            doc = self._load(path)
            if not doc:
                return
            found = self._find(doc, version_id)
            if found is None:
                return
            if Stage.CURRENT.value in found["stages"]:
                raise StoreConflictError(f"{dest.uri}: version {version_id} is current there and cannot be retired")
            doc["versions"].remove(found)
            self._save(path, doc)

    def delete(self, dest: Destination, key_id: str) -> None:
        path = self.path_of(dest)
        with self._locked(path):
            doc = self._load(path)
            if not doc or doc.get("owner_key_id") != key_id:
                return
            try:
                path.unlink()
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
