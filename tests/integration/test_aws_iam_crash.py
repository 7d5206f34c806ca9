"""Crash at every step of an IAM rotation, then resume (moto over HTTP).

The worker "dies" right after each persisted step (and once between
``CreateAccessKey`` and the commit that records the new key id): an exception
no keyops code catches leaves the database exactly as a killed process would,
since every step commits before its checkpoint. At the crash and after the
resume: never more than two access keys, always a working key the inventory
accepts, never a destination serving a key IAM no longer has; after the
resume exactly the adopted key and one new key exist (orphans from the crash
are gone), and the grace end and hold retire the old one cleanly.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from keyops.domain.keyformat import hash_key
from keyops.inventory.types import utcnow
from keyops.issuers.aws_iam import AwsIamIssuer
from keyops.issuers.base import IssuerContext, Minted
from tests.integration import iam_support as iam
from tests.support.crash import kill_rotations_at
from tests.support.databases import sqlite_url
from tests.support.servers import MotoServer

LABELS = [
    "minting",
    "after_create",
    "material_created",
    "pending:DEST",
    "pending",
    "tested",
    "activated",
    "promoted:DEST",
    "promoted",
    "finished",
]


class Crash(BaseException):
    """The worker dies here (nothing in keyops catches a BaseException)."""


class CrashingIssuer(AwsIamIssuer):
    """The real issuer, dying once right after AWS created the key."""

    armed = False

    def mint(self, ctx: IssuerContext) -> Minted:
        minted = super().mint(ctx)
        if self.armed:
            self.armed = False
            raise Crash("after CreateAccessKey")
        return minted


def test_crash_at_every_step_then_resume(
    env: dict[str, str], aws_env: dict[str, str], moto_server: MotoServer, store_prefix: str
) -> None:
    app = iam.build_app(iam.iam_env(env, aws_env, moto_server))
    issuer = CrashingIssuer(region=moto_server.region, endpoint_url=moto_server.endpoint, max_attempts=2, test_wait=2)
    app.issuers.register(issuer)
    try:
        for index, label in enumerate(LABELS):
            user, first = iam.new_user(moto_server)
            name, secret = f"ci/crash-{index}", f"{store_prefix}crash-{index}"
            iam.adopt(app, name, user, f"aws-sm:{secret}")
            target = label.replace("DEST", f"aws-sm:{secret}")

            def checkpoint(rotation_id: str, step: str, target: str = target) -> None:
                if step == target:
                    raise Crash(step)

            issuer.armed = label == "after_create"
            app.rotations.checkpoint = None if issuer.armed else checkpoint
            with pytest.raises(Crash):
                app.rotations.rotate(name, actor="test", grace_seconds=3600)
            app.rotations.checkpoint = None
            iam.assert_iam_invariants(app, moto_server, name, user, secret)

            results = app.rotations.resume(only_expired_leases=False)
            assert all(r.ok for r in results), (label, [(r.status, r.last_error) for r in results])
            iam.assert_iam_invariants(app, moto_server, name, user, secret)
            v1, v2 = iam.versions(app, name)
            assert (v1.state, v2.state) == ("previous", "current"), label
            assert iam.iam_keys(moto_server, user) == {first["AccessKeyId"]: "Active", v2.external_id: "Active"}, label
            current = iam.served(moto_server, secret)["AWSCURRENT"]
            assert current["AccessKeyId"] == v2.external_id and v2.secret_hash == hash_key(json.dumps(current))
            assert iam.whoami(moto_server, current).endswith(f":user/{user}")

            app.rotations.retire_ended_grace(now=utcnow() + timedelta(days=2))
            iam.assert_iam_invariants(app, moto_server, name, user, secret)
            assert iam.iam_keys(moto_server, user)[first["AccessKeyId"]] == "Inactive", label
            assert app.rotations.janitor is not None
            app.rotations.janitor.sweep(now=utcnow() + timedelta(days=31))
            iam.assert_iam_invariants(app, moto_server, name, user, secret)
            assert iam.iam_keys(moto_server, user) == {v2.external_id: "Active"}, label
    finally:
        app.close()


def test_sigkill_at_each_step_then_resume(
    base_env: dict[str, str], aws_env: dict[str, str], moto_server: MotoServer, store_prefix: str, tmp_path: Path
) -> None:
    env = {**base_env, "KEYOPS_DATABASE_URL": sqlite_url(tmp_path)}
    full = iam.iam_env(env, aws_env, moto_server)
    app = iam.build_app(full)
    try:
        jobs = []
        for index, label in enumerate(["minting", "material_created", "pending:DEST", "tested", "promoted:DEST"]):
            user, first = iam.new_user(moto_server)
            name, secret = f"ci/kill-{index}", f"{store_prefix}kill-{index}"
            iam.adopt(app, name, user, f"aws-sm:{secret}")
            jobs.append((name, label.replace("DEST", f"aws-sm:{secret}"), user, first["AccessKeyId"], secret))
        kill_rotations_at(full, [(j[0], j[1]) for j in jobs])
        for name, _, user, _, secret in jobs:
            iam.assert_iam_invariants(app, moto_server, name, user, secret)

        results = app.rotations.resume(worker_id="restarted", only_expired_leases=False)
        assert sorted(r.key_name for r in results) == sorted(j[0] for j in jobs)
        assert all(r.ok for r in results), [(r.key_name, r.last_error) for r in results]
        for name, label, user, old, secret in jobs:
            iam.assert_iam_invariants(app, moto_server, name, user, secret)
            _, v2 = iam.versions(app, name)
            assert iam.iam_keys(moto_server, user) == {old: "Active", v2.external_id: "Active"}, label
            assert iam.served(moto_server, secret)["AWSCURRENT"]["AccessKeyId"] == v2.external_id
    finally:
        app.close()
