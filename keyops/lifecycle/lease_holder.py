"""Who holds a rotation's lease, and whether that holder can still be alive.

A one-shot process (``keyops keys rotate``, ``rotations resume``) leases a
rotation under ``<host>:pid<pid>:<random>``. When such a process is killed
(``kill -9``, a closed laptop lid) its lease would keep everyone else out
until it expires. A process on *this* host whose pid no longer exists cannot
be working on anything, so its lease can be taken over at once. Holders on
other hosts, and daemons (whose worker id is a stable name, not a process),
are only taken over when their lease expires or with ``--force``.

The check is only as good as "same host name means same machine": two
containers that share a host name but not a pid namespace must not share a
CLI worker id scheme. Kubernetes pods and Docker containers get their own
host name by default.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime

_LOCAL_PROCESS = re.compile(r"^(?P<host>.+):pid(?P<pid>[0-9]+):(?P<tag>[0-9a-f]{6})$")


def process_worker_id(tag: str) -> str:
    """The worker id of this process (``tag``: a few random hex digits)."""
    return f"{socket.gethostname()}:pid{os.getpid()}:{tag}"


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (or exists but is not ours)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def dead_local_process(worker_id: str | None, *, hostname: str | None = None) -> bool:
    """True when ``worker_id`` names a process on this host that is gone."""
    if not worker_id:
        return False
    match = _LOCAL_PROCESS.match(worker_id)
    if match is None or match["host"] != (hostname or socket.gethostname()):
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not pid_alive(pid)


@dataclass(frozen=True)
class Holder:
    """A live lease someone else holds, for the message that says so."""

    rotation_id: str
    key_name: str
    worker: str
    until: datetime

    def describe(self) -> str:
        until = self.until.isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"rotation {self.rotation_id} of {self.key_name} is held by worker {self.worker} until {until}"
