"""API: layouts. POST takes JSON {name, html} or {name, mjml}, or multipart name + file (.html, .htm or
.mjml); MJML is compiled on the server as the dashboard does. Template problems answer 422
template_error with details [{field, line, message}], the line of the source sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import jsonify, request
from sqlalchemy import select

from mailapp.api.common import json_body, paginated, require_storable_text
from mailapp.api.routes import bp
from mailapp.errors import NotFoundError, TemplateError, ValidationError
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
    name, source, field = _layout_input(require_all=True)
    with _problems_named(field):
        layout = services.create_layout(name or "", source or "")
    db.session.commit()
    return jsonify(services.serialize_layout(layout)), 201


@bp.get("/layouts/<int:layout_id>")
def get_layout(layout_id: int):
    return jsonify(services.serialize_layout(_layout_or_404(layout_id)))


@bp.patch("/layouts/<int:layout_id>")
def update_layout(layout_id: int):
    layout = _layout_or_404(layout_id)
    name, source, field = _layout_input(require_all=False)
    with _problems_named(field):
        services.update_layout(layout, name=name, html=source)
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


SOURCE_FIELDS = ("html", "mjml")


def _layout_input(*, require_all: bool) -> tuple[str | None, str | None, str]:
    """(name, source, the field the source came in: html or mjml) from a JSON body or a multipart form
    with a `file`; None where not given. An html source may be MJML too (recognised by its <mjml>
    root, as in the dashboard); an mjml source must be."""
    # Room for the source field and a file of the layout limit each, plus form overhead; beyond that the
    # body is refused (413) before it is read, not spooled to disk first.
    request.max_content_length = 2 * services.max_layout_bytes() + 1024 * 1024
    if request.mimetype == "multipart/form-data":
        name = request.form.get("name")
        sources = {field: request.form.get(field) for field in SOURCE_FIELDS}
        upload = request.files.get("file")
        if upload is not None and upload.filename:
            sources = {"html": services.decode_layout_file(
                upload.read(services.max_layout_bytes() + 1), upload.filename
            ), "mjml": None}
    else:
        # A client's JSON encoder may escape every non-ASCII character (\u00e9: six bytes for two of
        # UTF-8, a surrogate pair twelve for four): room for a layout of the limit written that way.
        body: dict[str, Any] = json_body(max_bytes=6 * services.max_layout_bytes() + 1024 * 1024)
        name = body.get("name")
        sources = {field: body.get(field) for field in SOURCE_FIELDS}
    require_storable_text({"name": name, **sources})
    for field, value in (("name", name), *sources.items()):
        if value is not None and not isinstance(value, str):
            raise ValidationError(
                f"{field} must be a string.", [{"field": field, "message": "Not a string."}]
            )
    given = [field for field, value in sources.items() if value is not None]
    if len(given) > 1:
        raise ValidationError(
            "Send the layout as html or as mjml, not both.",
            [{"field": field, "message": "Only one of html and mjml."} for field in given],
        )
    field = given[0] if given else "html"
    missing = [] if not require_all else [
        field_name for field_name, absent in (("name", name is None), ("html", not given)) if absent
    ]
    if missing:
        raise ValidationError(
            f"Missing: {', '.join(missing)}. Send JSON {{name, html}} or {{name, mjml}}, or multipart "
            "name + file.",
            [{"field": missing_field, "message": "Required (html or mjml)." if missing_field == "html"
              else "Required."} for missing_field in missing],
        )
    if field == "mjml":
        services.require_mjml(sources["mjml"], field="mjml")
    return name, sources[field], field


@contextmanager
def _problems_named(field: str) -> Iterator[None]:
    """The services name a layout's source `html`, as the dashboard's form field is, and a template
    problem names no field (the whole template); sent as mjml, the problems name that field."""
    try:
        yield
    except ValidationError as error:
        if field != "html":
            about_the_source = {"html", None} if isinstance(error, TemplateError) else {"html"}
            for problem in error.details:
                if problem.get("field") in about_the_source:
                    problem["field"] = field
        raise
