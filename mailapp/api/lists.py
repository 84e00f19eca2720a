"""API: lists, CSV imports into them, and their CSV export."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import select

from mailapp.api.common import json_body, paginated
from mailapp.api.routes import bp
from mailapp.audit.services import record_read
from mailapp.errors import ImportFileError, ValidationError
from mailapp.extensions import db
from mailapp.models.base import iso_or_none
from mailapp.models.subscriber import SubscriberList
from mailapp.subscribers import exports as subscriber_exports
from mailapp.subscribers import imports, subscriber_lists, tasks
from mailapp.web import csv_download


def list_to_dict(item: SubscriberList, counts: subscriber_lists.ListCounts | None = None) -> dict:
    counts = counts or subscriber_lists.list_counts([item.id])[item.id]
    return {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "created_at": iso_or_none(item.created_at),
        "subscriber_count": counts.total,
        "active_count": counts.active,
        "unsubscribed_count": counts.unsubscribed,
        "blocklisted_count": counts.blocklisted,
        "bounced_count": counts.bounced,
    }


@bp.get("/lists")
def api_lists():
    body = paginated(select(SubscriberList).order_by(SubscriberList.id), lambda item: item)
    counts = subscriber_lists.list_counts(item.id for item in body["items"])
    body["items"] = [list_to_dict(item, counts[item.id]) for item in body["items"]]
    return jsonify(body)


@bp.post("/lists")
def api_create_list():
    data = json_body()
    created = subscriber_lists.create_list(data.get("name"), data.get("description", ""))
    db.session.commit()
    return jsonify(list_to_dict(created)), 201


@bp.get("/lists/<int:list_id>")
def api_get_list(list_id: int):
    return jsonify(list_to_dict(subscriber_lists.get_list(list_id)))


@bp.patch("/lists/<int:list_id>")
def api_update_list(list_id: int):
    target = subscriber_lists.get_list(list_id)
    data = json_body()
    unknown = set(data) - {"name", "description"}
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    if "name" in data and data["name"] is None:
        raise ValidationError("A list needs a name.", [{"field": "name"}])
    subscriber_lists.update_list(target, name=data.get("name"), description=data.get("description"))
    db.session.commit()
    return jsonify(list_to_dict(target))


@bp.delete("/lists/<int:list_id>")
def api_delete_list(list_id: int):
    subscriber_lists.delete_list(subscriber_lists.get_list(list_id))
    db.session.commit()
    return Response(status=204)


@bp.post("/lists/<int:list_id>/import")
def api_import(list_id: int):
    target = subscriber_lists.get_list(list_id)
    upload = request.files.get("file")
    if upload is None:
        raise ImportFileError(
            "Send the CSV file as multipart/form-data in the field 'file'.", [{"field": "file"}]
        )
    record = imports.start_import(target, upload.filename or "", upload.stream)
    db.session.commit()
    tasks.run_import.delay(record.id)
    return jsonify({"import_id": record.id}), 202


@bp.get("/imports/<int:import_id>")
def api_import_status(import_id: int):
    return jsonify(imports.import_to_dict(imports.get_import(import_id)))


@bp.get("/lists/<int:list_id>/export")
def api_export(list_id: int) -> Response:
    target = subscriber_lists.get_list(list_id)
    record_read("export.list", target, f"list {target.name!r} exported as CSV")
    return csv_download(
        subscriber_exports.export_list_csv(target.id), subscriber_exports.export_filename(target)
    )
