"""Running a server that lives in a background thread (an aiosmtpd Controller) as a foreground process:
until SIGINT or SIGTERM (honcho and process managers stop their processes with SIGTERM)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Protocol


class Stoppable(Protocol):
    def stop(self) -> object: ...


def run_until_stopped(
    server: Stoppable, on_ready: Callable[[], None] | None = None, stop: threading.Event | None = None
) -> None:
    """Wait until a signal arrives or `stop` is set, then stop the (already started) server."""
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        if on_ready is not None:
            on_ready()
        stop.wait()
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
