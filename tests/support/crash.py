"""Kill real rotation workers at chosen steps.

One process pays for the imports once, then forks one child per crash point;
each child runs a rotation and SIGKILLs itself when the engine's checkpoint
hook reports the chosen step (no exception, no cleanup: a real crash).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence

ZYGOTE = textwrap.dedent(
    """
    import json, os, signal, sys
    from keyops.bootstrap import build
    from keyops.config import load_settings

    settings = load_settings()
    children = []
    for line in sys.stdin.read().splitlines():
        key, target = line.split("\\t")
        pid = os.fork()
        if pid == 0:
            try:
                app = build(settings, prepare=False)

                def checkpoint(rotation_id, label, target=target):
                    if label == target:
                        os.kill(os.getpid(), signal.SIGKILL)

                app.rotations.checkpoint = checkpoint
                app.rotations.rotate(key, actor="test", reason="crash test", grace_seconds=3600)
            finally:
                os._exit(3)
        children.append((key, pid))
    for key, pid in children:
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"key": key, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}))
    """
)


def kill_rotations_at(env: Mapping[str, str], jobs: Sequence[tuple[str, str]], timeout: float = 240) -> None:
    """Rotate each ``(key name, checkpoint label)`` in its own process and
    SIGKILL it at that label; assert that every one of them really died there."""
    proc = subprocess.run(
        [sys.executable, "-c", ZYGOTE],
        env=dict(env),
        input="\n".join(f"{key}\t{label}" for key, label in jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = {d["key"]: d["signal"] for d in map(json.loads, proc.stdout.splitlines())}
    assert outcome == {key: signal.SIGKILL for key, _ in jobs}, proc.stderr[-3000:]
