"""Where an open pixel request's time goes, in this process (no HTTP server, no load generator): the
token check, one XADD round trip to Redis, the pipelined XADD per open for batches of 1, 8 and 32
(what group commit shares), the whole WSGI fast path, and a bare WSGI callable answering the same
GIF. With --profile, also the fast path's top functions by internal time (cProfile inflates
call-heavy code).

    .venv/bin/python -m bench.profile_pixel [--requests 5000] [--profile]

The pixel's database is `<bench database>_pixel` (as bench_pixel) and its Redis the bench Redis
(MAILAPP_BENCH_DATABASE_URL / MAILAPP_BENCH_REDIS_URL). Figures are wall-clock microseconds per
request: on a shared machine, compare them with each other, not with another run's.

Not part of `make bench`: it answers "where does the time go", the table answers "how fast"."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import bench_pixel  # noqa: E402
from bench.common import bench_app  # noqa: E402
from mailapp.tracking import buffer, fast_pixel, opens  # noqa: E402

REMOTE_ADDR = "203.0.113.9"


def per_request_us(requests: int, step: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for n in range(requests):
        step(n)
    return (time.perf_counter() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    requests = args.requests
    with tempfile.TemporaryDirectory(prefix="mailapp-profile-pixel-") as folder:
        scale = bench_pixel.SCALES["full"]
        database, redis_url = bench_pixel._databases(scale, Path(folder))
        bench_pixel._create_postgres_database(database)
        app = bench_app(database, redis_url, Path(folder))
        paths = bench_pixel.pixel_paths(app, bench_pixel.prepare(app, 200))
        tokens = [path[3:-4] for path in paths]
        secret_key = app.config["SECRET_KEY"]
        client = buffer.client_for(redis_url)
        hit = opens.read_open(tokens[0], bench_pixel.READER_UA, REMOTE_ADDR, secret_key=secret_key)
        connection = buffer.StreamAppender(client)
        payload = b"1:1:1|1700000000.000000|203.0.113.0|" + bench_pixel.READER_UA.encode()
        environ = {"REQUEST_METHOD": "GET", "HTTP_USER_AGENT": bench_pixel.READER_UA,
                   "REMOTE_ADDR": REMOTE_ADDR}  # fmt: skip

        def start_response(status: str, headers: list) -> None:
            return None

        def fast_path(n: int) -> object:
            return app.wsgi_app({**environ, "PATH_INFO": paths[n % len(paths)]}, start_response)

        def bare(n: int) -> object:
            start_response("200 OK", fast_pixel.PIXEL_HEADERS)
            return [opens.PIXEL_GIF]

        def batch_of(size: int) -> Callable[[int], object]:
            return lambda n: connection.append_many([payload] * size) if n % size == 0 else None

        figures = {
            "token check (read_open)": per_request_us(
                requests, lambda n: opens.read_open(tokens[n % 200], bench_pixel.READER_UA, REMOTE_ADDR,
                                                    secret_key=secret_key)),  # fmt: skip
            "one open through group commit, no concurrency (one round trip)": per_request_us(
                requests, lambda n: opens.buffer_open(client, hit)),
            **{
                f"pipelined XADD, batch of {size}, per open": per_request_us(requests, batch_of(size))
                for size in (1, 8, 32)
            },
            "whole fast path (WSGI call)": per_request_us(requests, fast_path),
            "bare WSGI callable": per_request_us(requests, bare),
        }
        for name, micros in figures.items():
            print(f"{micros:8.1f} us  {name}")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(lambda: [fast_path(n) for n in range(requests)])
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        connection.close()
        client.delete(buffer.STREAM_KEY)
        with app.app_context():
            from mailapp.extensions import db

            db.engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
