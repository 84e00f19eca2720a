"""API: segments (CRUD, the count of an unsaved tree, the subscribers a segment matches) and "resend to
non-openers" of a sent campaign."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import select

from mailapp.api.common import json_body, paginated
from mailapp.api.routes import bp
from mailapp.campaigns import services as campaign_services
from mailapp.campaigns.serializers import serialize_campaign
from mailapp.errors import ValidationError, field_problem
from mailapp.extensions import db
from mailapp.models import Segment
from mailapp.segments import services
from mailapp.subscribers.services import list_ids_by_subscriber, subscriber_to_dict


@bp.get("/segments")
def api_segments():
    return jsonify(paginated(select(Segment).order_by(Segment.id), services.segment_to_dict))


@bp.post("/segments")
def api_create_segment():
    segment = services.create_segment(json_body())
    db.session.commit()
    return jsonify(services.segment_to_dict(segment)), 201


@bp.post("/segments/count")
def api_count_segment():
    """The count for a posted tree, saved or not: what the dashboard's builder shows as you edit."""
    body = json_body()
    if set(body) != {"rules"}:
        raise ValidationError("The body is {\"rules\": <rule tree>}.", [field_problem("rules", "Required.")])
    return jsonify(services.count(services.checked_rules(body["rules"])).as_dict())


@bp.get("/segments/<int:segment_id>")
def api_get_segment(segment_id: int):
    segment = services.get_segment(segment_id)
    return jsonify({**services.segment_to_dict(segment), **services.count(segment.rules).as_dict()})


@bp.patch("/segments/<int:segment_id>")
def api_update_segment(segment_id: int):
    segment = services.update_segment(services.get_segment(segment_id), json_body())
    db.session.commit()
    return jsonify(services.segment_to_dict(segment))


@bp.delete("/segments/<int:segment_id>")
def api_delete_segment(segment_id: int):
    services.delete_segment(services.get_segment(segment_id))
    db.session.commit()
    return Response(status=204)


@bp.get("/segments/<int:segment_id>/subscribers")
def api_segment_subscribers(segment_id: int):
    segment = services.get_segment(segment_id)
    body = paginated(services.matching(segment.rules), lambda row: row)
    memberships = list_ids_by_subscriber([row.id for row in body["items"]])
    body["items"] = [
        {**subscriber_to_dict(row, with_lists=False), "list_ids": memberships[row.id]}
        for row in body["items"]
    ]
    return jsonify(body)


@bp.post("/campaigns/<int:campaign_id>/resend-non-openers")
def api_resend_non_openers(campaign_id: int):
    body = json_body(optional=True)
    services.refuse_unknown(body, ("subject", "delay_hours"))
    copy = services.resend_to_non_openers(
        campaign_id, subject=body.get("subject"), delay_hours=body.get("delay_hours")
    )
    db.session.commit()
    db.session.refresh(copy)
    return jsonify(serialize_campaign(copy, campaign_services.campaign_counts(copy))), 201
