"""One contract suite for every SecretStore, over real servers: the file
store, OpenBao through hvac (token and AppRole auth), and moto's AWS Secrets
Manager through boto3. Plus what only one backend has: check-and-set
conflicts, destroyed versions, a policy-limited token, AWS staging labels."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from cryptography.fernet import Fernet

from keyops.domain import keyformat
from keyops.errors import (
    ConfigError,
    InvalidInputError,
    StoreAuthError,
    StoreConflictError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from keyops.stores.aws_sm import AwsSecretsManagerStore
from keyops.stores.base import Destination, SecretContext, SecretStore, Stage, parse_destination
from keyops.stores.file import FileStore
from keyops.stores.vault import VaultStore
from tests.support.servers import MotoServer, OpenBaoServer, keyops_policy

CTX = SecretContext(key_id="01900000-0000-7000-8000-000000000001", key_name="team/contract")
OTHER = SecretContext(key_id="01900000-0000-7000-8000-000000000002", key_name="team/other")


def vid() -> str:
    return f"01900000-{secrets.token_hex(2)}-7000-8000-{secrets.token_hex(6)}"


def material() -> str:
    return keyformat.generate("kops_test").plaintext


@pytest.fixture(params=["file", "vault-token", "vault-approle", "aws-sm"])
def store_and_dest(
    request: pytest.FixtureRequest, tmp_path: Path, store_prefix: str
) -> Iterator[tuple[SecretStore, Destination]]:
    kind = request.param
    if kind == "file":
        store: SecretStore = FileStore(tmp_path / "secrets", Fernet(Fernet.generate_key()))
        yield store, parse_destination(f"file:{store_prefix}contract.key")
        return
    if kind.startswith("vault"):
        bao: OpenBaoServer = request.getfixturevalue("openbao")
        if kind == "vault-token":
            store = VaultStore(addr=bao.addr, token=bao.root_token)
        else:
            bao.write_policy("keyops-contract", keyops_policy(""))
            role_id, secret_id = bao.approle("keyops-contract", ["keyops-contract"])
            store = VaultStore(addr=bao.addr, auth_method="approle", role_id=role_id, secret_id=secret_id)
        yield store, parse_destination(f"vault:secret/{store_prefix}contract")
        store.close()
        return
    moto: MotoServer = request.getfixturevalue("moto_server")
    store = AwsSecretsManagerStore(region=moto.region, endpoint_url=moto.endpoint, max_attempts=2)
    yield store, parse_destination(f"aws-sm:{store_prefix}contract")


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)


# -- the contract ----------------------------------------------------------


def test_missing_secret_reads_as_nothing(store_and_dest: tuple[SecretStore, Destination]) -> None:
    store, dest = store_and_dest
    assert not store.describe(dest).exists
    assert store.read(dest) is None
    assert store.read(dest, Stage.PENDING) is None
    assert store.read_version(dest, vid()) is None
    store.retire(dest, vid())  # no-op
    store.delete(dest, CTX.key_id)  # no-op


def test_full_lifecycle(store_and_dest: tuple[SecretStore, Destination]) -> None:
    store, dest = store_and_dest
    v1, v2, v3 = vid(), vid(), vid()
    m1, m2, m3 = material(), material(), material()
    store.put_initial(dest, v1, m1, CTX)
    store.put_initial(dest, v1, m1, CTX)  # idempotent
    described = store.describe(dest)
    assert described.exists and described.owner_key_id == CTX.key_id and described.current == v1
    current = store.read(dest)
    assert current is not None and current.material == m1 and current.version_id == v1
    assert m1 not in repr(current)

    store.put_pending(dest, v2, m2, CTX)
    store.put_pending(dest, v2, m2, CTX)  # a retried step is a no-op
    assert store.read(dest).material == m1  # type: ignore[union-attr]  # consumers still see the current one
    pending = store.read(dest, Stage.PENDING)
    assert pending is not None and (pending.version_id, pending.material) == (v2, m2)
    assert store.read_version(dest, v2).material == m2  # type: ignore[union-attr]
    with pytest.raises(StoreConflictError):
        store.put_pending(dest, v2, material(), CTX)  # same id, other material

    store.promote(dest, v2, CTX)
    store.promote(dest, v2, CTX)  # idempotent
    described = store.describe(dest)
    assert (described.current, described.previous, described.pending) == (v2, v1, None)
    assert store.read(dest).material == m2  # type: ignore[union-attr]
    assert store.read(dest, Stage.PREVIOUS).material == m1  # type: ignore[union-attr]
    assert store.read(dest, Stage.PENDING) is None

    with pytest.raises(StoreConflictError):
        store.retire(dest, v2)  # never the current one
    store.retire(dest, v1)
    store.retire(dest, v1)  # idempotent
    assert store.read_version(dest, v1) is None
    assert store.read(dest, Stage.PREVIOUS) is None or store.read(dest, Stage.PREVIOUS).version_id != v1  # type: ignore[union-attr]

    # A pending version can be retired (rollback) without touching current.
    store.put_pending(dest, v3, m3, CTX)
    store.retire(dest, v3)
    assert store.read_version(dest, v3) is None
    assert store.read(dest).material == m2  # type: ignore[union-attr]
    with pytest.raises(StoreNotFoundError):
        store.promote(dest, v3, CTX)

    store.delete(dest, OTHER.key_id)  # not the owner: nothing happens
    assert store.describe(dest).exists
    store.delete(dest, CTX.key_id)
    assert not store.describe(dest).exists


def test_foreign_data_is_refused_unless_adopted(store_and_dest: tuple[SecretStore, Destination]) -> None:
    store, dest = store_and_dest
    v1, v2 = vid(), vid()
    store.put_initial(dest, v1, material(), OTHER)
    assert store.describe(dest).holds_foreign_data(CTX.key_id)
    with pytest.raises(StoreConflictError, match="--adopt"):
        store.put_initial(dest, v2, material(), CTX)
    with pytest.raises(StoreConflictError):
        store.put_pending(dest, v2, material(), CTX)
    assert store.read(dest).version_id == v1  # type: ignore[union-attr]  # unchanged
    m2 = material()
    store.put_initial(dest, v2, m2, CTX, adopt=True)
    assert store.describe(dest).owner_key_id == CTX.key_id
    assert store.read(dest).material == m2  # type: ignore[union-attr]
    store.health()


# -- destination parsing ---------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "nope:x",
        "secret/x",
        "vault:",
        "vault:secret",
        "vault:secret//x",
        "vault:secret/../x",
        "vault:secret/x y",
        "aws-sm:",
        "aws-sm:has space",
        "aws-sm:arn:aws:secretsmanager:xx:1:secret:x",
        "file:",
        "file:../escape",
        "file:dir/",
        "vault:secret/x\n",
    ],
)
def test_bad_destinations_are_refused(uri: str) -> None:
    with pytest.raises(InvalidInputError, match="destination"):
        parse_destination(uri)


def test_good_destinations_parse() -> None:
    d = parse_destination("vault:secret/teams/payments/llm-key")
    assert (d.scheme, d.mount, d.path) == ("vault", "secret", "teams/payments/llm-key")
    assert parse_destination("aws-sm:payments/prod-llm").location == "payments/prod-llm"
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:payments/prod-AbCdEf"
    assert parse_destination(f"aws-sm:{arn}").location == arn
    assert parse_destination("file:/var/lib/keyops/a.key").location == "/var/lib/keyops/a.key"


# -- Vault specifics -------------------------------------------------------


def test_vault_wrong_credentials_and_policy_limits(openbao: OpenBaoServer, store_prefix: str) -> None:
    dest = parse_destination(f"vault:secret/{store_prefix}limited")
    bad = VaultStore(addr=openbao.addr, token="not-a-token")
    with pytest.raises(StoreAuthError, match="permission denied"):
        bad.describe(dest)
    with pytest.raises(StoreAuthError):
        VaultStore(addr=openbao.addr, auth_method="approle", role_id="x", secret_id="y").describe(dest)
    # A token that may write but not destroy: retiring fails loudly, nothing else does.
    openbao.write_policy("keyops-nodestroy", keyops_policy(store_prefix, destroy=False))
    limited = VaultStore(addr=openbao.addr, token=openbao.create_token(["keyops-nodestroy"]))
    v1, v2 = vid(), vid()
    limited.put_initial(dest, v1, material(), CTX)
    limited.put_pending(dest, v2, material(), CTX)
    limited.promote(dest, v2, CTX)
    with pytest.raises(StoreAuthError):
        limited.retire(dest, v1)
    # Outside its prefix the same token is refused.
    with pytest.raises(StoreAuthError):
        limited.put_initial(parse_destination("vault:secret/elsewhere/x"), vid(), material(), CTX)
    with pytest.raises(ConfigError, match=r"stores\.vault\.addr"):
        VaultStore(addr="", token="x")
    with pytest.raises(ConfigError, match=r"stores\.vault\.token"):
        VaultStore(addr=openbao.addr, token="")


def test_vault_check_and_set_conflict(openbao: OpenBaoServer, store_prefix: str) -> None:
    store = VaultStore(addr=openbao.addr, token=openbao.root_token)
    dest = parse_destination(f"vault:secret/{store_prefix}cas")
    v1 = vid()
    store.put_initial(dest, v1, material(), CTX)
    # Someone writes between our read and our write: our stale CAS loses.
    client = hvac.Client(url=openbao.addr, token=openbao.root_token)
    client.secrets.kv.v2.create_or_update_secret(path=dest.path, secret={"api_key": "x"}, mount_point="secret")
    with pytest.raises(StoreConflictError, match="check-and-set"):
        store._write(dest.mount, dest.path, {"api_key": "y"}, cas=1)


def test_vault_pending_replaces_a_stale_staging_copy(openbao: OpenBaoServer, store_prefix: str) -> None:
    # put_pending writes create-only first; a staging copy left by an earlier,
    # abandoned rotation makes that write lose, and the store must then look
    # at it and replace it rather than fail or keep the stale material.
    store = VaultStore(addr=openbao.addr, token=openbao.root_token)
    dest = parse_destination(f"vault:secret/{store_prefix}stale")
    v1, stale, fresh = vid(), vid(), vid()
    store.put_initial(dest, v1, material(), CTX)
    store.put_pending(dest, stale, material(), CTX)
    m = material()
    store.put_pending(dest, fresh, m, CTX)
    pending = store.read(dest, Stage.PENDING)
    assert pending is not None and (pending.version_id, pending.material) == (fresh, m)
    assert store.read_version(dest, stale) is None
    store.promote(dest, fresh, CTX)
    assert store.read(dest).material == m  # type: ignore[union-attr]


def test_vault_retired_versions_are_destroyed(openbao: OpenBaoServer, store_prefix: str) -> None:
    store = VaultStore(addr=openbao.addr, token=openbao.root_token, max_versions=5)
    dest = parse_destination(f"vault:secret/{store_prefix}destroy")
    v1, v2 = vid(), vid()
    store.put_initial(dest, v1, material(), CTX)
    store.put_pending(dest, v2, material(), CTX)
    store.promote(dest, v2, CTX)
    store.retire(dest, v1)
    client = hvac.Client(url=openbao.addr, token=openbao.root_token)
    meta = client.secrets.kv.v2.read_secret_metadata(path=dest.path, mount_point="secret")["data"]
    assert meta["versions"]["1"]["destroyed"] is True
    assert meta["max_versions"] == 5
    assert meta["custom_metadata"]["keyops_key_id"] == CTX.key_id
    # The pending staging copy is gone after promotion.
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path=dest.path + "__keyops_pending", mount_point="secret")


def test_vault_outage_is_retryable(openbao: OpenBaoServer, store_prefix: str) -> None:
    store = VaultStore(addr=openbao.addr, token=openbao.root_token)
    dest = parse_destination(f"vault:secret/{store_prefix}outage")
    store.describe(dest)
    with openbao.outage():
        with pytest.raises(StoreUnavailableError) as info:
            store.describe(dest)
        assert info.value.retryable
    store.describe(dest)
    with pytest.raises(StoreUnavailableError):
        VaultStore(addr="http://127.0.0.1:1", token="x", timeout=2).describe(dest)


def test_vault_token_renewal(openbao: OpenBaoServer, store_prefix: str) -> None:
    token = openbao.create_token(["root"], ttl="30s")
    store = VaultStore(addr=openbao.addr, token=token)
    store.describe(parse_destination(f"vault:secret/{store_prefix}renew"))
    assert store._token_deadline is not None
    store._token_deadline = 0  # pretend two thirds of the TTL have passed
    store.describe(parse_destination(f"vault:secret/{store_prefix}renew"))
    assert store._token_deadline > 0 and store._token_ttl > 0


# -- AWS specifics ---------------------------------------------------------


def test_aws_staging_labels_match_aws_rotation(moto_server: MotoServer, store_prefix: str) -> None:
    store = AwsSecretsManagerStore(region=moto_server.region, endpoint_url=moto_server.endpoint, max_attempts=2)
    dest = parse_destination(f"aws-sm:{store_prefix}labels")
    client = moto_server.client()
    v1, v2, v3 = vid(), vid(), vid()
    store.put_initial(dest, v1, material(), CTX)
    store.put_pending(dest, v2, material(), CTX)

    def labels() -> dict[str, list[str]]:
        raw = client.describe_secret(SecretId=dest.location)["VersionIdsToStages"]
        return {k: sorted(v) for k, v in raw.items()}

    assert labels() == {v1: ["AWSCURRENT"], v2: ["AWSPENDING"]}
    store.promote(dest, v2, CTX)
    assert labels() == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}
    store.put_pending(dest, v3, material(), CTX)
    store.promote(dest, v3, CTX)
    assert labels() == {v1: [], v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]}
    store.retire(dest, v2)
    assert labels()[v2] == []
    tags = {t["Key"]: t["Value"] for t in client.describe_secret(SecretId=dest.location)["Tags"]}
    assert tags["keyops:key-id"] == CTX.key_id
    # An application reads the key as it always does. (VersionStage is given
    # because moto, unlike AWS, does not move its default version with the label.)
    read = client.get_secret_value(SecretId=dest.location, VersionStage="AWSCURRENT")
    assert read["SecretString"] == store.read(dest).material  # type: ignore[union-attr]


def test_aws_wrong_credentials_and_outage(moto_server: MotoServer, store_prefix: str) -> None:
    dest = parse_destination(f"aws-sm:{store_prefix}down")
    down = AwsSecretsManagerStore(region="us-east-1", endpoint_url="http://127.0.0.1:1", max_attempts=1, timeout=2)
    with pytest.raises(StoreUnavailableError) as info:
        down.describe(dest)
    assert info.value.retryable
    with pytest.raises(ConfigError, match=r"stores\.aws\.profile"):
        AwsSecretsManagerStore(profile="no-such-profile-here")
