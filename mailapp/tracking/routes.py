"""Public tracking endpoints, no login: the open pixel, the click redirect, one-click unsubscribe and
view in browser. They never redirect anywhere but a stored campaign link, and a bad token writes
nothing.

HEAD (link checkers and mail scanners send it) answers with the status and headers of GET and records
nothing: Flask runs the GET view for a HEAD request, so the views that write check the method."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, render_template, request
from sqlalchemy.exc import SQLAlchemyError

from mailapp.errors import NotFoundError
from mailapp.extensions import db
from mailapp.tracking import opens, services

bp = Blueprint("tracking", __name__)

log = logging.getLogger(__name__)

NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
# Tokens are in the URLs: keep them out of Referer headers and search engines.
PRIVATE_PAGE = {**NO_CACHE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}
# The message page shows the campaign's own HTML: its images and styles may come from anywhere, but no
# script runs and no form posts.
VIEW_CSP = (
    "default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src *; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


# Any token, even one with slashes or none at all, gets the image: mail clients show a broken-image icon
# otherwise.
@bp.get("/o/<path:token>.gif")
@bp.get("/o/.gif", defaults={"token": ""})
def open_pixel(token: str) -> Response:
    if request.method == "HEAD":
        return Response(opens.PIXEL_GIF, mimetype="image/gif", headers=NO_CACHE)
    try:
        if opens.accept_open(token, request.headers.get("User-Agent"), request.remote_addr):
            db.session.commit()
    except SQLAlchemyError:
        # The reader's mail client gets its image whatever happens here.
        db.session.rollback()
        log.exception("could not record an open")
    return Response(opens.PIXEL_GIF, mimetype="image/gif", headers=NO_CACHE)


@bp.get("/c/<token>")
def click(token: str) -> Response:
    if request.method == "HEAD":
        target = services.click_target(token)
        url = target.url if target is not None else None
    else:
        url = services.record_click(token, request.headers.get("User-Agent"), request.remote_addr)
        if url is not None:
            db.session.commit()
    if url is None:
        return _page("tracking/invalid.html", 404, message=services.INVALID_LINK)
    return redirect(url, 302, Response=Response)


def _page(template: str, status: int = 200, **context: object) -> Response:
    return Response(render_template(template, **context), status, headers=PRIVATE_PAGE)


@bp.get("/u/<token>")
def unsubscribe_confirm(token: str) -> Response:
    try:
        target = services.unsubscribe_target(token)
    except NotFoundError as error:
        return _page("tracking/invalid.html", 404, message=error.message)
    return _page("tracking/unsubscribe.html", target=target, token=token)


@bp.post("/u/<token>")
def unsubscribe(token: str) -> Response:
    # RFC 8058: the mailbox provider POSTs List-Unsubscribe=One-Click (form-urlencoded or multipart),
    # with no cookie and no CSRF token; the token in the URL is the authority. The answer is a page,
    # never a redirect. Any POST to a valid token unsubscribes, so a client that sends an empty body
    # is honoured too.
    try:
        target = services.unsubscribe(token)
    except NotFoundError as error:
        return _page("tracking/invalid.html", 404, message=error.message)
    db.session.commit()
    return _page("tracking/unsubscribed.html", target=target)


@bp.get("/v/<token>")
def view_in_browser(token: str) -> Response:
    try:
        html = services.render_for_browser(token)
    except NotFoundError as error:
        return _page("tracking/invalid.html", 404, message=error.message)
    return Response(html, 200, headers={**PRIVATE_PAGE, "Content-Security-Policy": VIEW_CSP})
