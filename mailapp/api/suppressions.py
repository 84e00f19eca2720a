"""API: the suppression list: search and page it, add, look up and lift an address, CSV import and
export (the same rules as the dashboard's suppression page)."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request

from mailapp.api.common import json_body, paginated, refuse_unknown_fields
from mailapp.api.routes import bp
from mailapp.deliverability import services
from mailapp.errors import ImportFileError
from mailapp.extensions import db
from mailapp.models import Suppression
from mailapp.web import csv_download

FIELDS = {"email", "reason", "detail"}


@bp.get("/suppressions")
def api_suppressions():
    """?page=&per_page= over the newest first, with the total; ?q= searches the email, ?reason=."""
    q = request.args.get("q", "").strip() or None
    reason = request.args.get("reason", "").strip() or None
    statement = services.suppression_filter(q, reason).order_by(Suppression.id.desc())
    return jsonify(paginated(statement, services.suppression_to_dict))


@bp.post("/suppressions")
def api_add_suppression():
    data = json_body()
    refuse_unknown_fields(data, FIELDS, "a suppression")
    suppression, created = services.add_suppression(
        data.get("email"), data.get("reason"), data.get("detail", ""), source="api"
    )
    db.session.commit()
    return jsonify(services.suppression_to_dict(suppression)), 201 if created else 200


@bp.get("/suppressions/<email>")
def api_get_suppression(email: str):
    return jsonify(services.suppression_to_dict(services.get_suppression(email)))


@bp.delete("/suppressions/<email>")
def api_lift_suppression(email: str):
    """The reason comes in ?reason= or a JSON body {"reason": ...}; lifting resubscribes no one."""
    reason = request.args.get("reason")
    if reason is None:
        reason = json_body(optional=True).get("reason")
    suppression = services.get_suppression(email)
    services.remove_suppression(suppression, reason, "api")
    db.session.commit()
    return Response(status=204)


@bp.post("/suppressions/import")
def api_import_suppressions():
    upload = request.files.get("file")
    if upload is None:
        raise ImportFileError(
            "Send the CSV file as multipart/form-data in the field 'file'.", [{"field": "file"}]
        )
    result = services.import_suppressions(
        upload.stream, int(current_app.config["SUPPRESSION_IMPORT_MAX_BYTES"]),
        int(current_app.config["IMPORT_MAX_LINE_BYTES"]), source="api",
    )
    db.session.commit()
    return jsonify(result.as_dict())


@bp.get("/suppressions/export")
def api_export_suppressions() -> Response:
    return csv_download(services.export_suppressions(), "suppressions.csv")
