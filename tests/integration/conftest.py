"""Fixtures shared by the alert tests: a test PKI (SNS signing certificate,
GitHub's secret-scanning key) and a local HTTPS server that publishes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.unit.alerts import vendors


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> vendors.Pki:
    return vendors.make_pki(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def vendor_server(pki: vendors.Pki) -> Iterator[vendors.LocalServer]:
    server = vendors.LocalServer().start(pki)
    server.routes[urlsplit(vendors.CERT_URL).path] = (200, pki.sns_cert_pem)
    server.routes["/meta/public_keys/secret_scanning"] = (200, vendors.github_meta(pki))
    server.routes["/"] = (200, b"<ConfirmSubscriptionResponse/>")
    yield server
    server.stop()
