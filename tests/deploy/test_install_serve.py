"""The container image, without Docker: install keyops exactly as
deploy/Dockerfile does (its build stage runs deploy/install.sh: a wheel of
this checkout into a fresh virtual environment), then run the image's
ENTRYPOINT + CMD with the image's ENV, probe it like its HEALTHCHECK does, and
stop it like ``docker stop`` does.

One test function on purpose: the install is the expensive part (about 30 s
with a warm pip cache), and pytest-xdist would run it once per worker if the
probes were separate tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
#: Every series /metrics must expose; the dashboard and alerts depend on them.
METRICS = (
    "keyops_keys",
    "keyops_rotations_total",
    "keyops_verify_total",
    "keyops_alerts_total",
    "keyops_webhook_signature_failures_total",
    "keyops_job_duration_seconds",
    "keyops_job_failures_total",
    "keyops_usage_events_total",
    "keyops_keys_overdue",
    "keyops_rotations_stuck",
    "keyops_findings_total",
    "keyops_verify_cache_keys",
    "keyops_http_requests_total",
)

pytestmark = pytest.mark.slow


def dockerfile_steps() -> list[tuple[str, str]]:
    """(INSTRUCTION, args) of every Dockerfile instruction, in order."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            steps.append((word.upper(), rest.strip()))
    return steps


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile_steps()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def build_stage() -> list[tuple[str, str]]:
    steps = dockerfile_steps()
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    return steps[froms[0] : froms[1]]


def replay_build_stage(rootfs: Path) -> list[str]:
    """Carry out the build stage's WORKDIR and COPY instructions into
    ``rootfs`` (a stand-in for the image's filesystem), copying only what the
    Dockerfile names, and return its RUN command with paths under rootfs:
    a file the Dockerfile forgets to COPY is missing here too."""
    workdir = Path("/")
    run: list[str] = []
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.db-*")
    for word, args in build_stage():
        if word == "WORKDIR":
            workdir = workdir / args
            (rootfs / str(workdir).lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, dest = [a for a in shlex.split(args) if not a.startswith("--")]
            target = rootfs / str(workdir / dest).lstrip("/")
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
                elif dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target)
        elif word == "RUN":
            run = shlex.split(args)
    assert run, "the build stage has no RUN"
    return [str(rootfs / a.lstrip("/")) if a.startswith("/") else a for a in run]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def test_dockerfile_installs_with_deploy_install_sh() -> None:
    """The test below is only "the way the image does it" while the image
    really builds with deploy/install.sh and runs keyops serve."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY deploy/install.sh /usr/local/bin/keyops-install" in text
    assert re.search(r"^RUN sh /usr/local/bin/keyops-install /src /opt/keyops all$", text, re.M)
    assert "COPY --from=build /opt/keyops /opt/keyops" in text
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["keyops"]
    assert json.loads(stage["CMD"]) == ["serve"]


@pytest.mark.timeout(600)  # a full install; slow on a loaded machine
def test_installed_like_the_image_serves_healthz(tmp_path: Path) -> None:
    state = tmp_path / "var-lib-keyops"
    (state / "secrets").mkdir(parents=True)
    # The pip cache stays on (the Dockerfile turns it off for the layer only),
    # so a warm machine installs from cache.
    install_env = {k: v for k, v in os.environ.items() if k != "PIP_NO_CACHE_DIR" and not k.startswith("KEYOPS_")}
    # The build stage, replayed: its COPYs into a scratch root, then its RUN
    # (sh .../keyops-install .../src .../opt/keyops all).
    rootfs = tmp_path / "build-rootfs"
    command = replay_build_stage(rootfs)
    prefix = rootfs / "opt" / "keyops"
    started = time.monotonic()
    install = subprocess.run(
        command,
        env=install_env,
        capture_output=True,
        text=True,
        timeout=480,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    took = time.monotonic() - started
    # About 35 s on a quiet machine with a warm pip cache; printed, not
    # asserted (a loaded machine is slower, and that is no bug).
    print(f"the build stage (deploy/install.sh) took {took:.1f}s")
    assert install.returncode == 0, install.stderr[-3000:]
    assert install.stdout.strip().splitlines()[-1].startswith("keyops "), install.stdout[-500:]
    assert not (prefix / "bin" / "pip").exists(), "the environment must not carry its own pip"

    # The image's ENV, with its paths moved under tmp_path and the listen
    # address on loopback.
    stage = final_stage()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYOPS_", "VAULT_", "AWS_"))}
    for name, value in image_env(stage).items():
        value = value.replace("/var/lib/keyops", str(state)).replace("/opt/keyops", str(prefix))
        env[name] = value.replace("$PATH", os.environ.get("PATH", ""))
    port = free_port()
    env["KEYOPS_SERVER_HOST"] = "127.0.0.1"
    env["KEYOPS_SERVER_PORT"] = str(port)
    env["KEYOPS_LOG_LEVEL"] = "WARNING"
    assert env["PATH"].startswith(str(prefix / "bin"))
    command = json.loads(dict(stage)["ENTRYPOINT"]) + json.loads(dict(stage)["CMD"])
    daemon = subprocess.Popen(command, cwd=state, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_get(f"{base}/healthz")[0] == 200 or daemon.poll() is not None,
                       timeout=30, what="/healthz")  # fmt: skip
        except TimeoutError:
            pytest.fail("keyops serve did not answer /healthz within 30 s")
        assert daemon.poll() is None, f"keyops serve exited: {daemon.communicate()[1][-2000:]}"
        assert http_get(f"{base}/healthz")[0] == 200

        # The image's HEALTHCHECK command, as Docker would run it inside.
        health = dict(stage)["HEALTHCHECK"]
        health_cmd = json.loads(health[health.index("CMD") + 3 :].strip())
        probe = subprocess.run(health_cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert probe.returncode == 0, probe.stderr

        status, _ = http_get(f"{base}/readyz")
        assert status in (200, 503)
        status, metrics = http_get(f"{base}/metrics")
        assert status == 200
        exposed = set(re.findall(r"^# TYPE (\S+) ", metrics, re.M))
        missing = [m for m in METRICS if m not in exposed]
        assert not missing, f"/metrics lacks {missing} (the dashboard and alert rules use them)"
        assert (state / "keyops.db").exists(), "the SQLite inventory belongs in the state directory"
    finally:
        stopping = time.monotonic()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            code = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
            pytest.fail("keyops serve did not stop within 30 s of SIGTERM")
        _, err = daemon.communicate()
    # uvicorn re-raises the stop signal once it has drained (exit by SIGTERM,
    # which Docker, Kubernetes and systemd all count as a clean stop).
    assert code in (0, -signal.SIGTERM), f"keyops serve exited {code} on SIGTERM: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    print(f"keyops serve stopped {time.monotonic() - stopping:.1f}s after SIGTERM")
