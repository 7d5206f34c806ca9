"""Secret stores: where key material is delivered (Vault KV v2, AWS Secrets
Manager, a local encrypted file). ``base`` holds the interface every store
implements; ``registry`` builds them from the settings."""

from keyops.stores.base import (
    Destination,
    SecretContext,
    SecretDescription,
    SecretStore,
    Stage,
    StoredVersion,
    parse_destination,
)

__all__ = [
    "Destination",
    "SecretContext",
    "SecretDescription",
    "SecretStore",
    "Stage",
    "StoredVersion",
    "parse_destination",
]
