"""API: subscribers, searched and filtered, with their list memberships."""

from __future__ import annotations

from flask import Response, jsonify, request

from mailapp.api.common import json_body, page_args, query_id
from mailapp.api.routes import bp
from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.models.subscriber import Subscriber
from mailapp.subscribers import services

FIELDS = {"email", "name", "attributes", "status", "list_ids"}


def _filters() -> tuple[str | None, int | None, str | None]:
    list_id = query_id("list_id")
    status = request.args.get("status", "").strip() or None
    return request.args.get("q", "").strip() or None, list_id, status


@bp.get("/subscribers")
def api_subscribers():
    """?page=&per_page= over the newest first, with the total; ?q= searches email and name."""
    page, per_page = page_args()
    q, list_id, status = _filters()
    statement = services.subscriber_filter(q, list_id, status).order_by(Subscriber.id.desc())
    rows = list(db.session.scalars(statement.limit(per_page).offset((page - 1) * per_page)))
    memberships = services.list_ids_by_subscriber([row.id for row in rows])
    items = []
    for row in rows:
        item = services.subscriber_to_dict(row, with_lists=False)
        item["list_ids"] = memberships[row.id]
        items.append(item)
    total = services.count_subscribers(q, list_id, status)
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": total})


@bp.post("/subscribers")
def api_create_subscriber():
    data = json_body()
    unknown = set(data) - FIELDS
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    created = services.create_subscriber(
        data.get("email"), data.get("name", ""), data.get("attributes"), data.get("list_ids"),
        data.get("status", "active"),
    )
    db.session.commit()
    return jsonify(services.subscriber_to_dict(created)), 201


@bp.get("/subscribers/<int:subscriber_id>")
def api_get_subscriber(subscriber_id: int):
    data = services.subscriber_to_dict(services.get_subscriber(subscriber_id))
    data["system_messages"] = [
        services.system_message_to_dict(row) for row in services.system_messages_for(subscriber_id)
    ]
    return jsonify(data)


@bp.patch("/subscribers/<int:subscriber_id>")
def api_update_subscriber(subscriber_id: int):
    subscriber = services.get_subscriber(subscriber_id)
    services.update_subscriber(subscriber, **json_body())
    db.session.commit()
    return jsonify(services.subscriber_to_dict(subscriber))


@bp.delete("/subscribers/<int:subscriber_id>")
def api_delete_subscriber(subscriber_id: int):
    services.delete_subscriber(services.get_subscriber(subscriber_id))
    db.session.commit()
    return Response(status=204)


