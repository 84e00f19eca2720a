"""Bench-only WSGI entry point for bench_pixel: the mailapp app on the bench's database and Redis, as
gunicorn serves it in the web process (wsgi:app, its open pixel fast path included), behind two bench
routes that exist only here:

- /bare.gif, the baseline: the pixel's image with the same status and headers, answered by a bare WSGI
  callable in front of everything: the cost of serving a GIF at all, with no token check and no record;
- /flask.gif, for context: the same answer from an empty Flask view, the price of a request through
  Flask that the pixel's fast path avoids.

Each worker counts the pixel requests it answered and writes the count when it exits (gunicorn's
worker_exit hook in bench/pixel_gunicorn.py), so the bench can check that every answered open was
recorded, and how many pipelined batches the open buffer's group commit wrote them in."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Response

from bench.common import bench_app
from mailapp.tracking import buffer
from mailapp.tracking.fast_pixel import PIXEL_HEADERS
from mailapp.tracking.opens import PIXEL_GIF
from mailapp.tracking.routes import NO_CACHE

DATABASE_ENV = "MAILAPP_BENCH_PIXEL_DATABASE"
REDIS_ENV = "MAILAPP_BENCH_PIXEL_REDIS"
WORKDIR_ENV = "MAILAPP_BENCH_PIXEL_WORKDIR"

_workdir = Path(os.environ[WORKDIR_ENV])
_redis = os.environ.get(REDIS_ENV, "")
mailapp = bench_app(
    os.environ[DATABASE_ENV], _redis or f"sqla+sqlite:///{_workdir / 'broker.sqlite'}", _workdir
)


@mailapp.get("/flask.gif")
def flask_gif() -> Response:
    return Response(PIXEL_GIF, mimetype="image/gif", headers=NO_CACHE)


answered = {"pixel": 0, "bare": 0, "flask": 0}
_answered_lock = threading.Lock()  # gthread workers answer from several threads


def _count(kind: str) -> None:
    with _answered_lock:
        answered[kind] += 1


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/bare.gif":
        _count("bare")
        start_response("200 OK", PIXEL_HEADERS)
        return [PIXEL_GIF]
    body = mailapp(environ, start_response)
    if path.startswith("/o/"):
        _count("pixel")
    elif path == "/flask.gif":
        _count("flask")
    return body


def write_counts() -> None:
    # The open buffer's group commit: how many pipelined batches carried this worker's opens.
    writers = list(buffer._writers.values())
    grouping = {"batches": sum(w.batches for w in writers), "appended": sum(w.appended for w in writers)}
    (_workdir / f"answered-{os.getpid()}.json").write_text(json.dumps({**answered, **grouping}))

