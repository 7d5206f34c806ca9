"""The ``aws-iam`` issuer: AWS mints IAM access keys; keyops rotates and stores them.

IAM allows two access keys per user, which is exactly the overlap a rotation
needs: the new key is created beside the current one, delivered to the
destinations as the JSON document ``{"AccessKeyId": ..., "SecretAccessKey":
...}``, tested (STS ``GetCallerIdentity`` signed with the new key must name
the user), promoted; when the grace ends the old key is set ``Inactive`` and,
after ``issuers.aws_iam.delete_hold``, deleted.

``issuer_config`` of a key: ``{"iam_user": "<user name>"}``.

Crash safety: the secret access key exists only in the response to
``CreateAccessKey`` (AWS never shows it again) and in this process until a
destination holds it. A crash between ``CreateAccessKey`` and the commit that
records the new key id leaves an *orphan* at AWS; the engine then calls
``mint`` again with ``ctx.minting_since`` set, and keys of the user that the
inventory does not know and that were created since then are deleted first
(they were never delivered anywhere). Keys created before that moment are
never touched, so an adopted user's other keys are safe.

The access key id is not secret (it is in every CloudTrail record); it is the
version's ``external_id`` and ``display_prefix``. The secret access key never
leaves this module except as the material handed to the engine.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from keyops.domain.keyformat import hash_key
from keyops.errors import ConfigError, ConflictError, InvalidInputError, KeyOpsError, NotFoundError, StoreError
from keyops.issuers.base import Issuer, IssuerAuthError, IssuerContext, IssuerUnavailableError, Minted

log = logging.getLogger("keyops.issuers.aws_iam")

_USER_RE = re.compile(r"[\w+=,.@-]{1,64}")
_AUTH_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
}
_RETRYABLE_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceFailure", "ServiceUnavailable"}
#: Clock skew allowed when deciding whether an unknown key was created by a crashed mint.
ORPHAN_SKEW = timedelta(seconds=5)


def translate(exc: Exception, action: str, user: str) -> KeyOpsError:
    """One botocore exception as a one-line keyops error naming the AWS action."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _AUTH_CODES or status in (401, 403):
            return IssuerAuthError(
                f"AWS refused {action} for IAM user {user!r} ({code}): allow keyops' AWS identity {action} on that user"
            )
        if code == "NoSuchEntity":
            return NotFoundError(f"IAM user {user!r} does not exist ({action} answered NoSuchEntity): check --iam-user")
        if code == "LimitExceeded":
            return ConflictError(
                f"IAM user {user!r} already has two access keys ({action} answered LimitExceeded): delete one, "
                f"or rotate with --evict-oldest-inactive"
            )
        if code in _RETRYABLE_CODES or status >= 500:
            return IssuerUnavailableError(f"AWS IAM unavailable during {action} ({code}); retry later")
        return StoreError(f"AWS {action} failed for IAM user {user!r} ({code})")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return IssuerAuthError(
            f"no AWS credentials for {action}: configure the standard chain or issuers.aws_iam.profile"
        )
    if isinstance(
        exc,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectTimeoutError,
        ),
    ):
        return IssuerUnavailableError(f"AWS unreachable during {action}; check issuers.aws_iam.endpoint_url")
    return StoreError(f"AWS {action} failed for IAM user {user!r} ({type(exc).__name__})")


def user_of(config: Mapping[str, Any]) -> str:
    user = config.get("iam_user")
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise InvalidInputError(
            f"IAM user name {str(user)[:80]!r} is not valid: 1-64 letters, digits and +=,.@_- (give --iam-user)"
        )
    return user


def document(access_key_id: str, secret_access_key: str) -> str:
    """The material delivered to destinations (what applications parse)."""
    return json.dumps({"AccessKeyId": access_key_id, "SecretAccessKey": secret_access_key})


def parse_document(material: str) -> tuple[str, str]:
    try:
        doc = json.loads(material)
        return str(doc["AccessKeyId"]), str(doc["SecretAccessKey"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInputError("the stored material is not an AccessKeyId/SecretAccessKey document") from None


class AwsIamIssuer(Issuer):
    name = "aws-iam"

    def __init__(
        self,
        *,
        region: str = "",
        endpoint_url: str = "",
        profile: str = "",
        max_attempts: int = 5,
        timeout: int = 10,
        test_wait: float = 30.0,
        evict_oldest_inactive: bool = False,
    ) -> None:
        try:
            self._session = boto3.session.Session(profile_name=profile or None, region_name=region or None)
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(f"setting issuers.aws_iam.profile: no AWS profile named {profile!r}") from None
        self._endpoint = endpoint_url or None
        self._config = botocore.config.Config(
            retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=timeout, read_timeout=timeout
        )
        self._test_wait = test_wait
        # botocore logs whole response bodies at DEBUG: CreateAccessKey's holds
        # the secret access key. Never let that reach a log (invariant 1).
        logging.getLogger("botocore.parsers").setLevel(max(logging.INFO, logging.getLogger("botocore.parsers").level))
        self._evict_default = evict_oldest_inactive
        try:
            # Clients are thread-safe; the session is not: made once, here.
            self._iam: Any = self._session.client("iam", endpoint_url=self._endpoint, config=self._config)
        except botocore.exceptions.NoRegionError:
            raise ConfigError(
                "no AWS region for the aws-iam issuer: set issuers.aws_iam.region or AWS_REGION"
            ) from None

    @property
    def holds_material(self) -> bool:
        return True

    # -- plumbing ------------------------------------------------------------

    def _call(self, action: str, user: str, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._iam, operation)(**kwargs)
        except Exception as exc:
            raise translate(exc, action, user) from None

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"iam_user": user_of(config)}

    def list_keys(self, user: str) -> list[dict[str, Any]]:
        """The user's access keys (id, status, creation time), oldest first."""
        response = self._call("iam:ListAccessKeys", user, "list_access_keys", UserName=user)
        keys = [
            {"id": str(k["AccessKeyId"]), "status": str(k["Status"]), "created": k["CreateDate"]}
            for k in response.get("AccessKeyMetadata", [])
        ]
        return sorted(keys, key=lambda k: k["created"])

    def check_user(self, user: str) -> None:
        self._call("iam:GetUser", user, "get_user", UserName=user)

    # -- the interface -------------------------------------------------------

    def preflight(self, ctx: IssuerContext) -> None:
        user = user_of(ctx.config)
        self._room(ctx, user, self.list_keys(user), act=False)

    def _room(self, ctx: IssuerContext, user: str, keys: list[dict[str, Any]], *, act: bool) -> None:
        """Make (or, with ``act=False``, check) room for one more key."""
        if len(keys) < 2:
            return
        inactive = [k for k in keys if k["status"] == "Inactive"]
        names = ", ".join(f"{k['id']} ({k['status']})" for k in keys)
        if not (ctx.evict or self._evict_default):
            raise ConflictError(
                f"IAM user {user!r} already has two access keys: {names}; delete one, "
                f"or rotate with --evict-oldest-inactive"
            )
        if not inactive:
            raise ConflictError(
                f"IAM user {user!r} already has two active access keys ({names}); nothing inactive to evict: "
                f"deactivate one first"
            )
        if act:
            victim = inactive[0]["id"]
            log.warning("evicting the oldest inactive access key", extra={"key": ctx.key_name, "access_key_id": victim})
            self._delete(user, victim)

    def mint(self, ctx: IssuerContext) -> Minted:
        user = user_of(ctx.config)
        keys = self.list_keys(user)
        if ctx.minting_since is not None:
            since = ctx.minting_since - ORPHAN_SKEW
            for orphan in [k for k in keys if k["id"] not in ctx.known_ids and k["created"] >= since]:
                log.warning(
                    "deleting an access key minted by a crashed rotation (never delivered)",
                    extra={"key": ctx.key_name, "access_key_id": orphan["id"]},
                )
                self._delete(user, orphan["id"])
                keys.remove(orphan)
        self._room(ctx, user, keys, act=True)
        response = self._call("iam:CreateAccessKey", user, "create_access_key", UserName=user)
        created = response["AccessKey"]
        material = document(str(created["AccessKeyId"]), str(created["SecretAccessKey"]))
        access_key_id = str(created["AccessKeyId"])
        return Minted(
            material=material, secret_hash=hash_key(material), display_prefix=access_key_id, external_id=access_key_id
        )

    def hash(self, material: str) -> str:
        return hash_key(material)

    def test(self, ctx: IssuerContext, material: str) -> None:
        user = user_of(ctx.config)
        access_key_id, secret = parse_document(material)
        sts: Any = self._session.client(
            "sts",
            endpoint_url=self._endpoint,
            config=self._config,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret,
            aws_session_token=None,
        )
        deadline = time.monotonic() + self._test_wait
        delay = 0.5
        while True:
            try:
                arn = str(sts.get_caller_identity()["Arn"])
            except botocore.exceptions.ClientError as exc:
                error = translate(exc, "sts:GetCallerIdentity", user)
                # A new key takes a few seconds to work everywhere (IAM is eventually consistent).
                if not isinstance(error, IssuerAuthError) or time.monotonic() >= deadline:
                    raise error from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception as exc:
                raise translate(exc, "sts:GetCallerIdentity", user) from None
            break
        if not arn.endswith(f"/{user}") or ":user/" not in arn:
            raise StoreError(
                f"the new access key {access_key_id} of {ctx.key_name} authenticates as {arn}, not IAM user {user!r}"
            )

    def deactivate(self, ctx: IssuerContext, external_id: str | None) -> None:
        if not external_id:
            return
        user = user_of(ctx.config)
        try:
            self._call(
                "iam:UpdateAccessKey",
                user,
                "update_access_key",
                UserName=user,
                AccessKeyId=external_id,
                Status="Inactive",
            )
        except NotFoundError:
            return  # already deleted (or the user is gone): nothing works with it any more

    def reactivate(self, ctx: IssuerContext, external_id: str | None) -> None:
        if not external_id:
            return
        user = user_of(ctx.config)
        self._call(
            "iam:UpdateAccessKey", user, "update_access_key", UserName=user, AccessKeyId=external_id, Status="Active"
        )

    def delete(self, ctx: IssuerContext, external_id: str | None) -> None:
        if external_id:
            self._delete(user_of(ctx.config), external_id)

    def _delete(self, user: str, access_key_id: str) -> None:
        try:
            self._call("iam:DeleteAccessKey", user, "delete_access_key", UserName=user, AccessKeyId=access_key_id)
        except NotFoundError:
            return

    def status(self, ctx: IssuerContext) -> dict[str, str]:
        """Access key id -> ``Active``/``Inactive`` for the key's IAM user."""
        return {k["id"]: k["status"] for k in self.list_keys(user_of(ctx.config))}

    def created(self, user: str) -> dict[str, datetime]:
        return {k["id"]: k["created"] for k in self.list_keys(user)}
