"""API: layouts. POST takes JSON {name, html} or multipart name + file; template problems answer 422
template_error with details [{line, message}]."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from sqlalchemy import select

from mailapp.api.common import json_body, paginated, require_storable_text
from mailapp.api.routes import bp
from mailapp.errors import NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.ids import parse_id
from mailapp.layouts import services
from mailapp.models import Layout


@bp.get("/layouts")
def list_layouts():
    statement = select(Layout).order_by(Layout.id)
    return jsonify(paginated(statement, lambda layout: services.serialize_layout(layout, with_html=False)))


@bp.post("/layouts")
def create_layout():
    name, html = _layout_input(require_all=True)
    layout = services.create_layout(name or "", html or "")
    db.session.commit()
    return jsonify(services.serialize_layout(layout)), 201


@bp.get("/layouts/<int:layout_id>")
def get_layout(layout_id: int):
    return jsonify(services.serialize_layout(_layout_or_404(layout_id)))


@bp.patch("/layouts/<int:layout_id>")
def update_layout(layout_id: int):
    layout = _layout_or_404(layout_id)
    name, html = _layout_input(require_all=False)
    services.update_layout(layout, name=name, html=html)
    db.session.commit()
    return jsonify(services.serialize_layout(layout))


@bp.delete("/layouts/<int:layout_id>")
def delete_layout(layout_id: int):
    services.delete_layout(_layout_or_404(layout_id))
    db.session.commit()
    return "", 204


@bp.post("/layouts/<int:layout_id>/preview")
def preview_layout(layout_id: int):
    layout = _layout_or_404(layout_id)
    subscriber_id = json_body(optional=True).get("subscriber_id")
    if subscriber_id is not None:
        subscriber_id = parse_id(subscriber_id, "subscriber_id")
    return jsonify({"html": services.render_preview(layout, subscriber_id)})


def _layout_or_404(layout_id: int) -> Layout:
    layout = db.session.get(Layout, layout_id)
    if layout is None:
        raise NotFoundError(f"There is no layout with id {layout_id}.")
    return layout


def _layout_input(*, require_all: bool) -> tuple[str | None, str | None]:
    """(name, html) from a JSON body or a multipart form with a `file`; None where not given."""
    # Room for the html field and a file of the layout limit each, plus form overhead; beyond that the
    # body is refused (413) before it is read, not spooled to disk first.
    request.max_content_length = 2 * services.max_layout_bytes() + 1024 * 1024
    if request.mimetype == "multipart/form-data":
        name = request.form.get("name")
        upload = request.files.get("file")
        html = request.form.get("html")
        if upload is not None and upload.filename:
            html = services.decode_layout_file(upload.read(services.max_layout_bytes() + 1), upload.filename)
    else:
        # A client's JSON encoder may escape every non-ASCII character (\u00e9: six bytes for two of
        # UTF-8, a surrogate pair twelve for four): room for a layout of the limit written that way.
        body: dict[str, Any] = json_body(max_bytes=6 * services.max_layout_bytes() + 1024 * 1024)
        name, html = body.get("name"), body.get("html")
    require_storable_text({"name": name, "html": html})
    for field, value in (("name", name), ("html", html)):
        if value is not None and not isinstance(value, str):
            raise ValidationError(
                f"{field} must be a string.", [{"field": field, "message": "Not a string."}]
            )
    missing = [field for field, value in (("name", name), ("html", html)) if require_all and value is None]
    if missing:
        raise ValidationError(
            f"Missing: {', '.join(missing)}. Send JSON {{name, html}} or multipart name + file.",
            [{"field": field, "message": "Required."} for field in missing],
        )
    return name, html
