"""Routes of the dev inbox: the messages the built-in SMTP server received, newest first. Only when
DEVINBOX_ENABLED is true, and only for signed-in users."""

from __future__ import annotations

from math import ceil

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required

from mailapp.devinbox.store import inbox_for_app
from mailapp.forms import ActionForm, require_valid

bp = Blueprint("devinbox", __name__)

PER_PAGE = 50
# Received HTML is untrusted: its frame gets a unique opaque origin with scripts and forms off, even
# when its URL is opened directly.
SANDBOX_HEADERS = {"Content-Security-Policy": "sandbox", "Cache-Control": "no-store"}


# An app-wide hook, registered with the blueprint and so before the role check (mailapp/web.py): a
# public installation answers 404 to everyone, the anonymous too, rather than a sign-in redirect that
# would tell the pages exist.
@bp.before_app_request
def only_when_enabled() -> None:
    if request.blueprint == "devinbox" and not current_app.config.get("DEVINBOX_ENABLED"):
        abort(404)


@bp.get("/")
@login_required
def index():
    page = max(request.args.get("page", 1, type=int), 1)
    messages, total = inbox_for_app(current_app).page(page, PER_PAGE)
    pages = max(ceil(total / PER_PAGE), 1)
    pager = {"page": page, "pages": pages, "has_prev": page > 1, "has_next": page < pages, "total": total}
    return render_template(
        "devinbox/index.html",
        messages=messages,
        pager=pager,
        delete_form=ActionForm(),
        smtp_host=current_app.config.get("MAIL_SERVER"),
        smtp_port=current_app.config.get("MAIL_PORT"),
    )


@bp.get("/<message_id>")
@login_required
def show(message_id: str):
    message = inbox_for_app(current_app).get(message_id)
    return render_template("devinbox/message.html", message=message)


@bp.get("/<message_id>/html")
@login_required
def html_frame(message_id: str):
    """The message's HTML part alone, for the sandboxed iframe (its text part if it has no HTML)."""
    message = inbox_for_app(current_app).get(message_id)
    html = message.html()
    if html is None:
        text = message.text() or "(This message has no body.)"
        html = render_template("devinbox/text_frame.html", text=text)
    return Response(html, mimetype="text/html", headers=SANDBOX_HEADERS)


@bp.get("/<message_id>/raw")
@login_required
def raw(message_id: str):
    message = inbox_for_app(current_app).get(message_id)
    return Response(
        message.raw,
        mimetype="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{message.id}.eml"', **SANDBOX_HEADERS},
    )


@bp.post("/delete-all")
@login_required
def delete_all():
    require_valid()
    deleted = inbox_for_app(current_app).delete_all()
    flash(f"Deleted {deleted:,} message(s) from the dev inbox.", "success")
    return redirect(url_for("devinbox.index"))
