"""HashiCorp Vault / OpenBao KV version 2, through hvac.

Consumers read the latest version of ``<mount>/<path>``, so a pending version
cannot live there: it is kept at a sibling staging path
(``<path>__keyops_pending`` by default, covered by the same policy globs) until
promotion writes it as the new latest version. The previous version is then
simply the version before the latest, which consumers may still read during
the grace period; retiring it *destroys* it (not a soft delete).

Every data write is a check-and-set against the version just read, so two
writers can never silently overwrite each other. keyops' ids go into the
secret's ``custom_metadata`` (owner key id and name), which is also how
foreign data is recognised. Each thread gets its own hvac client (requests
sessions are not safe to share); the token is shared and renewed (token auth)
or re-obtained (AppRole) when a third of its TTL is left.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hvac_errors
import requests

from keyops.errors import (
    ConfigError,
    StoreAuthError,
    StoreConflictError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from keyops.stores.base import Destination, SecretContext, SecretDescription, SecretStore, Stage, StoredVersion

log = logging.getLogger("keyops.stores.vault")
T = TypeVar("T")
VERSION_FIELD = "keyops_version_id"


def translate(exc: Exception, what: str) -> StoreError:
    """One hvac/requests exception as a keyops error (message without material)."""
    detail = type(exc).__name__
    if isinstance(exc, (hvac_errors.Forbidden, hvac_errors.Unauthorized)):
        return StoreAuthError(
            f"Vault refused {what}: permission denied; check stores.vault token/AppRole and its policy"
        )
    if isinstance(exc, hvac_errors.InvalidRequest):
        text = str(exc).lower()
        if "invalid role" in text or "secret id" in text or "permission denied" in text:
            return StoreAuthError(f"Vault refused {what}: check stores.vault.role_id/secret_id (AppRole)")
        if "check-and-set" in text or "cas" in text.split():
            return StoreConflictError(f"Vault check-and-set lost on {what}: it changed concurrently; retry")
        return StoreError(f"Vault rejected {what}: {str(exc).splitlines()[0][:200] if str(exc) else detail}")
    if isinstance(
        exc,
        (
            hvac_errors.VaultDown,
            hvac_errors.InternalServerError,
            hvac_errors.BadGateway,
            hvac_errors.RateLimitExceeded,
            hvac_errors.VaultNotInitialized,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
        ),
    ):
        return StoreUnavailableError(f"Vault unavailable during {what} ({detail}); check stores.vault.addr and retry")
    if isinstance(exc, hvac_errors.InvalidPath):
        return StoreNotFoundError(f"Vault has nothing at {what}")
    return StoreError(f"Vault failed during {what} ({detail})")


class VaultStore(SecretStore):
    scheme = "vault"

    def __init__(
        self,
        *,
        addr: str,
        token: str = "",
        namespace: str = "",
        auth_method: str = "token",
        role_id: str = "",
        secret_id: str = "",
        approle_mount: str = "approle",
        ca_cert: str = "",
        timeout: int = 10,
        field: str = "api_key",
        pending_suffix: str = "__keyops_pending",
        max_versions: int = 10,
    ) -> None:
        if not addr:
            raise ConfigError("setting stores.vault.addr (or VAULT_ADDR) is empty: a vault: destination needs it")
        if auth_method == "token" and not token:
            raise ConfigError("setting stores.vault.token (or VAULT_TOKEN) is empty: token auth needs it")
        if auth_method == "approle" and not (role_id and secret_id):
            raise ConfigError("settings stores.vault.role_id and stores.vault.secret_id are needed for AppRole auth")
        if max_versions < 2:
            raise ConfigError("setting stores.vault.max_versions must be at least 2 (current and previous)")
        self._addr = addr
        self._namespace = namespace or None
        # requests re-reads the environment (proxies, CA bundle, ~/.netrc) on
        # every call, a measurable share of a rotation's CPU; keyops reads it
        # once, with the same meaning (HTTPS_PROXY/NO_PROXY, REQUESTS_CA_BUNDLE).
        self._verify: bool | str = (
            ca_cert or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._proxies = requests.utils.get_environ_proxies(addr)
        self._timeout = timeout
        self._auth_method = auth_method
        self._role_id = role_id
        self._secret_id = secret_id
        self._approle_mount = approle_mount
        self._field = field
        self._suffix = pending_suffix
        self._max_versions = max_versions
        self._token = token
        self._token_deadline: float | None = None  # monotonic time to renew at
        self._token_ttl = 0
        self._auth_lock = threading.Lock()
        self._local = threading.local()
        self._authenticated = False

    # -- clients and tokens --------------------------------------------------

    def _new_client(self) -> hvac.Client:
        session = requests.Session()
        session.trust_env = False  # read once in __init__
        session.proxies.update(self._proxies)
        return hvac.Client(
            url=self._addr,
            token=self._token or None,
            namespace=self._namespace,
            verify=self._verify,
            timeout=self._timeout,
            session=session,
        )

    def _login(self) -> None:
        """Obtain (AppRole) or look up (token) the token and when to renew it."""
        client = self._new_client()
        if self._auth_method == "approle":
            response = client.auth.approle.login(
                role_id=self._role_id, secret_id=self._secret_id, mount_point=self._approle_mount
            )
            auth = response["auth"]
            self._token = auth["client_token"]
            ttl = int(auth.get("lease_duration") or 0)
        else:
            ttl = int(client.auth.token.lookup_self()["data"].get("ttl") or 0)
        self._token_ttl = ttl
        self._token_deadline = time.monotonic() + ttl * 2 / 3 if ttl > 0 else None
        self._authenticated = True

    def renew_token(self) -> None:
        """Renew a token (or log in again with AppRole) before it expires;
        long-running daemons call this through every operation."""
        with self._auth_lock:
            try:
                if self._authenticated and self._auth_method == "token":
                    response = self._new_client().auth.token.renew_self()
                    ttl = int(response["auth"].get("lease_duration") or 0)
                    self._token_ttl = ttl
                    self._token_deadline = time.monotonic() + ttl * 2 / 3 if ttl > 0 else None
                else:
                    self._login()
            except Exception as exc:
                raise translate(exc, "authentication") from None
            self._local.__dict__.clear()

    def _client(self) -> hvac.Client:
        if not self._authenticated or (self._token_deadline is not None and time.monotonic() >= self._token_deadline):
            with self._auth_lock:
                needs = not self._authenticated or (
                    self._token_deadline is not None and time.monotonic() >= self._token_deadline
                )
            if needs:
                self.renew_token()
        client: hvac.Client | None = getattr(self._local, "client", None)
        if client is None or client.token != self._token:
            client = self._new_client()
            self._local.client = client
        return client

    def _call(self, what: str, fn: Callable[[hvac.Client], T]) -> T:
        try:
            return fn(self._client())
        except StoreError:
            raise
        except Exception as exc:
            raise translate(exc, what) from None

    # -- raw KV helpers ------------------------------------------------------

    def _metadata(self, mount: str, path: str) -> dict[str, Any] | None:
        def run(c: hvac.Client) -> dict[str, Any] | None:
            try:
                return dict(c.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"])
            except hvac_errors.InvalidPath:
                return None

        return self._call(f"{mount}/{path} (metadata)", run)

    def _data(self, mount: str, path: str, version: int | None = None) -> dict[str, Any] | None:
        return self._read(mount, path, version)[0]

    def _read(
        self, mount: str, path: str, version: int | None = None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """One read: the version's data and its metadata (``version`` number,
        ``custom_metadata``), so callers need no separate metadata call."""

        def run(c: hvac.Client) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            try:
                response = c.secrets.kv.v2.read_secret_version(
                    path=path, version=version, mount_point=mount, raise_on_deleted_version=False
                )
            except hvac_errors.InvalidPath:
                return None, None
            body = response.get("data") or {}
            data, meta = body.get("data"), body.get("metadata")
            return (dict(data) if isinstance(data, dict) else None), (dict(meta) if isinstance(meta, dict) else None)

        return self._call(f"{mount}/{path}", run)

    def _write(self, mount: str, path: str, data: dict[str, Any], cas: int) -> None:
        self._call(
            f"{mount}/{path} (write)",
            lambda c: c.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=cas, mount_point=mount),
        )

    def _set_metadata(self, mount: str, path: str, ctx: SecretContext) -> None:
        custom = {"keyops_key_id": ctx.key_id, "keyops_key_name": ctx.key_name, "managed_by": "keyops"}
        self._call(
            f"{mount}/{path} (metadata write)",
            lambda c: c.secrets.kv.v2.update_metadata(
                path=path, max_versions=self._max_versions, mount_point=mount, custom_metadata=custom
            ),
        )

    @staticmethod
    def _owner(meta: dict[str, Any] | None) -> str | None:
        if not meta:
            return None
        custom = meta.get("custom_metadata") or {}
        owner = custom.get("keyops_key_id")
        return str(owner) if owner else None

    @staticmethod
    def _live_versions(meta: dict[str, Any]) -> list[int]:
        """KV version numbers not deleted or destroyed, newest first."""
        live = []
        for number, info in (meta.get("versions") or {}).items():
            if not info.get("destroyed") and not info.get("deletion_time"):
                live.append(int(number))
        return sorted(live, reverse=True)

    def _check_owner(self, dest: Destination, meta: dict[str, Any] | None, ctx: SecretContext) -> None:
        if meta is not None and meta.get("current_version") and self._owner(meta) != ctx.key_id:
            raise StoreConflictError(
                f"{dest.uri} holds data keyops does not own for key {ctx.key_name}; "
                f"pick another destination or adopt it with --adopt"
            )

    def _stored(self, data: dict[str, Any] | None, stages: frozenset[Stage]) -> StoredVersion | None:
        if not data or self._field not in data:
            return None
        # Written by someone else (no keyops version id): reported with an
        # empty id, so reconcile sees "changed" rather than "missing".
        return StoredVersion(str(data.get(VERSION_FIELD, "")), str(data[self._field]), stages)

    # -- the interface -------------------------------------------------------

    def describe(self, dest: Destination) -> SecretDescription:
        mount, path = dest.mount, dest.path
        meta = self._metadata(mount, path)
        stages: dict[Stage, str] = {}
        versions: list[str] = []
        pending = self._stored(self._data(mount, path + self._suffix), frozenset({Stage.PENDING}))
        if pending is not None:
            stages[Stage.PENDING] = pending.version_id
            versions.append(pending.version_id)
        if meta is None or not meta.get("current_version"):
            return SecretDescription(
                exists=pending is not None, owner_key_id=self._owner(meta), stages=stages, versions=tuple(versions)
            )
        latest = int(meta["current_version"])
        for number in self._live_versions(meta):
            stored = self._stored(self._data(mount, path, number), frozenset())
            if stored is None:
                continue
            if stored.version_id:
                versions.append(stored.version_id)
            if number == latest:
                stages[Stage.CURRENT] = stored.version_id
            elif Stage.PREVIOUS not in stages and Stage.CURRENT in stages:
                stages[Stage.PREVIOUS] = stored.version_id
        return SecretDescription(exists=True, owner_key_id=self._owner(meta), stages=stages, versions=tuple(versions))

    def put_initial(
        self, dest: Destination, version_id: str, material: str, ctx: SecretContext, *, adopt: bool = False
    ) -> None:
        mount, path = dest.mount, dest.path
        meta = self._metadata(mount, path)
        if not adopt:
            self._check_owner(dest, meta, ctx)
        latest = int(meta.get("current_version") or 0) if meta else 0
        if latest and self._owner(meta) == ctx.key_id:
            current = self._stored(self._data(mount, path), frozenset())
            if current is not None and current.version_id == version_id:
                return
        # Metadata first: a crash between the two writes leaves an empty secret
        # marked as ours, never our material in a secret that looks foreign.
        self._set_metadata(mount, path, ctx)
        self._write(mount, path, {self._field: material, VERSION_FIELD: version_id}, cas=latest)

    def put_pending(self, dest: Destination, version_id: str, material: str, ctx: SecretContext) -> None:
        mount, path = dest.mount, dest.path
        self._check_owner(dest, self._metadata(mount, path), ctx)
        staging = path + self._suffix
        record = {self._field: material, VERSION_FIELD: version_id}
        try:
            # Optimistic: promotion deletes the staging path, so it is almost
            # always absent and a create-only write (cas=0) is the one request
            # needed. If something is there, look at it before writing over it.
            self._write(mount, staging, record, cas=0)
            return
        except StoreConflictError:
            pass
        data, staged_meta = self._read(mount, staging)
        existing = self._stored(data, frozenset())
        if existing is not None and existing.version_id == version_id:
            if existing.material != material:
                raise StoreConflictError(f"{dest.uri} already holds pending version {version_id} with other material")
            return
        # The staging path needs no metadata of its own: ownership is the
        # main path's, and promotion deletes the staging copy entirely.
        cas = int(staged_meta.get("version") or 0) if staged_meta else 0
        self._write(mount, staging, record, cas=cas)

    def read(self, dest: Destination, stage: Stage = Stage.CURRENT) -> StoredVersion | None:
        mount, path = dest.mount, dest.path
        if stage is Stage.PENDING:
            return self._stored(self._data(mount, path + self._suffix), frozenset({Stage.PENDING}))
        if stage is Stage.CURRENT:
            return self._stored(self._data(mount, path), frozenset({Stage.CURRENT}))
        meta = self._metadata(mount, path)
        if not meta or not meta.get("current_version"):
            return None
        older = [n for n in self._live_versions(meta) if n < int(meta["current_version"])]
        return self._stored(self._data(mount, path, older[0]), frozenset({Stage.PREVIOUS})) if older else None

    def read_version(self, dest: Destination, version_id: str) -> StoredVersion | None:
        if not version_id:
            return None
        pending = self.read(dest, Stage.PENDING)
        if pending is not None and pending.version_id == version_id:
            return pending
        mount, path = dest.mount, dest.path
        meta = self._metadata(mount, path)
        if not meta:
            return None
        latest = int(meta.get("current_version") or 0)
        for number in self._live_versions(meta):
            stored = self._stored(self._data(mount, path, number), frozenset())
            if stored is not None and stored.version_id == version_id:
                stage = Stage.CURRENT if number == latest else Stage.PREVIOUS
                return StoredVersion(stored.version_id, stored.material, frozenset({stage}))
        return None

    def promote(self, dest: Destination, version_id: str, ctx: SecretContext) -> None:
        mount, path = dest.mount, dest.path
        staging = path + self._suffix
        data, version_meta = self._read(mount, path)
        latest = int(version_meta.get("version") or 0) if version_meta else 0
        owner = self._owner(version_meta)
        if latest and owner != ctx.key_id:
            raise StoreConflictError(
                f"{dest.uri} holds data keyops does not own for key {ctx.key_name}; "
                f"pick another destination or adopt it with --adopt"
            )
        current = self._stored(data, frozenset())
        if current is None or current.version_id != version_id:
            pending = self._stored(self._data(mount, staging), frozenset())
            if pending is None or pending.version_id != version_id:
                raise StoreNotFoundError(f"{dest.uri} holds no pending version {version_id} to promote")
            if owner != ctx.key_id:
                self._set_metadata(mount, path, ctx)
            self._write(mount, path, {self._field: pending.material, VERSION_FIELD: version_id}, cas=latest)
        # The staging copy is no longer needed; destroying it is idempotent.
        self._call(
            f"{mount}/{staging} (delete)",
            lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(path=staging, mount_point=mount),
        )

    def retire(self, dest: Destination, version_id: str) -> None:
        if not version_id:
            return
        mount, path = dest.mount, dest.path
        staging = path + self._suffix
        pending = self._stored(self._data(mount, staging), frozenset())
        if pending is not None and pending.version_id == version_id:
            self._call(
                f"{mount}/{staging} (delete)",
                lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(path=staging, mount_point=mount),
            )
            return
        meta = self._metadata(mount, path)
        if not meta:
            return
        latest = int(meta.get("current_version") or 0)
        for number in self._live_versions(meta):
            stored = self._stored(self._data(mount, path, number), frozenset())
            if stored is not None and stored.version_id == version_id:
                if number == latest:
                    raise StoreConflictError(f"{dest.uri}: version {version_id} is current there and cannot be retired")
                self._call(
                    f"{mount}/{path} (destroy)",
                    lambda c, n=number: c.secrets.kv.v2.destroy_secret_versions(  # type: ignore[misc]
                        path=path, versions=[n], mount_point=mount
                    ),
                )

    def delete(self, dest: Destination, key_id: str) -> None:
        mount, path = dest.mount, dest.path
        if self._owner(self._metadata(mount, path)) != key_id:
            return
        for target in (path + self._suffix, path):
            self._call(
                f"{mount}/{target} (delete)",
                lambda c, t=target: c.secrets.kv.v2.delete_metadata_and_all_versions(  # type: ignore[misc]
                    path=t, mount_point=mount
                ),
            )

    def health(self) -> None:
        def run(c: hvac.Client) -> None:
            c.auth.token.lookup_self()

        self._call("health check", run)

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.adapter.close()
