"""Settings: the only module that reads configuration files and the environment.

Sources, later ones winning:

1. built-in defaults (the dataclasses below);
2. one TOML file, the first found of: ``--config PATH``, ``$KEYOPS_CONFIG``,
   ``./keyops.toml``, ``/etc/keyops/keyops.toml``;
3. ``KEYOPS_<SECTION>_<FIELD>`` environment variables
   (``KEYOPS_DATABASE_URL`` sets ``[database] url``).

Every setting is documented in ``config/keyops.example.toml``. A bad setting
raises ``ConfigError`` with one line naming it, so the program stops at start
instead of failing later in a confusing place.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from keyops.domain.durations import format_duration, parse_duration
from keyops.domain.keyformat import validate_prefix
from keyops.domain.retention import parse_retention
from keyops.errors import ConfigError, InvalidInputError
from keyops.stream.settings import StreamSettings
from keyops.stream.settings import validate as validate_stream

ENV_PREFIX = "KEYOPS_"
DEFAULT_CONFIG_PATHS = (Path("keyops.toml"), Path("/etc/keyops/keyops.toml"))


@dataclass
class DatabaseSettings:
    #: SQLAlchemy URL. SQLite file in the working directory by default.
    url: str = "sqlite:///keyops.db"
    #: Create and migrate the schema on first use.
    auto_migrate: bool = True
    pool_size: int = 5
    #: Seconds to wait for a connection (and SQLite's busy timeout).
    connect_timeout: int = 5
    echo: bool = False


@dataclass
class KeySettings:
    #: Prefix of native keys; one per environment (kops_live, kops_test, ...).
    prefix: str = "kops_live"
    default_profile: str = "interactive"
    default_policy: str = "standard"


@dataclass
class LogSettings:
    level: str = "INFO"
    #: "json" (one object per line, for machines) or "text" (for people).
    format: str = "json"


#: Marks a field filled in by ``load_settings`` rather than read from a file.
DERIVED = {"derived": True}


@dataclass
class FileStoreSettings:
    #: Every file: destination lives under this directory (relative paths are
    #: taken from it; absolute ones must resolve inside it).
    directory: str = "keyops-secrets"
    #: Fernet key (urlsafe base64, 32 bytes) that encrypts material at rest.
    #: When both are empty, the key file is <directory>.key if that exists
    #: (earlier versions created it there), else file-store.key in key_home,
    #: created on first use.
    encryption_key: str = ""
    encryption_key_file: str = ""
    #: Not a setting: keyops' own directory for the default key file, from the
    #: environment ($STATE_DIRECTORY under systemd, else $XDG_CONFIG_HOME/keyops
    #: or ~/.config/keyops); empty when none of them is set.
    key_home: str = field(default="", metadata=DERIVED)


def default_key_home(env: Mapping[str, str]) -> str:
    """Where keyops keeps the file-store key when none is configured: apart
    from the data directory (and out of a working tree that ``git add -A``
    would commit)."""
    if env.get("STATE_DIRECTORY"):
        return env["STATE_DIRECTORY"].split(":", 1)[0]
    if env.get("XDG_CONFIG_HOME"):
        return str(Path(env["XDG_CONFIG_HOME"]) / "keyops")
    if env.get("HOME"):
        return str(Path(env["HOME"]) / ".config" / "keyops")
    return ""


@dataclass
class VaultSettings:
    #: Defaults follow the vault CLI: VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE.
    addr: str = ""
    token: str = ""
    namespace: str = ""
    #: "token" or "approle".
    auth_method: str = "token"
    role_id: str = ""
    secret_id: str = ""
    approle_mount: str = "approle"
    #: PEM bundle to verify Vault's TLS certificate; empty = system store.
    ca_cert: str = ""
    timeout: int = 10
    #: Field of the KV data that holds the key (what applications read).
    field: str = "api_key"
    #: Pending versions wait at <path><pending_suffix> until promoted.
    pending_suffix: str = "__keyops_pending"
    #: max_versions set on every keyops secret (at least 2: current + previous).
    max_versions: int = 10


@dataclass
class AwsSettings:
    #: Empty values fall back to boto3's standard chain (AWS_REGION,
    #: AWS_ENDPOINT_URL, AWS_PROFILE, instance roles, ...).
    region: str = ""
    endpoint_url: str = ""
    profile: str = ""
    kms_key_id: str = ""
    max_attempts: int = 8
    #: Connect/read timeout in seconds for each Secrets Manager call.
    timeout: int = 10


@dataclass
class StoreSettings:
    file: FileStoreSettings = field(default_factory=FileStoreSettings)
    vault: VaultSettings = field(default_factory=VaultSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)


@dataclass
class RotationSettings:
    #: How many key rotations run at once (their store I/O overlaps).
    concurrency: int = 8
    #: Attempts per step before a rotation is marked failed.
    max_attempts: int = 5
    #: First retry delay; doubles each attempt, with jitter.
    backoff_initial: str = "1s"
    backoff_max: str = "60s"
    #: How long a worker owns a rotation before another may resume it.
    lease: str = "5m"
    #: Grace used when neither the call nor the policy gives one (seconds form ok).
    default_grace: str = "1h"
    #: A failed rotation is retried by the daemon this long after it failed
    #: (doubling, with jitter, after each further failure) ...
    retry_failed_after: str = "15m"
    #: ... at most this many times; then it waits for ``rotations resume``.
    automatic_retries: int = 3


@dataclass
class ServerSettings:
    """``keyops serve``: the HTTP API and the scheduler in one process."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: uvicorn worker processes; each has its own verify cache and scheduler
    #: (safe: work is claimed in the database).
    workers: int = 1
    #: PEM certificate and key; both empty = plain HTTP (terminate TLS in front).
    tls_cert: str = ""
    tls_key: str = ""
    #: Bound on a graceful stop (SIGTERM): in-flight requests and rotation
    #: steps get this long, then the process exits (unfinished rotations resume).
    shutdown_timeout: str = "20s"
    #: Largest accepted POST body for /v1/usage and /v1/alerts (bytes); 413 above.
    max_body_bytes: int = 1048576
    #: Full reload of the verify cache (the safety net behind change notifications).
    cache_refresh: str = "30m"
    #: Milliseconds between polls of the change log (PostgreSQL also LISTENs).
    change_poll_ms: int = 250
    #: How often verify's record of each version's last use is written to the
    #: inventory (usage-aware retirement reads it); also written at shutdown.
    last_use_flush: str = "5s"
    #: Serve /metrics and /openapi.json without a token.
    public_metrics: bool = True
    #: Connections (and tasks) served at once per worker; beyond it uvicorn
    #: answers 503 at once instead of queueing without bound. 0 = no limit.
    limit_concurrency: int = 1000
    #: How long an idle keep-alive connection stays open.
    keepalive_timeout: str = "5s"
    #: A request's whole body must arrive within this (from its start);
    #: later, 408 and the connection is closed (slow-body clients). "0" = off.
    body_timeout: str = "10s"
    #: Addresses or CIDR ranges of the proxies in front of keyops whose
    #: X-Forwarded-For is believed (/v1/authz's X-Keyops-Client-Ip); empty = none.
    trusted_proxies: list[str] = field(default_factory=list)


@dataclass
class AuthzSettings:
    """``/v1/authz``: forward-auth for NGINX ``auth_request``, Traefik
    ``ForwardAuth`` and Envoy ``ext_authz`` (HTTP)."""

    #: Request headers that may carry the key, read in this order
    #: (``authorization`` means ``Authorization: Bearer <key>``). Two
    #: different keys in one request are refused.
    key_headers: list[str] = field(default_factory=lambda: ["authorization", "x-api-key", "api-key"])
    #: Header in which the gateway sends its keyops token (scope ``verify``).
    token_header: str = "X-Keyops-Token"  # noqa: S105 (a header name)
    #: Gateway addresses or CIDR ranges allowed without a token (the direct
    #: peer, never X-Forwarded-For); empty = a token is always required.
    allowed_peers: list[str] = field(default_factory=list)
    #: Status for a rate-limited key: 429 (with Retry-After), or 403 for NGINX,
    #: whose auth_request turns any status but 2xx, 401 and 403 into 500.
    rate_limited_status: int = 429


@dataclass
class RedisSettings:
    """Optional Redis: shared rate-limit buckets and change fan-out."""

    #: redis://host:6379/0; empty = no Redis (per-process buckets).
    url: str = ""
    key_prefix: str = "keyops:"
    #: Milliseconds to connect or wait for an answer before a Redis call counts
    #: as failed (verify then uses this process's own buckets).
    timeout_ms: int = 250
    #: Consecutive failed Redis calls that open the circuit breaker (Redis is
    #: then skipped, and buckets are per process, until a probe succeeds).
    breaker_failures: int = 3
    #: How long the open breaker skips Redis before letting one probe through.
    breaker_cooldown: str = "5s"


@dataclass
class SchedulerSettings:
    enabled: bool = True
    #: Stable name of this replica (lease owner); default hostname:port.
    worker_id: str = ""
    rotate_due_every: str = "30s"
    retire_grace_every: str = "30s"
    resume_every: str = "60s"
    expire_every: str = "60s"
    deliver_every: str = "5s"
    reconcile_every: str = "24h"
    prune_every: str = "1h"
    #: Usage aggregates older than this are deleted.
    usage_retention: str = "35d"


@dataclass
class RetentionSettings:
    """How long history is kept; the daemon's prune job (and ``keyops db
    prune``) deletes older rows. Each is a duration, or "forever" (or "0")."""

    #: Received alert deliveries (their deduplication record). Alerts whose
    #: actions are still being applied are never pruned.
    inbound_alerts: str = "90d"
    #: Findings; those of a key that is suspended right now are kept.
    findings: str = "365d"
    #: Outbox deliveries that were delivered (and events left with none).
    #: Pending and dead deliveries are never pruned.
    outbox_delivered: str = "30d"
    #: Rows deleted per transaction, so a big table is never locked for long.
    batch_size: int = 1000


#: Shortest retention accepted per table: alert deduplication and the
#: signature tolerance need a day of history; findings are evidence.
RETENTION_MINIMUM = {"inbound_alerts": 86400, "findings": 86400, "outbox_delivered": 3600}


@dataclass
class StandardAlertSettings:
    """Standard Webhooks senders (any monitoring tool that signs that way)."""

    enabled: bool = False
    #: Signing secrets, ``whsec_<base64>`` (several while a secret rotates).
    secrets: list[str] = field(default_factory=list)
    #: Also require a keyops API token with scope ``alerts:standard`` (or ``alerts:*``)
    #: in ``Authorization: Bearer``: revocable, audited, stored only hashed.
    require_token: bool = False


@dataclass
class AlertmanagerAlertSettings:
    """Prometheus Alertmanager ``webhook_configs`` (payload version 4)."""

    enabled: bool = False
    #: The bearer credential is a keyops API token with scope ``alerts:alertmanager``
    #: (then leave bearer_token and basic_* empty: one Authorization header).
    require_token: bool = False
    #: Alertmanager's ``http_config.authorization.credentials`` (Bearer).
    bearer_token: str = ""
    #: Or ``http_config.basic_auth``.
    basic_username: str = ""
    basic_password: str = ""
    #: Alert labels that name the key, tried in order (name or id).
    key_labels: list[str] = field(default_factory=lambda: ["keyops_key", "key_id", "key_name"])


@dataclass
class GrafanaAlertSettings:
    """Grafana alerting webhook contact point."""

    enabled: bool = False
    #: The contact point's ``hmacConfig.secret``; empty = no signature check
    #: (then bearer or basic auth below is required).
    hmac_secret: str = ""
    hmac_header: str = "X-Grafana-Alerting-Signature"
    #: The contact point's ``hmacConfig.timestampHeader``; when set, deliveries
    #: must carry it (signed as ``<timestamp>:<body>``) within the tolerance.
    timestamp_header: str = ""
    #: Require a keyops API token with scope ``alerts:grafana`` as the bearer
    #: credential (beside the HMAC, if set; bearer_token and basic_* stay empty).
    require_token: bool = False
    bearer_token: str = ""
    basic_username: str = ""
    basic_password: str = ""
    key_labels: list[str] = field(default_factory=lambda: ["keyops_key", "key_id", "key_name"])


@dataclass
class SnsAlertSettings:
    """AWS SNS HTTP(S) subscriptions (CloudWatch alarms, EventBridge GuardDuty)."""

    enabled: bool = False
    #: Topics whose deliveries are accepted (exact ARNs); others get 403.
    topic_arns: list[str] = field(default_factory=list)
    #: Confirm SubscriptionConfirmation messages of allowed topics by fetching SubscribeURL.
    auto_confirm: bool = True
    #: CloudWatch alarm dimensions that name the key, tried in order.
    key_dimensions: list[str] = field(default_factory=lambda: ["KeyopsKey", "KeyName", "KeyId", "AccessKeyId"])
    #: SNS retries keep the original Timestamp, so allow more than the default.
    tolerance: str = "1h"
    #: Accepted ``SignatureVersion`` values: "1" (RSA with SHA-1, the topics'
    #: default) and "2" (SHA-256). ``["2"]`` refuses SHA-1 signatures.
    signature_versions: list[str] = field(default_factory=lambda: ["1", "2"])


@dataclass
class GitHubAlertSettings:
    """GitHub secret scanning partner alerts (leaked keyops keys)."""

    enabled: bool = False
    meta_url: str = "https://api.github.com/meta/public_keys/secret_scanning"
    #: How long fetched public keys are trusted before they are fetched again.
    key_cache_ttl: str = "1h"


#: Which alert leads to which action; first match wins. See keyops.alerts.rules.
DEFAULT_ALERT_RULES = [
    "* status=resolved -> none",
    "github -> rotate_now",
    "sns kind=guardduty -> rotate_now",
    "sns kind=exposed_credentials -> rotate_now",
    "sns severity=critical -> suspend",
    "standard -> requested",
    "alertmanager severity=critical -> suspend",
    "grafana severity=critical -> suspend",
    "* -> notify",
]


@dataclass
class AlertSettings:
    """``POST /v1/alerts/{source}``: inbound anomaly alerts and leak reports."""

    #: Largest accepted alert delivery (bytes); 413 above.
    max_body_bytes: int = 262144
    #: How far a signed timestamp may be from now (replay protection).
    tolerance: str = "5m"
    #: ``<source|*> [field=value ...] -> <action>``; actions: none, notify,
    #: rotate, rotate_now, suspend, revoke, requested (what the payload asks).
    rules: list[str] = field(default_factory=lambda: list(DEFAULT_ALERT_RULES))
    #: Actions a ``requested`` rule may take (a sender cannot ask for more).
    allowed_requested: list[str] = field(
        default_factory=lambda: ["none", "notify", "rotate", "rotate_now", "suspend", "revoke"]
    )
    #: Timeout for fetching SNS certificates and GitHub's public keys.
    fetch_timeout: str = "5s"
    #: Deliveries handled at once per process; more wait their turn without
    #: holding the worker threads other endpoints need.
    max_concurrency: int = 4
    standard: StandardAlertSettings = field(default_factory=StandardAlertSettings)
    alertmanager: AlertmanagerAlertSettings = field(default_factory=AlertmanagerAlertSettings)
    grafana: GrafanaAlertSettings = field(default_factory=GrafanaAlertSettings)
    sns: SnsAlertSettings = field(default_factory=SnsAlertSettings)
    github: GitHubAlertSettings = field(default_factory=GitHubAlertSettings)


@dataclass
class WebhookSinkSettings:
    """One outbound Standard Webhooks receiver (``[notify.webhooks.<name>]``)."""

    url: str = ""
    #: ``whsec_<base64>`` (or any string, used as raw bytes).
    secret: str = ""
    #: Event types sent to this sink; empty = all but the opt-in ones
    #: (``finding.created``: one per finding, for an evidence pipeline, not people).
    events: list[str] = field(default_factory=list)


@dataclass
class SlackSettings:
    """A Slack-compatible incoming webhook, for people."""

    webhook_url: str = ""
    events: list[str] = field(
        default_factory=lambda: ["key.revoked", "key.suspended", "rotation.failed", "case.opened", "case.escalated"]
    )


@dataclass
class NotifySettings:
    """Outbound events: the outbox and its sinks."""

    webhooks: dict[str, WebhookSinkSettings] = field(default_factory=dict)
    slack: SlackSettings = field(default_factory=SlackSettings)
    #: 0 = retry until delivered (a sink that is down loses nothing).
    max_attempts: int = 0
    backoff_initial: str = "2s"
    backoff_max: str = "10m"
    timeout: str = "10s"
    #: Deliveries claimed per round, and sent at once.
    batch_size: int = 100
    concurrency: int = 8
    #: How long a claimed delivery belongs to one replica.
    lease: str = "2m"


@dataclass
class AwsIamIssuerSettings:
    """``[issuers.aws_iam]``: AWS IAM access keys as managed keys (boto3 IAM + STS)."""

    #: Region for IAM/STS calls (empty: ``stores.aws.region``, then boto3's chain).
    region: str = ""
    #: Endpoint override for IAM and STS (tests: a moto server); empty = AWS.
    endpoint_url: str = ""
    #: A named profile from ~/.aws; empty = boto3's standard credential chain.
    profile: str = ""
    #: After the grace ends the old access key is set Inactive; it is deleted after this hold.
    delete_hold: str = "7d"
    #: When the IAM user already has two access keys, delete the oldest Inactive one
    #: instead of refusing (``keys rotate --evict-oldest-inactive`` does it once).
    evict_oldest_inactive: bool = False
    #: How long a new access key may take to work (IAM is eventually consistent).
    test_wait: str = "30s"
    max_attempts: int = 5
    #: Connect/read timeout of each AWS call, in seconds.
    timeout: int = 10


@dataclass
class IssuerSettings:
    aws_iam: AwsIamIssuerSettings = field(default_factory=AwsIamIssuerSettings)


#: ``detection.enforcement``: follow each profile, or force shadow everywhere.
DETECTION_ENFORCEMENT = ("profile", "shadow")


@dataclass
class DetectionSettings:
    """Usage detection (keyops/detect/): the streaming engine's time rules."""

    #: How late (in event time) a usage event may arrive and still count.
    lateness: str = "10s"
    #: Usage events stamped further ahead of the receiving clock are rejected.
    max_future: str = "5m"
    #: Largest prompt accepted in a usage event, in characters.
    max_prompt_chars: int = 200000
    #: Events the engine holds at most while their lateness passes (a tenth
    #: of them for events stamped ahead of the clock); more are refused.
    max_buffered: int = 100000
    #: A key idle this long drops its per-minute state (baselines are kept).
    idle_evict: str = "1h"
    #: A key idle this long is forgotten entirely (baselines start over).
    idle_forget: str = "7d"
    #: "profile": each profile's own ``enforcement``; "shadow": every profile
    #: runs in shadow (decisions and cases recorded, no key touched, nobody told).
    enforcement: str = "profile"
    #: How often ``keyops serve`` writes the engine's state to the inventory
    #: (also when it stops; restored when it starts). "0": never, and nothing
    #: is restored. A crash loses at most the learning since the last one.
    checkpoint_every: str = "30s"
    #: The checkpoint's name in the inventory (``detection_checkpoints``):
    #: daemons that must not share one engine state need different names.
    checkpoint_name: str = "local"


@dataclass
class AuditSettings:
    """The secret that seals the audit chain (keyops/audit.py). It lives
    outside the database, so write access to the database alone cannot rewrite
    the chain and make it verify again."""

    #: File holding the audit key (at least 32 characters, mode 0600). Empty:
    #: ``audit.key`` in keyops' own directory (``$STATE_DIRECTORY`` under
    #: systemd, else ``$XDG_CONFIG_HOME/keyops`` or ``~/.config/keyops``),
    #: created on first start.
    key_file: str = ""
    #: The key itself, instead of a file (``KEYOPS_AUDIT_KEY``, for containers);
    #: wins over key_file. Every process sharing a database needs the same key.
    key: str = ""


@dataclass
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    log: LogSettings = field(default_factory=LogSettings)
    stores: StoreSettings = field(default_factory=StoreSettings)
    rotation: RotationSettings = field(default_factory=RotationSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    authz: AuthzSettings = field(default_factory=AuthzSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    issuers: IssuerSettings = field(default_factory=IssuerSettings)
    #: Usage past one node (NATS JetStream); empty url = one node.
    stream: StreamSettings = field(default_factory=StreamSettings)
    #: Extra profile/policy files applied on top of the built-ins at start.
    spec_files: list[str] = field(default_factory=list)
    #: Where the settings came from (a file path or "defaults"); informational.
    source: str = "defaults"
    #: Where database.url came from, for "which inventory" messages.
    database_url_from: str = field(default="the default database.url", metadata=DERIVED, compare=False)
    #: Problems worth a warning but not a refusal (a misspelt KEYOPS_* variable).
    warnings: list[str] = field(default_factory=list, metadata=DERIVED, compare=False)


def _coerce(value: Any, kind: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"setting {path} must be a list, got {value!r}")
        return [_coerce(v, typing.get_args(kind)[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"setting {path} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"setting {path} must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {path} must be an integer, got {value!r}") from None
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"setting {path} must be a string, got {value!r}")
        return str(value)
    if isinstance(kind, types.UnionType):
        return value
    raise ConfigError(f"setting {path} has an unsupported type")


def _build(cls: type[Any], doc: Mapping[str, Any], path: str, env: Mapping[str, str]) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("derived")}
    for key in doc:
        if key not in known or key == "source":
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"unknown setting {where} (check the spelling against config/keyops.example.toml)")
    for f in dataclasses.fields(cls):
        if f.name == "source" or f.metadata.get("derived"):
            continue
        kind = hints[f.name]
        fpath = f"{path}.{f.name}" if path else f.name
        env_name = ENV_PREFIX + fpath.replace(".", "_").upper()
        if typing.get_origin(kind) is dict:
            kwargs[f.name] = _build_named(typing.get_args(kind)[1], doc.get(f.name, {}), fpath, env)
            continue
        if dataclasses.is_dataclass(kind):
            sub = doc.get(f.name, {})
            if not isinstance(sub, Mapping):
                raise ConfigError(f"setting {fpath} must be a table")
            kwargs[f.name] = _build(typing.cast(type, kind), sub, fpath, env)
            continue
        if env_name in env:
            kwargs[f.name] = _coerce(env[env_name], kind, f"{fpath} (from {env_name})")
        elif f.name in doc:
            kwargs[f.name] = _coerce(doc[f.name], kind, fpath)
    return cls(**kwargs)


def _build_named(cls: type[Any], doc: Any, path: str, env: Mapping[str, str]) -> dict[str, Any]:
    """A table of named tables (``[notify.webhooks.<name>]``). Names also come
    from the environment: ``KEYOPS_NOTIFY_WEBHOOKS_<NAME>_<FIELD>``."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"setting {path} must be a table of named tables")
    names = {str(k): str(k) for k in doc}
    prefix = ENV_PREFIX + path.replace(".", "_").upper() + "_"
    fields = sorted((f.name.upper() for f in dataclasses.fields(cls)), key=len, reverse=True)
    for env_name in env:
        rest = env_name[len(prefix) :] if env_name.startswith(prefix) else ""
        for fname in fields:
            if rest.endswith("_" + fname) and len(rest) > len(fname) + 1:
                name = rest[: -len(fname) - 1]
                if not any(n.upper() == name for n in names):
                    names[name.lower()] = name.lower()
                break
    result: dict[str, Any] = {}
    for name in sorted(names):
        sub = doc.get(name, {})
        if not isinstance(sub, Mapping):
            raise ConfigError(f"setting {path}.{name} must be a table")
        result[name] = _build(cls, sub, f"{path}.{name}", env)
    return result


def _validate(settings: Settings) -> None:
    db = settings.database.url
    if not db.startswith(("sqlite:", "sqlite+pysqlite:", "postgresql:", "postgresql+psycopg:", "postgresql+psycopg2:")):
        raise ConfigError(
            f"setting database.url must be a sqlite:/// or postgresql+psycopg:// URL, got one starting {db[:12]!r}"
        )
    try:
        validate_prefix(settings.keys.prefix)
    except InvalidInputError as exc:
        raise ConfigError(f"setting keys.prefix: {exc}") from None
    if settings.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"setting log.level must be DEBUG, INFO, WARNING or ERROR, got {settings.log.level!r}")
    if settings.log.format not in ("json", "text"):
        raise ConfigError(f"setting log.format must be 'json' or 'text', got {settings.log.format!r}")
    if settings.stores.vault.auth_method not in ("token", "approle"):
        raise ConfigError(
            f"setting stores.vault.auth_method must be 'token' or 'approle', got {settings.stores.vault.auth_method!r}"
        )
    for name in ("backoff_initial", "backoff_max", "lease", "default_grace", "retry_failed_after"):
        value = getattr(settings.rotation, name)
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"setting rotation.{name}: {exc}") from None
    if settings.rotation.concurrency < 1 or settings.rotation.max_attempts < 1:
        raise ConfigError("settings rotation.concurrency and rotation.max_attempts must be at least 1")
    if settings.rotation.automatic_retries < 0:
        raise ConfigError("setting rotation.automatic_retries must be 0 (never) or more")
    if settings.database.pool_size < 1:
        raise ConfigError("setting database.pool_size must be at least 1")
    _validate_daemon(settings)
    _validate_retention(settings.retention)
    _validate_events(settings)
    _validate_issuers(settings)
    _validate_detection(settings)
    _validate_audit(settings)
    validate_stream(settings.stream)


def _validate_daemon(settings: Settings) -> None:
    """The [server], [redis] and [scheduler] sections (``keyops serve``)."""
    server = settings.server
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"setting server.port must be 0-65535, got {server.port}")
    if server.workers < 1:
        raise ConfigError("setting server.workers must be at least 1")
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError("settings server.tls_cert and server.tls_key must be given together")
    for path in (server.tls_cert, server.tls_key):
        if path and not Path(path).is_file():
            raise ConfigError(f"setting server.tls_cert/tls_key: {path} does not exist")
    if not 10 <= server.change_poll_ms <= 60000:
        raise ConfigError("setting server.change_poll_ms must be between 10 and 60000")
    if server.max_body_bytes < 1024:
        raise ConfigError("setting server.max_body_bytes must be at least 1024")
    names = ("shutdown_timeout", "cache_refresh", "last_use_flush", "keepalive_timeout", "body_timeout")
    durations = [("server", n, getattr(server, n)) for n in names]
    durations += [
        ("scheduler", f.name, getattr(settings.scheduler, f.name))
        for f in dataclasses.fields(settings.scheduler)
        if f.name.endswith(("_every", "retention"))
    ]
    for section, name, value in durations:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"setting {section}.{name}: {exc}") from None
    if parse_duration(server.last_use_flush) < 1:
        raise ConfigError("setting server.last_use_flush must be at least 1s")
    if server.limit_concurrency < 0 or 0 < server.limit_concurrency < 10:
        raise ConfigError(
            f"setting server.limit_concurrency must be 0 (no limit) or at least 10, got {server.limit_concurrency}"
        )
    if parse_duration(server.keepalive_timeout) < 1:
        raise ConfigError("setting server.keepalive_timeout must be at least 1s")
    if settings.redis.url and not settings.redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("setting redis.url must be a redis://, rediss:// or unix:// URL")
    _validate_redis(settings.redis)
    _validate_authz(settings)


def _validate_authz(settings: Settings) -> None:
    import ipaddress

    authz = settings.authz
    for path, ranges in (
        ("server.trusted_proxies", settings.server.trusted_proxies),
        ("authz.allowed_peers", authz.allowed_peers),
    ):
        for item in ranges:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ConfigError(f"setting {path}: {item!r} is not an IP address or CIDR range") from None
    if authz.rate_limited_status not in (429, 403):
        raise ConfigError(f"setting authz.rate_limited_status must be 429 or 403, got {authz.rate_limited_status}")
    known = {"authorization", "x-api-key", "api-key"}
    headers = [h.lower() for h in authz.key_headers]
    if not headers or len(set(headers)) != len(headers):
        raise ConfigError("setting authz.key_headers must name at least one header, each once")
    for name in headers:
        if name not in known and not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"setting authz.key_headers: {name!r} is not a header name")
    if not _HEADER_NAME.fullmatch(authz.token_header.lower()) or authz.token_header.lower() in headers:
        raise ConfigError(
            "setting authz.token_header must be a header name that is not one of authz.key_headers, "
            f"got {authz.token_header!r}"
        )


_HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _validate_redis(redis: RedisSettings) -> None:
    if not 10 <= redis.timeout_ms <= 60000:
        raise ConfigError(f"setting redis.timeout_ms must be between 10 and 60000, got {redis.timeout_ms}")
    if not 1 <= redis.breaker_failures <= 1000:
        raise ConfigError(f"setting redis.breaker_failures must be between 1 and 1000, got {redis.breaker_failures}")
    try:
        cooldown = parse_duration(redis.breaker_cooldown)
    except ValueError as exc:
        raise ConfigError(f"setting redis.breaker_cooldown: {exc}") from None
    if not 1 <= cooldown <= 3600:
        raise ConfigError("setting redis.breaker_cooldown must be between 1s and 1h")


def _validate_retention(retention: RetentionSettings) -> None:
    for name, minimum in RETENTION_MINIMUM.items():
        value = getattr(retention, name)
        try:
            seconds = parse_retention(value)
        except ValueError as exc:
            raise ConfigError(f"setting retention.{name}: {exc}") from None
        if seconds is not None and seconds < minimum:
            raise ConfigError(
                f"setting retention.{name} must be at least {format_duration(minimum)} (or 'forever'), got {value!r}"
            )
    if not 10 <= retention.batch_size <= 100000:
        raise ConfigError(f"setting retention.batch_size must be between 10 and 100000, got {retention.batch_size}")


def _validate_events(settings: Settings) -> None:
    """The [alerts.*] and [notify.*] sections."""
    from keyops.alerts.rules import RuleError, parse_rules

    alerts, notify = settings.alerts, settings.notify
    durations = [("alerts", n, getattr(alerts, n)) for n in ("tolerance", "fetch_timeout")]
    durations += [("alerts.sns", "tolerance", alerts.sns.tolerance)]
    durations += [("alerts.github", "key_cache_ttl", alerts.github.key_cache_ttl)]
    durations += [("notify", n, getattr(notify, n)) for n in ("backoff_initial", "backoff_max", "timeout", "lease")]
    for section, name, value in durations:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"setting {section}.{name}: {exc}") from None
    if alerts.max_body_bytes < 1024:
        raise ConfigError("setting alerts.max_body_bytes must be at least 1024")
    if not 1 <= alerts.max_concurrency <= 64:
        raise ConfigError("setting alerts.max_concurrency must be between 1 and 64")
    try:
        parse_rules(alerts.rules, allowed_requested=alerts.allowed_requested)
    except RuleError as exc:
        raise ConfigError(f"setting alerts.rules: {exc}") from None
    if alerts.standard.enabled:
        if not alerts.standard.secrets:
            raise ConfigError("setting alerts.standard.secrets is empty: give the sender's whsec_ secret or disable it")
        for secret in alerts.standard.secrets:
            _check_webhook_secret(secret, "alerts.standard.secrets")
    for name in ("alertmanager", "grafana"):
        source = getattr(alerts, name)
        has_basic = bool(source.basic_username and source.basic_password)
        has_hmac = bool(getattr(source, "hmac_secret", ""))
        if source.require_token and (source.bearer_token or source.basic_username or source.basic_password):
            raise ConfigError(
                f"settings alerts.{name}.require_token and alerts.{name}.bearer_token/basic_* both need the one "
                f"Authorization header: give the sender a keyops token (scope alerts:{name}) and leave them empty"
            )
        if source.enabled and not (source.bearer_token or has_basic or has_hmac or source.require_token):
            what = "hmac_secret, bearer_token, basic_username/basic_password or require_token"
            if name == "alertmanager":
                what = "bearer_token, basic_username/basic_password or require_token"
            raise ConfigError(f"setting alerts.{name} is enabled without credentials: set {what}")
    versions = alerts.sns.signature_versions
    if not versions or any(v not in ("1", "2") for v in versions):
        raise ConfigError(
            f'setting alerts.sns.signature_versions must list SNS SignatureVersion values "1" and/or "2", '
            f"got {versions!r}"
        )
    if alerts.sns.enabled and not alerts.sns.topic_arns:
        raise ConfigError("setting alerts.sns.topic_arns is empty: list the SNS topic ARNs to accept")
    for arn in alerts.sns.topic_arns:
        if not arn.startswith("arn:aws") or arn.count(":") != 5:
            raise ConfigError(f"setting alerts.sns.topic_arns: {arn!r} is not an SNS topic ARN")
    if not alerts.github.meta_url.startswith(("https://", "http://")):
        raise ConfigError("setting alerts.github.meta_url must be an http(s) URL")
    if notify.max_attempts < 0 or notify.batch_size < 1 or notify.concurrency < 1:
        raise ConfigError("settings notify.max_attempts >= 0, notify.batch_size and notify.concurrency >= 1 required")
    for name, sink in notify.webhooks.items():
        if not sink.url.startswith(("https://", "http://")):
            raise ConfigError(f"setting notify.webhooks.{name}.url must be an http(s) URL")
        if not sink.secret:
            raise ConfigError(f"setting notify.webhooks.{name}.secret is empty: receivers need it to check signatures")
        _check_webhook_secret(sink.secret, f"notify.webhooks.{name}.secret")
        if name == "slack" or len(name) > 48:
            raise ConfigError(f"setting notify.webhooks.{name}: the name must not be 'slack' and at most 48 characters")
    if notify.slack.webhook_url and not notify.slack.webhook_url.startswith(("https://", "http://")):
        raise ConfigError("setting notify.slack.webhook_url must be an http(s) URL")


def _validate_detection(settings: Settings) -> None:
    """The [detection] section."""
    det = settings.detection
    for name in ("lateness", "max_future", "idle_evict", "idle_forget", "checkpoint_every"):
        try:
            parse_duration(getattr(det, name))
        except ValueError as exc:
            raise ConfigError(f"setting detection.{name}: {exc}") from None
    if parse_duration(det.lateness) > 3600:
        raise ConfigError("setting detection.lateness must be at most 1h (events are buffered that long)")
    if parse_duration(det.idle_evict) > parse_duration(det.idle_forget):
        raise ConfigError("setting detection.idle_evict must not be longer than detection.idle_forget")
    if not 1 <= det.max_prompt_chars <= 10_000_000:
        raise ConfigError("setting detection.max_prompt_chars must be between 1 and 10000000")
    if not 1 <= len(det.checkpoint_name) <= 128:
        raise ConfigError("setting detection.checkpoint_name must be 1 to 128 characters")
    if det.enforcement not in DETECTION_ENFORCEMENT:
        raise ConfigError(
            f"setting detection.enforcement must be one of {', '.join(DETECTION_ENFORCEMENT)}, got {det.enforcement!r}"
        )
    if not 10 <= det.max_buffered <= 100_000_000:
        raise ConfigError("setting detection.max_buffered must be between 10 and 100000000 (events held in memory)")


def _validate_issuers(settings: Settings) -> None:
    """The [issuers.aws_iam] section."""
    iam = settings.issuers.aws_iam
    for name in ("delete_hold", "test_wait"):
        try:
            parse_duration(getattr(iam, name))
        except ValueError as exc:
            raise ConfigError(f"setting issuers.aws_iam.{name}: {exc}") from None
    if iam.endpoint_url and not iam.endpoint_url.startswith(("https://", "http://")):
        raise ConfigError("setting issuers.aws_iam.endpoint_url must be an http(s) URL")
    if not 1 <= iam.max_attempts <= 20 or not 1 <= iam.timeout <= 300:
        raise ConfigError(
            "settings issuers.aws_iam.max_attempts (1-20) and issuers.aws_iam.timeout (1-300) out of range"
        )


def _check_webhook_secret(secret: str, path: str) -> None:
    if secret.startswith("whsec_"):
        import base64
        import binascii

        try:
            raw = base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"setting {path}: a whsec_ secret must be base64 after the prefix") from None
        if len(raw) < 16:
            raise ConfigError(f"setting {path}: the secret is too short (at least 16 bytes)")
    elif len(secret) < 16:
        raise ConfigError(f"setting {path}: the secret is too short (at least 16 characters)")


AUDIT_KEY_MIN_CHARS = 32


def default_state_directory(env: Mapping[str, str]) -> Path:
    """keyops' own directory for secrets that must stay out of the database,
    the file store's data directory and the working tree (the same place as
    the file store's default key, :func:`default_key_home`)."""
    home = default_key_home(env)
    return Path(home) if home else Path.home() / ".config" / "keyops"


def _validate_audit(settings: Settings) -> None:
    """The [audit] section: a key given inline must be long enough to be a key."""
    key = settings.audit.key
    if key and len(key.strip()) < AUDIT_KEY_MIN_CHARS:
        raise ConfigError(
            f"setting audit.key is too short ({len(key.strip())} characters, at least {AUDIT_KEY_MIN_CHARS}); "
            "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
        )


#: KEYOPS_* variables that are not settings: read by keyops itself, its
#: daemon's worker processes, its tests and its CI tooling.
OTHER_ENV = frozenset(
    {
        "KEYOPS_CONFIG",
        "KEYOPS_DEBUG",
        "KEYOPS_NO_PROGRESS",
        "KEYOPS_SERVE_CONFIG",
        "KEYOPS_SERVE_PORT",
        "KEYOPS_REQUIRE_SERVICES",
        "KEYOPS_DOCKER_COMPOSE",
        "KEYOPS_HADOLINT",
        "KEYOPS_PROMTOOL",
        "KEYOPS_SYSTEMD_ANALYZE",
        "KEYOPS_TOOLS_BIN",
    }
)
OTHER_ENV_PREFIXES = ("KEYOPS_TEST_", "KEYOPS_BENCH_")


def setting_env_names(cls: type[Any] = Settings, path: str = "") -> tuple[set[str], set[tuple[str, str]]]:
    """The environment variable of every setting, and for named tables
    (``[notify.webhooks.<name>]``) their (prefix, field suffix) pairs."""
    names: set[str] = set()
    patterns: set[tuple[str, str]] = set()
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source" or f.metadata.get("derived"):
            continue
        kind = hints[f.name]
        fpath = f"{path}.{f.name}" if path else f.name
        env_name = ENV_PREFIX + fpath.replace(".", "_").upper()
        if typing.get_origin(kind) is dict:
            item = typing.get_args(kind)[1]
            patterns |= {(env_name + "_", "_" + g.name.upper()) for g in dataclasses.fields(item)}
        elif dataclasses.is_dataclass(kind):
            sub_names, sub_patterns = setting_env_names(typing.cast(type, kind), fpath)
            names |= sub_names
            patterns |= sub_patterns
        else:
            names.add(env_name)
    return names, patterns


def unknown_env_warnings(env: Mapping[str, str]) -> list[str]:
    """One warning per KEYOPS_* variable that sets nothing (a typo would
    otherwise be ignored in silence), with the closest real name."""
    import difflib

    names, patterns = setting_env_names()
    known = names | OTHER_ENV
    warnings: list[str] = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(OTHER_ENV_PREFIXES):
            continue
        if any(name.startswith(p) and name.endswith(sfx) and len(name) > len(p) + len(sfx) for p, sfx in patterns):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else " (see config/keyops.example.toml for the settings)"
        warnings.append(f"ignoring unknown environment variable {name}{hint}")
    return warnings


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {explicit} (from --config) does not exist")
        return path
    if env.get("KEYOPS_CONFIG"):
        path = Path(env["KEYOPS_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"config file {path} (from KEYOPS_CONFIG) does not exist")
        return path
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_settings(config_path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from file and environment; raise ConfigError on any problem."""
    env = dict(os.environ if env is None else env)
    path = find_config_file(config_path, env)
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    # Vault's own variables are the defaults, as with the vault CLI.
    vault_env = {
        "KEYOPS_STORES_VAULT_ADDR": env.get("VAULT_ADDR"),
        "KEYOPS_STORES_VAULT_TOKEN": env.get("VAULT_TOKEN"),
        "KEYOPS_STORES_VAULT_NAMESPACE": env.get("VAULT_NAMESPACE"),
    }
    vault_doc = doc.get("stores", {}).get("vault", {}) if isinstance(doc.get("stores"), dict) else {}
    for name, value in vault_env.items():
        field_name = name.rsplit("_", 1)[1].lower()
        if value and name not in env and field_name not in vault_doc:
            env[name] = value
    settings: Settings = _build(Settings, doc, "", env)
    settings.source = str(path) if path else "defaults"
    if not settings.audit.key_file:
        settings.audit.key_file = str(default_state_directory(env) / "audit.key")
    settings.stores.file.key_home = default_key_home(env)
    _validate(settings)
    settings.warnings = unknown_env_warnings(env)
    if "KEYOPS_DATABASE_URL" in env:
        settings.database_url_from = "KEYOPS_DATABASE_URL"
    elif isinstance(doc.get("database"), dict) and "url" in doc["database"]:
        settings.database_url_from = f"database.url in {path}"
    return settings


def read_spec_file(path: str) -> tuple[str, dict[str, Any]]:
    """Text and parsed TOML of a profile/policy file (for ``profiles apply``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid TOML: {exc}") from None


def builtin_spec_text() -> str:
    """The built-in profiles and policies (``config/builtin.toml``), shipped
    inside the package and also readable from a source checkout."""
    packaged = resources.files("keyops").joinpath("builtin.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parent.parent / "config" / "builtin.toml"
    return source.read_text(encoding="utf-8")
