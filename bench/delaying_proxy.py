"""A TCP proxy on loopback that holds back everything the server says by a fixed delay: a relay that is
far away (20 ms of latency per reply) made from a local sink. What the client sends goes through at
once; the server's bytes reach the client `delay` seconds after the server wrote them, in order.

Bounded: at most `max_connections` connections at a time (more are closed at once), and at most
`max_buffered` bytes held back per connection (the proxy stops reading the server until the client
has taken them). It listens on 127.0.0.1 only, on a free port.

    with DelayingProxy("127.0.0.1", sink_port, delay=0.020) as proxy:
        ...  # connect to 127.0.0.1:proxy.port
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType


class DelayingProxy:
    def __init__(self, host: str, port: int, *, delay: float, max_connections: int = 256,
                 max_buffered: int = 1 << 20) -> None:
        self.target = (host, port)
        self.delay = delay
        self.max_connections = max_connections
        self.max_buffered = max_buffered
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delaying-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> DelayingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            client_writer.close()
            return
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.connections -= 1
            client_writer.close()
            return
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer),
                self._delayed_pump(server_reader, client_writer),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections -= 1
            for writer in (client_writer, server_writer):
                writer.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _delayed_pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        held = 0
        released = asyncio.Event()

        def deliver(data: bytes) -> None:
            nonlocal held
            held -= len(data)
            released.set()
            if not writer.is_closing():
                writer.write(data)

        while data := await reader.read(1 << 16):
            while held + len(data) > self.max_buffered:
                released.clear()
                await released.wait()
            held += len(data)
            # Every chunk waits the same time, so the timers keep the server's order.
            loop.call_later(self.delay, deliver, data)
        await asyncio.sleep(self.delay)  # what is still held back goes out before the close
