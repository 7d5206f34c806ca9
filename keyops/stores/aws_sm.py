"""AWS Secrets Manager through boto3, with the staging labels used exactly as
AWS's own rotation uses them.

* pending: ``PutSecretValue(ClientRequestToken=<keyops version id>,
  VersionStages=["AWSPENDING"])``; the token makes a retried put a no-op
  (AWS answers success for the same token and value).
* promote: ``UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId=new,
  RemoveFromVersionId=old)``; AWS moves ``AWSPREVIOUS`` to the old version
  itself. Then ``AWSPENDING`` is removed from the new version, as the rotation
  service does when it finishes.
* retire: the version loses its last label (``AWSPREVIOUS``/``AWSPENDING``);
  AWS deprecates and later deletes unlabelled versions.

The ``SecretString`` is the key itself, so applications read it unchanged.
Tags carry keyops' ids (``keyops:key-id``, ``keyops:key-name``), which is also
how foreign secrets are recognised. Throttling and connection errors are
retried by botocore's "standard" retry mode (exponential backoff with jitter)
up to ``stores.aws.max_attempts``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from keyops.errors import (
    ConfigError,
    StoreAuthError,
    StoreConflictError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from keyops.stores.base import Destination, SecretContext, SecretDescription, SecretStore, Stage, StoredVersion

log = logging.getLogger("keyops.stores.aws_sm")
TAG_KEY_ID = "keyops:key-id"
TAG_KEY_NAME = "keyops:key-name"

_AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "AccessDenied",
    "KMSAccessDeniedException",
}
_RETRYABLE_CODES = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
}


def translate(exc: Exception, what: str) -> StoreError:
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _AUTH_CODES or status in (401, 403):
            return StoreAuthError(f"AWS Secrets Manager refused {what} ({code}); check the AWS credentials and policy")
        if code in _RETRYABLE_CODES or status >= 500:
            return StoreUnavailableError(f"AWS Secrets Manager unavailable during {what} ({code}); retry later")
        if code == "ResourceNotFoundException":
            return StoreNotFoundError(f"AWS Secrets Manager has no secret for {what}")
        if code in ("ResourceExistsException", "InvalidRequestException"):
            return StoreConflictError(f"AWS Secrets Manager refused {what} ({code}): it conflicts with what is there")
        return StoreError(f"AWS Secrets Manager failed during {what} ({code})")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StoreAuthError("no AWS credentials found: configure the standard chain or stores.aws.profile")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return StoreError("no AWS region: set stores.aws.region or AWS_REGION")
    if isinstance(
        exc,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectTimeoutError,
        ),
    ):
        return StoreUnavailableError(f"AWS Secrets Manager unreachable during {what}; check stores.aws.endpoint_url")
    return StoreError(f"AWS Secrets Manager failed during {what} ({type(exc).__name__})")


class AwsSecretsManagerStore(SecretStore):
    scheme = "aws-sm"

    def __init__(
        self,
        *,
        region: str = "",
        endpoint_url: str = "",
        profile: str = "",
        kms_key_id: str = "",
        max_attempts: int = 8,
        timeout: int = 10,
    ) -> None:
        try:
            session = boto3.session.Session(profile_name=profile or None, region_name=region or None)
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(f"setting stores.aws.profile: no AWS profile named {profile!r}") from None
        config = botocore.config.Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
            max_pool_connections=64,
        )
        try:
            # boto3 clients are thread-safe (sessions are not): one client, made here.
            self._client: Any = session.client("secretsmanager", endpoint_url=endpoint_url or None, config=config)
        except botocore.exceptions.NoRegionError:
            raise ConfigError("no AWS region for aws-sm: destinations: set stores.aws.region or AWS_REGION") from None
        self._kms_key_id = kms_key_id or None
        self._lock = threading.Lock()

    def _call(self, what: str, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(**kwargs)
        except Exception as exc:
            raise translate(exc, what) from None

    def _describe_raw(self, dest: Destination) -> dict[str, Any] | None:
        try:
            return dict(self._client.describe_secret(SecretId=dest.location))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise translate(exc, f"{dest.uri} (describe)") from None
        except Exception as exc:
            raise translate(exc, f"{dest.uri} (describe)") from None

    @staticmethod
    def _owner(raw: dict[str, Any] | None) -> str | None:
        if raw is None:
            return None
        tags = {t["Key"]: t["Value"] for t in raw.get("Tags") or []}
        return tags.get(TAG_KEY_ID)

    @staticmethod
    def _tags(ctx: SecretContext) -> list[dict[str, str]]:
        return [{"Key": TAG_KEY_ID, "Value": ctx.key_id}, {"Key": TAG_KEY_NAME, "Value": ctx.key_name}]

    def _check_owner(self, dest: Destination, raw: dict[str, Any] | None, ctx: SecretContext) -> None:
        if raw is not None and self._owner(raw) != ctx.key_id:
            raise StoreConflictError(
                f"{dest.uri} holds data keyops does not own for key {ctx.key_name}; "
                f"pick another destination or adopt it with --adopt"
            )

    @staticmethod
    def _stages(raw: dict[str, Any]) -> dict[str, list[str]]:
        return {str(k): list(v) for k, v in (raw.get("VersionIdsToStages") or {}).items()}

    def _create(self, dest: Destination, version_id: str, material: str, ctx: SecretContext) -> None:
        kwargs: dict[str, Any] = {
            "Name": dest.location,
            "ClientRequestToken": version_id,
            "SecretString": material,
            "Tags": self._tags(ctx),
            "Description": f"keyops key {ctx.key_name}",
        }
        if self._kms_key_id:
            kwargs["KmsKeyId"] = self._kms_key_id
        self._call(f"{dest.uri} (create)", "create_secret", **kwargs)

    # -- the interface -------------------------------------------------------

    def describe(self, dest: Destination) -> SecretDescription:
        raw = self._describe_raw(dest)
        if raw is None or raw.get("DeletedDate"):
            return SecretDescription(exists=False)
        stages: dict[Stage, str] = {}
        versions = []
        for vid, labels in self._stages(raw).items():
            known = [Stage(label) for label in labels if label in {s.value for s in Stage}]
            if known:
                versions.append(vid)
            for stage in known:
                stages[stage] = vid
        return SecretDescription(exists=True, owner_key_id=self._owner(raw), stages=stages, versions=tuple(versions))

    def put_initial(
        self, dest: Destination, version_id: str, material: str, ctx: SecretContext, *, adopt: bool = False
    ) -> None:
        raw = self._describe_raw(dest)
        if raw is None:
            self._create(dest, version_id, material, ctx)
            return
        if not adopt:
            self._check_owner(dest, raw, ctx)
        if "AWSCURRENT" in self._stages(raw).get(version_id, []):
            return
        self._call(
            f"{dest.uri} (put)",
            "put_secret_value",
            SecretId=dest.location,
            ClientRequestToken=version_id,
            SecretString=material,
            VersionStages=["AWSCURRENT"],
        )
        self._call(f"{dest.uri} (tag)", "tag_resource", SecretId=dest.location, Tags=self._tags(ctx))

    def put_pending(self, dest: Destination, version_id: str, material: str, ctx: SecretContext) -> None:
        raw = self._describe_raw(dest)
        if raw is None:
            # AWS makes a new secret's first version AWSCURRENT, so a missing
            # secret (deleted out of band) gets the pending version as current:
            # the inventory already knows its hash, so consumers are not broken.
            self._create(dest, version_id, material, ctx)
            return
        self._check_owner(dest, raw, ctx)
        labels = self._stages(raw).get(version_id)
        if labels is not None and ("AWSPENDING" in labels or "AWSCURRENT" in labels):
            existing = self.read_version(dest, version_id)
            if existing is not None and existing.material != material:
                raise StoreConflictError(f"{dest.uri} already holds version {version_id} with other material")
            return
        self._call(
            f"{dest.uri} (put pending)",
            "put_secret_value",
            SecretId=dest.location,
            ClientRequestToken=version_id,
            SecretString=material,
            VersionStages=["AWSPENDING"],
        )

    def _get(self, dest: Destination, **selector: str) -> StoredVersion | None:
        try:
            response = self._client.get_secret_value(SecretId=dest.location, **selector)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("ResourceNotFoundException", "InvalidRequestException"):
                return None
            raise translate(exc, f"{dest.uri} (read)") from None
        except Exception as exc:
            raise translate(exc, f"{dest.uri} (read)") from None
        material = response.get("SecretString")
        if material is None:
            return None
        stages = frozenset(Stage(s) for s in response.get("VersionStages", []) if s in {x.value for x in Stage})
        return StoredVersion(str(response["VersionId"]), str(material), stages)

    def read(self, dest: Destination, stage: Stage = Stage.CURRENT) -> StoredVersion | None:
        return self._get(dest, VersionStage=stage.value)

    def read_version(self, dest: Destination, version_id: str) -> StoredVersion | None:
        found = self._get(dest, VersionId=version_id)
        if found is None or not found.stages:
            return None  # unlabelled = retired (deprecated, awaiting deletion by AWS)
        return found

    def promote(self, dest: Destination, version_id: str, ctx: SecretContext) -> None:
        raw = self._describe_raw(dest)
        if raw is None:
            raise StoreNotFoundError(f"{dest.uri} does not exist: nothing to promote")
        self._check_owner(dest, raw, ctx)
        stages = self._stages(raw)
        if not {"AWSPENDING", "AWSCURRENT"} & set(stages.get(version_id, [])):
            raise StoreNotFoundError(f"{dest.uri} holds no pending version {version_id} to promote")
        if "AWSCURRENT" not in stages[version_id]:
            old = next((vid for vid, labels in stages.items() if "AWSCURRENT" in labels), None)
            kwargs: dict[str, Any] = {
                "SecretId": dest.location,
                "VersionStage": "AWSCURRENT",
                "MoveToVersionId": version_id,
            }
            if old is not None:
                kwargs["RemoveFromVersionId"] = old
            self._call(f"{dest.uri} (promote)", "update_secret_version_stage", **kwargs)
        if "AWSPENDING" in stages[version_id]:
            self._call(
                f"{dest.uri} (clear pending)",
                "update_secret_version_stage",
                SecretId=dest.location,
                VersionStage="AWSPENDING",
                RemoveFromVersionId=version_id,
            )

    def retire(self, dest: Destination, version_id: str) -> None:
        raw = self._describe_raw(dest)
        if raw is None:
            return
        labels = self._stages(raw).get(version_id, [])
        if "AWSCURRENT" in labels:
            raise StoreConflictError(f"{dest.uri}: version {version_id} is current there and cannot be retired")
        for label in ("AWSPENDING", "AWSPREVIOUS"):
            if label in labels:
                self._call(
                    f"{dest.uri} (retire)",
                    "update_secret_version_stage",
                    SecretId=dest.location,
                    VersionStage=label,
                    RemoveFromVersionId=version_id,
                )

    def delete(self, dest: Destination, key_id: str) -> None:
        raw = self._describe_raw(dest)
        if raw is None or self._owner(raw) != key_id:
            return
        self._call(f"{dest.uri} (delete)", "delete_secret", SecretId=dest.location, ForceDeleteWithoutRecovery=True)

    def health(self) -> None:
        self._call("health check", "list_secrets", MaxResults=1)
