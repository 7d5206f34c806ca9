"""The usage stream: events/s through 1 and 2 replicas, takeover time, checkpoint size.

    python bench/stream.py [--nats nats://127.0.0.1:4222] [--scale 0.25] [--partitions 8]

On one scenario world (tests/traffic/generator.py, 4 days, all scenarios) in a
fresh SQLite inventory:

* in-process: one detection session fed every event (what one node does);
* publish: events/s of ``StreamIntake.publish`` in request-sized batches of
  500 (each acknowledged by JetStream);
* 1 and 2 replicas: separate processes, each running ``PartitionWorkers``
  (the 2-replica run splits the partitions, ``max_partitions_per_replica``),
  timed from their start until every partition's last message is judged;
* takeover: a replica holding every partition is killed with SIGKILL; the
  time until a second one holds them all again and has caught up;
* checkpoint bytes per key: the partitions' last snapshots over the keys.

Each run uses its own stream name and deletes it after.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.detect.events import UsageEvent
from keyops.detect.snapshot import encode_engine, restore_engine
from keyops.stream.intake import StreamIntake
from keyops.stream.nats_js import JetStreamUsage
from keyops.stream.workers import PartitionWorkers
from tests.traffic.generator import bind, generate
from tests.traffic.harness import parse_all

TTL = 3.0


def _app(db: str, audit: str) -> App:
    env = {
        "KEYOPS_DATABASE_URL": f"sqlite:///{db}",
        "KEYOPS_AUDIT_KEY_FILE": audit,
        "KEYOPS_LOG_LEVEL": "ERROR",
        "KEYOPS_STORES_FILE_DIRECTORY": str(Path(db).parent / "secrets"),
    }
    return build(load_settings(env={**os.environ, **env}))


def _stream(url: str, name: str, partitions: int) -> JetStreamUsage:
    return JetStreamUsage(url, name=name, partitions=partitions, lease_ttl=TTL, retention=3600)


async def _last_per_partition(stream: JetStreamUsage) -> dict[int, int]:
    from nats.js.errors import NotFoundError

    out: dict[int, int] = {}
    for p in range(stream.partitions):
        try:
            msg = await stream._js.get_last_msg(stream.name, f"{stream.name}.p{p}")
        except NotFoundError:
            continue
        out[p] = int(msg.seq)
    return out


def replica(url: str, name: str, partitions: int, share: int, db: str, audit: str, ready: Any, done: Any) -> None:
    """One replica: lease up to ``share`` partitions, judge them until caught up, report."""
    logging.disable(logging.WARNING)
    app = _app(db, audit)

    async def main() -> None:
        stream = _stream(url, name, partitions)
        await stream.start()
        workers = PartitionWorkers(
            stream,
            lambda: app.detection.replay_session(dry_run=False),
            owner=f"bench-{os.getpid()}",
            lease_ttl=TTL,
            snapshot_every=2.0,
            encode=encode_engine,
            restore=lambda engine, data: restore_engine(engine, data),
            max_partitions=share,
        )
        last = await _last_per_partition(stream)
        ready.put(os.getpid())
        workers.start()
        all_held = False
        while True:
            held = workers.held
            if not all_held and len(held) == share:
                all_held = True
                ready.put(time.time())
            if len(held) == share and all(s.last_seq >= last.get(p, 0) for p, s in held.items()):
                break
            await asyncio.sleep(0.02)
        done.put((time.time(), sum(s.events for s in held.values())))
        await workers.close()
        await stream.close()
        await asyncio.sleep(3600)  # stay (holding nothing) until the parent ends it

    asyncio.run(main())


def run_replicas(args: argparse.Namespace, name: str, count: int, db: str, audit: str) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    ready, done = ctx.Queue(), ctx.Queue()
    share = args.partitions // count
    procs = [
        ctx.Process(target=replica, args=(args.nats, name, args.partitions, share, db, audit, ready, done))
        for _ in range(count)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    started = time.time()
    for _ in procs:
        ready.get(timeout=120)  # each holds its share
    ends = [done.get(timeout=600) for _ in procs]
    for p in procs:
        p.kill()
        p.join()
    return max(t for t, _ in ends) - started, sum(n for _, n in ends)


def takeover(args: argparse.Namespace, name: str, db: str, audit: str) -> tuple[float, float]:
    """Seconds from the kill until the heir holds every partition, and until it has caught up.
    The victim is killed as soon as it holds everything (before its first
    snapshot): the heir then replays the whole stream, the worst case."""
    ctx = mp.get_context("spawn")
    ready, done = ctx.Queue(), ctx.Queue()
    whole = (args.nats, name, args.partitions, args.partitions, db, audit, ready, done)
    victim = ctx.Process(target=replica, args=whole)
    victim.start()
    ready.get(timeout=120)
    # Let it hold everything, then kill it before it hands anything back.
    deadline = time.time() + 60

    async def held_by_victim() -> int:
        stream = _stream(args.nats, name, args.partitions)
        await stream.start()
        try:
            return len(await stream.holders())
        finally:
            await stream.close()

    ready.get(timeout=120)  # the victim holds every partition
    while asyncio.run(held_by_victim()) < args.partitions and time.time() < deadline:
        time.sleep(0.05)
    os.kill(victim.pid or 0, signal.SIGKILL)
    killed = time.time()
    victim.join()
    heir = ctx.Process(target=replica, args=whole)
    heir.start()
    ready.get(timeout=120)
    holding = float(ready.get(timeout=120))
    end, _ = done.get(timeout=600)
    heir.kill()
    heir.join()
    return holding - killed, end - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nats", default=os.environ.get("KEYOPS_TEST_NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # replicas re-acting on keys acted on by an earlier run
    work = Path(tempfile.mkdtemp(prefix="keyops-bench-stream-"))
    db, audit = str(work / "keyops.db"), str(work / "audit.key")
    app = _app(db, audit)
    traffic = generate(seed=5, days=4, scale=args.scale, attack_hours=1.5)
    ids = {k.name: app.keys.issue(k.name, owner=k.owner, profile=k.profile, policy="standard", actor="bench").key.id
           for k in traffic.keys}  # fmt: skip
    events = [e._replace(key_ref=f"id:{e.key_ref[3:]}") for e in parse_all(bind(traffic, ids))]
    print(f"{len(events)} events, {len(traffic.keys)} keys, {args.partitions} partitions, {os.cpu_count()} CPUs")

    session = app.detection.replay_session(dry_run=True)
    t = time.perf_counter()
    for i in range(0, len(events), 500):
        session.ingest(events[i : i + 500])
    session.flush()
    inproc = time.perf_counter() - t
    print(f"in-process engine:    {len(events) / inproc:10,.0f} events/s")

    async def publish(name: str) -> float:
        stream = _stream(args.nats, name, args.partitions)
        await stream.start()
        intake = StreamIntake(stream)
        t = time.perf_counter()
        for i in range(0, len(events), 500):
            batch: list[UsageEvent] = events[i : i + 500]
            await intake.publish([(e.key_ref[3:], e) for e in batch], None, f"{name}-{i}".encode())
        took = time.perf_counter() - t
        await stream.close()
        return took

    async def cleanup(name: str) -> int:
        stream = _stream(args.nats, name, args.partitions)
        await stream.start()
        size = 0
        for p in range(args.partitions):
            snap = await stream.load_snapshot(p)
            size += len(snap.data) if snap else 0
        await stream.destroy()
        await stream.close()
        return size

    name = f"bench-{uuid.uuid4().hex[:8]}"
    took = asyncio.run(publish(name))
    print(f"publish (acked):      {len(events) / took:10,.0f} events/s")
    for count in (1, 2):
        run_name = f"{name}-r{count}"
        asyncio.run(publish(run_name))
        seconds, judged = run_replicas(args, run_name, count, db, audit)
        print(f"{count} replica(s):         {judged / seconds:10,.0f} events/s ({judged} judged in {seconds:.1f}s)")
        size = asyncio.run(cleanup(run_name))
        if count == 1:
            print(f"checkpoint:           {size / len(traffic.keys):10,.0f} bytes per key ({size} bytes)")
    run_name = f"{name}-k"
    asyncio.run(publish(run_name))
    leased, caught_up = takeover(args, run_name, db, audit)
    print(f"takeover after kill:  {leased:10.1f} s to hold every partition (lease TTL {TTL:.0f}s; heir start included)")
    print(f"                      {caught_up:10.1f} s to have replayed the whole stream (killed before a snapshot)")
    asyncio.run(cleanup(run_name))
    asyncio.run(cleanup(name))


if __name__ == "__main__":
    main()
