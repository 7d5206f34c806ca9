"""Helpers for the AWS IAM issuer tests (moto over HTTP): IAM users with an
existing access key, what IAM and a destination hold, and the invariants an
IAM rotation must keep at every moment."""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import select, text

from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.inventory.types import utcnow
from tests.support.servers import MotoServer


def iam_env(env: dict[str, str], aws_env: dict[str, str], moto: MotoServer, **extra: str) -> dict[str, str]:
    full = {**env, **aws_env}
    full.update(
        {
            "KEYOPS_ISSUERS_AWS_IAM_ENDPOINT_URL": moto.endpoint,
            "KEYOPS_ISSUERS_AWS_IAM_REGION": moto.region,
            "KEYOPS_ISSUERS_AWS_IAM_DELETE_HOLD": "30d",
            "KEYOPS_ISSUERS_AWS_IAM_TEST_WAIT": "2s",
            "KEYOPS_ISSUERS_AWS_IAM_MAX_ATTEMPTS": "2",
            "KEYOPS_ROTATION_BACKOFF_INITIAL": "0",
            "KEYOPS_ROTATION_BACKOFF_MAX": "1s",
        }
    )
    full.update(extra)
    return full


def build_app(full_env: dict[str, str]) -> App:
    return build(load_settings(env=full_env))


def new_user(moto: MotoServer) -> tuple[str, dict[str, str]]:
    """An IAM user with one active access key (the key to adopt)."""
    iam = moto.client("iam")
    user = f"deployer-{secrets.token_hex(4)}"
    iam.create_user(UserName=user)
    created = iam.create_access_key(UserName=user)["AccessKey"]
    return user, {"AccessKeyId": created["AccessKeyId"], "SecretAccessKey": created["SecretAccessKey"]}


def iam_keys(moto: MotoServer, user: str) -> dict[str, str]:
    """Access key id -> Active/Inactive, as IAM holds them now."""
    rows = moto.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {r["AccessKeyId"]: r["Status"] for r in rows}


def whoami(moto: MotoServer, doc: dict[str, str]) -> str:
    """The ARN STS names for this key pair (moto answers a default identity for unknown keys)."""
    import boto3

    sts = boto3.client(
        "sts",
        region_name=moto.region,
        endpoint_url=moto.endpoint,
        aws_access_key_id=doc["AccessKeyId"],
        aws_secret_access_key=doc["SecretAccessKey"],
    )
    return str(sts.get_caller_identity()["Arn"])


def served(moto: MotoServer, secret_name: str) -> dict[str, dict[str, str]]:
    """Stage -> credentials document, for each stage the destination serves."""
    sm = moto.client("secretsmanager")
    out: dict[str, dict[str, str]] = {}
    for stage in ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"):
        try:
            value = sm.get_secret_value(SecretId=secret_name, VersionStage=stage)
        except sm.exceptions.ResourceNotFoundException:
            continue
        out[stage] = json.loads(value["SecretString"])
    return out


def versions(app: App, name: str) -> list[models.KeyVersion]:
    with app.sessions() as session:
        key = session.execute(select(models.Key).where(models.Key.name == name)).scalar_one()
        rows = session.execute(
            select(models.KeyVersion).where(models.KeyVersion.key_id == key.id).order_by(models.KeyVersion.number)
        ).scalars()
        result = list(rows)
        session.expunge_all()
        return result


def accepted_ids(app: App, name: str) -> set[str]:
    """Access key ids the inventory says consumers may use now: current, and previous in grace."""
    now = utcnow()
    return {
        v.external_id
        for v in versions(app, name)
        if v.external_id
        and (v.state == "current" or (v.state == "previous" and (v.grace_ends_at is None or v.grace_ends_at > now)))
    }


def assert_iam_invariants(app: App, moto: MotoServer, name: str, user: str, secret_name: str) -> None:
    """Never more than two keys; a working key the inventory accepts; every
    key a destination serves as current exists and works."""
    keys = iam_keys(moto, user)
    assert len(keys) <= 2, keys
    working = {k for k, status in keys.items() if status == "Active"} & accepted_ids(app, name)
    assert working, f"no working key the inventory accepts: iam={keys} inventory={accepted_ids(app, name)}"
    for stage, doc in served(moto, secret_name).items():
        if stage == "AWSPENDING":
            continue
        assert doc["AccessKeyId"] in keys, f"{secret_name} serves {stage} {doc['AccessKeyId']}, deleted at IAM"
        if stage == "AWSCURRENT":
            assert keys[doc["AccessKeyId"]] == "Active", (stage, keys)


def dump_everything(app: App) -> str:
    """Every row of every table, as text (for searching for secrets)."""
    chunks: list[str] = []
    with app.engine.connect() as conn:
        for table in models.Base.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):  # noqa: S608 - our own table names
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


def adopt(app: App, name: str, user: str, dest: str, access_key_id: str | None = None) -> Any:
    from keyops.lifecycle.adopt import AdoptService

    return AdoptService(app.sessions, app.issuers, app.stores).adopt(
        name,
        issuer="aws-iam",
        owner="platform",
        profile="interactive",
        policy="standard",
        actor="test",
        iam_user=user,
        destinations=[dest],
        access_key_id=access_key_id,
    )
