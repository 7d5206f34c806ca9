"""A TCP proxy that delays traffic like a network hop, for benchmarks.

On loopback, Vault and moto answer in well under a millisecond and the
benchmark measures only CPU; real stores are a network hop away (AWS API
calls take 10-50 ms). Putting this proxy in front of each server makes the
benchmark see that latency, which is what the rotation engine's concurrency
exists to overlap. Runs as its own process (asyncio), so it costs the
measured process no CPU.

The delay is a delay line, as on a real link: every chunk sent towards the
server is delivered ``DELAY_MS`` after it arrived, in order. Chunks are not
delayed one after another, so a request whose headers and body arrive as two
writes costs one delay, not two (an earlier version slept per chunk and made
multi-write requests look two or three hops away). Answers flow back at once:
one request/response exchange costs ``DELAY_MS`` in all.

    python bench/latency_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import sys


async def delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward what ``reader`` receives to ``writer``, each chunk ``delay``
    seconds after it arrived (a FIFO of due times, drained by one task)."""
    loop = asyncio.get_running_loop()
    line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await line.get()
            if not data:
                return
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            line.put_nowait((loop.time() + delay, data))
        line.put_nowait((loop.time(), b""))
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()
    finally:
        writer.close()


async def direct(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen: int, host: str, port: int, delay_ms: float) -> None:
    delay = delay_ms / 1000

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(delayed(client_reader, upstream_writer, delay), direct(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
