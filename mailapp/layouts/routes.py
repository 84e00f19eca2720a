"""Routes of the layouts area: list, create (paste or upload, or from a starter in the visual editor), edit
as code or visually, preview, delete; image uploads and the public image URLs."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required
from sqlalchemy import select

from mailapp.errors import (
    ConflictError,
    InvalidStateError,
    MailappError,
    NotFoundError,
    TemplateError,
    ValidationError,
)
from mailapp.extensions import db
from mailapp.forms import ActionForm, require_valid
from mailapp.ids import id_arg, page_arg
from mailapp.layouts import images, services, starters
from mailapp.layouts.forms import LayoutForm, PreviewForm
from mailapp.models import Layout, LayoutImage
from mailapp.sending import templating
from mailapp.web import SANDBOX_HEADERS
from mailapp.web_extensions import csrf

bp = Blueprint("layouts", __name__)
# Layout images sit in sent messages, opened by recipients without an account: their own blueprint, public,
# at the root (/media/...), apart from the signed-in pages under /layouts.
media_bp = Blueprint("media", __name__)

PER_PAGE = 25


@bp.get("/")
@login_required
def index():
    page = request.args.get("page", 1, type=page_arg)
    pager = db.paginate(select(Layout).order_by(Layout.name), page=page, per_page=PER_PAGE, error_out=False)
    used = services.campaign_counts([layout.id for layout in pager.items])
    return render_template(
        "layouts/index.html", pager=pager, used=used, delete_form=ActionForm(), starters=starters.STARTERS
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    form = LayoutForm()
    if not form.is_submitted():
        form.html.data = STARTER_LAYOUT
    return _save_or_show(form, None)


@bp.route("/<int:layout_id>", methods=["GET", "POST"])
@login_required
def edit(layout_id: int):
    layout = db.get_or_404(Layout, layout_id)
    form = LayoutForm(obj=layout)
    if not form.is_submitted() and layout.mjml is not None:
        # An MJML layout is edited as its source; saving compiles it again.
        form.html.data = layout.mjml
    return _save_or_show(form, layout)


@bp.route("/new/visual", methods=["GET", "POST"])
@login_required
def create_visual():
    """The visual editor on a new layout, begun from a starter (?starter=newsletter) or empty."""
    form = LayoutForm()
    if not form.is_submitted():
        starter = starters.find_starter(request.args.get("starter", "letter"))
        if starter is None:
            abort(404, "There is no such starter layout.")
        form.html.data = starter.source()
        form.name.data = starter.name
    return _save_or_show(form, None, visual=True)


@bp.route("/<int:layout_id>/visual", methods=["GET", "POST"])
@login_required
def edit_visual(layout_id: int):
    layout = db.get_or_404(Layout, layout_id)
    if layout.mjml is None:
        flash("This layout is HTML: it is edited as code. Start a visual layout from a starter.", "warning")
        return redirect(url_for("layouts.edit", layout_id=layout.id))
    form = LayoutForm(obj=layout)
    if not form.is_submitted():
        form.html.data = layout.mjml
    return _save_or_show(form, layout, visual=True)


def _save_or_show(form: LayoutForm, layout: Layout | None, *, visual: bool = False):
    """On a valid POST create or update the layout and go to its page; otherwise show the editor (code or
    visual), with the errors (and their line numbers) and what the user typed."""
    problems: list[dict[str, Any]] = []
    if form.validate_on_submit():
        try:
            if layout is None:
                saved = services.create_layout(form.name.data, _submitted_html(form))
            else:
                saved = services.update_layout(layout, name=form.name.data, html=_submitted_html(form))
        except MailappError as error:
            db.session.rollback()
            problems = _show_error(form, error)
        else:
            db.session.commit()
            _flash_saved(saved, "created" if layout is None else "saved")
            return redirect(url_for("layouts.edit_visual" if visual else "layouts.edit", layout_id=saved.id))
    status = 422 if form.is_submitted() else 200
    if visual:
        return _render_visual_editor(form, layout, problems), status
    return _render_editor(form, layout, problems), status


@bp.post("/<int:layout_id>/delete")
@login_required
def delete(layout_id: int):
    layout = db.get_or_404(Layout, layout_id)
    require_valid()
    name = layout.name
    try:
        services.delete_layout(layout)
    except InvalidStateError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("layouts.edit", layout_id=layout_id))
    db.session.commit()
    flash(f"Layout '{name}' deleted.", "success")
    return redirect(url_for("layouts.index"))


@bp.get("/<int:layout_id>/preview")
@login_required
def preview_frame(layout_id: int):
    """The rendered layout alone, for the sandboxed iframe on the layout page."""
    layout = db.get_or_404(Layout, layout_id)
    subscriber_id = request.args.get("subscriber_id", type=id_arg)
    try:
        html = services.render_preview(layout, subscriber_id)
    except MailappError as error:
        html = render_template("layouts/preview_error.html", error=error)
    return Response(html, mimetype="text/html", headers=SANDBOX_HEADERS)


@bp.post("/preview")
@login_required
def preview_draft():
    """The editor's unsaved HTML, rendered into the sandboxed preview frame (the form targets it)."""
    form = LayoutForm()
    subscriber_id = request.args.get("subscriber_id", type=id_arg)
    try:
        html = services.render_draft_preview(_submitted_html(form), subscriber_id)
    except MailappError as error:
        html = render_template("layouts/preview_error.html", error=error)
    return Response(html, mimetype="text/html", headers=SANDBOX_HEADERS)


def _render_editor(form: LayoutForm, layout: Layout | None, problems: list[dict[str, Any]]) -> str:
    check = services.inspect_layout(layout) if layout is not None else None
    preview_form = PreviewForm(request.args)
    subscriber_id = None
    if layout is not None and preview_form.email.data:
        try:
            subscriber_id = services.find_subscriber_id(preview_form.email.data)
        except NotFoundError as error:
            preview_form.email.errors = [error.message]
    return render_template(
        "layouts/edit.html",
        form=form,
        layout=layout,
        check=check,
        problems=problems,
        preview_form=preview_form,
        subscriber_id=subscriber_id,
        variable_help=templating.VARIABLE_HELP,
        max_bytes=services.max_layout_bytes(),
        delete_form=ActionForm(),
        used_by=services.campaigns_needing_layout(layout) if layout is not None else [],
    )


def _render_visual_editor(form: LayoutForm, layout: Layout | None, problems: list[dict[str, Any]]) -> str:
    return render_template(
        "layouts/visual.html",
        form=form,
        layout=layout,
        problems=problems,
        check=services.inspect_layout(layout) if layout is not None else None,
        images=[_image_asset(image) for image in images.recent_images()],
        variable_help=templating.VARIABLE_HELP,
    )


# At most this many images per upload request (the editor's asset manager may send several).
MAX_IMAGES_PER_UPLOAD = 10


@bp.post("/images")
@csrf.exempt  # checked below, once the body's size is bounded (the check reads the form)
@login_required
def upload_images():
    """The editor's asset manager uploads here (multipart `files`, CSRF token in X-CSRFToken); answers
    {"data": [{"src", "name"}]} as GrapesJS expects, or the error shape of the API."""
    # Bounded before the body is read: the images and their multipart framing.
    request.max_content_length = MAX_IMAGES_PER_UPLOAD * (images.max_image_bytes() + 1) + 64 * 1024
    csrf.protect()
    try:
        stored = _store_uploaded_images()
    except MailappError as error:
        db.session.rollback()
        # The editor's script shows the message; it reads JSON, as from the API.
        return jsonify(error.to_dict()), error.status_code
    db.session.commit()
    return jsonify({"data": [_image_asset(image) for image in stored]}), 201


def _store_uploaded_images() -> list[LayoutImage]:
    uploads = [upload for upload in request.files.getlist("files") if upload.filename]
    if not uploads:
        raise ValidationError("Choose an image to upload.", [{"field": "files", "message": "No file."}])
    if len(uploads) > MAX_IMAGES_PER_UPLOAD:
        raise ValidationError(
            f"Upload at most {MAX_IMAGES_PER_UPLOAD} images at a time.",
            [{"field": "files", "message": f"{len(uploads)} files."}],
        )
    # One byte past the limit is enough to refuse a file.
    limit = images.max_image_bytes()
    return [images.store_image(upload.read(limit + 1), upload.filename) for upload in uploads]


@media_bp.get("/media/<int:image_id>-<digest>.<extension>")
def image(image_id: int, digest: str, extension: str):
    """A layout image, public: its URL names its content (digest), so it never changes and is cached
    for a year."""
    found = images.find_image(image_id, digest, extension)
    if found is None:
        abort(404)
    return Response(found.data, mimetype=found.content_type, headers=MEDIA_HEADERS)


MEDIA_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


def _image_asset(image: LayoutImage) -> dict[str, str]:
    """An image as the editor's asset manager lists it: an absolute URL under PUBLIC_URL, as sent messages
    need."""
    path = url_for("media.image", image_id=image.id, digest=image.digest, extension=image.extension)
    src = current_app.config["PUBLIC_URL"].rstrip("/") + path
    return {"src": src, "name": image.filename, "type": "image"}


def _submitted_html(form: LayoutForm) -> str:
    """The uploaded file if one was chosen (it replaces the textarea), else the textarea. The decoded
    file goes back into the textarea, so a template error can be fixed in place."""
    upload = form.file.data
    if upload and upload.filename:
        # One byte past the limit is enough to refuse a file; never read a huge upload whole.
        html = services.decode_layout_file(upload.read(services.max_layout_bytes() + 1), upload.filename)
        form.html.data = html
        return html
    return form.html.data or ""


def _show_error(form: LayoutForm, error: MailappError) -> list[dict[str, Any]]:
    """Put a service error on the form: name problems under the name field, the rest (with their line
    numbers) in the error box above the editor."""
    details = error.details if isinstance(error.details, list) else []
    if isinstance(error, ConflictError) or any(d.get("field") == "name" for d in details):
        form.name.errors = [*form.name.errors, error.message]
        return []
    if isinstance(error, TemplateError):
        return [{"line": d.get("line"), "message": d.get("message")} for d in details]
    return [{"line": None, "message": error.message}]


def _flash_saved(layout: Layout, verb: str) -> None:
    flash(f"Layout '{layout.name}' {verb}.", "success")
    for warning in services.inspect_layout(layout).warnings:
        flash(warning, "warning")


STARTER_LAYOUT = """<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <style>
    body { font-family: Arial, sans-serif; color: #222; }
    .footer { color: #888; font-size: 12px; }
  </style>
</head>
<body>
  <h1>{{ campaign.subject }}</h1>
  <p>Hello {{ subscriber.name or "there" }},</p>
  {{ message }}
  <p class="footer">
    Sent by {{ sender.name }} &lt;{{ sender.email }}&gt;.
    <a href="{{ view_in_browser_url }}">View in your browser</a> ·
    <a href="{{ unsubscribe_url }}">Unsubscribe</a>
  </p>
</body>
</html>
"""
