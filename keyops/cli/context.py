"""Per-invocation state shared by the command groups: settings, the lazily
built application, and who is acting."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

from keyops.errors import ConfigError

if TYPE_CHECKING:  # imported when first used: `keyops --help` and `version` need neither
    from keyops.bootstrap import App
    from keyops.cli.remote import Remote
    from keyops.config import Settings

_UNSET = object()


@dataclass
class CliState:
    config_path: str | None = None
    actor_override: str | None = None
    addr: str | None = None
    token_file: str | None = None
    _remote: object = _UNSET
    _settings: Settings | None = None
    _app: App | None = None
    _closers: list[App] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from keyops.config import load_settings
            from keyops.logs import configure

            self._settings = load_settings(self.config_path)
            level = self._settings.log.level if self._settings.log.level != "INFO" else "WARNING"
            # A person at a terminal reads warnings as lines, not JSON; the
            # daemon (``serve``) configures its own logs as the settings say.
            fmt = "text" if sys.stderr.isatty() else self._settings.log.format
            configure(level, fmt, sql_echo=self._settings.database.echo)
            for warning in self._settings.warnings:
                sys.stderr.write(f"keyops: warning: {warning}\n")
        return self._settings

    def app(
        self, *, prepare: bool = True, check_defaults: bool = True, read_only: bool = False, create: bool = False
    ) -> App:
        """The application. ``read_only``: a command that only reads, which
        must neither create nor migrate the inventory (it says where it looked).
        ``create``: serve and db upgrade, which create the schema anywhere."""
        if self._app is None:
            if prepare and not create and self.remote is not None:
                # Not (yet) a client of the API: say so rather than quietly
                # open a database the user did not mean (``serve`` and
                # ``db upgrade/status`` always work on the database).
                raise ConfigError(
                    "this command does not work through the admin API yet: "
                    "unset KEYOPS_ADDR and KEYOPS_TOKEN (or drop --addr) to run it on the database"
                )
            from keyops.bootstrap import build
            from keyops.inventory.location import Access

            access = Access.CREATE if create else Access.READ if read_only else Access.WRITE
            self._app = build(self.settings, prepare=prepare, check_defaults=check_defaults, access=access)
        return self._app

    @property
    def remote(self) -> Remote | None:
        """The admin API to send commands to (``KEYOPS_ADDR`` and
        ``KEYOPS_TOKEN``, or ``--addr`` and ``--token-file``), or ``None``:
        the command works on the database directly."""
        if self._remote is _UNSET:
            from keyops.cli.remote import connection

            self._remote = connection(self.addr, self.token_file, self.actor_override)
        return self._remote  # type: ignore[return-value]

    @property
    def actor(self) -> str:
        """``local:<OS user>``: the CLI on the database directly. ``--actor``
        only adds a note; it cannot name someone else."""
        from keyops.domain.actors import local_actor

        return local_actor(self.actor_override)

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj
