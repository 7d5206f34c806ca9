"""Issuers: who mints a key's material (``base.Issuer``; ``native``, ``aws-iam``).

``IssuerRegistry`` builds each issuer on first use from the settings, so a
host that manages no cloud keys needs no AWS settings, and ``context_of``
turns an inventory row into the ``IssuerContext`` an issuer needs.
"""

from __future__ import annotations

import threading
from datetime import datetime

from keyops.config import Settings
from keyops.domain.durations import parse_duration
from keyops.errors import ConfigError, InvalidInputError
from keyops.inventory import models
from keyops.issuers.base import Issuer, IssuerContext, Minted

__all__ = ["ISSUERS", "Issuer", "IssuerContext", "IssuerRegistry", "Minted", "NativeOnly", "context_of"]
ISSUERS = ("native", "aws-iam")


def context_of(key: models.Key, *, minting_since: datetime | None = None, evict: bool = False) -> IssuerContext:
    """The issuer's view of ``key`` (its versions must be loaded)."""
    return IssuerContext(
        key_id=key.id,
        key_name=key.name,
        config=dict(key.issuer_config or {}),
        known_ids=frozenset(v.external_id for v in key.versions if v.external_id),
        minting_since=minting_since,
        evict=evict,
    )


class NativeOnly:
    """The registry of an engine built without ``bootstrap`` (unit tests):
    native keys only."""

    def __init__(self, prefix: str) -> None:
        from keyops.issuers.native import NativeIssuer

        self._native = NativeIssuer(prefix)

    def get(self, name: str) -> Issuer:
        if name != "native":
            raise ConfigError(f"no {name} issuer in this build: build the application with keyops.bootstrap")
        return self._native


class IssuerRegistry:
    """``app.issuers``: ``get("aws-iam")`` -> the ``Issuer``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._issuers: dict[str, Issuer] = {}
        self._lock = threading.Lock()
        self.delete_hold = float(parse_duration(settings.issuers.aws_iam.delete_hold))

    def register(self, issuer: Issuer) -> None:
        """Use ``issuer`` for its name (tests, alternative implementations)."""
        with self._lock:
            self._issuers[issuer.name] = issuer

    def get(self, name: str) -> Issuer:
        if name not in ISSUERS:
            raise InvalidInputError(f"unknown issuer {name!r}: use one of {', '.join(ISSUERS)}")
        with self._lock:
            issuer = self._issuers.get(name)
            if issuer is None:
                issuer = self._build(name)
                self._issuers[name] = issuer
            return issuer

    def _build(self, name: str) -> Issuer:
        if name == "native":
            from keyops.issuers.native import NativeIssuer

            return NativeIssuer(self._settings.keys.prefix)
        try:
            from keyops.issuers.aws_iam import AwsIamIssuer
        except ImportError:
            raise ConfigError("the aws-iam issuer needs boto3: pip install 'keyops[aws]'") from None
        iam = self._settings.issuers.aws_iam
        return AwsIamIssuer(
            region=iam.region or self._settings.stores.aws.region,
            endpoint_url=iam.endpoint_url,
            profile=iam.profile,
            max_attempts=iam.max_attempts,
            timeout=iam.timeout,
            test_wait=float(parse_duration(iam.test_wait)),
            evict_oldest_inactive=iam.evict_oldest_inactive,
        )

    def close(self) -> None:
        with self._lock:
            for issuer in self._issuers.values():
                issuer.close()
            self._issuers.clear()
