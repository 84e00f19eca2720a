"""The open pixel while a campaign sends, on the same machine: Apple Mail Privacy Protection fetches the
pixel of each message within seconds of its delivery, so a fast send brings its own pixel load.

    .venv/bin/python -m bench.run --only bench_pixel_send --scale full

The same campaign size is sent twice in one run: alone (the baseline), then with the pixel served by
gunicorn (the web process's settings, as in bench_pixel) under a paced wrk load of every delivery's
pixel URL, while a flusher moves the open buffer into the database every second (the beat's
flush-open-events task does that in production). Reported: the send rate with the pixel load against
the send rate alone, the pixel's request rate and p99 during the send, whether every request was
answered (wrk's non-2xx and socket errors, and answers later than 10 s), and opens lost or doubled (one open
event per answered pixel request after the last flush, and as many counted on the deliveries).

"full": 100,000 recipients on PostgreSQL + Redis with two `celery worker --pool solo` processes (the
functions of bench_send.py); the pixel on its own database (`<bench database>_pixel`, as bench_pixel)
and the bench Redis; wrk paced to offer about 1,200 opens/s.
"smoke": 500 recipients sent in this process, the pixel on a throwaway SQLite file with no Redis, a
light paced load: seconds, so `make bench-smoke` keeps it from rotting.

wrk has no fixed-rate mode: each connection waits `delay` ms after an answer before its next request,
so the offered rate is connections / (delay + response time). A slow pixel therefore lowers its own
load (wrk counts fewer requests) instead of queueing it; the rate wrk achieved is in the row, and the
target on it (>= 1,000/s) fails the row if the pixel held its load down that way."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import bench_pixel, bench_send
from bench.common import Row, bench_app, find_tool, free_port, result_row, unavailable_row

RUNS = 1  # two whole sends per run: minutes at full scale
SEND_ALONE_ROW = "pixel while a campaign sends: send alone"
SEND_ROW = "pixel while a campaign sends: send rate"
PIXEL_ROW = "pixel while a campaign sends: pixel"
INTEGRITY_ROW = "pixel while a campaign sends: opens lost or doubled"
UNANSWERED_ROW = "pixel while a campaign sends: requests not answered"


@dataclass(frozen=True)
class Scale:
    recipients: int
    deliveries: int
    connections: int
    delay_ms: int  # each connection's pause between an answer and its next request
    postgres_and_redis: bool


SCALES = {
    "smoke": Scale(500, 50, 4, 20, postgres_and_redis=False),
    # 48 connections pausing 40 ms: about 1,200 opens/s offered at a response time of 0.
    "full": Scale(100_000, 1000, 48, 40, postgres_and_redis=True),
}


def log(message: str) -> None:
    print(f"[bench_pixel_send {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_paced_lua(path: Path, paths: list[str], delay_ms: int) -> None:
    bench_pixel.write_lua(path, paths)
    with path.open("a") as script:
        script.write(f"delay = function()\n  return {delay_ms}\nend\n")


class Flusher:
    """Moves the open buffer into the database every second, as the beat's flush task does."""

    def __init__(self, app) -> None:  # a Flask app
        self.app = app
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from mailapp.extensions import db
        from mailapp.tracking.opens import flush_open_buffer

        with self.app.app_context():
            while not self.stopping.wait(1.0):
                flush_open_buffer(wait=True)
            db.session.remove()

    def __enter__(self) -> Flusher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=120)


def send_campaign(scale: str, send_app) -> float:  # a Flask app; returns msg/s
    """One campaign of the scale's size, prepared and sent as bench_send does; the rate from the send
    call until the last delivery is marked sent."""
    recipients = SCALES[scale].recipients
    with send_app.app_context():
        campaign_id = bench_send._prepare_campaign(recipients)
        if scale == "full":
            with bench_send.running_workers() as workers:
                elapsed, _ = bench_send.send_and_watch(campaign_id, workers)
        else:
            from mailapp.sending import engine

            started = time.perf_counter()
            engine.send_campaign(campaign_id)
            elapsed = time.perf_counter() - started
        if not bench_send._finished(campaign_id):
            raise RuntimeError("the campaign did not finish")
    return recipients / elapsed


def _send_app(scale: str):  # a Flask app
    if scale == "full":
        return bench_send._make_app(os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"])
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"
    return bench_send._make_app(database_url, os.environ.get("CELERY_BROKER_URL", "memory://"))


def run(scale: str) -> list[Row]:
    sizes = SCALES[scale]
    wrk = find_tool("wrk")
    if wrk is None:
        reason = "wrk is not installed (Debian package wrk)"
        return [unavailable_row(SEND_ROW, "msg/s", reason, target=">= 70%"),
                unavailable_row(PIXEL_ROW, "requests/s", reason, target=">= 1000 and p99 < 100")]  # fmt: skip
    send_app = _send_app(scale)
    # The baseline first: the same campaign size with nothing else running.
    alone_started = time.perf_counter()
    alone = send_campaign(scale, send_app)
    alone_seconds = time.perf_counter() - alone_started
    log(f"send alone: {alone:,.0f} msg/s")

    pixel_scale = bench_pixel.Scale(sizes.deliveries, 1, 1, sizes.connections, 2, sizes.postgres_and_redis)
    server_settings = bench_pixel.web_server_settings()
    with tempfile.TemporaryDirectory(prefix="mailapp-bench-pixel-send-") as folder:
        workdir = Path(folder)
        database, redis_url = bench_pixel._databases(pixel_scale, workdir)
        if database.startswith("postgresql"):
            bench_pixel._create_postgres_database(database)
        pixel_app = bench_app(database, redis_url or f"sqla+sqlite:///{workdir / 'broker.sqlite'}", workdir)
        script = workdir / "pixel.lua"
        delivery_ids = bench_pixel.prepare(pixel_app, sizes.deliveries)
        write_paced_lua(script, bench_pixel.pixel_paths(pixel_app, delivery_ids), sizes.delay_ms)
        port = free_port()
        server = bench_pixel.start_gunicorn(
            server_settings["workers"],
            port,
            {
                "MAILAPP_BENCH_PIXEL_DATABASE": database,
                "MAILAPP_BENCH_PIXEL_REDIS": redis_url,
                "MAILAPP_BENCH_PIXEL_WORKDIR": str(workdir),
            },
        )
        # The load lasts longer than the send would at 70% of its rate alone: it covers the whole send.
        seconds = max(2, math.ceil(alone_seconds / 0.7) + 2)
        command = [wrk, "-t2", f"-c{sizes.connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                   "-s", str(script),
                   f"http://127.0.0.1:{port}"]  # fmt: skip
        try:
            with Flusher(pixel_app) if redis_url else contextlib.nullcontext():
                load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    time.sleep(1)  # the load under way before the send starts
                    with_pixel = send_campaign(scale, send_app)
                    output, errors = load.communicate(timeout=seconds + 60)
                finally:
                    if load.poll() is None:
                        load.kill()
                        load.communicate()
                if load.returncode != 0:
                    raise RuntimeError(f"wrk failed: {errors}")
                pixel = bench_pixel.WrkResult.parse(output)
        finally:
            bench_pixel.stop_gunicorn(server)
        counts = bench_pixel.answered_counts(workdir)
        answered = counts["pixel"]
        events, _, counted = bench_pixel.flush_and_count(pixel_app)
        with pixel_app.app_context():
            from mailapp.extensions import db

            db.engine.dispose()
    log(f"send with the pixel load: {with_pixel:,.0f} msg/s; pixel {pixel.rate:,.0f}/s p99 {pixel.p99_ms} ms")
    load_note = (
        f"wrk -t2 -c{sizes.connections}, {sizes.delay_ms} ms between an answer and the next request "
        f"(about {sizes.connections * 1000 // sizes.delay_ms:,}/s offered at a response time of 0), "
        f"{seconds} s; gunicorn {server_settings['workers']} workers x {server_settings['threads']} threads"
        f"{', PostgreSQL + Redis buffer flushed every second' if redis_url else ', SQLite, direct writes'}"
    )
    send_note = f"{sizes.recipients:,} recipients" + (
        ", PostgreSQL + Redis, 2 worker processes (--pool solo)" if scale == "full" else ", 1 process"
    )
    integrity = (
        f"answered {answered:,} pixel requests (wrk counted {pixel.requests:,}), {events:,} open events and "
        f"{counted:,} counted on deliveries after the last flush{bench_pixel.grouping_note(counts)}"
    )
    unanswered = pixel.non_2xx + _socket_error_count(pixel.socket_errors)
    return [
        result_row(SEND_ALONE_ROW, alone, "msg/s", notes=f"the baseline: {send_note}, nothing else running"),
        result_row(SEND_ROW, with_pixel, "msg/s", baseline=SEND_ALONE_ROW, baseline_value=alone,
                   target=">= 70%", notes=f"{send_note}, with the pixel load: {load_note}"),  # fmt: skip
        result_row(PIXEL_ROW, pixel.rate, "requests/s", target=">= 1000 and p99 < 100", p99_ms=pixel.p99_ms,
                   notes=f"during the send: {load_note}"),  # fmt: skip
        result_row(UNANSWERED_ROW, unanswered, "requests", target="= 0",
                   notes=f"non-2xx {pixel.non_2xx}; socket errors: {pixel.socket_errors or 'none'}"),
        result_row(INTEGRITY_ROW, abs(answered - events) + abs(counted - events), "opens", target="= 0",
                   notes=integrity),  # fmt: skip
    ]


def _socket_error_count(summary: str) -> int:
    """wrk's "connect 0, read 0, write 0, timeout 0" summed."""
    return sum(int(part.split()[-1]) for part in summary.split(",") if part.strip()) if summary else 0

