"""The open pixel's fast path: a WSGI layer in front of Flask that answers `GET /o/<token>.gif` itself.

The pixel needs none of what Flask does per request (request context, session, Flask-Login's cookie
check, URL routing, after_request hooks), and at the rates a big send produces those cost more than
the work the pixel does. So this layer serves the same answer as the `tracking.open_pixel` route (the
same image, status and headers, byte for byte) through the same services: the token is checked with
the app's secret key, the IP truncated, and the open appended to the Redis buffer, or written to the
database when there is no Redis or Redis fails, exactly as the route would.

Anything it is not sure the route would treat as a plain pixel request goes to Flask unchanged: other
methods (HEAD, OPTIONS, POST), and paths whose token holds characters no issued token has (slashes,
percent escapes...). Flask's route still answers those with the GIF, recording nothing unless the
token is valid (and never for HEAD).

The token is verified here without the database: a v2 token carries the campaign and subscriber its
HMAC binds, the buffer entry keeps them, and the flush drops the open when the delivery row no longer
holds them (see mailapp/sending/tokens.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy.exc import SQLAlchemyError

from mailapp.tracking import buffer, opens
from mailapp.tracking.routes import NO_CACHE
from mailapp.web import SECURITY_HEADERS

log = logging.getLogger(__name__)

# What `make_token` issues (v2, and v1 before it): hex ids, ".", urlsafe base64 signature. The empty
# token is the route's `/o/.gif`.
PIXEL_PATH = re.compile(r"/o/[A-Za-z0-9_.\-]*\.gif")

# The route's headers in the order Flask sends them. Flask-Login reads the session after every
# request, which makes Flask add "Vary: Cookie"; sent here too, so both answers are the same.
PIXEL_HEADERS: list[tuple[str, str]] = [
    *NO_CACHE.items(),
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(opens.PIXEL_GIF))),
    *SECURITY_HEADERS.items(),
    ("Vary", "Cookie"),
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class OpenPixelFastPath:
    """WSGI middleware: the open pixel served without Flask, everything else passed to `wsgi_app`."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET" or PIXEL_PATH.fullmatch(path) is None:
            return self.wsgi_app(environ, start_response)
        # Read per request, not once: tests and the CLI may point the app at another Redis.
        config = self.app.config
        hit = opens.read_open(
            path[3:-4],
            environ.get("HTTP_USER_AGENT"),
            environ.get("REMOTE_ADDR"),
            secret_key=config["SECRET_KEY"],
        )
        if hit is not None:
            redis_url = config.get("REDIS_URL")
            if not (redis_url and opens.buffer_open(buffer.client_for(redis_url), hit)):
                self._record_directly(hit)
        start_response("200 OK", PIXEL_HEADERS)
        return [opens.PIXEL_GIF]

    def _record_directly(self, hit: opens.OpenHit) -> None:
        from mailapp.extensions import db

        with _app_context(self.app):
            try:
                opens.record_opens([hit])
                db.session.commit()
            except SQLAlchemyError:
                # The reader's mail client gets its image whatever happens here.
                db.session.rollback()
                log.exception("could not record an open")


@contextmanager
def _app_context(app: Flask) -> Iterator[None]:
    """As a Flask request does: reuse an app context of this app already pushed (a test, a CLI
    command), else push one for the write and pop it (which ends its database session) after."""
    if has_app_context() and current_app._get_current_object() is app:
        yield
        return
    with app.app_context():
        yield


def install(app: Flask) -> None:
    """Put the fast path in front of the app's WSGI callable. Middleware that rewrites the environ
    (ProxyFix for REMOTE_ADDR behind a proxy) must wrap app.wsgi_app after this, so it runs first."""
    app.wsgi_app = OpenPixelFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
