"""Builds the secret stores from the settings, on first use of each scheme.

A store is only built when a destination needs it, so a host without Vault
does not need Vault settings; but when a destination does need it and its
settings are wrong, the error names the setting (``ConfigError``) instead of
failing later in a confusing place.
"""

from __future__ import annotations

import threading
from pathlib import Path

from keyops.config import StoreSettings
from keyops.errors import ConfigError
from keyops.stores.base import Destination, SecretStore, parse_destination


class StoreRegistry:
    """Resolves destination URIs to the ``SecretStore`` that serves them.

    ``app.stores.resolve("vault:secret/x")`` -> ``(Destination, SecretStore)``.
    """

    def __init__(self, settings: StoreSettings) -> None:
        self._settings = settings
        self._stores: dict[str, SecretStore] = {}
        self._lock = threading.Lock()

    def parse(self, uri: str) -> Destination:
        return parse_destination(uri)

    def resolve(self, uri: str) -> tuple[Destination, SecretStore]:
        """The destination and its store. A ``file:`` destination outside
        ``stores.file.directory`` is refused here, before the store is built
        (which may create its key file): bad input changes nothing."""
        dest = parse_destination(uri)
        if dest.scheme == "file":
            from keyops.stores.file import confine

            confine(self._file_directory(), dest)
        return dest, self.for_scheme(dest.scheme)

    def _file_directory(self) -> Path:
        return Path(self._settings.file.directory).absolute()

    def __call__(self, uri: str) -> SecretStore:
        return self.resolve(uri)[1]

    def register(self, scheme: str, store: SecretStore) -> None:
        """Use ``store`` for ``scheme`` (an alternative implementation)."""
        with self._lock:
            self._stores[scheme] = store

    def for_scheme(self, scheme: str) -> SecretStore:
        with self._lock:
            store = self._stores.get(scheme)
            if store is None:
                store = self._build(scheme)
                self._stores[scheme] = store
            return store

    def _build(self, scheme: str) -> SecretStore:
        s = self._settings
        if scheme == "file":
            from keyops.stores.file import FileStore, load_key

            directory = self._file_directory()
            key = load_key(s.file.encryption_key, s.file.encryption_key_file, directory, s.file.key_home)
            return FileStore(directory, key.fernet, key_source=key.source)
        if scheme == "vault":
            try:
                from keyops.stores.vault import VaultStore
            except ImportError:
                raise ConfigError("vault: destinations need hvac: pip install 'keyops[vault]'") from None
            v = s.vault
            return VaultStore(
                addr=v.addr,
                token=v.token,
                namespace=v.namespace,
                auth_method=v.auth_method,
                role_id=v.role_id,
                secret_id=v.secret_id,
                approle_mount=v.approle_mount,
                ca_cert=v.ca_cert,
                timeout=v.timeout,
                field=v.field,
                pending_suffix=v.pending_suffix,
                max_versions=v.max_versions,
            )
        if scheme == "aws-sm":
            try:
                from keyops.stores.aws_sm import AwsSecretsManagerStore
            except ImportError:
                raise ConfigError("aws-sm: destinations need boto3: pip install 'keyops[aws]'") from None
            a = s.aws
            return AwsSecretsManagerStore(
                region=a.region,
                endpoint_url=a.endpoint_url,
                profile=a.profile,
                kms_key_id=a.kms_key_id,
                max_attempts=a.max_attempts,
                timeout=a.timeout,
            )
        raise ConfigError(f"no secret store for scheme {scheme!r}")

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
