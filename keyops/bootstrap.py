"""The composition root: ``build(settings)`` wires everything else.

The CLI, the daemon and the tests all get their objects from here, so there
is exactly one place that decides which engine, stores and services exist.
Nothing in keyops connects to anything at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.audit_key import AuditKeySource
from keyops.config import Settings, builtin_spec_text, read_spec_file
from keyops.domain.durations import parse_duration
from keyops.domain.specs import SpecError, find_line, parse_spec_document
from keyops.errors import ConfigError, DatabaseUnavailableError, InvalidInputError
from keyops.inventory import changes, location, migrate
from keyops.inventory.db import make_engine, make_session_factory, safe_url, translate_db_errors
from keyops.inventory.location import Access
from keyops.lifecycle.keys import KeyService
from keyops.lifecycle.specs import SpecRegistry
from keyops.notify.dispatcher import Dispatcher, build_dispatcher
from keyops.stores.registry import StoreRegistry

if TYPE_CHECKING:  # built on first use (below): a `keys list` imports none of them
    from keyops.alerts.receiver import AlertReceiver
    from keyops.issuers import IssuerRegistry
    from keyops.lifecycle.checkpoint import EngineCheckpoints
    from keyops.lifecycle.detection import DetectionService
    from keyops.lifecycle.rotation import RotationEngine

log = logging.getLogger("keyops.bootstrap")


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keys: KeyService
    specs: SpecRegistry
    extras: dict[str, Any] = field(default_factory=dict)
    #: The audit key, loaded on first use (at start when prepared); every session carries it.
    audit_key: AuditKeySource | None = None
    #: Outbound events (outbox delivery); the scheduler calls notify.deliver_due.
    notify: Dispatcher = field(init=False)
    #: Destination URI -> SecretStore: ``stores.resolve(uri)`` -> (Destination, store).
    stores: StoreRegistry = field(init=False)
    #: The usage stream past one node ([stream] url), not yet connected; None = one node.
    stream: Any = None

    # The parts below are built on first use, here, so that the composition
    # root stays the one place that wires them, while a read such as
    # ``keys list`` neither imports nor constructs the alert receiver, the
    # detection engine or the rotation engine (most of its start-up time).
    # Each is built once per App; a test may assign its own instead.

    @cached_property
    def alerts(self) -> AlertReceiver:
        """Inbound alert webhooks; the HTTP layer calls alerts.receive."""
        from keyops.alerts.receiver import AlertReceiver

        return AlertReceiver(self.settings.alerts, self.sessions, self.keys, rotator=lambda: self.rotations)

    @cached_property
    def detection(self) -> DetectionService:
        """Usage detection: the daemon's POST /v1/usage calls detection.ingest(events)."""
        from keyops.lifecycle.detection import DetectionService
        from keyops.lifecycle.findings import FindingService

        findings = FindingService(self.sessions, self.keys, rotator=lambda: self.rotations)
        return DetectionService.from_settings(self.sessions, self.specs, findings, self.settings.detection)

    @cached_property
    def checkpoints(self) -> EngineCheckpoints | None:
        """The detection engine's checkpoints (None: detection.checkpoint_every
        = "0", or [stream] url, where the partitions snapshot into the stream
        instead). ``keyops serve`` restores at start; the scheduler saves, and
        once more at stop."""
        if self.settings.stream.url or parse_duration(self.settings.detection.checkpoint_every) <= 0:
            return None
        from keyops.lifecycle.checkpoint import EngineCheckpoints

        return EngineCheckpoints(self.sessions, self.detection, name=self.settings.detection.checkpoint_name)

    @cached_property
    def issuers(self) -> IssuerRegistry:
        """Who mints material (native, aws-iam): ``issuers.get(key.issuer)``."""
        from keyops.issuers import IssuerRegistry

        return IssuerRegistry(self.settings)

    @cached_property
    def rotations(self) -> RotationEngine:
        """The rotation engine: rotate, rotate_due, resume, retire_ended_grace, reconcile."""
        from keyops.lifecycle.rotation import RotationEngine

        return RotationEngine(
            self.sessions,
            self.stores,
            self.settings.rotation,
            key_prefix=self.settings.keys.prefix,
            issuers=self.issuers,
        )

    def warm(self) -> None:
        """Build every lazy part now: the daemon does, at start, so that a
        misconfiguration stops it before it listens and no request pays for
        (or races on) the first build."""
        _ = (self.alerts, self.detection, self.checkpoints, self.issuers, self.rotations)

    def close(self) -> None:
        if "alerts" in self.__dict__:  # built (or assigned): close only what exists
            self.alerts.close()
        if hasattr(self, "stores"):
            self.stores.close()
        self.engine.dispose()


def make_database(settings: Settings) -> Engine:
    db = settings.database
    return make_engine(db.url, pool_size=db.pool_size, connect_timeout=db.connect_timeout)


def ensure_schema(engine: Engine, settings: Settings, access: Access = Access.WRITE) -> None:
    url = settings.database.url
    with translate_db_errors(url):
        revision = migrate.current_revision(engine)
        if not location.check_schema(
            engine, url, settings.database_url_from, access, revision, migrate.head_revision()
        ):
            return
        if not settings.database.auto_migrate:
            raise DatabaseUnavailableError(
                f"the database at {safe_url(settings.database.url)} is not at the current schema; "
                f"run `keyops db upgrade` (or set database.auto_migrate = true)"
            )
        log.info("migrating the inventory schema", extra={"database": safe_url(settings.database.url)})
        migrate.upgrade(engine)


def load_builtin_specs(registry: SpecRegistry, settings: Settings) -> None:
    text = builtin_spec_text()
    import tomllib

    try:
        profiles, policies = parse_spec_document(tomllib.loads(text))
    except SpecError as exc:  # a packaging bug, but say where
        raise ConfigError(f"built-in profiles are invalid at {exc.path}: {exc.problem}") from None
    registry.sync_builtins(profiles, policies)
    for path in settings.spec_files:
        try:
            file_text, doc = read_spec_file(path)
        except InvalidInputError as exc:
            raise ConfigError(f"setting spec_files: {exc}") from None
        try:
            extra_profiles, extra_policies = parse_spec_document(doc)
        except SpecError as exc:
            line = find_line(file_text, exc.path)
            raise ConfigError(f"setting spec_files: {path}:{line or '?'}: {exc.path}: {exc.problem}") from None
        registry.apply(extra_profiles, extra_policies, actor="keyops", source=path)


def check_default_specs(registry: SpecRegistry, settings: Settings) -> None:
    """``keys.default_profile`` and ``keys.default_policy`` must name a known
    profile and policy: refused at start, naming the setting, rather than at
    the first ``keys issue`` with a message about an unknown profile."""
    checks = (
        ("default_profile", settings.keys.default_profile, [p.name for p, _ in registry.profiles()], "profiles"),
        ("default_policy", settings.keys.default_policy, [p.name for p, _ in registry.policies()], "policies"),
    )
    for setting, value, known, kind in checks:
        # No spec at all: a schema `db upgrade` just made, that no writer has
        # filled with the built-ins yet (the next writer does, then this checks).
        if known and value not in known:
            raise ConfigError(
                f"setting keys.{setting} = {value!r} is not a known {kind[:-1] if kind == 'profiles' else 'policy'}: "
                f"use one of {', '.join(sorted(known))} (or define it first: keyops {kind} apply -f FILE)"
            )


def build(
    settings: Settings, *, prepare: bool = True, check_defaults: bool = True, access: Access = Access.WRITE
) -> App:
    """Wire the application. With ``prepare`` the schema is migrated (when
    allowed) and the built-in profiles and policies are present. ``access``:
    whether this caller may create or migrate the schema (see
    ``inventory.location``); read-only callers neither create nor migrate."""
    location.check_exists(settings.database.url, settings.database_url_from, access)
    audit_key = AuditKeySource(settings.audit)
    if prepare:
        audit_key.get()  # a missing or unsafe key stops the program here, before anything is written
    engine = make_database(settings)
    sessions = make_session_factory(engine, info={audit.SESSION_KEY: audit_key})
    changes.install(sessions)  # every committed key change reaches the verify caches
    specs = SpecRegistry(sessions)
    app = App(
        settings=settings,
        engine=engine,
        sessions=sessions,
        keys=KeyService(sessions, key_prefix=settings.keys.prefix),
        specs=specs,
        audit_key=audit_key,
    )
    app.notify = build_dispatcher(sessions, settings.notify)  # before any session emits events
    if settings.stream.url:
        from keyops.stream.factory import build_stream

        # Past one node the partitions' state is snapshotted into the stream
        # (keyops.stream.workers), not checkpointed into the inventory.
        app.stream = build_stream(settings.stream)
    app.stores = StoreRegistry(settings.stores)
    app.keys.stores = app.stores
    if prepare:
        try:
            ensure_schema(engine, settings, access)
            with translate_db_errors(settings.database.url):
                if access is not Access.READ:  # a reader writes nothing, not even the built-ins
                    load_builtin_specs(specs, settings)
                if check_defaults:  # not for `profiles apply`: it may be what defines them
                    check_default_specs(specs, settings)
        except BaseException:
            engine.dispose()
            raise
    return app
