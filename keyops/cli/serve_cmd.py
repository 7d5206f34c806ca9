"""``keyops serve``: the HTTP API and the scheduler in one process.

uvicorn with uvloop and httptools (its ``[standard]`` extras: the plain
asyncio/h11 setup is several times slower), JSON logs, TLS and worker count
from ``[server]``. SIGTERM: uvicorn stops accepting connections and drains
in-flight requests, the lifespan stops the scheduler (running jobs get the
rest of ``server.shutdown_timeout``), and a watchdog ends the process when
the bound is reached; any rotation still mid-step is persisted and resumes on
the next start or on another replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from typing import Annotated, Any

import typer
import uvicorn

from keyops.api.app import create_app
from keyops.api.state import ApiState
from keyops.bootstrap import App, build
from keyops.cli.context import state
from keyops.config import Settings, load_settings
from keyops.domain.durations import parse_duration
from keyops.inventory.location import Access
from keyops.logs import configure
from keyops.scheduler import Scheduler

log = logging.getLogger("keyops.serve")
_CONFIG_ENV = "KEYOPS_SERVE_CONFIG"


def worker_id_for(settings: Settings, port: int, *, per_process: bool) -> str:
    base = settings.scheduler.worker_id or f"{socket.gethostname()}:{port}"
    return f"{base}:{os.getpid()}" if per_process else base


def make_asgi(application: App, *, worker_id: str) -> Any:
    settings = application.settings
    stop_timeout = float(parse_duration(settings.server.shutdown_timeout)) * 0.75

    rotations = getattr(application, "rotations", None)
    if rotations is not None:
        rotations.worker_id = worker_id  # one lease owner for everything this process rotates

    def scheduler_factory(api: ApiState) -> Scheduler:
        return Scheduler(
            application, worker_id=worker_id, metrics=api.metrics, stop_timeout=stop_timeout, on_abandon=_exit_now
        )

    return create_app(
        application, worker_id=worker_id, scheduler_factory=scheduler_factory if settings.scheduler.enabled else None
    )


def _exit_now() -> None:
    """End the process at once (after the scheduler handed back its leases):
    a rotation mid-step is then exactly like one whose process crashed, which
    the engine resumes; HTTP connections were drained before this point."""
    log.warning("exiting with rotations in flight; they resume on the next start")
    logging.shutdown()
    os._exit(0)


def worker_app() -> Any:
    """uvicorn factory for ``server.workers > 1``: each worker process builds its own App."""
    settings = load_settings(os.environ.get(_CONFIG_ENV) or None)
    configure(settings.log.level, settings.log.format, sql_echo=settings.database.echo)
    port = int(os.environ.get("KEYOPS_SERVE_PORT", settings.server.port))
    application = build(settings, access=Access.CREATE)  # serve creates the schema, like db upgrade
    # Each worker process has its own engine: one checkpoint row cannot hold them all.
    application.checkpoints = None
    application.warm()
    return make_asgi(application, worker_id=worker_id_for(settings, port, per_process=True))


class _Server(uvicorn.Server):
    """uvicorn's server plus a watchdog: once a stop signal arrives the
    process is gone within ``bound`` seconds, whatever is still running."""

    bound: float = 20.0
    before_exit: Any = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            timer = threading.Timer(self.bound, self._force_exit)
            timer.daemon = True
            timer.start()
        super().handle_exit(sig, frame)

    def _force_exit(self) -> None:
        log.warning("graceful stop exceeded server.shutdown_timeout; exiting now (unfinished rotations resume)")
        if self.before_exit is not None:
            try:
                self.before_exit()
            except Exception:
                log.warning("cleanup before exit failed", exc_info=True)
        logging.shutdown()
        os._exit(0)


def _check_stream(application: App) -> None:
    """NATS unreachable at start: one line naming stream.url (exit 7), before
    uvicorn starts (its lifespan failure would print a traceback)."""
    stream = getattr(application, "stream", None)
    if stream is None:
        return
    from keyops.stream.base import StreamUnavailable

    async def probe() -> None:
        try:
            await stream.start()
        finally:
            await stream.close()

    try:
        asyncio.run(probe())
    except StreamUnavailable as exc:
        sys.stderr.write(f"keyops: error: {exc}\n")
        raise typer.Exit(7) from None


def _route_uvicorn_logs() -> None:
    ours = logging.getLogger("keyops").handlers
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours)
        logger.propagate = False
        logger.setLevel(logging.getLogger("keyops").level)


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default server.host).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Listen port (default server.port).")
    ] = None,
) -> None:
    """Serve the HTTP API and run the scheduled jobs until SIGTERM/SIGINT."""
    st = state(ctx)
    settings = st.settings
    configure(settings.log.level, settings.log.format, sql_echo=settings.database.echo)
    _route_uvicorn_logs()
    server_cfg = settings.server
    listen_host = host or server_cfg.host
    listen_port = server_cfg.port if port is None else port
    bound = float(parse_duration(server_cfg.shutdown_timeout))
    tls = {"ssl_certfile": server_cfg.tls_cert, "ssl_keyfile": server_cfg.tls_key} if server_cfg.tls_cert else {}
    common: dict[str, Any] = {
        "host": listen_host,
        "port": listen_port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": max(1, int(bound * 0.25)),
        "server_header": False,
        # X-Forwarded-For is read by /v1/authz for server.trusted_proxies only;
        # uvicorn's own rewrite of the peer (on by default for 127.0.0.1) would
        # make every local caller's header believed.
        "proxy_headers": False,
        # Beyond this many connections uvicorn answers 503 instead of queueing.
        "limit_concurrency": server_cfg.limit_concurrency or None,
        "timeout_keep_alive": max(1, parse_duration(server_cfg.keepalive_timeout)),
        **tls,
    }
    if server_cfg.workers > 1:
        if st.config_path:
            os.environ[_CONFIG_ENV] = st.config_path
        os.environ["KEYOPS_SERVE_PORT"] = str(listen_port)
        uvicorn.run("keyops.cli.serve_cmd:worker_app", factory=True, workers=server_cfg.workers, **common)
        return
    application = st.app(create=True)
    application.warm()
    _check_stream(application)
    if application.checkpoints is not None and settings.scheduler.enabled:
        application.checkpoints.restore()  # before the first usage event is taken
    else:
        application.checkpoints = None  # the scheduler writes them; without it, none
    worker_id = worker_id_for(settings, listen_port, per_process=False)
    asgi = make_asgi(application, worker_id=worker_id)
    server = _Server(uvicorn.Config(asgi, **common))
    server.bound = bound
    api_state: ApiState = asgi.inner.state.keyops

    def release_leases() -> None:
        # Rotation threads may have taken new leases since the scheduler
        # stopped; hand them back right before the process ends.
        if api_state.scheduler is not None:
            api_state.scheduler.jobs.release_leases()

    server.before_exit = release_leases
    scheme = "https" if tls else "http"
    log.info(
        "keyops serving",
        extra={
            "url": f"{scheme}://{listen_host}:{listen_port}",
            "worker_id": worker_id,
            "database": application.engine.url.render_as_string(hide_password=True),
        },
    )
    try:
        server.run()
    except SystemExit:  # uvicorn's answer to a failed lifespan start
        if api_state.startup_error:
            sys.stderr.write(f"keyops: error: {api_state.startup_error}\n")
            raise typer.Exit(7) from None
        raise
    if not server.started:
        sys.stderr.write(f"keyops: error: could not serve on {listen_host}:{listen_port} (address in use?)\n")
        raise typer.Exit(7)
    log.info("keyops stopped")
