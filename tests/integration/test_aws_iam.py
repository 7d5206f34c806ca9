"""AWS IAM access keys as managed keys, against moto's server over HTTP.

Adopt an IAM user's key, rotate it (the two-key limit in force), end the
grace (deactivated, then deleted after the hold), evict, revoke; missing
users and refused permissions give one clear line naming the AWS action; no
secret access key ever reaches the inventory, the logs or the audit log.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from keyops import audit
from keyops.domain.keyformat import hash_key
from keyops.errors import InvalidInputError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle.adopt import AdoptService
from tests.integration import iam_support as iam
from tests.support.servers import MotoServer


@pytest.fixture
def full_env(env: dict[str, str], aws_env: dict[str, str], moto_server: MotoServer) -> dict[str, str]:
    return iam.iam_env(env, aws_env, moto_server)


def test_adopt_rotate_limit_retire_evict_revoke(
    full_env: dict[str, str], moto_server: MotoServer, store_prefix: str, cli: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user, first = iam.new_user(moto_server)
    secret_name = f"{store_prefix}ci/deployer-credentials"
    name = f"ci/deployer-{store_prefix[1:7]}"
    outputs: list[str] = []

    def run(*args: str) -> tuple[int, str]:
        result = cli(*args, extra_env=full_env)
        outputs.extend([result.stdout, result.stderr])
        return result.code, result.stderr

    # adopt: the existing key is version 1, known by its id only
    code, err = run(
        "keys", "adopt", name, "--issuer", "aws-iam", "--iam-user", user, "--owner", "platform",
        "--policy", "standard", "--dest", f"aws-sm:{secret_name}",
    )  # fmt: skip
    assert code == 0, err
    app = iam.build_app(full_env)
    try:
        [v1] = iam.versions(app, name)
        assert (v1.external_id, v1.secret_hash, v1.state) == (first["AccessKeyId"], None, "current")

        # rotate: AWS mints the second key; the destination serves it; both work during grace
        assert app.rotations.rotate(name, actor="test").ok
        v1, v2 = iam.versions(app, name)
        keys = iam.iam_keys(moto_server, user)
        assert keys == {first["AccessKeyId"]: "Active", v2.external_id: "Active"}
        current = iam.served(moto_server, secret_name)["AWSCURRENT"]
        assert current["AccessKeyId"] == v2.external_id and v2.state == "current" and v1.state == "previous"
        assert v2.secret_hash == hash_key(json.dumps(current))
        assert iam.whoami(moto_server, current).endswith(f":user/{user}")
        second_secret = current["SecretAccessKey"]

        # suspended: its access keys stop working; resumed: they work again
        janitor = app.rotations.janitor
        assert janitor is not None
        app.keys.suspend(name, actor="test", reason="investigating")
        assert [s.error for s in janitor.sweep()] == ["", ""]
        assert iam.iam_keys(moto_server, user) == {first["AccessKeyId"]: "Inactive", v2.external_id: "Inactive"}
        app.keys.resume(name, actor="test")
        janitor.sweep()
        assert iam.iam_keys(moto_server, user) == keys

        # the two-key limit: refused with a clear line, nothing changed
        with app.sessions() as session:
            rotations_before = session.execute(select(func.count()).select_from(models.Rotation)).scalar_one()
        code, err = run("keys", "rotate", name)
        assert code == 5 and "already has two access keys" in err and "--evict-oldest-inactive" in err, err
        assert len(err.strip().splitlines()) == 1
        with app.sessions() as session:
            assert session.execute(select(func.count()).select_from(models.Rotation)).scalar_one() == rotations_before
        assert iam.iam_keys(moto_server, user) == keys

        # grace ends: the old key leaves the store, then goes Inactive (deleted only after the hold)
        later = utcnow() + timedelta(days=2)
        retired = app.rotations.retire_ended_grace(now=later)
        assert [r.ok for r in retired] == [True]
        assert iam.iam_keys(moto_server, user) == {first["AccessKeyId"]: "Inactive", v2.external_id: "Active"}
        iam.assert_iam_invariants(app, moto_server, name, user, secret_name)

        # still two keys: --evict-oldest-inactive deletes the inactive one to make room
        assert app.rotations.rotate(name, actor="test", evict_oldest_inactive=True).ok
        _, _, v3 = iam.versions(app, name)
        assert iam.iam_keys(moto_server, user) == {v2.external_id: "Active", v3.external_id: "Active"}
        third_secret = iam.served(moto_server, secret_name)["AWSCURRENT"]["SecretAccessKey"]

        # revoke: every access key stops working now, and is deleted after the hold
        code, err = run("keys", "revoke", name, "--reason", "decommissioned")
        assert code == 0, err
        assert iam.iam_keys(moto_server, user) == {v2.external_id: "Inactive", v3.external_id: "Inactive"}
        janitor.sweep(now=utcnow() + timedelta(days=31))
        assert iam.iam_keys(moto_server, user) == {}
        with app.sessions() as session:
            actions = session.execute(select(models.AuditEvent.action)).scalars().all()
            assert audit.verify(session) is not None
        assert "key.adopted" in actions and actions.count("key.credential_deleted") >= 2

        # no secret access key in the inventory (any table), the audit log, CLI output or logs
        dump = iam.dump_everything(app)
        keyops_logs = "\n".join(
            r.getMessage() + repr(r.__dict__) for r in caplog.records if r.name.startswith("keyops")
        )
        text_out = "\n".join(outputs) + keyops_logs
        # botocore would log CreateAccessKey's response body at DEBUG: the issuer keeps that logger quiet
        assert logging.getLogger("botocore.parsers").getEffectiveLevel() >= logging.INFO
        for secret in (first["SecretAccessKey"], second_secret, third_secret):
            assert secret not in dump
            assert secret not in text_out
    finally:
        app.close()


def test_missing_user_and_refused_permission_name_the_action(
    full_env: dict[str, str], moto_server: MotoServer, store_prefix: str, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli(
        "keys", "adopt", "ci/ghost", "--iam-user", "no-such-user", "--owner", "platform", extra_env=full_env
    )  # fmt: skip
    assert result.code == 4, result.stderr
    assert result.stderr.count("\n") == 1 and "iam:ListAccessKeys" in result.stderr and "no-such-user" in result.stderr

    # keyops' own AWS identity may list keys but not create them: the rotation fails naming iam:CreateAccessKey
    from moto import settings as moto_settings
    from moto.core.responses import ActionAuthenticatorMixin  # type: ignore[attr-defined]

    iam_client = moto_server.client("iam")
    user, _ = iam.new_user(moto_server)
    operator = f"keyops-limited-{store_prefix[1:7]}"
    iam_client.create_user(UserName=operator)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:GetUser"], "Resource": "*"}],
    }
    iam_client.put_user_policy(UserName=operator, PolicyName="limited", PolicyDocument=json.dumps(policy))
    creds = iam_client.create_access_key(UserName=operator)["AccessKey"]
    app = iam.build_app(full_env)
    try:
        with pytest.raises(InvalidInputError, match="IAM user name"):
            iam.adopt(app, "ci/bad", "bad user!", f"aws-sm:{store_prefix}bad")
        iam.adopt(app, "ci/limited", user, f"aws-sm:{store_prefix}limited")
        with app.sessions.begin() as session:  # no destination: only IAM is exercised
            session.execute(delete(models.Destination))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        app.issuers.close()  # rebuilt with the limited identity
        monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
        result = app.rotations.rotate("ci/limited", actor="test")
        assert result.status == "failed"
        assert "iam:CreateAccessKey" in result.last_error and "AccessDenied" in result.last_error, result.last_error
        assert "\n" not in result.last_error
        monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
        assert len(iam.iam_keys(moto_server, user)) == 1  # nothing minted
    finally:
        app.close()


def test_adopt_refusals_change_nothing(full_env: dict[str, str], moto_server: MotoServer, store_prefix: str) -> None:
    user, first = iam.new_user(moto_server)
    moto_server.client("iam").create_access_key(UserName=user)
    app = iam.build_app(full_env)
    try:
        from keyops.errors import ConflictError, StoreConflictError

        with pytest.raises(InvalidInputError, match="--access-key-id"):
            iam.adopt(app, "ci/two", user, f"aws-sm:{store_prefix}two")
        with pytest.raises(InvalidInputError, match="no access key AKIANOSUCHKEY"):
            iam.adopt(app, "ci/two", user, f"aws-sm:{store_prefix}two", "AKIANOSUCHKEY")
        with pytest.raises(InvalidInputError, match="use --issuer aws-iam"):
            AdoptService(app.sessions, app.issuers, app.stores).adopt(
                "ci/native",
                issuer="native",
                owner="o",
                profile="interactive",
                policy="standard",
                actor="t",
                iam_user=user,
            )
        moto_server.client("secretsmanager").create_secret(Name=f"{store_prefix}foreign", SecretString="x")
        with pytest.raises(StoreConflictError, match="does not own"):
            iam.adopt(app, "ci/two", user, f"aws-sm:{store_prefix}foreign", first["AccessKeyId"])
        iam.adopt(app, "ci/two", user, f"aws-sm:{store_prefix}two", first["AccessKeyId"])
        with pytest.raises(ConflictError, match="already managed"):
            iam.adopt(app, "ci/again", user, f"aws-sm:{store_prefix}again", first["AccessKeyId"])
        assert [k.name for k in app.keys.list()] == ["ci/two"]
        # two active keys and no eviction allowed: the rotation is refused up front
        with pytest.raises(ConflictError, match="two access keys"):
            app.rotations.rotate("ci/two", actor="test")
    finally:
        app.close()
