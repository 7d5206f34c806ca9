"""How long the ``keyops`` command takes, as a user runs it.

Runs the installed console script (the one next to this Python) in a fresh
directory with its own SQLite inventory of ``--keys`` keys, ``--runs`` times
per command, and prints the median and the spread of wall time, and the
median CPU time (user + system) of the process, which depends less on what
else the machine is doing. Targets: ``--help`` and ``version`` at most
0.25 s, ``keys list`` on 1,000 keys at most 0.5 s (median wall time).

    python bench/cli_startup.py [--keys 1000] [--runs 10] [--source DIR]

``--source DIR`` runs ``python -m keyops`` from another checkout instead
(for example the commit before a change, made with ``git worktree add``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"--help": 0.25, "version": 0.25, "keys list --json": 0.5, "keys list": 0.5}


def keyops_script() -> str:
    script = Path(sys.executable).with_name("keyops")
    if not script.exists():
        raise SystemExit(f"no keyops console script next to {sys.executable}: pip install -e . first")
    return str(script)


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv`` (output discarded; a failure stops the bench)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode().strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--source", help="run `python -m keyops` with this checkout first on PYTHONPATH")
    args = parser.parse_args()
    script = [keyops_script()] if args.source is None else [sys.executable, "-m", "keyops"]
    with tempfile.TemporaryDirectory(prefix="keyops-cli-bench-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "KEYOPS_DATABASE_URL": f"sqlite:///{work / 'keyops.db'}",
            "KEYOPS_AUDIT_KEY": secrets.token_hex(32),
            "XDG_CONFIG_HOME": str(work / "config"),
            "COLUMNS": "80",
        }
        env.pop("KEYOPS_CONFIG", None)
        if args.source is not None:
            env["PYTHONPATH"] = str(Path(args.source).resolve())
        lines = "".join(
            json.dumps({"name": f"bench/key-{i:05d}", "owner": f"team-{i % 17}", "profile": "interactive"}) + "\n"
            for i in range(args.keys)
        )
        (work / "keys.jsonl").write_text(lines)
        subprocess.run(
            [*script, "keys", "issue", "--from-file", "keys.jsonl", "--no-print"],
            env=env,
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        source = "" if args.source is None else f", from {args.source}"
        print(f"keyops CLI, {args.runs} runs each, {args.keys} keys in SQLite, COLUMNS=80{source}")
        print(f"{'command':<20} {'wall median':>12} {'wall min-max':>16} {'CPU median':>11} {'target':>8}")
        for command, target in TARGETS.items():
            argv = [*script, *command.split()]
            timed(argv, env, work)  # warm the page cache and the bytecode
            runs = [timed(argv, env, work) for _ in range(args.runs)]
            walls = [w for w, _ in runs]
            cpus = [c for _, c in runs]
            median = statistics.median(walls)
            verdict = "met" if median <= target else "NOT MET"
            print(
                f"{'keyops ' + command:<20} {median:>10.3f} s {min(walls):>7.3f}-{max(walls):.3f} s "
                f"{statistics.median(cpus):>9.3f} s {target:>6.2f} s {verdict}"
            )
        load = os.getloadavg()
        print(f"load average during the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
