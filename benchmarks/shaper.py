"""A WAN in front of a loopback registry: a TCP proxy adding latency and a bandwidth limit.

Like ``netem``, but in user space and per connection: each direction of each connection is a
delay line that writes the bytes it read at time t no earlier than t + half the round trip and
no faster than the rate, so every request/response exchange costs one round trip and bodies
arrive at the rate. A new connection first waits one round trip (its TCP handshake). The proxy
runs on an event loop in a daemon thread, so it ends with the process if nobody stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

_CHUNK = 64 * 1024
_QUEUED = 32  # chunks in flight per direction before the reader waits (2 MiB > rate x delay)


class Shaper:
    """Proxy on 127.0.0.1 to ``upstream`` (``host:port``) with ``rtt`` s and ``mbit`` Mbit/s."""

    def __init__(self, upstream: str, rtt: float = 0.040, mbit: float = 200) -> None:
        host, _, port = upstream.rpartition(":")
        if host != "127.0.0.1":
            raise ValueError(f"the shaper only forwards to 127.0.0.1, not {upstream!r}")
        self.upstream = (host, int(port))
        self.rtt = rtt
        self.bytes_per_second = mbit * 1e6 / 8
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.host = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""
        if not self._thread.is_alive():
            return

        async def shut() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Shaper:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        accepted = self._loop.time()
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(  # the client sends once the handshake's round trip is over
                self._line(client_r, upstream_w, accepted + self.rtt),
                self._line(upstream_r, client_w, accepted),
            )
        except (ConnectionError, asyncio.CancelledError):  # a reset, or stop()
            pass
        finally:
            for writer in (client_w, upstream_w):
                writer.close()

    async def _line(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, free: float
    ) -> None:
        """Copy ``source`` to ``sink`` delayed by rtt/2 and paced at the rate, sending from
        ``free`` + rtt/2 at the earliest."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUED)
        free += self.rtt / 2

        async def read() -> None:
            data = b"-"
            while data:
                try:
                    data = await source.read(_CHUNK)
                except ConnectionError:
                    data = b""
                await queue.put((self._loop.time() + self.rtt / 2, data))

        reader = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                start = max(due, free)
                await asyncio.sleep(start - self._loop.time())
                if not data:
                    break
                sink.write(data)
                await sink.drain()
                free = start + len(data) / self.bytes_per_second
            if sink.can_write_eof():
                sink.write_eof()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
