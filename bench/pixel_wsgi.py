"""Bench-only WSGI entry point for bench_pixel: the mailapp app on the bench's database and Redis, plus
a bare GIF route (the baseline, only here, never in the app) and a count of the pixel requests each
worker answered, written out when the worker exits (gunicorn's worker_exit hook in
bench/pixel_gunicorn.py) so the bench can check that every answered open was recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Response

from bench.common import bench_app
from mailapp.tracking.routes import NO_CACHE
from mailapp.tracking.services import PIXEL_GIF

DATABASE_ENV = "MAILAPP_BENCH_PIXEL_DATABASE"
REDIS_ENV = "MAILAPP_BENCH_PIXEL_REDIS"
WORKDIR_ENV = "MAILAPP_BENCH_PIXEL_WORKDIR"

_workdir = Path(os.environ[WORKDIR_ENV])
_redis = os.environ.get(REDIS_ENV, "")
app = bench_app(
    os.environ[DATABASE_ENV], _redis or f"sqla+sqlite:///{_workdir / 'broker.sqlite'}", _workdir
)


@app.get("/bare.gif")
def bare_gif() -> Response:
    """The same image and headers as the pixel, recording nothing: what the pixel is measured against."""
    return Response(PIXEL_GIF, mimetype="image/gif", headers=NO_CACHE)


answered = {"pixel": 0, "bare": 0}
_inner = app.wsgi_app


def _counting(environ, start_response):  # noqa: ANN001, ANN202 - WSGI
    body = _inner(environ, start_response)
    path = environ.get("PATH_INFO", "")
    if path.startswith("/o/"):
        answered["pixel"] += 1
    elif path == "/bare.gif":
        answered["bare"] += 1
    return body


app.wsgi_app = _counting


def write_counts() -> None:
    (_workdir / f"answered-{os.getpid()}.json").write_text(json.dumps(answered))
